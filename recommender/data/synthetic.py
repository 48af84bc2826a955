"""A believable synthetic shop with planted structure, for the demo and for tests.

``make_shop_dataset`` generates products (titles, descriptions, brands, prices, stock),
shoppers (age, gender, country, city) and a behaviour log (views, clicks, carts, purchases,
ratings, with dwell seconds and timestamps over about 90 days), deterministically from a seed.

The structure a good strategy should find is planted on purpose and written down in
``dataset.meta`` so tests can know the answer:

- ``segment_categories``: each gender × age-band segment (key ``"f|25–34"``) prefers a few
  categories; a large share of its sessions start there and it buys there more readily.
- ``country_categories``: each country adds its own favourite categories.
- ``next_items``: each product leads to a few others (same category or a complementary one);
  sessions follow these links, so "what comes next" is learnable from sequences.
- sessions have a *mission*: each session is about one category, drawn from the shopper's
  tastes (segment, country, favourite or anything). Most of its products come from that
  category, some from its complementary categories (``complementary_categories``), a few from
  the shopper's other tastes, and the shopper buys readily on a mission. So what a visitor
  does in a session says more about their next few events than their profile does, while
  their profile says more about the whole of their history: the two horizons of evaluation
  (docs/architecture.md, "Placements carry intent") prefer different strategies, as in a real
  shop.
- ``new_items``: the newest products have no events at all (cold-start items).
- popularity is skewed (Zipf-like within each category), and dwell time is longer and
  ratings higher on products in a shopper's preferred categories.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .dataset import Dataset
from .features import AGE_BANDS, age_band

# name; products as "Noun: what it is made with: typical price (EUR)"; adjectives; uses; brands; price range (EUR);
# gender lean ("f", "m" or ""); typical shopper age; complementary categories.
CATEGORY_TABLE = (
    ("Running Shoes",
     ("Trail Running Shoe: a grippy lugged outsole: 135", "Road Running Shoe: engineered mesh: 120",
      "Racing Flat: a carbon-fibre plate: 160", "Stability Trainer: a supportive foam midsole: 140",
      "Cushioned Runner: recycled knit: 130", "Running Sock 3-Pack: merino blend: 18"),
     ("Lightweight", "Responsive", "Breathable", "Grippy", "Cushioned", "Fast"),
     ("daily training", "race day", "muddy trails", "long weekend runs"),
     ("Northpeak", "Stridewell", "Velocita", "Kinetiq"), (12, 220), "", 32, ("Fitness Equipment", "Outdoor & Hiking")),
    ("Outdoor & Hiking",
     ("Hiking Boot: a Gore-Tex membrane: 160", "Daypack: ripstop nylon: 70", "Trekking Pole Set: aluminium shafts: 60",
      "Rain Shell Jacket: a 3-layer waterproof fabric: 180", "Two-Person Tent: ripstop nylon: 260",
      "Sleeping Bag: recycled synthetic insulation: 140", "Headlamp: a 400-lumen LED: 35"),
     ("Waterproof", "Packable", "Rugged", "Ultralight", "Four-Season", "Trail-Ready"),
     ("alpine trails", "weekend camping", "long-distance treks", "rainy hikes"),
     ("Northpeak", "Timberline", "Alpenwerk", "Fjellstad"), (25, 380), "m", 38, ("Running Shoes", "Camera & Photo")),
    ("Cycling",
     ("Road Helmet: an EPS foam shell: 110", "Bike Light Set: USB-C rechargeable cells: 45",
      "Cycling Jersey: recycled polyester: 75", "Saddle Bag: waterproof TPU: 30", "Mini Pump: CNC aluminium: 28",
      "D-Lock: hardened steel: 55", "Padded Bib Short: a chamois pad: 90"),
     ("Aero", "Reflective", "Compact", "Lightweight", "Weatherproof", "Pro"),
     ("city commuting", "gravel rides", "club rides", "long tours"),
     ("Veloro", "Kettenblatt", "Spinwell", "Ridgeway"), (15, 240), "m", 36, ("Outdoor & Hiking", "Fitness Equipment")),
    ("Fitness Equipment",
     ("Adjustable Dumbbell: powder-coated steel: 240", "Kettlebell: cast iron: 45", "Resistance Band Set: natural latex: 25",
      "Foam Roller: high-density EVA foam: 30", "Speed Jump Rope: ball bearings: 18", "Pull-Up Bar: chrome steel: 40",
      "Weight Bench: a padded steel frame: 180"),
     ("Heavy-Duty", "Compact", "Adjustable", "Non-Slip", "Home-Gym", "Pro"),
     ("home workouts", "strength training", "recovery days", "HIIT sessions"),
     ("IronForge", "Kinetiq", "Corely", "Liftwell"), (12, 320), "m", 30, ("Running Shoes", "Yoga & Pilates")),
    ("Yoga & Pilates",
     ("Yoga Mat: natural rubber: 60", "Yoga Block: natural cork: 18", "Pilates Ring: flexible fibreglass: 25",
      "Meditation Cushion: organic buckwheat hulls: 55", "Yoga Strap: organic cotton: 14", "Studio Legging: recycled nylon: 70"),
     ("Eco", "Non-Slip", "Extra-Thick", "Travel", "Balanced", "Seamless"),
     ("morning flows", "hot yoga", "studio classes", "mindful stretching"),
     ("Lotusa", "Prana Lane", "Stillpoint", "Corely"), (15, 130), "f", 31, ("Fitness Equipment", "Beauty & Skincare")),
    ("Women's Fashion",
     ("Wrap Dress: fluid viscose: 90", "Blouse: washed linen: 60", "Wool Coat: recycled wool: 220", "High-Rise Jean: stretch denim: 80",
      "Knit Cardigan: merino wool: 85", "Midi Skirt: pleated satin: 65", "Ankle Boot: soft suede: 150"),
     ("Classic", "Relaxed", "Tailored", "Everyday", "Vintage", "Minimal"),
     ("the office", "weekends", "evenings out", "travel"),
     ("Maison Lumen", "Aurelle", "Fernwood", "Studio Nine"), (25, 260), "f", 30, ("Jewellery & Watches", "Beauty & Skincare")),
    ("Men's Fashion",
     ("Oxford Shirt: brushed cotton: 55", "Chino Trouser: stretch twill: 65", "Sweater: merino wool: 90",
      "Denim Jacket: selvedge denim: 110", "Leather Belt: full-grain leather: 45", "Chelsea Boot: suede: 170",
      "Quilted Vest: recycled down: 95"),
     ("Slim-Fit", "Classic", "Relaxed", "Tailored", "Heritage", "Everyday"),
     ("the office", "weekends", "smart-casual dinners", "travel"),
     ("Harbour & Co", "Oakmere", "Studio Nine", "Fernwood"), (25, 240), "m", 34, ("Jewellery & Watches", "Fragrances")),
    ("Jewellery & Watches",
     ("Automatic Watch: sapphire crystal: 390", "Pendant Necklace: sterling silver: 80", "Stud Earrings: 18k gold plating: 45",
      "Signet Ring: sterling silver: 95", "Charm Bracelet: gold-plated brass: 60", "Chronograph Watch: surgical steel: 280"),
     ("Sterling", "Minimal", "Vintage", "Sapphire", "Gold-Tone", "Handcrafted"),
     ("gifts", "everyday wear", "special occasions", "anniversaries"),
     ("Aurelle", "Tempora", "Lumen & Stone", "Halden"), (30, 450), "f", 40, ("Women's Fashion", "Men's Fashion")),
    ("Beauty & Skincare",
     ("Vitamin C Serum: stabilised vitamin C: 32", "Night Cream: shea butter: 38", "Cleansing Balm: plant oils: 26",
      "Sheet Mask Set: hyaluronic acid: 18", "SPF 50 Fluid: mineral filters: 22", "Toner: niacinamide: 19",
      "Lip Balm Trio: beeswax: 12"),
     ("Hydrating", "Brightening", "Gentle", "Fragrance-Free", "Repairing", "Daily"),
     ("sensitive skin", "morning routines", "night routines", "dry winter skin"),
     ("Glowlab", "Petal & Pine", "Dermaly", "Aurelle"), (8, 75), "f", 29, ("Fragrances", "Yoga & Pilates")),
    ("Fragrances",
     ("Eau de Parfum: bergamot and cedar: 95", "Eau de Toilette: sea salt and sage: 65", "Scented Candle: soy wax: 35",
      "Body Mist: jasmine and musk: 25", "Beard Oil: argan and vetiver: 22", "Discovery Set: six signature scents: 45"),
     ("Woody", "Citrus", "Floral", "Amber", "Fresh", "Spiced"),
     ("evenings out", "everyday wear", "gifts", "summer days"),
     ("Maison Lumen", "Oud & Co", "Petal & Pine", "Harbour & Co"), (18, 160), "", 36, ("Beauty & Skincare", "Men's Fashion")),
    ("Baby & Toddler",
     ("Baby Carrier: breathable mesh: 110", "Sleepsuit: organic cotton: 22", "Bib Set: food-grade silicone: 16",
      "Stacking Toy: FSC beech wood: 20", "Changing Bag: recycled polyester: 75", "Swaddle Set: bamboo muslin: 30"),
     ("Soft", "Organic", "Gentle", "Easy-Clean", "Ergonomic", "Travel"),
     ("newborns", "first steps", "nap time", "days out"),
     ("Littlenest", "Bumbleroo", "Snugglo", "Tiny Oak"), (9, 140), "f", 32, ("Toys & Games", "Books")),
    ("Toys & Games",
     ("Building Block Set: recycled plastic: 45", "Wooden Train Set: FSC beech wood: 60", "Family Board Game: sturdy card: 35",
      "1000-Piece Jigsaw: recycled board: 20", "Plush Fox: soft plush: 22", "Science Kit: real lab tools: 40",
      "Card Game: linen-finish cards: 14"),
     ("Classic", "Creative", "Educational", "Colourful", "Award-Winning", "Cooperative"),
     ("family evenings", "rainy days", "birthday gifts", "ages 6 and up"),
     ("Bumbleroo", "Playmaker", "Tiny Oak", "Brightbox"), (8, 90), "", 38, ("Baby & Toddler", "Books")),
    ("Books",
     ("Crime Novel: a foil-stamped cover: 14", "Cookbook: full-colour photography: 28", "Travel Guide: fold-out maps: 22",
      "Fantasy Saga: a sewn binding: 18", "Biography: archive photographs: 24", "Illustrated Atlas: hand-drawn maps: 38",
      "Self-Help Guide: practical exercises: 16"),
     ("Bestselling", "Illustrated", "Hardback", "Award-Winning", "Pocket", "Collector's"),
     ("quiet evenings", "holiday reading", "curious minds", "book clubs"),
     ("Foxglove Press", "Inkwell", "Paperlane", "Northlight Books"), (8, 45), "", 45, ("Toys & Games", "Coffee & Tea")),
    ("Kitchen & Cookware",
     ("Skillet: pre-seasoned cast iron: 55", "Chef's Knife: Damascus steel: 95", "Dutch Oven: enamelled cast iron: 160",
      "Pan Set: tri-ply stainless steel: 190", "Stand Mixer: a 1000 W motor: 380", "Cutting Board: solid bamboo: 35",
      "Spice Grinder: ceramic burrs: 30"),
     ("Professional", "Enamelled", "Everyday", "Heavy-Duty", "Compact", "Classic"),
     ("weeknight dinners", "baking", "slow cooking", "family meals"),
     ("Copperhaus", "Kochwerk", "Brewcraft", "Oakmere"), (12, 420), "", 42, ("Coffee & Tea", "Home Decor")),
    ("Coffee & Tea",
     ("Espresso Blend: Ethiopian and Brazilian arabica: 14", "Pour-Over Kettle: brushed stainless steel: 65",
      "French Press: borosilicate glass: 35", "Green Tea: first-flush leaves: 12", "Burr Grinder: conical steel burrs: 150",
      "Matcha Set: a bamboo whisk: 45", "Cold Brew Maker: borosilicate glass: 40"),
     ("Single-Origin", "Organic", "Barista", "Smooth", "Dark-Roast", "Ceremonial"),
     ("slow mornings", "the office", "weekend brunch", "coffee lovers"),
     ("Brewcraft", "Roastery 21", "Teahouse Mori", "Copperhaus"), (7, 260), "", 38, ("Kitchen & Cookware", "Books")),
    ("Home Decor",
     ("Cushion Cover: stonewashed linen: 28", "Vase: glazed stoneware: 40", "Throw: merino wool: 85", "Table Lamp: solid oak: 110",
      "Framed Print: archival paper: 60", "Wall Mirror: a brass frame: 140", "Reed Diffuser: natural essential oils: 30"),
     ("Scandi", "Handmade", "Minimal", "Boho", "Rustic", "Modern"),
     ("living rooms", "cosy bedrooms", "housewarming gifts", "small flats"),
     ("Fernwood", "Nordhem", "Casa Alba", "Oakmere"), (15, 220), "f", 41, ("Kitchen & Cookware", "Garden")),
    ("Garden",
     ("Raised Planter: FSC acacia wood: 120", "Pruning Shears: carbon-steel blades: 30", "Solar Lantern Set: a solar panel: 35",
      "Watering Can: galvanised steel: 28", "Herb Seed Kit: organic seeds: 15", "Garden Kneeler: memory foam: 25",
      "Bird Feeder: recycled plastic: 22"),
     ("Weatherproof", "Ergonomic", "Heritage", "Compact", "Solar", "Heavy-Duty"),
     ("balconies", "allotments", "spring planting", "small gardens"),
     ("Greenfold", "Nordhem", "Rootwell", "Gardenly"), (8, 180), "", 55, ("Tools & DIY", "Home Decor")),
    ("Tools & DIY",
     ("Cordless Drill: a brushless motor: 140", "Socket Set: chrome-vanadium steel: 75", "Laser Level: a green laser diode: 90",
      "Multi-Tool: stainless steel: 60", "Tool Bag: ballistic nylon: 45", "Stud Finder: a deep-scan sensor: 30",
      "Orbital Sander: a 20V lithium battery: 85"),
     ("Cordless", "Pro", "Compact", "Heavy-Duty", "Precision", "Brushless"),
     ("weekend projects", "renovations", "the trade", "quick repairs"),
     ("Voltwerk", "IronForge", "Bauhaus Pro", "Gripline"), (15, 330), "m", 46, ("Garden", "Home Decor")),
    ("Smartphones & Accessories",
     ("Phone Case: shock-absorbing TPU: 25", "Wireless Charger: a 15 W coil: 35", "Screen Protector: tempered glass: 15",
      "Power Bank: a 20,000 mAh cell: 45", "USB-C Cable: braided nylon: 14", "Car Mount: aluminium: 28",
      "Smartwatch: an AMOLED display: 249"),
     ("Slim", "Rugged", "Fast-Charging", "Magnetic", "Compact", "Braided"),
     ("everyday carry", "travel", "commuting", "busy days"),
     ("Voltix", "Pixelcraft", "Anchorline", "Nomada"), (9, 320), "", 27, ("Audio & Headphones", "Laptops & Computers")),
    ("Laptops & Computers",
     ("Ultrabook: an aluminium unibody: 1299", "Mechanical Keyboard: hot-swappable switches: 130",
      "Wireless Mouse: a silent click mechanism: 45", "27-inch Monitor: a 4K IPS panel: 380", "USB-C Dock: 11 ports: 160",
      "Laptop Stand: anodised aluminium: 50", "Portable SSD: NVMe storage: 120"),
     ("Ultra-Thin", "Pro", "Ergonomic", "High-Speed", "Compact", "Silent"),
     ("remote work", "students", "creative work", "home offices"),
     ("Pixelcraft", "Voltix", "Keyforge", "Lumina Tech"), (20, 1800), "m", 33, ("Gaming", "Audio & Headphones")),
    ("Audio & Headphones",
     ("Noise-Cancelling Headphones: 40 mm drivers: 320", "Wireless Earbuds: a 30-hour battery case: 150",
      "Bluetooth Speaker: a waterproof fabric shell: 90", "Turntable: a belt-driven platter: 280",
      "Soundbar: a built-in subwoofer: 350", "Studio Monitor: a 5-inch woofer: 220"),
     ("Wireless", "Hi-Fi", "Compact", "Portable", "Waterproof", "Studio"),
     ("commuting", "home listening", "workouts", "parties"),
     ("Sonora", "Bassline", "Lumina Tech", "Echowave"), (25, 650), "", 28, ("Smartphones & Accessories", "Gaming")),
    ("Gaming",
     ("Wireless Controller: hall-effect sticks: 65", "Gaming Headset: 50 mm drivers: 110", "Gaming Mouse: a 16K DPI sensor: 70",
      "Keyboard: optical switches: 140", "Gaming Chair: memory foam: 300", "Capture Card: 4K passthrough: 180",
      "Console Stand: a cooling fan: 35"),
     ("RGB", "Pro", "Low-Latency", "Ergonomic", "Tournament", "Wireless"),
     ("competitive play", "long sessions", "streaming", "couch co-op"),
     ("Keyforge", "Nexus Gear", "Pixelcraft", "Bassline"), (20, 420), "m", 24, ("Laptops & Computers", "Audio & Headphones")),
    ("Camera & Photo",
     ("Mirrorless Camera: a 24 MP sensor: 1100", "Prime Lens: fast f/1.8 glass: 450", "Travel Tripod: carbon-fibre legs: 160",
      "Camera Backpack: padded dividers: 120", "SD Card: V60 speed class: 35", "Instant Camera: auto exposure: 99",
      "LED Light Panel: a bi-colour LED array: 85"),
     ("Compact", "Full-Frame", "Weather-Sealed", "Lightweight", "Fast", "Pro"),
     ("travel photography", "vlogging", "portraits", "landscapes"),
     ("Lumina Tech", "Focale", "Aperture Co", "Nomada"), (12, 1600), "", 35, ("Outdoor & Hiking", "Smartphones & Accessories")),
    ("Pet Supplies",
     ("Orthopaedic Dog Bed: memory foam: 95", "Cat Scratching Post: sisal rope: 55", "Dog Harness: padded mesh: 35",
      "Slow Feeder Bowl: food-safe melamine: 18", "Grain-Free Dog Food: human-grade ingredients: 55",
      "Interactive Cat Toy: a quiet motor: 25"),
     ("Durable", "Cosy", "Washable", "Reflective", "Natural", "Vet-Approved"),
     ("puppies", "senior dogs", "indoor cats", "daily walks"),
     ("Pawsome", "Happy Tails", "Whiskerly", "Barkley & Co"), (6, 150), "f", 40, ("Garden", "Home Decor")),
)

# Country, cities (a small realistic list). Users are spread roughly by population.
COUNTRY_TABLE = (
    ("Germany", ("Berlin", "Munich", "Hamburg", "Cologne", "Frankfurt"), 0.18),
    ("France", ("Paris", "Lyon", "Marseille", "Toulouse"), 0.14),
    ("United Kingdom", ("London", "Manchester", "Birmingham", "Edinburgh"), 0.14),
    ("United States", ("New York", "Chicago", "Los Angeles", "Austin", "Seattle"), 0.16),
    ("Spain", ("Madrid", "Barcelona", "Valencia", "Seville"), 0.09),
    ("Italy", ("Rome", "Milan", "Naples", "Turin"), 0.09),
    ("Netherlands", ("Amsterdam", "Rotterdam", "Utrecht"), 0.06),
    ("Poland", ("Warsaw", "Kraków", "Wrocław"), 0.05),
    ("Sweden", ("Stockholm", "Gothenburg", "Malmö"), 0.04),
    ("Canada", ("Toronto", "Vancouver", "Montreal"), 0.05),
)

CLOSING_LINES = (
    "Free returns within 30 days.",
    "Ships in recyclable packaging.",
    "Backed by a two-year warranty.",
    "Designed in Europe, built to last.",
    "Rated highly by our regular customers.",
    "Available in limited quantities.",
)

VARIANT_COLOURS = ("Navy", "Sand", "Charcoal", "Forest", "Coral", "Slate", "Ivory", "Olive", "Plum", "Ochre")

DEFAULT_END_TIME = 1_750_000_000.0  # 2025-06-15 UTC: a fixed clock keeps datasets reproducible.
HISTORY_DAYS = 90
SEGMENT_CATEGORY_COUNT = 3
COUNTRY_CATEGORY_COUNT = 2
NEXT_ITEM_COUNT = 3
SESSION_MAX_LENGTH = 16
# Where a session's fresh (not-followed) product comes from.
SOURCE_SHARES = {"segment": 0.6, "country": 0.15, "favourite": 0.10, "global": 0.15}
FOLLOW_NEXT_PROBABILITY = 0.5
# Where a session's fresh product comes from once its mission (a category) is drawn.
MISSION_SHARES = {"mission": 0.7, "complement": 0.15, "taste": 0.15}
# A product of the shopper's standing tastes, of the session's mission only, or neither.
CART_PROBABILITY = {"preferred": 0.22, "mission": 0.12, "other": 0.06}
PURCHASE_GIVEN_CART = 0.5
RATING_GIVEN_PURCHASE = 0.35
CLICK_SHARE = 0.15
ROWS_PER_STEP_ESTIMATE = 1.15


def age_band_labels() -> list[str]:
    """Age bands that synthetic shoppers fall in (adults only)."""
    return [label for low, _, label in AGE_BANDS if low >= 18]


def make_shop_dataset(
    seed: int = 0,
    n_users: int = 5000,
    n_items: int = 2000,
    n_categories: int = 24,
    n_events: int = 200_000,
    new_item_share: float = 0.04,
    out_of_stock_share: float = 0.06,
    end_time: float | None = None,
) -> Dataset:
    """Generate a synthetic shop with planted structure.

    Parameters
    ----------
    seed
        Everything (catalogue, shoppers, events) is a function of the seed alone.
    n_users, n_items, n_categories, n_events
        Sizes; ``n_events`` is exact. ``n_categories`` is at most ``len(CATEGORY_TABLE)``.
    new_item_share
        Share of products (the newest, last in ``items``) that get no events at all.
    out_of_stock_share
        Share of products marked out of stock.
    end_time
        Epoch seconds of the last possible event; events span the 90 days before it.
        Defaults to a fixed date so the same seed gives identical data.

    Returns
    -------
    Dataset
        With the planted truth in ``meta`` (see the module docstring).
    """
    _check_sizes(n_users, n_items, n_categories, n_events)
    rng = np.random.default_rng(seed)
    categories = CATEGORY_TABLE[:n_categories]
    end_time = DEFAULT_END_TIME if end_time is None else float(end_time)

    items, item_category = _make_items(rng, categories, n_items, out_of_stock_share)
    n_new = int(round(new_item_share * n_items))
    is_new = np.zeros(n_items, dtype=bool)
    if n_new:
        is_new[-n_new:] = True
    users = _make_users(rng, n_users)

    bands = age_band_labels()
    segment_keys = [f"{gender}|{band}" for gender in ("f", "m") for band in bands]
    segment_category_codes = _segment_preferences(rng, categories, bands)
    country_category_codes = rng.permuted(
        np.tile(np.arange(n_categories), (len(COUNTRY_TABLE), 1)), axis=1
    )[:, :COUNTRY_CATEGORY_COUNT]
    complements = _complement_codes(categories)

    popularity = _item_popularity(rng, item_category, is_new)
    next_item_codes = _next_items(rng, item_category, popularity, complements)
    interactions = _make_events(
        rng, users, item_category, popularity, next_item_codes, segment_category_codes,
        country_category_codes, _complement_table(complements), n_events, end_time,
    )
    interactions["user_id"] = users["user_id"].to_numpy()[interactions.pop("user_code")]
    interactions["item_id"] = items["item_id"].to_numpy()[interactions.pop("item_code")]

    category_names = [entry[0] for entry in categories]
    item_ids = items["item_id"].to_numpy()
    meta = {
        "generator": "recommender.data.synthetic.make_shop_dataset",
        "seed": seed,
        "segment_keys": ["gender", "age_band"],
        "segment_categories": {
            key: [category_names[c] for c in segment_category_codes[position]]
            for position, key in enumerate(segment_keys)
        },
        "country_categories": {
            country: [category_names[c] for c in country_category_codes[position]]
            for position, (country, _, _) in enumerate(COUNTRY_TABLE)
        },
        "complementary_categories": {
            category_names[c]: [category_names[o] for o in complements[c]] for c in range(n_categories)
        },
        "next_items": {
            item_ids[i]: item_ids[next_item_codes[i]].tolist() for i in np.flatnonzero(~is_new)
        },
        "new_items": item_ids[is_new].tolist(),
        "history_days": HISTORY_DAYS,
        "end_time": end_time,
    }
    return Dataset(users=users, items=items, interactions=interactions, name=f"synthetic-shop-{seed}", meta=meta)


def make_tiny_shop_dataset(seed: int = 0) -> Dataset:
    """A small shop for fast tests: 300 users, 240 products, 12 categories, 12,000 events."""
    return make_shop_dataset(seed=seed, n_users=300, n_items=240, n_categories=12, n_events=12_000)


def _check_sizes(n_users: int, n_items: int, n_categories: int, n_events: int) -> None:
    if not 1 <= n_categories <= len(CATEGORY_TABLE):
        raise ValueError(f"n_categories must be between 1 and {len(CATEGORY_TABLE)}, got {n_categories}")
    if n_items < 2 * n_categories:
        raise ValueError(f"n_items must be at least twice n_categories ({2 * n_categories}), got {n_items}")
    if n_users < 1 or n_events < 1:
        raise ValueError(f"n_users and n_events must be positive, got {n_users} and {n_events}")


def _make_items(rng: np.random.Generator, categories, n_items: int, out_of_stock_share: float):
    """Return the items frame and each item's category code (every category gets products)."""
    n_categories = len(categories)
    # One product of each category comes first, so no category is made only of new products.
    item_category = np.concatenate(
        [rng.permutation(n_categories), rng.integers(0, n_categories, n_items - n_categories)]
    )
    picks = rng.integers(0, 1 << 30, size=(n_items, 8))
    # Prices scatter around each kind of product's typical price, within the category's range.
    price_factor = rng.lognormal(0.0, 0.25, n_items)
    titles, descriptions, brands, prices = [], [], [], []
    seen_titles = set()
    for code, pick, factor in zip(item_category, picks, price_factor):
        name, products, adjectives, uses, brand_names, (low, high), *_ = categories[code]
        noun, material, typical_price = products[pick[0] % len(products)].split(": ")
        adjective, use = adjectives[pick[1] % len(adjectives)], uses[pick[3] % len(uses)]
        brand = brand_names[pick[4] % len(brand_names)]
        second_adjective = adjectives[(pick[1] + 1 + pick[5] % (len(adjectives) - 1)) % len(adjectives)].lower()
        titles.append(_unseen_title(brand, adjective, noun, adjectives, seen_titles))
        descriptions.append(
            f"A {second_adjective} {noun.lower()} from {brand}, made with {material}. "
            f"Perfect for {use}. {CLOSING_LINES[pick[6] % len(CLOSING_LINES)]}"
        )
        brands.append(brand)
        # Ending in .99 like a real shop's.
        prices.append(np.floor(np.clip(float(typical_price) * factor, low, high)) + 0.99)
    items = pd.DataFrame(
        {
            "item_id": [f"P{position + 1:05d}" for position in range(n_items)],
            "title": _distinct_titles(titles),
            "description": descriptions,
            "category": [categories[code][0] for code in item_category],
            "brand": brands,
            "price": np.round(prices, 2),
            "in_stock": rng.random(n_items) >= out_of_stock_share,
        }
    )
    return items, item_category


def _unseen_title(brand, adjective, noun, adjectives, seen_titles) -> str:
    """The product's title, with a second adjective where the plain one is already taken."""
    candidates = [f"{brand} {adjective} {noun}"] + [
        f"{brand} {other} {adjective} {noun}" for other in adjectives if other != adjective
    ]
    title = next((candidate for candidate in candidates if candidate not in seen_titles), candidates[0])
    seen_titles.add(title)
    return title


def _distinct_titles(titles: list[str]) -> list[str]:
    """Tell repeated titles apart by colour, as a shop lists variants ("…, Navy")."""
    repeat = pd.Series(titles).groupby(titles).cumcount().to_numpy()
    return [
        title if count == 0 else f"{title}, {VARIANT_COLOURS[(count - 1) % len(VARIANT_COLOURS)]}"
        + ("" if count <= len(VARIANT_COLOURS) else f" {count // len(VARIANT_COLOURS) + 1}")
        for title, count in zip(titles, repeat)
    ]


def _make_users(rng: np.random.Generator, n_users: int) -> pd.DataFrame:
    """Shoppers with age, gender, country and city; a few leave some fields blank."""
    ages = np.clip(np.round(rng.gamma(shape=4.0, scale=5.5, size=n_users) + 16), 18, 79)
    gender = rng.choice(np.array(["f", "m", "x"]), size=n_users, p=[0.52, 0.46, 0.02])
    country_share = np.array([share for _, _, share in COUNTRY_TABLE])
    country_codes = rng.choice(len(COUNTRY_TABLE), size=n_users, p=country_share / country_share.sum())
    city_picks = rng.integers(0, 1 << 30, size=n_users)
    cities = [COUNTRY_TABLE[c][1][pick % len(COUNTRY_TABLE[c][1])] for c, pick in zip(country_codes, city_picks)]
    users = pd.DataFrame(
        {
            "user_id": [f"U{position + 1:05d}" for position in range(n_users)],
            "age": ages,
            "gender": gender,
            "country": [COUNTRY_TABLE[c][0] for c in country_codes],
            "city": cities,
        }
    )
    # Real sign-up forms are optional: some shoppers skip age or gender.
    users.loc[rng.random(n_users) < 0.05, "age"] = np.nan
    users.loc[rng.random(n_users) < 0.03, "gender"] = ""
    return users


def _segment_preferences(rng: np.random.Generator, categories, bands: list[str]) -> np.ndarray:
    """Top categories of each gender × age-band segment: (n_segments, SEGMENT_CATEGORY_COUNT).

    Categories that lean towards the segment's gender and sit near its age are likelier,
    with Gumbel noise so that the seed decides the rest.
    """
    band_centres = np.array([_band_centre(band) for band in bands], dtype=np.float64)
    category_gender = np.array([entry[6] for entry in categories])
    category_age = np.array([entry[7] for entry in categories], dtype=np.float64)
    rows = []
    for gender in ("f", "m"):
        for centre in band_centres:
            affinity = 1.5 * (category_gender == gender) - 0.8 * (category_gender == ("m" if gender == "f" else "f"))
            affinity = affinity - np.abs(category_age - centre) / 12.0
            noisy = affinity + rng.gumbel(size=len(categories))
            rows.append(np.argsort(-noisy, kind="stable")[:SEGMENT_CATEGORY_COUNT])
    return np.array(rows)


def _band_centre(band: str) -> float:
    for low, high, label in AGE_BANDS:
        if label == band:
            return (low + min(high, 80)) / 2
    raise ValueError(band)


def _complement_table(complements: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Complementary categories as a (categories × most complements) table and a count per row."""
    counts = np.array([len(codes) for codes in complements], dtype=np.int64)
    table = np.zeros((len(complements), max(1, int(counts.max(initial=0)))), dtype=np.int64)
    for code, codes in enumerate(complements):
        table[code, :len(codes)] = codes
    return table, counts


def _complement_codes(categories) -> list[np.ndarray]:
    names = {entry[0]: code for code, entry in enumerate(categories)}
    return [np.array([names[other] for other in entry[8] if other in names], dtype=np.int64) for entry in categories]


def _item_popularity(rng: np.random.Generator, item_category: np.ndarray, is_new: np.ndarray) -> np.ndarray:
    """Zipf-like popularity within each category (random ranks); new items get zero."""
    ranks = np.empty(len(item_category), dtype=np.float64)
    order = np.lexsort((rng.random(len(item_category)), item_category))
    sorted_categories = item_category[order]
    first_of_category = np.searchsorted(sorted_categories, sorted_categories, side="left")
    ranks[order] = np.arange(len(order)) - first_of_category + 1
    popularity = ranks ** -0.9
    popularity[is_new] = 0.0
    return popularity


def _next_items(rng, item_category, popularity, complements) -> np.ndarray:
    """For each item, NEXT_ITEM_COUNT related items: two in its category, one complementary.

    Targets are drawn by popularity (so never a new item) and never the item itself.
    """
    n_items = len(item_category)
    n_categories = int(item_category.max()) + 1
    sampler = _CategorySampler(item_category, popularity)
    next_codes = np.empty((n_items, NEXT_ITEM_COUNT), dtype=np.int64)
    complement_pick = np.array(
        [
            complements[c][rng.integers(len(complements[c]))] if len(complements[c]) else c
            for c in range(n_categories)
        ]
    )
    for column in range(NEXT_ITEM_COUNT):
        target_category = item_category if column < 2 else complement_pick[item_category]
        choice = sampler.sample(rng, target_category)
        # Re-draw self links a few times; any left fall back to the category's top product.
        for _ in range(5):
            clash = choice == np.arange(n_items)
            if not clash.any():
                break
            choice[clash] = sampler.sample(rng, target_category[clash])
        clash = choice == np.arange(n_items)
        choice[clash] = sampler.top_other(target_category[clash], np.flatnonzero(clash))
        next_codes[:, column] = choice
    return next_codes


class _CategorySampler:
    """Draws items of given categories in proportion to popularity, vectorised.

    Cumulative probabilities within each category are offset by the category code, so one
    ``searchsorted`` over ``code + u`` samples every draw at once.
    """

    def __init__(self, item_category: np.ndarray, popularity: np.ndarray):
        self.order = np.lexsort((np.arange(len(item_category)), item_category))
        categories = item_category[self.order]
        weights = popularity[self.order]
        totals = np.bincount(categories, weights=weights, minlength=int(categories.max()) + 1)
        within = np.cumsum(weights) - np.concatenate([[0.0], np.cumsum(totals)])[categories]
        safe_totals = np.where(totals > 0, totals, 1.0)
        self.offset_cdf = categories + within / safe_totals[categories]
        self.categories = categories
        self.weights = weights

    def sample(self, rng: np.random.Generator, category_codes: np.ndarray) -> np.ndarray:
        # Strictly inside (0, 1) so the draw never lands on a zero-weight (new) item at a boundary.
        u = np.clip(rng.random(len(category_codes)), 1e-9, 1 - 1e-9)
        positions = np.searchsorted(self.offset_cdf, category_codes + u, side="left")
        return self.order[np.minimum(positions, len(self.order) - 1)]

    def top_other(self, category_codes: np.ndarray, exclude: np.ndarray) -> np.ndarray:
        """Most popular item of each category other than the excluded one."""
        result = np.empty(len(category_codes), dtype=np.int64)
        for position, (category, excluded) in enumerate(zip(category_codes, exclude)):
            members = self.order[self.categories == category]
            weights = self.weights[self.categories == category].copy()
            weights[members == excluded] = -1.0
            result[position] = members[np.argmax(weights)]
        return result


def _make_events(
    rng, users, item_category, popularity, next_item_codes, segment_category_codes,
    country_category_codes, complements, n_events, end_time,
) -> pd.DataFrame:
    """Simulate shopping sessions until exactly ``n_events`` rows exist."""
    n_users = len(users)
    n_categories = int(item_category.max()) + 1
    user_segment = _user_segment_codes(users)
    country_index = {country: code for code, (country, _, _) in enumerate(COUNTRY_TABLE)}
    user_country = users["country"].map(country_index).to_numpy(dtype=np.int64)
    # Each user's personal favourite category, and their preferred set (segment ∪ country ∪ favourite).
    user_favourite = rng.integers(0, n_categories, n_users)
    preferred = np.zeros((n_users, n_categories), dtype=bool)
    known_segment = user_segment >= 0
    preferred[np.flatnonzero(known_segment)[:, None], segment_category_codes[user_segment[known_segment]]] = True
    preferred[np.arange(n_users)[:, None], country_category_codes[user_country]] = True
    preferred[np.arange(n_users), user_favourite] = True
    # Heavy-tailed activity; about 8% of accounts never did anything (cold users).
    activity = rng.lognormal(0.0, 1.0, n_users)
    activity[rng.random(n_users) < 0.08] = 0.0
    activity /= activity.sum()

    sampler = _CategorySampler(item_category, popularity)
    category_share = np.bincount(item_category, weights=popularity, minlength=n_categories)
    category_share /= category_share.sum()

    batches, produced = [], 0
    while produced < n_events:
        n_sessions = max(16, int((n_events - produced) / ROWS_PER_STEP_ESTIMATE / 5.0) + 1)
        batch = _simulate_sessions(
            rng, n_sessions, activity, user_segment, user_country, user_favourite, preferred,
            segment_category_codes, country_category_codes, category_share, sampler,
            item_category, next_item_codes, complements, end_time,
        )
        batches.append(batch)
        produced += len(batch)
    events = pd.concat(batches, ignore_index=True).iloc[:n_events]
    return events.sort_values("timestamp", kind="stable").reset_index(drop=True)


def _user_segment_codes(users: pd.DataFrame) -> np.ndarray:
    """Segment row of each user (gender-major, as in ``segment_categories``), -1 when unknown."""
    bands = age_band_labels()
    band_code = {band: code for code, band in enumerate(bands)}
    band_of_user = np.array([band_code.get(age_band(age), -1) for age in users["age"]])
    gender_code = users["gender"].map({"f": 0, "m": 1}).fillna(-1).to_numpy(dtype=np.int64)
    return np.where((band_of_user >= 0) & (gender_code >= 0), gender_code * len(bands) + band_of_user, -1)


def _simulate_sessions(
    rng, n_sessions, activity, user_segment, user_country, user_favourite, preferred,
    segment_category_codes, country_category_codes, category_share, sampler, item_category,
    next_item_codes, complements, end_time,
) -> pd.DataFrame:
    """One batch of sessions as event rows (user_code, item_code, event, value, timestamp, dwell)."""
    session_user = rng.choice(len(activity), size=n_sessions, p=activity)
    lengths = np.minimum(rng.geometric(0.2, n_sessions), SESSION_MAX_LENGTH)

    def taste_categories():
        return _taste_categories(rng, session_user, user_segment, user_country, user_favourite,
                                 segment_category_codes, country_category_codes, category_share)

    # Each session's mission: one category of the shopper's tastes.
    mission = taste_categories()
    # The product at each position: a fresh draw around the mission, or a followed "next" link.
    grid = np.empty((n_sessions, SESSION_MAX_LENGTH), dtype=np.int64)
    for position in range(SESSION_MAX_LENGTH):
        fresh = sampler.sample(rng, _around_mission(rng, mission, complements, taste_categories()))
        if position == 0:
            grid[:, 0] = sampler.sample(rng, mission)
            continue
        follow = rng.random(n_sessions) < FOLLOW_NEXT_PROBABILITY
        linked = next_item_codes[grid[:, position - 1], rng.integers(0, NEXT_ITEM_COUNT, n_sessions)]
        grid[:, position] = np.where(follow, linked, fresh)

    # Interest drives dwell time, carts, purchases and ratings: the shopper's standing tastes,
    # and the session's mission (what they came for).
    grid_category = item_category[grid]
    standing = preferred[session_user[:, None], grid_category]
    on_mission = grid_category == mission[:, None]
    likes = standing | on_mission
    dwell = np.round(rng.lognormal(np.where(likes, 3.6, 2.8), 0.6), 1)
    gaps = rng.exponential(20.0, grid.shape)
    session_start = end_time - HISTORY_DAYS * 86_400 + rng.random(n_sessions) * (HISTORY_DAYS * 86_400 - 3_600)
    step_cost = dwell + gaps
    step_time = session_start[:, None] + np.cumsum(step_cost, axis=1) - step_cost

    valid = np.arange(SESSION_MAX_LENGTH)[None, :] < lengths[:, None]
    step_user = np.broadcast_to(session_user[:, None], grid.shape)[valid]
    step_item, step_likes = grid[valid], likes[valid]
    cart_probability = np.select([standing[valid], on_mission[valid]],
                                 [CART_PROBABILITY["preferred"], CART_PROBABILITY["mission"]], CART_PROBABILITY["other"])
    step_dwell, step_time = dwell[valid], step_time[valid]
    n_steps = len(step_item)

    carted = rng.random(n_steps) < cart_probability
    purchased = carted & (rng.random(n_steps) < PURCHASE_GIVEN_CART)
    rated = purchased & (rng.random(n_steps) < RATING_GIVEN_PURCHASE)
    stars = np.clip(np.round(rng.normal(np.where(step_likes, 4.4, 3.1), 0.8)), 1, 5)
    primary = np.where(rng.random(n_steps) < CLICK_SHARE, "click", "view")

    parts = [
        (np.arange(n_steps), primary, np.full(n_steps, np.nan), step_dwell, step_time),
    ]
    for mask, event, value, delay in (
        (carted, "cart", np.full(n_steps, np.nan), 5.0),
        (purchased, "purchase", np.full(n_steps, np.nan), 60.0),
        (rated, "rating", stars, 3 * 86_400.0),
    ):
        steps = np.flatnonzero(mask)
        parts.append((steps, np.full(len(steps), event), value[steps], np.full(len(steps), np.nan),
                      step_time[steps] + step_dwell[steps] + delay))
    step_index = np.concatenate([part[0] for part in parts])
    order = np.argsort(step_index, kind="stable")
    return pd.DataFrame(
        {
            "user_code": step_user[step_index][order],
            "item_code": step_item[step_index][order],
            "event": np.concatenate([part[1] for part in parts])[order],
            "value": np.concatenate([part[2] for part in parts])[order],
            "timestamp": np.round(np.minimum(np.concatenate([part[4] for part in parts])[order], end_time)),
            "dwell_seconds": np.concatenate([part[3] for part in parts])[order],
        }
    )


def _around_mission(rng, mission: np.ndarray, complements: tuple[np.ndarray, np.ndarray],
                    tastes: np.ndarray) -> np.ndarray:
    """Category of each session's next fresh product: its mission, a complement of it, or another taste.

    ``complements`` is ``_complement_table``'s (categories × most complements) table and counts.
    """
    shares = np.array(list(MISSION_SHARES.values()))
    source = rng.choice(len(shares), size=len(mission), p=shares / shares.sum())
    category = np.where(source == 0, mission, tastes)
    complement_table, complement_count = complements
    to_complement = (source == 1) & (complement_count[mission] > 0)
    pick = np.floor(rng.random(len(mission)) * np.maximum(complement_count[mission], 1)).astype(np.int64)
    category[to_complement] = complement_table[mission[to_complement], pick[to_complement]]
    return category


def _taste_categories(
    rng, session_user, user_segment, user_country, user_favourite, segment_category_codes,
    country_category_codes, category_share,
) -> np.ndarray:
    """Draw one category per session from the user's mixture of tastes."""
    n = len(session_user)
    shares = np.array(list(SOURCE_SHARES.values()))
    source = rng.choice(len(shares), size=n, p=shares / shares.sum())
    segment = user_segment[session_user]
    category = rng.choice(len(category_share), size=n, p=category_share)  # "global"
    pick_segment = (source == 0) & (segment >= 0)
    category[pick_segment] = segment_category_codes[
        segment[pick_segment], rng.integers(0, SEGMENT_CATEGORY_COUNT, pick_segment.sum())
    ]
    pick_country = source == 1
    category[pick_country] = country_category_codes[
        user_country[session_user[pick_country]], rng.integers(0, COUNTRY_CATEGORY_COUNT, pick_country.sum())
    ]
    pick_favourite = source == 2
    category[pick_favourite] = user_favourite[session_user[pick_favourite]]
    return category
