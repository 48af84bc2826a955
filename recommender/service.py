"""The one entry point for serving recommendations (pages, template tags, the API, the admin).

``recommend()`` is the request path, one step per module of ``recommender.serving`` (see
docs/architecture.md): the visitor (resolved once per request) → their context (profile and
recent events, only with their consent) → ranked candidates (a fresh precomputed list, else the
placement's strategy chain, else popularity counted from the database) → the business rules
(live stock, already bought, the product in view, the category cap) → the exploration slot
(new arrivals, within the placement's budget; its candidates pass the same rules) →
explanations → the served-list cache. A fresh install with no trained model is served too, so pages never break.
"""

from __future__ import annotations

from . import attribution
from .serving import cache, candidates, exploration, loaded_models, rules
from .serving.candidates import (  # noqa: F401 (public names)
    CONSENTLESS_STRATEGY, DATABASE_POPULARITY, OVERFETCH, active_strategy, database_popularity,
)
from .serving.context import known_events, visitor_context
from .serving.explanations import ServedItem, ServedRecommendations, served_items  # noqa: F401 (public names)
from .serving.onboarding import needs_onboarding, onboarding_item, onboarding_items  # noqa: F401 (public names)
from .serving.placements import DEFAULT_TITLE, get_placement  # noqa: F401 (public names)
from .serving.visitor import Visitor, assign_arm, visitor_from  # noqa: F401 (public names)
from .strategies.base import Context, Recommendations


def recommend(*, user=None, visitor_key="", request=None, visitor=None, placement="home", product=None, k=8,
              strategy=None, exclude=()) -> ServedRecommendations:
    """Recommend ``k`` products for a visitor on ``placement``; see the module docstring.

    The visitor is ``visitor`` (already resolved, e.g. by an API view), else ``user`` or
    ``visitor_key``, else the one of ``request`` (resolved once per request). ``product`` is the
    product in view (an instance or a primary key); ``strategy`` forces a strategy key (admin
    previews, benchmarks) instead of the visitor's arm or the default. ``exclude`` holds product
    ids the page already shows on an earlier shelf (the template tags pass them): they are ruled
    out like the product in view, so two shelves of one page never repeat a product.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    visitor = visitor if visitor is not None else visitor_from(user, visitor_key, request)
    spot = get_placement(placement)
    product_id = None if product is None else str(getattr(product, "pk", product))
    chain = candidates.strategy_chain(spot, visitor, strategy)
    arm = "" if strategy else visitor.arm
    stamp = loaded_models.models_stamp()
    known = known_events(visitor)
    shown_elsewhere = sorted({str(item_id) for item_id in exclude})
    key = cache.served_list_key(visitor, spot.name, product_id, k, chain, stamp, known.stamp, shown_elsewhere)
    payload = cache.get(key)
    if payload is not None:
        return _served(payload, spot, arm, stamp, cached=True, visitor=visitor)
    context = visitor_context(visitor, known, product_id, blend=spot.blend)
    excluded = rules.excluded_ids(context, spot) | set(shown_elsewhere)
    precomputed = candidates.precomputed_list(visitor, chain, known, context)
    slots = exploration.slots_for(spot, k)
    draws = exploration.generator(visitor, known.events)
    explored = exploration.ranked_candidates(context, visitor, slots, excluded, draws)
    shelf = None
    for ranked in candidates.ranked_lists(context, spot, chain, k * candidates.OVERFETCH, excluded, precomputed):
        shelf = rules.apply(ranked, visitor, excluded, k, spot.max_category_share,
                            source=_source_of(ranked, precomputed), also=explored.item_ids if explored else ())
        if shelf:
            break
    if shelf is None:  # a placement without fall-back (or a session shelf before any event): nothing
        shelf = rules.Shelf(ranked=Recommendations.empty())
    shelf, explored_slots = exploration.place(shelf, explored, slots, k, draws)
    payload = {"items": served_items(shelf), "strategy": shelf.ranked.strategy, "source": shelf.source,
               "explored": explored_slots}
    cache.put(key, payload)
    return _served(payload, spot, arm, stamp, cached=False, context=context, visitor=visitor)


def similar(product, k=8, *, request=None, user=None, visitor_key="", visitor=None) -> ServedRecommendations:
    """Products similar to ``product`` (the product page's "Similar products")."""
    return recommend(user=user, visitor_key=visitor_key, request=request, visitor=visitor, placement="similar",
                     product=product, k=k)


def _source_of(ranked, precomputed) -> str:
    if ranked is precomputed:
        return "precomputed"
    return "database" if ranked.strategy == DATABASE_POPULARITY else "live"


def _served(payload: dict, spot, arm: str, stamp: str, cached: bool, context=None,
            visitor=None) -> ServedRecommendations:
    # A token per rendering (not cached with the list): each served list has its own id.
    token = attribution.issue(identity=visitor.identity, placement=spot.name, strategy=payload["strategy"], arm=arm,
                              item_ids=[item.item_id for item in payload["items"]],
                              explored=payload.get("explored", ())) if payload["items"] else ""
    return ServedRecommendations(
        items=payload["items"], strategy=payload["strategy"], placement=spot.name, arm=arm, title=spot.title,
        cached=cached, stamp=stamp, source=payload["source"], context=context if context is not None else Context(),
        token=token, explored=tuple(payload.get("explored", ())),
    )
