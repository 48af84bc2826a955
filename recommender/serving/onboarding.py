"""The "Tell us what you like" strip: products a new visitor picks from.

Not a shelf of the request path but its cold end: a visitor with no events yet sees the most
popular sellable product of each top category, since covering distinct categories tells more
about a visitor's taste per pick than a list of bestsellers (which tend to share a category);
leftover places go to the next most popular.
"""

from __future__ import annotations

from ..catalog import get_adapter
from ..strategies.base import Context
from . import cache, loaded_models
from .candidates import DATABASE_POPULARITY_SIZE, active_strategy, database_popularity
from .context import known_events
from .visitor import visitor_from


def needs_onboarding(request) -> bool:
    """True for a visitor with no events yet who has not refused personalisation."""
    visitor = visitor_from(request=request, create=False)
    if not visitor.known:
        return True
    if not visitor.consent:
        return False
    # The same query the shelves of this request read (cached on the visitor): no extra cost.
    return not known_events(visitor).events


def onboarding_items(k=10) -> list:
    """Up to ``k`` products for a new visitor to pick from, one per category first; cached."""
    key = cache.key_of("onboarding", k, loaded_models.models_stamp())
    item_ids = cache.get(key)
    if item_ids is None:
        item_ids = _diverse_popular_ids(k)
        cache.put(key, item_ids)
    adapter = get_adapter()
    pks = [adapter.pk_from_string(item_id) for item_id in item_ids]
    products = adapter.queryset().in_bulk(pks)
    return [products[pk] for pk in pks if pk in products]


def onboarding_item(product) -> dict:
    """What the onboarding strip shows of one product."""
    adapter = get_adapter()
    return {"product": product, "item_id": str(product.pk), "title": adapter.title_of(product),
            "price": adapter.value_of(product, "price")}


def _diverse_popular_ids(k: int) -> list[str]:
    adapter = get_adapter()
    model = active_strategy("popularity")
    ranked = model.recommend(Context(), k=DATABASE_POPULARITY_SIZE) if model is not None else None
    if not ranked:
        ranked = database_popularity()
    pks = {}
    for item_id in ranked.item_ids:
        try:
            pks[item_id] = adapter.pk_from_string(item_id)
        except Exception:
            continue
    category_of = {str(product.pk): adapter.category_of(product) for product in adapter.sellable(pks.values())}
    popular_ids = [item_id for item_id in ranked.item_ids if item_id in category_of]
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
