"""Step 3 of the request path: ranked candidate lists, best source first.

In order, each one a ranked list that the rules step may accept or pass on:

1. the visitor's precomputed list (``recommender.precompute``), when it is fresh: same active
   version, no counting event and no profile change since it was computed (a cache read, no
   query); only for a signed-in visitor and a placement without a product in view;
2. the placement's strategy chain (``Placement.strategy_chain``): each strategy with an active
   version, asked through the one strategy contract (``recommend`` with the candidate filter, or
   ``similar_items`` on a ``similar_to_product`` placement). A strategy that needs events is
   skipped for a visitor without any and without a product in view; one that raises is logged
   and skipped;
3. popularity counted from the database (a fresh install with no model is served too).

See docs/architecture.md.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np

from .. import precompute
from ..catalog import get_adapter
from ..conf import settings
from ..events import visitor_days_by_product
from ..models import EventType, Interaction
from ..strategies.base import Context, Recommendations, Strategy
from . import cache, loaded_models
from .context import KnownEvents
from .placements import Placement
from .visitor import Visitor

logger = logging.getLogger(__name__)

# The strategy a visitor without personalisation consent gets: it reads no profile and no events.
CONSENTLESS_STRATEGY = "popularity"
DATABASE_POPULARITY = "database_popularity"
DATABASE_POPULARITY_SIZE = 500
DATABASE_POPULARITY_REASON = "Popular in the shop right now"
# The blend precomputed lists are scored with (precompute builds contexts without a blend: the
# hybrid's default, its first blend).
PRECOMPUTED_BLEND = "home"
# Candidates asked of a source per slot, so that the rules (stock, purchases, the category cap)
# still leave ``k`` to show.
OVERFETCH = 4


def active_strategy(key: str) -> Strategy | None:
    """The loaded active version of ``key``, or None when it has none (or cannot be loaded)."""
    try:
        return loaded_models.get_active_strategy(key)
    except Exception:
        logger.exception("Could not load the active %s model; falling back", key)
        return None


def strategy_chain(placement: Placement, visitor: Visitor, forced: str | None = None) -> list[str]:
    """Strategy keys to try in order for ``visitor`` on ``placement``.

    The visitor's strategy is ``forced`` (admin previews, benchmarks), else their A/B arm, else
    ``DEFAULT_STRATEGY``; without consent it is ``CONSENTLESS_STRATEGY`` alone after the
    placement's own strategies.
    """
    if not visitor.consent:
        return placement.strategy_chain(CONSENTLESS_STRATEGY, ())
    chosen = forced or visitor.arm or settings.DEFAULT_STRATEGY
    return placement.strategy_chain(chosen, settings.FALLBACK_STRATEGIES)


def ranked_lists(context: Context, placement: Placement, chain: list[str], wanted: int, excluded: set[str],
                 precomputed: Recommendations | None = None) -> Iterator[Recommendations]:
    """Yield ranked lists of up to ``wanted`` items, best source first (see the module docstring)."""
    if placement.needs_events and not context.events:
        return  # a session shelf (because you viewed) before the session has any event: none
    if precomputed is not None:
        yield precomputed
    similar_to = context.product_id if placement.similar_to_product else None
    for key in chain:
        model = active_strategy(key)
        # The product in view is something known too (a product page's co-occurrence list).
        if model is None or (model.needs_events and not context.events and context.product_id is None):
            continue
        try:
            if similar_to is not None:
                ranked = model.similar_items(similar_to, k=wanted, exclude=excluded)
            else:
                ranked = model.recommend(context, k=wanted, exclude=excluded)
        except Exception:
            logger.exception("Strategy %s failed to recommend; trying the next one", key)
            continue
        if len(ranked):
            ranked.strategy = key  # the key it was served under (an A/B arm is recorded by it)
            yield ranked
    if placement.fall_back:
        yield database_popularity()


def precomputed_list(visitor: Visitor, chain: list[str], known: KnownEvents, context: Context) -> Recommendations | None:
    """The visitor's fresh precomputed list of the chain's first strategy, or None."""
    if visitor.user is None or not visitor.consent or context.product_id is not None or not chain:
        return None
    if context.blend not in (None, PRECOMPUTED_BLEND):
        return None  # precomputed with the default blend; another placement family's differs
    entry = precompute.get_precomputed(chain[0], visitor.user.pk, latest_event_id=known.stamp,
                                       profile_version=visitor.profile_version)
    if entry is None or not entry["items"]:
        return None
    return Recommendations(item_ids=entry["items"], scores=np.asarray(entry["scores"], dtype=np.float32),
                           reasons=entry["reasons"], strategy=chain[0])


def database_popularity() -> Recommendations:
    """Products with the most distinct visitors per day in the event log (the catalog's own order
    without any events); cached."""
    key = cache.key_of("database-popularity")
    ranked = cache.get(key)
    if ranked is None:
        counted = visitor_days_by_product(Interaction.objects.all(), exclude_types=[EventType.IMPRESSION],
                                          limit=DATABASE_POPULARITY_SIZE)
        ranked = [(str(product), float(visitors)) for product, visitors in counted]
        if not ranked:
            listed = get_adapter().queryset().values_list("pk", flat=True)
            ranked = [(str(pk), 0.0) for pk in listed[:DATABASE_POPULARITY_SIZE]]
        cache.put(key, ranked)
    return Recommendations(
        item_ids=[item_id for item_id, _ in ranked],
        scores=np.asarray([score for _, score in ranked], dtype=np.float32),
        reasons=[DATABASE_POPULARITY_REASON] * len(ranked),
        strategy=DATABASE_POPULARITY,
    )
