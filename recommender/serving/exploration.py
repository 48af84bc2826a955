"""Step 4b of the request path: the exploration slot, so that new arrivals get seen.

A shelf of a placement with an exploration budget (``EXPLORATION_SLOTS``: 1 of 8 on home and
category shelves, none on cart and checkout) gives up to that many slots to products of the
*exploration pool*: products the exploration strategy (``EXPLORATION_STRATEGY``, content by
default) has no training events for, or that it does not know at all (added after the last
training), and that have fewer than ``EXPLORATION_MIN_IMPRESSIONS`` attributed impressions.

Candidates are ranked by fit × a Thompson sample:

- fit: the exploration strategy's score of the product for this visitor's taste (their session
  events, through the one strategy contract), clipped to [0, 1], weighing the draw by
  exp(fit / ``EXPLORATION_TASTE_TEMPERATURE``); a visitor with a taste is shown only candidates
  fitting it by at least ``EXPLORATION_MIN_FIT`` (no slot when none does); a visitor without
  events or without personalisation consent has no taste: any candidate, weight 1;
- a draw from Beta(clicks + a, impressions − clicks + b) over the product's attributed
  impressions and clicks (each product of each served list counted once, as the dashboard
  does), whose prior (a, b) is the click-through of warm products of the same category, shrunk
  toward the shop's overall click-through, worth ``EXPLORATION_PRIOR_STRENGTH`` impressions.

The counts are one aggregate query over the pool's products (their foreign-key index), kept in
the shared cache for ``EXPLORATION_COUNTS_TIMEOUT`` seconds: a product's impressions and clicks
change its draw as they arrive, without retraining, and it leaves the pool on reaching the
impressions threshold (the next training ranks it with everything else). The priors are cached
for ``EXPLORATION_PRIOR_TIMEOUT``. On a request that finds both cached, exploration costs no
query: its candidates' stock and purchases are checked in the rules step's one query.

The slot's position is drawn uniformly over the shelf (not fixed): a fixed slot would mix the
new products' click-through with that position's own bias, and the slot would never be compared
with the rest of the shelf at the same positions. The served list records the positions it gave
to exploration; its token carries them, so impressions and clicks of those products are
attributed to the ``exploration`` strategy with their slot (``Interaction.context["slot"]``).

Draws come from a generator seeded by ``EXPLORATION_SEED``, the visitor and their recent events
(``generator``): with a seed set, the same visitor in the same state gets the same shelf.
See docs/architecture.md.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from django.db.models import CharField, Count, Q, Value
from django.db.models.functions import Cast, Concat
from django.utils import timezone

from .. import attribution
from ..catalog import get_adapter
from ..conf import settings
from ..models import EventType, Interaction
from ..strategies.base import Context, Recommendations
from . import cache, candidates as candidate_lists
from .placements import Placement
from .rules import Shelf
from .visitor import Visitor

logger = logging.getLogger(__name__)

STRATEGY = attribution.EXPLORATION_STRATEGY  # what an exploration slot's impressions and clicks count for
NEW_ARRIVAL_REASON = "New arrival"
# Candidates handed to the rules per slot, so that stock and purchases still leave one.
CANDIDATES_PER_SLOT = 4
PRIOR_WINDOW_DAYS = 30


@dataclass(frozen=True)
class Pool:
    """The exploration pool: its products (ids as strings), their categories and attributed counts."""

    item_ids: tuple[str, ...]
    categories: tuple[str, ...]
    impressions: np.ndarray
    clicks: np.ndarray

    def __len__(self):
        return len(self.item_ids)


@dataclass(frozen=True)
class Priors:
    """Beta prior per category of warm products' click-through, and the shop-wide one."""

    by_category: dict
    overall: tuple[float, float]

    def of(self, categories: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        pairs = np.asarray([self.by_category.get(category, self.overall) for category in categories], dtype=float)
        pairs = pairs.reshape(-1, 2)
        return pairs[:, 0], pairs[:, 1]


def slots_for(placement: Placement, k: int) -> int:
    """Slots of a ``k``-item shelf on ``placement`` that exploration may take (a shelf keeps one other)."""
    configured = placement.options.get("exploration_slots")
    if configured is None:
        configured = (settings.EXPLORATION_SLOTS or {}).get(placement.name, settings.EXPLORATION_DEFAULT_SLOTS)
    if placement.similar_to_product:
        configured = placement.options.get("exploration_slots", 0)
    return max(0, min(int(configured or 0), k - 1))


def generator(visitor: Visitor, known_events=(), seed=None) -> np.random.Generator:
    """The draws' generator: seeded by ``EXPLORATION_SEED``, the visitor and their recent events; fresh without a seed.

    The events enter by product and type (not by row id or time), so a replay of the same
    visits on a fresh database (the same product ids) draws the same shelves.
    """
    seed = settings.EXPLORATION_SEED if seed is None else seed
    if seed is None:
        return np.random.default_rng()
    history = ",".join(f"{event.item_id}:{event.event}" for event in known_events)
    digest = hashlib.sha256(f"{visitor.identity}|{history}".encode()).digest()
    return np.random.default_rng([int(seed), int.from_bytes(digest[:8], "big")])


def exploration_model():
    """The loaded strategy that tells new products from learned ones and scores taste, or None."""
    return candidate_lists.active_strategy(settings.EXPLORATION_STRATEGY)


# --- the pool and its counts ---------------------------------------------------------------------
def pool_key() -> str:
    return cache.key_of("exploration-pool")


def forget_counts() -> None:
    """Drop the cached pool and counts (the next shelf reads them again); tests and the simulator."""
    cache.put(pool_key(), None, timeout=1)


def current_pool(model) -> Pool:
    """The pool with its attributed counts: from the shared cache, else two queries (catalog, counts)."""
    version = getattr(model, "version_id", id(model))
    cached = cache.get(pool_key())
    if cached is not None and cached[0] == version:
        return cached[1]
    pool = build_pool(model)
    cache.put(pool_key(), (version, pool), timeout=settings.EXPLORATION_COUNTS_TIMEOUT)
    return pool


def build_pool(model) -> Pool:
    """Products the model has no training events for (or does not know), under the impressions threshold."""
    adapter = get_adapter()
    category_path = adapter.field_paths.get("category")
    # In primary-key order: the draws go to the same products in the same order on every run.
    rows = adapter.queryset().order_by("pk").values_list("pk", *([category_path] if category_path else []))
    catalog = [(str(row[0]), "" if len(row) < 2 or row[1] is None else str(row[1]).split("|")[0].strip())
               for row in rows]
    if not catalog:
        return Pool((), (), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    ids = [item_id for item_id, _ in catalog]
    positions = model.item_positions(ids)
    untrained = set(model.untrained_item_ids() or ())
    is_new = (positions < 0) | np.asarray([item_id in untrained for item_id in ids], dtype=bool)
    new = [entry for entry, keep in zip(catalog, is_new) if keep]
    impressions, clicks = attributed_counts([item_id for item_id, _ in new])
    shown = np.asarray([impressions.get(item_id, 0) for item_id, _ in new], dtype=np.int64)
    clicked = np.asarray([clicks.get(item_id, 0) for item_id, _ in new], dtype=np.int64)
    keep = shown < int(settings.EXPLORATION_MIN_IMPRESSIONS)
    return Pool(item_ids=tuple(item_id for (item_id, _), kept in zip(new, keep) if kept),
                categories=tuple(category for (_, category), kept in zip(new, keep) if kept),
                impressions=shown[keep], clicks=np.minimum(clicked[keep], shown[keep]))


def attributed_counts(item_ids: Sequence[str], since=None) -> tuple[dict, dict]:
    """({id: impressions}, {id: clicks}) of ``item_ids``: attributed events, each served list once.

    One GROUP BY query on the interaction table's product index. A product of a served list
    counts as shown if it had an impression or a click, clicked if it had a click (as
    ``reports.click_through``).
    """
    if not item_ids:
        return {}, {}
    adapter = get_adapter()
    pks = []
    for item_id in item_ids:
        try:
            pks.append(adapter.pk_from_string(item_id))
        except Exception:
            continue
    events = Interaction.objects.filter(product_id__in=pks, event__in=[EventType.IMPRESSION, EventType.CLICK])
    if since is not None:
        events = events.filter(timestamp__gte=since)
    counted = (events.exclude(served_list="").values("product_id")
               .annotate(shown=Count("served_list", distinct=True),
                         clicked=Count("served_list", distinct=True, filter=Q(event=EventType.CLICK)))
               .order_by())
    impressions, clicks = {}, {}
    for row in counted:
        impressions[str(row["product_id"])] = row["shown"]
        clicks[str(row["product_id"])] = row["clicked"]
    return impressions, clicks


def current_priors() -> Priors:
    """Warm products' click-through per category as Beta priors (cached ``EXPLORATION_PRIOR_TIMEOUT``)."""
    key = cache.key_of("exploration-priors")
    priors = cache.get(key)
    if priors is None:
        priors = build_priors()
        cache.put(key, priors, timeout=settings.EXPLORATION_PRIOR_TIMEOUT)
    return priors


def build_priors(now=None) -> Priors:
    """One GROUP BY over the last ``PRIOR_WINDOW_DAYS`` of attributed events (the time index), per category.

    A category's click-through is shrunk toward the shop's (``EXPLORATION_DEFAULT_CTR`` before
    any click-through is known) with ``EXPLORATION_PRIOR_STRENGTH`` impressions' weight, and the
    prior is worth that many impressions: a new product's draw is wide until its own data speaks.
    """
    strength = float(settings.EXPLORATION_PRIOR_STRENGTH)
    since = (now or timezone.now()) - datetime.timedelta(days=PRIOR_WINDOW_DAYS)
    category_path = get_adapter().field_paths.get("category")
    group = (f"product__{category_path}",) if category_path else ()
    shown_item = Concat("served_list", Value(":"), Cast("product_id", CharField()), output_field=CharField())
    attributed = Interaction.objects.filter(timestamp__gte=since, event__in=[EventType.IMPRESSION, EventType.CLICK])
    rows = (attributed.exclude(served_list="").values(*group)
            .annotate(shown=Count(shown_item, distinct=True),
                      clicked=Count(shown_item, distinct=True, filter=Q(event=EventType.CLICK)))
            .order_by())
    shown, clicked = {}, {}
    for row in rows:
        category = str(row[group[0]] or "").split("|")[0].strip() if group else ""
        shown[category] = shown.get(category, 0) + row["shown"]
        clicked[category] = clicked.get(category, 0) + row["clicked"]
    total_shown, total_clicked = sum(shown.values()), sum(clicked.values())
    default = float(settings.EXPLORATION_DEFAULT_CTR)
    overall_rate = (total_clicked + default * strength) / (total_shown + strength)
    by_category = {}
    for category, count in shown.items():
        rate = (clicked[category] + overall_rate * strength) / (count + strength)
        by_category[category] = (rate * strength, (1.0 - rate) * strength)
    return Priors(by_category=by_category, overall=(overall_rate * strength, (1.0 - overall_rate) * strength))


# --- ranking --------------------------------------------------------------------------------------
def thompson_scores(fit: np.ndarray, impressions: np.ndarray, clicks: np.ndarray, prior_a: np.ndarray,
                    prior_b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """fit × a draw from Beta(clicks + a, impressions − clicks + b), one per candidate."""
    clicks = np.asarray(clicks, dtype=float)
    misses = np.maximum(np.asarray(impressions, dtype=float) - clicks, 0.0)
    draws = rng.beta(clicks + np.asarray(prior_a, dtype=float), misses + np.asarray(prior_b, dtype=float))
    return np.asarray(fit, dtype=float) * draws


def taste_fit(model, context: Context, item_ids: Sequence[str], consent: bool) -> np.ndarray:
    """Each candidate's fit with the visitor's taste in [0, 1] (0 without taste, consent or a known product)."""
    fit = np.zeros(len(item_ids), dtype=float)
    if not consent or not (context.events or context.product_id):
        return fit
    positions = model.item_positions(item_ids)
    known = positions >= 0
    if known.any():
        scores = model.score(context)[positions[known]]
        fit[known] = np.clip(np.nan_to_num(scores, nan=0.0, neginf=0.0, posinf=1.0), 0.0, 1.0)
    return fit


def taste_weight(fit: np.ndarray, temperature: float | None = None) -> np.ndarray:
    """exp(fit / temperature), relative to the best fit: a fit better by ``EXPLORATION_TASTE_TEMPERATURE``
    multiplies the draw by e. Without taste (all fits 0) every candidate weighs 1: click-through alone."""
    temperature = float(settings.EXPLORATION_TASTE_TEMPERATURE if temperature is None else temperature)
    fit = np.asarray(fit, dtype=float)
    if not fit.size:
        return fit
    return np.exp((fit - fit.max()) / max(temperature, 1e-6))


def ranked_candidates(context: Context, visitor: Visitor, slots: int, excluded: set[str],
                      rng: np.random.Generator, model=None) -> Recommendations | None:
    """Up to ``slots × CANDIDATES_PER_SLOT`` pool products for this visitor, best draw first, or None."""
    model = exploration_model() if model is None else model
    if slots <= 0 or model is None:
        return None
    try:
        pool = current_pool(model)
    except Exception:
        logger.exception("Could not read the exploration pool; serving the shelf without it")
        return None
    chosen = [index for index, item_id in enumerate(pool.item_ids) if item_id not in excluded]
    if not chosen:
        return None
    item_ids = [pool.item_ids[index] for index in chosen]
    categories = [pool.categories[index] for index in chosen]
    fit = taste_fit(model, context, item_ids, visitor.consent)
    if fit.any():
        # A visitor with a taste is shown only new arrivals that match it (the reason says so);
        # one without (a fresh visitor, no consent) may be shown any of them.
        matching = np.flatnonzero(fit >= float(settings.EXPLORATION_MIN_FIT))
        if not matching.size:
            return None
        chosen, item_ids = [chosen[index] for index in matching], [item_ids[index] for index in matching]
        categories, fit = [categories[index] for index in matching], fit[matching]
    prior_a, prior_b = current_priors().of(categories)
    scores = thompson_scores(taste_weight(fit), pool.impressions[chosen], pool.clicks[chosen], prior_a, prior_b, rng)
    order = np.argsort(-scores, kind="stable")[: slots * CANDIDATES_PER_SLOT]
    reasons = [reason_for(fit[index], categories[index]) for index in order]
    return Recommendations(item_ids=[item_ids[index] for index in order], scores=scores[order].astype(np.float32),
                           reasons=reasons, strategy=STRATEGY)


def reason_for(fit: float, category: str) -> str:
    if fit > 0 and category:
        return f"{NEW_ARRIVAL_REASON}, matches your interest in {category}"
    return NEW_ARRIVAL_REASON


# --- placing the slot -------------------------------------------------------------------------------
class ExploredList(Recommendations):
    """A shelf's ranked list followed by the exploration candidates: one list the served items read."""

    def __init__(self, ranked: Recommendations, explored: Recommendations):
        super().__init__(item_ids=[*ranked.item_ids, *explored.item_ids],
                         scores=np.concatenate([np.asarray(ranked.scores, dtype=np.float32),
                                                np.asarray(explored.scores, dtype=np.float32)]),
                         strategy=ranked.strategy, explain=self._explain_both)
        self.ranked, self.explored = ranked, explored

    def _explain_both(self, indices) -> list[str]:
        split = len(self.ranked)
        own = [int(index) for index in indices if index < split]
        own_reasons = iter(self.ranked.reasons_at(own))
        return [next(own_reasons) if index < split else self.explored.reasons[int(index) - split]
                for index in indices]


def place(shelf: Shelf, explored: Recommendations | None, slots: int, k: int,
          rng: np.random.Generator) -> tuple[Shelf, list[int]]:
    """The shelf with up to ``slots`` sellable exploration candidates in it, and their positions.

    The candidates' stock and purchases were checked by the rules step (``shelf.also``); each
    takes a position drawn uniformly over the shelf, the shelf's last items making room.
    """
    if explored is None or slots <= 0 or not len(shelf):
        return shelf, []
    on_shelf = set(shelf.item_ids)
    picks = [index for index, item_id in enumerate(explored.item_ids)
             if item_id in shelf.also and item_id not in on_shelf][:slots]
    if not picks:
        return shelf, []
    merged = ExploredList(shelf.ranked, explored)
    kept = min(len(shelf), k - len(picks))
    entries = [(index, product) for index, product in zip(shelf.indices[:kept], shelf.products[:kept])]
    positions = []
    for pick in picks:
        position = int(rng.integers(0, len(entries) + 1))
        entries.insert(position, (len(shelf.ranked) + pick, shelf.also[explored.item_ids[pick]]))
        positions = [p + 1 if p >= position else p for p in positions] + [position]
    placed = Shelf(ranked=merged, indices=[index for index, _ in entries],
                   products=[product for _, product in entries], source=shelf.source)
    return placed, sorted(positions)
