"""The one entry point for serving recommendations (pages, template tags, the API, the admin).

``recommend()`` builds a ``Context`` from what is known about the visitor (profile attributes
and the session's recent events, only with their consent), picks a strategy (the visitor's A/B
arm, else ``DEFAULT_STRATEGY``, falling back down ``FALLBACK_CHAIN`` when a strategy has no
active version), applies the business rules (in stock, not already bought, not the product in
view) and returns product instances with a score and a reason each.

Results are cached per visitor, placement, product in view, ``k``, the active model versions
and the visitor's latest event, so a new click shows on the next page without retraining and
a new model version is served at once. A fresh install with no trained model at all is served
a popularity list counted from the database, so pages never break.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.core.cache import caches

from .catalog import get_adapter
from .conf import settings
from .events import visitor_days_by_product
from .models import EventType, Interaction
from .serving import loaded_models
from .serving.context import known_events, visitor_context
from .serving.visitor import Visitor, assign_arm, visitor_from  # noqa: F401 (public names)
from .strategies.base import Context, Recommendations

logger = logging.getLogger(__name__)

FALLBACK_CHAIN = ("hybrid", "segment_popularity", "popularity")
# Without the hybrid, a visitor's events are still used (their next page reflects their clicks).
EVENT_FALLBACK = "item_knn"
# The strategy a visitor without personalisation consent gets: it reads no profile and no events.
CONSENTLESS_STRATEGY = "popularity"
DATABASE_POPULARITY = "database_popularity"
SIMILAR_PLACEMENTS = ("similar",)
PLACEMENT_TITLES = {
    "home": "Picked for you",
    "similar": "Similar products",
    "also_bought": "Shoppers like you also bought",
    "cart": "You may also like",
    "onboarding": "Tell us what you like",
}
DEFAULT_TITLE = "You may also like"
# Candidates asked of a strategy beyond ``k``, so that dropping sold-out or deleted products
# still leaves ``k`` to show.
OVERFETCH = 3
DATABASE_POPULARITY_SIZE = 500


@dataclass(frozen=True)
class ServedItem:
    """One recommended product with its score and the reason shown next to it."""

    product: Any
    item_id: str
    score: float
    reason: str
    title: str = ""
    price: Any = None
    url: str = ""


@dataclass
class ServedRecommendations:
    """What a page, tag or endpoint shows: products in rank order plus how they were chosen."""

    items: list[ServedItem]
    strategy: str
    placement: str
    arm: str = ""
    title: str = ""
    cached: bool = False
    stamp: str = ""
    context: Context = field(default_factory=Context, repr=False)

    @property
    def products(self):
        return [item.product for item in self.items]

    @property
    def scores(self):
        return [item.score for item in self.items]

    @property
    def reasons(self):
        return [item.reason for item in self.items]

    def __iter__(self):
        return iter(self.items)

    def __len__(self):
        return len(self.items)

    def __bool__(self):
        return bool(self.items)


# --- models ----------------------------------------------------------------------------------
def active_strategy(key: str):
    """The loaded active version of ``key``, or None when it has none (or cannot be loaded)."""
    try:
        return loaded_models.get_active_strategy(key)
    except Exception:
        logger.exception("Could not load the active %s model; falling back", key)
        return None


def models_stamp() -> str:
    """A short string that changes whenever an active model version changes."""
    return loaded_models.models_stamp()


def strategy_chain(chosen: str, has_events: bool = False) -> list[str]:
    """``chosen``, then the fallbacks; item-kNN first among them when there are events to use."""
    fallbacks = (EVENT_FALLBACK, *FALLBACK_CHAIN) if has_events else FALLBACK_CHAIN
    return [chosen] + [key for key in dict.fromkeys(fallbacks) if key != chosen]


def bought_item_ids(visitor: Visitor) -> set[str]:
    if not visitor.known:
        return set()
    purchased = visitor.interactions().filter(event=EventType.PURCHASE).values_list("product_id", flat=True)
    return {str(pk) for pk in purchased.distinct()}


# --- serving ---------------------------------------------------------------------------------
def recommend(*, user=None, visitor_key="", request=None, placement="home", product=None, k=8,
              strategy=None) -> ServedRecommendations:
    """Recommend ``k`` products for a visitor on ``placement``; see the module docstring.

    ``product`` is the product in view (an instance or a primary key); ``strategy`` forces a
    strategy key (admin previews, benchmarks) instead of the visitor's arm or the default.
    """
    if not isinstance(k, int) or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    visitor = visitor_from(user, visitor_key, request)
    product_id = None if product is None else str(getattr(product, "pk", product))
    consent = visitor.consent
    arm = visitor.arm if strategy is None else ""
    stamp = models_stamp()
    known = known_events(visitor)
    cache_key = _cache_key(
        visitor.identity if consent else "no-consent", visitor.profile_version if consent else "", placement,
        product_id, k, stamp, known.stamp, strategy or arm,
    )
    payload = _cache_get(cache_key)
    cached = payload is not None
    context = Context()
    if payload is None:
        context = visitor_context(visitor, known, product_id)
        if consent:
            chain = strategy_chain(strategy or arm or settings.DEFAULT_STRATEGY, has_events=bool(context.events))
            exclude = bought_item_ids(visitor)
        else:
            chain, exclude = [CONSENTLESS_STRATEGY], set()
        if product_id is not None:
            exclude.add(product_id)
        if placement == "cart":
            exclude.update(event.item_id for event in context.events if event.event == EventType.CART)
        if placement in SIMILAR_PLACEMENTS and product_id is not None:
            chain = ["content"] + chain
        payload = _with_products(_rank(context, chain, k, exclude, placement))
        payload["arm"] = arm
        _cache_set(cache_key, payload)
    return _served(payload, placement, k, stamp, cached, context)


def similar(product, k=8, *, request=None, user=None, visitor_key="") -> ServedRecommendations:
    """Products similar to ``product`` (the product page's "Similar products")."""
    return recommend(user=user, visitor_key=visitor_key, request=request, placement="similar",
                     product=product, k=k)


def _rank(context: Context, chain: list[str], k: int, exclude: set[str], placement: str) -> dict:
    """Top ``k`` in-stock items of the first strategy in ``chain`` that has a model and answers."""
    wanted = k * OVERFETCH + len(exclude)
    for key in chain:
        model = active_strategy(key)
        if model is None:
            continue
        try:
            if key == "content" and placement in SIMILAR_PLACEMENTS and hasattr(model, "similar_items"):
                ranked = model.similar_items(context.product_id, wanted)
            else:
                ranked = model.recommend(context, k=wanted, exclude=exclude)
        except Exception:
            logger.exception("Strategy %s failed to recommend; trying the next one", key)
            continue
        payload = _in_stock_top(ranked, k, exclude, strategy=key)
        if payload["item_ids"]:
            return payload
    return _in_stock_top(database_popularity(), k, exclude, strategy=DATABASE_POPULARITY)


def _in_stock_top(ranked: Recommendations, k: int, exclude: set[str], strategy: str) -> dict:
    """The first ``k`` ranked items that are sellable now, with their product rows (one query)."""
    adapter = get_adapter()
    candidates = [(item_id, score, reason) for item_id, score, reason in ranked if item_id not in exclude]
    pks = {}
    for item_id, _, _ in candidates:
        try:
            pks[item_id] = adapter.pk_from_string(item_id)
        except Exception:
            continue  # an id from another catalog (a model trained on a bundle) is not sellable here
    products = adapter.in_stock_products(pks.values()) if pks else {}
    kept = [(item_id, score, reason) for item_id, score, reason in candidates
            if item_id in pks and pks[item_id] in products][:k]
    return {
        "item_ids": [item_id for item_id, _, _ in kept],
        "scores": [float(score) for _, score, _ in kept],
        "reasons": [reason for _, _, reason in kept],
        "products": [products[pks[item_id]] for item_id, _, _ in kept],
        "strategy": strategy,
    }


def _with_products(payload) -> dict:
    """Turn the ranked ids and their product rows into ``ServedItem``s.

    The rows are cached with the list (for ``CACHE_TIMEOUT`` at most), so a cache hit costs no
    query at all.
    """
    adapter = get_adapter()
    items = [
        ServedItem(product=product, item_id=item_id, score=score, reason=reason, title=adapter.title_of(product),
                   price=product_attribute(product, "price"), url=_url_of(product))
        for item_id, score, reason, product in zip(payload["item_ids"], payload["scores"], payload["reasons"],
                                                   payload["products"])
    ]
    return {"items": items, "strategy": payload["strategy"]}


def _url_of(product):
    url_of = getattr(product, "get_absolute_url", None)
    return url_of() if url_of else ""


def _served(payload, placement, k, stamp, cached, context) -> ServedRecommendations:
    return ServedRecommendations(
        items=payload["items"][:k],
        strategy=payload["strategy"],
        placement=placement,
        arm=payload.get("arm", ""),
        title=PLACEMENT_TITLES.get(placement, DEFAULT_TITLE),
        cached=cached,
        stamp=stamp,
        context=context,
    )


def product_attribute(product, name):
    """A product's value of one of the adapter's attributes (``category__name`` is followed)."""
    path = get_adapter().field_paths.get(name)
    value = product
    for part in (path or "").split("__") if path else ():
        value = getattr(value, part, None)
        if value is None:
            return None
    return value if path else None


# --- no model yet: popularity counted from the database ----------------------------------------
def database_popularity() -> Recommendations:
    """Products with the most distinct visitors per day in the event log (the catalog's own order
    without any events); cached."""
    cache_key = _cache_key("database-popularity")
    ranked = _cache_get(cache_key)
    if ranked is None:
        counted = visitor_days_by_product(Interaction.objects.all(), exclude_types=[EventType.IMPRESSION],
                                          limit=DATABASE_POPULARITY_SIZE)
        ranked = [(str(product), float(visitors)) for product, visitors in counted]
        if not ranked:
            listed = get_adapter().queryset().values_list("pk", flat=True)
            ranked = [(str(pk), 0.0) for pk in listed[:DATABASE_POPULARITY_SIZE]]
        _cache_set(cache_key, ranked)
    return Recommendations(
        item_ids=[item_id for item_id, _ in ranked],
        scores=np.asarray([score for _, score in ranked], dtype=np.float32),
        reasons=["Popular in the shop right now"] * len(ranked),
        strategy=DATABASE_POPULARITY,
    )


# --- onboarding ------------------------------------------------------------------------------
def onboarding_items(k=10):
    """Products for a new visitor to pick from: the most popular product of each top category.

    Covering distinct categories tells more about a visitor's taste per pick than a list of
    bestsellers (which tend to share a category); leftover places go to the next most popular.
    """
    cache_key = _cache_key("onboarding", k, models_stamp())
    item_ids = _cache_get(cache_key)
    if item_ids is None:
        item_ids = _diverse_popular_ids(k)
        _cache_set(cache_key, item_ids)
    adapter = get_adapter()
    pks = [adapter.pk_from_string(item_id) for item_id in item_ids]
    products = adapter.queryset().in_bulk(pks)
    return [products[pk] for pk in pks if pk in products]


def onboarding_item(product) -> dict:
    """What the onboarding strip shows of one product."""
    return {"product": product, "item_id": str(product.pk), "title": get_adapter().title_of(product),
            "price": product_attribute(product, "price")}


def needs_onboarding(request) -> bool:
    """True for a visitor with no events yet who has not refused personalisation."""
    visitor = visitor_from(request=request, create=False)
    if not visitor.known:
        return True
    if not visitor.consent:
        return False
    return not visitor.has_events()


def _diverse_popular_ids(k):
    adapter = get_adapter()
    model = active_strategy("popularity")
    ranked = model.recommend(Context(), k=DATABASE_POPULARITY_SIZE) if model is not None else None
    if not ranked:
        ranked = database_popularity()
    popular_ids = list(ranked.item_ids)
    pks = {}
    for item_id in popular_ids:
        try:
            pks[item_id] = adapter.pk_from_string(item_id)
        except Exception:
            continue
    in_stock = {str(pk) for pk in adapter.in_stock_pks(pks.values())}
    rows = adapter.iter_rows(adapter.queryset().filter(pk__in=[pks[i] for i in pks if i in in_stock]))
    category_of = {str(row["pk"]): row["category"] for row in rows}
    popular_ids = [item_id for item_id in popular_ids if item_id in category_of]
    chosen, seen_categories = [], set()
    for item_id in popular_ids:
        if category_of[item_id] not in seen_categories:
            seen_categories.add(category_of[item_id])
            chosen.append(item_id)
        if len(chosen) == k:
            return chosen
    chosen_set = set(chosen)
    chosen += [item_id for item_id in popular_ids if item_id not in chosen_set][: k - len(chosen)]
    return chosen


# --- cache -----------------------------------------------------------------------------------
def _cache_key(*parts) -> str:
    raw = ":".join("" if part is None else str(part) for part in parts)
    return "recommender:" + hashlib.sha1(raw.encode()).hexdigest()


def _cache_get(key):
    # A cache outage degrades to computing every time; it must never take the page down.
    try:
        return caches[settings.CACHE_ALIAS].get(key)
    except Exception:
        logger.warning("Recommendation cache unavailable (get)", exc_info=True)
        return None


def _cache_set(key, value):
    try:
        caches[settings.CACHE_ALIAS].set(key, value, settings.CACHE_TIMEOUT)
    except Exception:
        logger.warning("Recommendation cache unavailable (set)", exc_info=True)
