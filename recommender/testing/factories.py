"""Factories for tests: small data with a planted, known answer (the contract suite: docs/architecture.md, "How to add a strategy").

``planted_dataset`` builds a synthetic shop in which the right recommendations are known in
advance, so a strategy's test can assert *what* it recommends, not only that it runs:

- four segments (gender × age band), each buying mostly from its own category;
- within a category, item ``i`` is usually followed by a fixed ``next_item[i]``;
- a few products per category have no interactions at all (new products) but share their
  category's vocabulary, so a text model can place them;
- user profiles with country/region/city and an extra ``customer_type`` attribute (noise);
- timestamps increasing within each user.

The truth is kept in ``dataset.meta``.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from ..data.dataset import Dataset
from ..data.features import age_band

PLANTED_CATEGORIES = ("garden", "kitchen", "sports", "books")
PLANTED_VOCABULARY = {
    "garden": ("trowel", "hose", "seeds", "planter", "compost", "rake", "pruner", "soil"),
    "kitchen": ("pan", "knife", "whisk", "kettle", "skillet", "grater", "ladle", "spatula"),
    "sports": ("racket", "dumbbell", "jersey", "sneaker", "helmet", "yoga mat", "ball", "bicycle"),
    "books": ("novel", "paperback", "poetry", "thriller", "biography", "atlas", "cookbook", "memoir"),
}
# (gender, age) → preferred category; ages sit in the middle of their band.
PLANTED_SEGMENTS = (
    ("f", 29, "garden"),
    ("f", 49, "kitchen"),
    ("m", 29, "sports"),
    ("m", 49, "books"),
)
PLANTED_LOCATIONS = (("de", "berlin", "berlin"), ("de", "bavaria", "munich"), ("fr", "idf", "paris"),
                     ("us", "ca", "san francisco"))
START_TIME = 1_700_000_000.0


def planted_dataset(
    seed: int = 0,
    n_users: int = 400,
    n_items: int = 120,
    new_items_per_category: int = 2,
    events_per_user: tuple[int, int] = (8, 16),
    on_category_share: float = 0.9,
    follow_next_share: float = 0.75,
    popular_share: float = 0.0,
) -> Dataset:
    """Return a small synthetic dataset with a known answer.

    Parameters
    ----------
    seed
        Seed of every random draw: the same seed gives the same dataset.
    n_users, n_items
        Sizes; items are split evenly over the four categories.
    new_items_per_category
        Products per category that get no interactions (listed in ``meta["new_item_ids"]``).
    events_per_user
        Inclusive range of each user's number of events.
    on_category_share
        Share of a user's sequence starts drawn from their segment's category.
    follow_next_share
        Probability that the next event is the planted ``next_item`` of the current one.
    popular_share
        Share of sequence starts drawn from one shop-wide Zipf head over every established
        item, whatever the user's segment: best sellers everyone buys, so that plain popularity
        is a strong baseline (``popular_head_datasets``). 0 (default) leaves the data as it was.

    Returns
    -------
    Dataset
        With ``meta`` holding ``segment_category`` ({(gender, age_band): category}),
        ``segment_profiles`` ({category: profile dict}), ``category_items`` ({category: [ids]}),
        ``item_category`` ({id: category}), ``next_item`` ({id: id}), ``new_item_ids``,
        ``user_category`` ({user id: category}).
    """
    rng = np.random.default_rng(seed)
    n_categories = len(PLANTED_CATEGORIES)
    per_category = max(n_items // n_categories, new_items_per_category + 3)

    item_rows, category_items, old_items, new_item_ids = [], {}, {}, []
    for category in PLANTED_CATEGORIES:
        vocabulary = PLANTED_VOCABULARY[category]
        ids = [f"{category[:2]}{number:03d}" for number in range(per_category)]
        category_items[category] = ids
        old_items[category] = ids[: per_category - new_items_per_category]
        new_item_ids.extend(ids[per_category - new_items_per_category:])
        for number, item_id in enumerate(ids):
            words = rng.choice(vocabulary, size=3, replace=False)
            item_rows.append({
                "item_id": item_id,
                "title": f"{words[0].title()} {number}",
                "description": f"A {category} product: {words[0]}, {words[1]} and {words[2]}.",
                "category": f"{category.title()}|{words[0].title()}",
                "brand": f"{category.title()}Co",
                "price": float(rng.integers(5, 200)),
                "in_stock": True,
            })
    items = pd.DataFrame(item_rows)

    # A fixed cycle per category: each established item has exactly one planted successor.
    next_item = {}
    for category in PLANTED_CATEGORIES:
        cycle = rng.permutation(old_items[category])
        next_item.update({str(a): str(b) for a, b in zip(cycle, np.roll(cycle, -1))})
    # Zipf-like start popularity inside each category, so popularity is informative too.
    start_weights = 1.0 / np.arange(1, len(old_items[PLANTED_CATEGORIES[0]]) + 1) ** 0.8
    start_cumulative = np.cumsum(start_weights) / start_weights.sum()
    old_item_sets = {category: set(ids) for category, ids in old_items.items()}
    if popular_share:
        shop_head = [str(item) for item in rng.permutation([item for ids in old_items.values() for item in ids])]
        head_cumulative = np.cumsum(1.0 / np.arange(1, len(shop_head) + 1))
        head_cumulative /= head_cumulative[-1]
    event_types = ("view", "cart", "purchase", "rating")
    event_cumulative = np.cumsum((0.55, 0.15, 0.1, 0.2))

    user_rows, interaction_rows, user_category = [], [], {}
    for number in range(n_users):
        gender, mid_age, category = PLANTED_SEGMENTS[number % len(PLANTED_SEGMENTS)]
        country, region, city = PLANTED_LOCATIONS[rng.integers(len(PLANTED_LOCATIONS))]
        user_id = f"u{number:04d}"
        user_category[user_id] = category
        user_rows.append({
            "user_id": user_id,
            "age": int(mid_age + rng.integers(-4, 5)),
            "gender": gender,
            "country": country,
            "region": region,
            "city": city,
            "customer_type": ("retail", "business")[int(rng.integers(2))],
        })
        length = int(rng.integers(events_per_user[0], events_per_user[1] + 1))
        clock = START_TIME + rng.uniform(0, 30 * 86400)
        current = None
        for _ in range(length):
            draw = rng.random()
            if current is not None and draw < follow_next_share:
                current = next_item[current]
            elif popular_share and rng.random() < popular_share:
                current = shop_head[min(int(np.searchsorted(head_cumulative, rng.random())), len(shop_head) - 1)]
            else:
                start_category = category if rng.random() < on_category_share else PLANTED_CATEGORIES[rng.integers(n_categories)]
                rank = min(int(np.searchsorted(start_cumulative, rng.random())), len(start_cumulative) - 1)
                current = old_items[start_category][rank]
            on_category = current in old_item_sets[category]
            event = event_types[min(int(np.searchsorted(event_cumulative, rng.random())), 3)]
            value = float(rng.integers(4, 6) if on_category else rng.integers(1, 4)) if event == "rating" else np.nan
            clock += float(rng.uniform(60, 600))
            interaction_rows.append({
                "user_id": user_id,
                "item_id": current,
                "event": event,
                "value": value,
                "timestamp": clock,
                "dwell_seconds": float(rng.uniform(5, 120)) if event == "view" else np.nan,
            })

    meta = {
        "segment_category": {(gender, age_band(age)): category for gender, age, category in PLANTED_SEGMENTS},
        "segment_profiles": {
            category: {"age": age, "gender": gender, "country": "de", "region": "berlin", "city": "berlin"}
            for gender, age, category in PLANTED_SEGMENTS
        },
        "category_items": category_items,
        "item_category": {item_id: category for category, ids in category_items.items() for item_id in ids},
        "next_item": next_item,
        "new_item_ids": new_item_ids,
        "user_category": user_category,
    }
    return Dataset(
        users=pd.DataFrame(user_rows),
        items=items,
        interactions=pd.DataFrame(interaction_rows),
        name=f"planted-{seed}",
        meta=meta,
    )


def popular_head_datasets(seed: int = 0, n_users: int = 1200, popular_share: float = 0.6) -> dict[str, Dataset]:
    """Planted shops where best sellers dominate: one with profiles, one without any.

    ``"profiles"``: ``planted_dataset`` with a shop-wide Zipf head (``popular_share``), so a
    new visitor's profile still says something but popularity is a strong baseline.
    ``"anonymous"``: the same interactions with every profile attribute removed (as in data
    with no user attributes), where popularity is the most a model can know about a new visitor.
    A strategy that learns from the data must match plain popularity on both (docs/benchmarks.md).
    """
    dataset = planted_dataset(seed=seed, n_users=n_users, popular_share=popular_share, follow_next_share=0.3)
    anonymous = Dataset(users=dataset.users.iloc[:, :0].reset_index(), items=dataset.items.reset_index(),
                        interactions=dataset.interactions, name=f"{dataset.name}-anonymous", meta=dataset.meta)
    return {"profiles": dataset, "anonymous": anonymous}


def new_items_frame(item_ids, category: str = "garden", seed: int = 0) -> pd.DataFrame:
    """Products added after training, as ``Strategy.add_items`` takes them (indexed by id)."""
    rng = np.random.default_rng(seed)
    vocabulary = PLANTED_VOCABULARY.get(category, PLANTED_VOCABULARY["garden"])
    rows = []
    for item_id in item_ids:
        words = rng.choice(vocabulary, size=3, replace=False)
        rows.append({
            "item_id": str(item_id),
            "title": f"New {words[0]}",
            "description": f"A {category} product: {words[0]}, {words[1]} and {words[2]}.",
            "category": f"{category.title()}|{words[0].title()}",
            "brand": f"{category.title()}Co",
            "price": 20.0,
            "in_stock": True,
        })
    return pd.DataFrame(rows).set_index("item_id")


_product_numbers = itertools.count(1)


def make_product(**attrs):
    """Create and return a product in the host's catalog, built through the catalog adapter.

    ``attrs`` use the app's attribute names (``external_id``, ``title``, ``description``,
    ``category``, ``brand``, ``price``, ``in_stock``), so the same test works on any catalog.
    """
    from ..catalog import get_adapter

    number = next(_product_numbers)
    row = {"external_id": f"TEST-{number:06d}", "title": f"Test product {number}", "category": "Tests",
           "price": 10.0, "in_stock": True, **attrs}
    adapter = get_adapter()
    # The adapter caches categories it created; a rolled-back test would leave stale ones there.
    adapter.forget_related_cache()
    product = adapter.build_product(row)
    product.save()
    return product
