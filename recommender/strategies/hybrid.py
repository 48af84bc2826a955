"""The hybrid router: the strategy a shop serves by default.

It owns one sub-strategy per component key, and blends their scores by how much is known about
the visitor — the regime of known events (0 / 1–2 / 3–9 / 10+) — with weights *learned on
validation data*: inside ``fit`` the training users are split (seeded) into fit and validation
users, the components are fitted on the fit part (with a share of items held out as "new"),
validation users are replayed as cold visitors revealing 0 / 1 / 3 / 10 events, and per regime
the weights over components that maximise NDCG@10 are found by coordinate ascent on the simplex.
The components are then refitted on all the training data.

Placements carry intent (docs/architecture.md, "Placements carry intent"), so there is one
learned blend per placement family (``blends``), each over its own components and judged on the
horizon its shelf serves, per regime: ``home`` on the long horizon at 0 events (who the visitor
is) and on the next 5 events once there are some (what they just did); ``session`` (because you
viewed) over the session components only, on the next 5 events. A context names its blend
(``Context.blend``, from the placement's ``blend`` setting); an unknown or missing one is served
with the first blend.

Products with no training interactions are scored only by the components that can place them
(content, behaviour), with a learned weight and offset that say how far a new product should
compete with established ones.

Scores of different components live on different scales, so each component's row is first
standardised by the mean and spread of its own top scores (``normalise_scores``); the blend is
an intersection-like "near the top of several components" rather than "huge on one".

Each item's reason comes from the component that contributed most to its score. Business rules
(live stock, already bought, the product in view, the category cap) are not the hybrid's: serving
applies them to whatever strategy produced a list (``recommender.serving.rules``).
"""

from __future__ import annotations

import copy
import json
import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from django.core.exceptions import ImproperlyConfigured

from ..data.dataset import Dataset
from ..evaluation.protocols import (cold_user_masks, cold_users, in_reveal_order, interacting_user_ids,
                                    relevance_matrix, relevant_mask, reveal_rank)
from .base import Context, Strategy, index_positions, top_k_batch
from .caching import LRUCache, one_blas_thread
from .context import CONTEXT_EVENT_TYPES, HISTORY_MAX_EVENTS, ContextBuilder
from .registry import get_strategy_class

logger = logging.getLogger(__name__)

# (label, smallest and largest number of known events, events revealed to validate it)
REGIMES = (("0", 0, 0, 0), ("1-2", 1, 2, 1), ("3-9", 3, 9, 3), ("10+", 10, np.inf, 10))
REGIME_LABELS = tuple(regime[0] for regime in REGIMES)
DEFAULT_COMPONENTS = ("segment_popularity", "demographic", "generative", "behavior", "content", "item_knn")
WEIGHT_STEPS = (0.05, 0.1, 0.2, 0.35, 0.5)
NEW_ITEM_OFFSETS = (-3.0, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0)
NDCG_K = 10
# A regime needs this many validation visitors before its weights are trusted; fewer: it
# borrows the weights of the regime below.
MIN_VALIDATION_CASES = 30
MIN_VALIDATION_USERS = 20
SCORE_BATCH = 256
# Events after the revealed ones a mid-session shelf should catch (the short horizon).
SHORT_HORIZON = 5
# Placement families: the components each blends (None: all) and the horizon it is judged on per
# regime (None: the long horizon, every later positive event).
DEFAULT_BLENDS = {
    "home": {"components": None,
             "horizons": {"0": None, "1-2": SHORT_HORIZON, "3-9": SHORT_HORIZON, "10+": SHORT_HORIZON}},
    "session": {"components": ["item_knn", "behavior"],
                "horizons": {"0": None, "1-2": SHORT_HORIZON, "3-9": SHORT_HORIZON, "10+": SHORT_HORIZON}},
}


def normalise_scores(scores: np.ndarray, top: int = 100, floor: float = -5.0) -> np.ndarray:
    """Standardise each row by the mean and spread of its ``top`` best finite scores.

    Parameters
    ----------
    scores
        (n_rows, n_items); -inf marks items a component rules out.
    top
        How many of the best scores define the row's scale (the part that decides a top-k).
    floor
        Lowest normalised value; -inf and very low scores become it, so one component can
        demote an item but not veto it.

    Returns
    -------
    np.ndarray
        float32 of the same shape; a row with no spread (no opinion) is all zeros.
    """
    scores = np.asarray(scores, dtype=np.float32)
    n_rows, n_items = scores.shape
    if n_items == 0:
        return scores.copy()
    finite = np.isfinite(scores)
    filled = np.where(finite, scores, -np.inf)
    take = min(top, n_items)
    best = np.partition(filled, n_items - take, axis=1)[:, n_items - take:]
    best_finite = np.isfinite(best)
    count = np.maximum(best_finite.sum(axis=1), 1)
    best_values = np.where(best_finite, best, 0.0)
    mean = best_values.sum(axis=1) / count
    spread = np.sqrt(np.maximum((np.where(best_finite, best - mean[:, None], 0.0) ** 2).sum(axis=1) / count, 0.0))
    # Ties across the whole top (e.g. equal counts): the row's overall spread decides the scale.
    tied = spread <= 1e-9
    if tied.any():
        tied_finite = finite[tied]
        tied_count = np.maximum(tied_finite.sum(axis=1), 1)
        tied_values = np.where(tied_finite, scores[tied], 0.0)
        tied_mean = tied_values.sum(axis=1) / tied_count
        deviations = np.where(tied_finite, tied_values - tied_mean[:, None], 0.0)
        spread[tied] = np.sqrt((deviations ** 2).sum(axis=1) / tied_count)
    has_opinion = spread > 1e-9
    safe_spread = np.where(has_opinion, spread, 1.0)
    normalised = (filled - mean[:, None]) / safe_spread[:, None]
    normalised = np.where(finite, np.maximum(normalised, floor), floor).astype(np.float32)
    normalised[~has_opinion] = 0.0
    return normalised


def regime_positions(contexts: Sequence[Context], item_index: pd.Index | None = None) -> np.ndarray:
    """Index into ``REGIMES`` of each context by its number of known events.

    Impressions do not count, nor (given ``item_index``) events of unknown items; the product
    in view counts as one event.
    """
    counts = np.zeros(len(contexts), dtype=np.int64)
    for row, context in enumerate(contexts):
        items = [event.item_id for event in context.events if event.event in CONTEXT_EVENT_TYPES]
        if context.product_id is not None:
            items.append(context.product_id)
        counts[row] = len(items) if item_index is None else int((index_positions(item_index, items) >= 0).sum())
    lows = np.array([regime[1] for regime in REGIMES[1:]])
    return np.searchsorted(lows, counts, side="right")


class ValidationCases:
    """Validation visitors of one regime: contexts, what they already had, what is relevant."""

    def __init__(self, contexts: list[Context], known: sp.csr_matrix, relevant: sp.csr_matrix):
        self.contexts, self.known, self.relevant = contexts, known, relevant

    def __len__(self):
        return len(self.contexts)


class HybridStrategy(Strategy):
    """Regime-routed blend of component strategies.

    Parameters (``default_params``)
    -------------------------------
    components
        Component strategy keys; those that cannot be imported (e.g. torch missing) are skipped
        with a warning.
    component_params
        ``{key: params}`` passed to each component.
    component_paths
        ``{key: dotted path}`` of components that are not built in (training fills it from the
        shop's ``RECOMMENDER["STRATEGIES"]``).
    positive_threshold
        Ratings at or above it are relevant when learning weights (and passed to components).
    event_weights
        Weight of each event type, passed to every component that takes one (None: theirs).
    validation_share, max_validation_users
        Share (and cap) of training users replayed as cold visitors to learn the weights.
    validation_new_item_share
        Share of interacted items held out of the fit part, to learn the new-product weight.
    learn_weights, refit
        Learn weights on validation data (else equal weights); refit components on all data after.
    new_item_components
        Components that can score products with no interactions.
    blends
        ``{family: {"components": keys or None, "horizons": {regime label: N or None}}}``: one
        learned blend per placement family (``DEFAULT_BLENDS``); the first is the default.
    normalise_top, normalise_floor, pool_size
        Score standardisation (see ``normalise_scores``) and the per-component candidate pool
        used when learning weights.
    """

    key = "hybrid"
    label = "Recommended for you"
    default_params = {
        "components": list(DEFAULT_COMPONENTS),
        "component_params": {},
        "component_paths": {},
        "positive_threshold": None,
        "event_weights": None,
        "validation_share": 0.2,
        "max_validation_users": 1000,
        "validation_new_item_share": 0.1,
        "learn_weights": True,
        "refit": True,
        "new_item_components": ["content", "behavior"],
        "blends": DEFAULT_BLENDS,
        "normalise_top": 100,
        "normalise_floor": -5.0,
        "pool_size": 50,
    }

    def __init__(self, **params):
        super().__init__(**params)
        self._last = threading.local()  # contributions of the last single context scored, for _explain

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_last", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._last = threading.local()

    # --- components ----------------------------------------------------------------------------
    def _component_params(self, key: str, klass) -> dict:
        params = dict((self.params["component_params"] or {}).get(key, {}))
        for shared in ("positive_threshold", "event_weights"):
            if shared in klass.default_params and self.params[shared] is not None:
                params.setdefault(shared, self.params[shared])
        return params

    def _fit_components(self, keys: Sequence[str], dataset: Dataset) -> dict[str, Strategy]:
        """Fit each component on ``dataset``; those that cannot be imported or fitted are skipped."""
        components = {}
        for key in keys:
            try:
                klass = get_strategy_class(key, self.params["component_paths"])
            except (ImportError, ImproperlyConfigured) as error:
                self.skipped_components_[key] = f"not importable: {error}"
                logger.warning("Hybrid: skipping component %r, it cannot be imported (%s)", key, error)
                continue
            try:
                components[key] = klass(seed=self.seed, **self._component_params(key, klass)).fit(dataset)
            except Exception as error:  # one broken component must not take the served strategy down
                self.skipped_components_[key] = f"fit failed: {error!r}"
                logger.exception("Hybrid: skipping component %r, fitting it failed", key)
        return components

    def _served_components(self, keys: Sequence[str], dataset: Dataset, given: Mapping[str, Strategy],
                           fitted_for_validation: Mapping[str, Strategy] | None = None) -> dict[str, Strategy]:
        """The components the hybrid serves with, in ``keys`` order.

        A ``given`` (already fitted) one is taken as it is; the others are fitted on ``dataset``,
        or, without ``refit``, are the ones fitted for validation.
        """
        reuse_validation_fits = fitted_for_validation is not None and not self.params["refit"]
        to_fit = [key for key in keys if key not in given and not reuse_validation_fits]
        fitted = self._fit_components(to_fit, dataset) if to_fit else {}
        served = {}
        for key in keys:
            if key in given:
                served[key] = aligned_component(key, given[key], dataset)
            elif key in fitted:
                served[key] = fitted[key]
            elif reuse_validation_fits and key in fitted_for_validation:
                served[key] = fitted_for_validation[key]
        if not served:
            raise RuntimeError(f"Hybrid: no component could be fitted: {self.skipped_components_}")
        self.reused_components_ = [key for key in served if key in given]
        return served

    # --- fitting -------------------------------------------------------------------------------
    def _fit(self, dataset: Dataset, components: Mapping[str, Strategy] | None = None) -> None:
        """Learn the blend on validation users and fit (or take) the components served.

        ``components``: already fitted strategies by key (those of the same training run, or the
        active versions), served instead of refitting them on ``dataset``; keys the hybrid does not
        blend are ignored, and components it blends but is not given are fitted. They are never
        used to learn the weights: fitted on every training user, validation users included, they
        would rank those users' own events. The weights are always learned on components the
        hybrid fits itself without the validation users.
        """
        given = dict(components or {})
        self.skipped_components_: dict[str, str] = {}
        self.reused_components_: list[str] = []
        self.trained_ = np.bincount(dataset.item_codes, minlength=dataset.n_items) > 0
        keys = list(dict.fromkeys(self.params["components"]))
        validation = self._validation_split(dataset) if self.params["learn_weights"] else None
        self.validation_ndcg_: dict[str, float] = {}
        if validation is None:
            self.components_ = self._served_components(keys, dataset, given)
            self._set_equal_weights()
            return
        fit_data, cases, trained_in_fit, new_item_cases = validation
        components = self._fit_components(keys, fit_data)
        if not components:
            raise RuntimeError(f"Hybrid: no component could be fitted: {self.skipped_components_}")
        self.component_keys_ = list(components)
        self._learn_weights(components, cases, trained_in_fit, new_item_cases)
        self.components_ = self._served_components(self.component_keys_, dataset, given, components)
        self._drop_missing_components()

    def _set_equal_weights(self) -> None:
        self.component_keys_ = list(self.components_)
        self.blend_weights_ = {}
        for family in self._blend_families():
            members = self._family_members(family, self.component_keys_)
            weights = members.astype(np.float32) / members.sum()
            self.blend_weights_[family] = np.tile(weights, (len(REGIMES), 1))
        self.new_item_weights_ = self._default_new_item_weights()
        self.new_item_offset_ = 0.0

    # --- blends (placement families) -----------------------------------------------------------
    def _blend_families(self) -> list[str]:
        return list(self.params["blends"] or DEFAULT_BLENDS)

    def _family_members(self, family: str, keys: Sequence[str]) -> np.ndarray:
        """Which of ``keys`` the family blends; all of them when it names none of those present."""
        wanted = (self.params["blends"] or DEFAULT_BLENDS)[family].get("components")
        members = np.array([wanted is None or key in wanted for key in keys], dtype=bool)
        return members if members.any() else np.ones(len(keys), dtype=bool)

    def _family_horizon(self, family: str, label: str) -> int | None:
        horizons = (self.params["blends"] or DEFAULT_BLENDS)[family].get("horizons") or {}
        horizon = horizons.get(label)
        return None if horizon is None else int(horizon)

    @property
    def regime_weights_(self) -> np.ndarray:
        """The default (first) blend's (n_regimes, n_components) weights."""
        return next(iter(self.blend_weights_.values()))

    def _blend_position(self, context: Context) -> int:
        families = list(self.blend_weights_)
        return families.index(context.blend) if context.blend in self.blend_weights_ else 0

    def _default_new_item_weights(self) -> np.ndarray:
        able = np.array([key in self.params["new_item_components"] for key in self.component_keys_], dtype=np.float32)
        if not able.any():
            able[:] = 1.0
        return able / able.sum()

    def _drop_missing_components(self) -> None:
        """A component that fitted for validation but not on all data leaves the blend."""
        kept = [i for i, key in enumerate(self.component_keys_) if key in self.components_]
        if len(kept) == len(self.component_keys_):
            return
        self.component_keys_ = [self.component_keys_[i] for i in kept]
        for family, weights in self.blend_weights_.items():
            weights = weights[:, kept]
            self.blend_weights_[family] = weights / np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
        new_weights = self.new_item_weights_[kept]
        self.new_item_weights_ = new_weights / new_weights.sum() if new_weights.sum() > 0 else self._default_new_item_weights()

    def _validation_split(self, dataset: Dataset):
        """Fit part (validation users and some items' interactions removed) and cases per regime.

        Returns None when there are too few users to learn anything.
        """
        # The new-user protocol of offline evaluation, run inside the training users.
        dataset = in_reveal_order(dataset, self.seed)
        rng = np.random.default_rng(self.seed + 104_729)
        user_ids = interacting_user_ids(dataset)
        n_validation = min(int(len(user_ids) * self.params["validation_share"]), int(self.params["max_validation_users"]))
        if n_validation < MIN_VALIDATION_USERS:
            logger.info("Hybrid: %d users are too few to learn blend weights; using equal weights", len(user_ids))
            return None
        validation_ids = np.asarray(rng.choice(user_ids, size=n_validation, replace=False), dtype=object)
        fit_data = dataset.without_users(validation_ids)
        interacted = pd.unique(fit_data.interactions["item_id"].to_numpy())
        n_new = int(len(interacted) * self.params["validation_new_item_share"])
        new_ids = rng.choice(interacted, size=n_new, replace=False) if n_new else interacted[:0]
        if n_new:
            fit_data = fit_data.without_item_interactions(new_ids)
        trained_in_fit = np.bincount(fit_data.item_codes, minlength=dataset.n_items) > 0

        in_validation = dataset.interactions["user_id"].isin(set(validation_ids)).to_numpy()
        rank = reveal_rank(dataset)
        positive = relevant_mask(dataset, self.params["positive_threshold"])
        new_item_cases = self._new_item_cases(dataset, ~in_validation & (rank >= 0), new_ids, positive, rng)
        cases = {}  # (regime label, horizon) -> cases, for each horizon a blend is judged on
        horizons = {(label, self._family_horizon(family, label))
                    for family in self._blend_families() for label in REGIME_LABELS}
        for label, _, _, reveal in REGIMES:
            for horizon in sorted({h for lab, h in horizons if lab == label}, key=lambda h: -1 if h is None else h):
                revealed, test = cold_user_masks(rank, in_validation, positive, reveal, horizon)
                users = cold_users(dataset, validation_ids, revealed, test, HISTORY_MAX_EVENTS)
                if len(users) < MIN_VALIDATION_CASES:
                    continue
                cases[label, horizon] = ValidationCases(users.contexts, users.known, users.relevant)
        if not cases:
            logger.info("Hybrid: no regime has %d validation visitors; using equal weights", MIN_VALIDATION_CASES)
            return None
        return fit_data, cases, trained_in_fit, new_item_cases

    def _new_item_cases(self, dataset: Dataset, in_fit: np.ndarray, new_ids: np.ndarray, positive: np.ndarray,
                        rng) -> ValidationCases | None:
        """Fit-part users who had a held-out ("new") item: the new-item protocol inside training data.

        Their context is what remains of their history in the fit part, and their relevant items
        are the held-out products they chose; only new products are ranked for them.
        """
        held_out = dataset.interactions["item_id"].isin(set(new_ids)).to_numpy()
        fit_rows = in_fit & ~held_out
        user_column = dataset.interactions["user_id"].to_numpy()
        users = np.intersect1d(pd.unique(user_column[in_fit & held_out & positive]), pd.unique(user_column[fit_rows]))
        if len(users) < MIN_VALIDATION_CASES:
            return None
        if len(users) > int(self.params["max_validation_users"]):
            users = rng.choice(users, size=int(self.params["max_validation_users"]), replace=False)
        users = np.asarray(users, dtype=object)
        known = relevance_matrix(dataset, users, fit_rows)
        relevant = relevance_matrix(dataset, users, in_fit & held_out & positive)
        contexts = ContextBuilder(HISTORY_MAX_EVENTS).from_dataset(dataset, users, fit_rows)
        return ValidationCases(contexts, known, relevant)

    def _candidate_pool(self, components: Mapping[str, Strategy], cases: ValidationCases, trained: np.ndarray,
                        new_only: bool = False):
        """Normalised component scores over each case's candidate pool (union of components' tops).

        ``new_only``: the pool holds new products only (and only new relevant items count).
        Returns (scores (n_components, n_cases, pool), valid, relevant, is_new (n_cases, pool),
        n_relevant (n_cases,)).
        """
        pool_size = int(self.params["pool_size"])
        parts = []
        for start in range(0, len(cases), SCORE_BATCH):
            contexts = cases.contexts[start:start + SCORE_BATCH]
            excluded = cases.known[start:start + SCORE_BATCH].toarray() > 0
            if new_only:
                excluded |= trained[None, :]
            relevant = cases.relevant[start:start + SCORE_BATCH].toarray() > 0
            normalised = [self._normalise(component.score_batch(contexts)) for component in components.values()]
            parts.append(_pool_part(normalised, excluded, relevant, trained, pool_size))
        n_relevant = (cases.relevant[:, ~trained] if new_only else cases.relevant).getnnz(axis=1)
        return (np.concatenate([part[0] for part in parts], axis=1), np.concatenate([part[1] for part in parts]),
                np.concatenate([part[2] for part in parts]), np.concatenate([part[3] for part in parts]), n_relevant)

    def _learn_weights(self, components: Mapping[str, Strategy], cases: Mapping[tuple, ValidationCases],
                       trained: np.ndarray, new_item_cases: ValidationCases | None) -> None:
        """Per blend and regime, the simplex weights over the blend's components that maximise
        validation NDCG@10 on the blend's horizon (one candidate pool per regime and horizon)."""
        n_components = len(components)
        keys = list(components)
        new_able = np.array([key in self.params["new_item_components"] for key in components], dtype=bool)
        pools_by_case = {}
        self.blend_weights_ = {}
        pools = {}
        for number, family in enumerate(self._blend_families()):
            members = self._family_members(family, keys)
            weights = np.zeros((len(REGIMES), n_components), dtype=np.float32)
            weights[:, members] = 1.0 / members.sum()
            for position, label in enumerate(REGIME_LABELS):
                horizon = self._family_horizon(family, label)
                if (label, horizon) not in cases:
                    if position:  # too few visitors with this many events: borrow from the regime below
                        weights[position] = weights[position - 1]
                    continue
                if (label, horizon) not in pools_by_case:
                    pools_by_case[label, horizon] = self._candidate_pool(components, cases[label, horizon], trained)
                scores, valid, relevant, is_new, n_relevant = pools_by_case[label, horizon]
                known_item = valid & ~is_new
                found, ndcg = search_simplex_weights(scores[members], known_item, relevant, n_relevant)
                weights[position] = 0.0
                weights[position, members] = found
                self.validation_ndcg_[label if number == 0 else f"{family}:{label}"] = ndcg
                if number == 0:  # the new-product offset is learned on the default blend's lists
                    pools[label] = (scores, valid, relevant, is_new, n_relevant, weights[position])
                logger.info("Hybrid: blend %s, regime %s weights %s (validation NDCG@%d %.4f on the %s horizon over "
                            "%d visitors)", family, label, dict(zip(keys, np.round(weights[position], 3).tolist())),
                            NDCG_K, ndcg, "long" if horizon is None else f"next-{horizon}", len(cases[label, horizon]))
            self.blend_weights_[family] = weights
        self.new_item_weights_ = self._learn_new_item_weights(components, new_item_cases, trained, new_able)
        self.new_item_offset_ = self._learn_new_item_offset(pools, self.new_item_weights_)

    def _learn_new_item_weights(self, components: Mapping[str, Strategy], cases: ValidationCases | None,
                                trained: np.ndarray, new_able: np.ndarray) -> np.ndarray:
        """Weights over the components that can place new products, chosen on new products alone.

        Only these weights order new products among themselves, so they are chosen as the
        new-item protocol measures: fit-part users rank the held-out products from their
        remaining history, NDCG@10 over new products only. (Choosing them on cold visitors' whole
        lists, where established items fill almost every slot, left a near-flat objective that
        picked a weaker component.)
        """
        if not new_able.any():
            return np.full(len(new_able), 1.0 / len(new_able), dtype=np.float32)
        weights = new_able.astype(np.float32) / new_able.sum()
        able = np.flatnonzero(new_able)
        if len(able) == 1 or cases is None:
            return weights
        able_components = {key: components[key] for position, key in enumerate(components) if new_able[position]}
        scores, valid, relevant, _, n_relevant = self._candidate_pool(able_components, cases, trained, new_only=True)
        rows = n_relevant > 0
        if rows.sum() < MIN_VALIDATION_CASES:
            return weights
        able_weights, ndcg = search_simplex_weights(scores[:, rows], valid[rows], relevant[rows], n_relevant[rows])
        weights[:] = 0.0
        weights[able] = able_weights
        logger.info("Hybrid: new products weights %s (validation NDCG@%d among new products %.4f over %d users)",
                    dict(zip(able_components, np.round(able_weights, 3).tolist())), NDCG_K, ndcg, int(rows.sum()))
        self.validation_ndcg_["new_items_only"] = ndcg
        return weights

    def _learn_new_item_offset(self, pools: Mapping, new_weights: np.ndarray) -> float:
        """How far new products compete with established ones: the offset best on whole lists."""
        if not pools or not any((pool[2] & pool[3]).any() for pool in pools.values()):
            return 0.0
        best = (-1.0, 0.0)
        for offset in NEW_ITEM_OFFSETS:
            total, count = 0.0, 0
            for scores, valid, relevant, is_new, n_relevant, regime_weights in pools.values():
                blend = np.where(is_new, np.tensordot(new_weights, scores, axes=1) + offset,
                                 np.tensordot(regime_weights, scores, axes=1))
                total += ndcg_at_k(np.where(valid, blend, -np.inf), relevant, n_relevant).sum()
                count += len(n_relevant)
            if total / count > best[0] + 1e-9:
                best = (total / count, offset)
        logger.info("Hybrid: new products offset %.1f (validation NDCG@%d %.4f)", best[1], NDCG_K, best[0])
        self.validation_ndcg_["with_new_items"] = best[0]
        return float(best[1])

    # --- scoring -------------------------------------------------------------------------------
    def _normalise(self, scores: np.ndarray) -> np.ndarray:
        return normalise_scores(scores, int(self.params["normalise_top"]), float(self.params["normalise_floor"]))

    def _blend_weights(self) -> np.ndarray:
        """(n_blends, n_regimes, n_components, n_items) weight of each component's score per item.

        An established item gets the blend's regime weight, a new one the new-item weight; fixed
        once fitted, so it is built once instead of per request (rebuilt if the weights are replaced).
        """
        sources = (*self.blend_weights_.values(), self.new_item_weights_, self.trained_)
        built = self.__dict__.get("_blend_weights_")
        if built is None or len(built[0]) != len(sources) or any(a is not b for a, b in zip(built[0], sources)):
            regimes = np.stack(list(self.blend_weights_.values()))
            weights = np.where(self.trained_[None, None, None, :], regimes[:, :, :, None],
                               self.new_item_weights_[None, None, :, None]).astype(np.float32)
            built = self.__dict__["_blend_weights_"] = (sources, weights)
            self.__dict__.pop("_contribution_cache", None)  # computed with the old weights
        return built[1]

    def clear_score_cache(self) -> None:
        super().clear_score_cache()
        self.__dict__.pop("_blend_weights_", None)
        self.__dict__.pop("_contribution_cache", None)

    def set_score_cache_size(self, megabytes: float) -> None:
        super().set_score_cache_size(megabytes)
        for component in getattr(self, "components_", {}).values():
            component.set_score_cache_size(megabytes)

    def _iter_contributions(self, contexts: Sequence[Context]):
        """Yield each component's weighted, normalised scores (n_contexts, n_items), in component order."""
        regimes = regime_positions(contexts, self._item_index)
        blends = np.array([self._blend_position(context) for context in contexts], dtype=np.int64)
        weights = self._blend_weights()[blends, regimes]  # (n_contexts, n_components, n_items)
        for position, key in enumerate(self.component_keys_):
            component_weights = weights[:, position]
            if not component_weights.any():  # not in these contexts' blends (a session shelf): not scored
                yield np.zeros((len(contexts), self.n_items), dtype=np.float32)
                continue
            # normalised × (regime weight where trained, else new-item weight): one product per item
            yield self._normalise(self.components_[key].score_batch(contexts)) * component_weights

    def _contributions(self, contexts: Sequence[Context]) -> np.ndarray:
        """(n_components, n_contexts, n_items): each component's weighted, normalised score."""
        return np.stack(list(self._iter_contributions(contexts)))

    def _single_contributions(self, context: Context) -> np.ndarray:
        """``_contributions([context])[:, 0]``, cached when every component's scores are (no events).

        A new visitor's first page is then a lookup by profile, not four components' scoring.
        """
        keys = tuple(self.components_[key]._score_cache_key(context) for key in self.component_keys_)
        with one_blas_thread():
            if any(key is None for key in keys):
                return self._contributions([context])[:, 0]
            self._blend_weights()  # drops cached contributions if the weights were replaced
            cache = self.__dict__.get("_contribution_cache")
            if cache is None:
                cache = self.__dict__["_contribution_cache"] = LRUCache.for_rows(
                    self.n_items, len(self.component_keys_), megabytes=self.score_cache_mb)
            regime = int(regime_positions([context], self._item_index)[0])
            return cache.get_or_compute((self._blend_position(context), regime, keys),
                                        lambda: self._contributions([context])[:, 0])

    def _score_batch(self, contexts: Sequence[Context]) -> np.ndarray:
        if len(contexts) == 1:
            contributions = self._single_contributions(contexts[0])
            scores = contributions.sum(axis=0)[None, :]
            self._last.context, self._last.contributions = contexts[0], contributions
        else:  # summed as they come: a batch never holds every component's scores at once
            scores = np.zeros((len(contexts), self.n_items), dtype=np.float32)
            for contribution in self._iter_contributions(contexts):
                scores += contribution
        scores[:, ~self.trained_] += self.new_item_offset_
        return scores

    def explain_scores(self, context: Context) -> dict[str, np.ndarray]:
        """Each component's weighted, normalised score of every item, and the blend (``"hybrid"``)."""
        contributions = self._single_contributions(context)
        result = {key: contributions[position].copy() for position, key in enumerate(self.component_keys_)}
        result["hybrid"] = self.score(context)
        return result

    def _explain(self, context: Context, item_positions: np.ndarray) -> list[str]:
        last = getattr(self._last, "context", None)
        contributions = self._last.contributions if last is context else self._single_contributions(context)
        leader = np.argmax(contributions[:, item_positions], axis=0)
        reasons = [""] * len(item_positions)
        for component_position in np.unique(leader):
            chosen = np.flatnonzero(leader == component_position)
            component = self.components_[self.component_keys_[component_position]]
            for slot, reason in zip(chosen, component._explain(context, np.asarray(item_positions)[chosen])):
                reasons[slot] = reason or self.label
        return reasons

    # --- new products --------------------------------------------------------------------------
    def _add_items(self, new_items: pd.DataFrame) -> None:
        for component in self.components_.values():
            component.add_items(new_items)
        self.trained_ = np.concatenate([self.trained_, np.zeros(len(new_items), dtype=bool)])

    # --- persistence ---------------------------------------------------------------------------
    def weights_table(self) -> dict:
        """Learned weights as JSON-ready dicts: per regime (the default blend's), per blend and
        regime, and for new products."""
        def per_regime(weights):
            return {label: dict(zip(self.component_keys_, map(float, weights[i]))) for i, label in enumerate(REGIME_LABELS)}

        return {
            "regimes": per_regime(self.regime_weights_),
            "blends": {family: per_regime(weights) for family, weights in self.blend_weights_.items()},
            "new_items": {"weights": dict(zip(self.component_keys_, map(float, self.new_item_weights_))),
                          "offset": float(self.new_item_offset_)},
        }

    def _save_state(self, directory: Path) -> None:
        for key, component in self.components_.items():
            component.save(directory / "components" / key)
        state = {**self.weights_table(), "components": self.component_keys_,
                 "skipped_components": self.skipped_components_, "reused_components": self.reused_components_,
                 "validation_ndcg": self.validation_ndcg_}
        (directory / "hybrid.json").write_text(json.dumps(state, indent=2))
        np.savez(directory / "hybrid.npz", trained=self.trained_)

    def _load_state(self, directory: Path) -> None:
        state = json.loads((directory / "hybrid.json").read_text())
        self.component_keys_ = state["components"]
        self.components_ = {key: Strategy.load(directory / "components" / key) for key in self.component_keys_}
        # An artifact saved before blends were per placement family has one blend.
        blends = state.get("blends") or {self._blend_families()[0]: state["regimes"]}
        self.blend_weights_ = {family: np.array([[table[label][key] for key in self.component_keys_]
                                                 for label in REGIME_LABELS], dtype=np.float32)
                               for family, table in blends.items()}
        self.new_item_weights_ = np.array([state["new_items"]["weights"][key] for key in self.component_keys_],
                                          dtype=np.float32)
        self.new_item_offset_ = float(state["new_items"]["offset"])
        self.skipped_components_ = state["skipped_components"]
        self.reused_components_ = state.get("reused_components", [])
        self.validation_ndcg_ = state["validation_ndcg"]
        with np.load(directory / "hybrid.npz", allow_pickle=False) as arrays:
            self.trained_ = arrays["trained"]


def aligned_component(key: str, component: Strategy, dataset: Dataset) -> Strategy:
    """``component`` checked for serving in a hybrid fitted on ``dataset``: same products, same order.

    A component that knows the dataset's first products in its order (fitted on an older
    snapshot of the same catalogue, before products were added) is copied and given the rest
    (``add_items``); one fitted on other products, or in another order, is refused.
    """
    if not isinstance(component, Strategy) or not component.fitted:
        raise ValueError(f"Hybrid: component {key!r} must be a fitted strategy, got {component!r}")
    if component.key and component.key != key:
        raise ValueError(f"Hybrid: component {key!r} was given a {component.key!r} strategy")
    known = np.asarray(component.item_ids, dtype=object)
    items = np.asarray(dataset.item_ids, dtype=object)
    if len(known) == len(items) and np.array_equal(known, items):
        return component
    if len(known) < len(items) and np.array_equal(known, items[:len(known)]):
        extended = copy.deepcopy(component)
        extended.add_items(dataset.items.iloc[len(known):])
        return extended
    raise ValueError(
        f"Hybrid: component {key!r} was fitted on other products than the dataset ({len(known)} vs "
        f"{len(items)}, or in another order); pass components fitted on the same snapshot, or none to fit them here"
    )


def ndcg_at_k(blend: np.ndarray, relevant: np.ndarray, n_relevant: np.ndarray, k: int = NDCG_K) -> np.ndarray:
    """Per-row NDCG@k of a (n_rows, pool) score array against a boolean relevance array.

    ``n_relevant`` counts every relevant item of a row, also those outside the pool.
    """
    top = top_k_batch(blend, k)
    hits = np.take_along_axis(relevant, np.maximum(top, 0), axis=1) & (top >= 0)
    discounts = 1.0 / np.log2(np.arange(2, top.shape[1] + 2))
    ideal = np.concatenate([[0.0], np.cumsum(discounts)])[np.minimum(n_relevant, top.shape[1])]
    return (hits @ discounts) / np.maximum(ideal, 1e-12)


def search_simplex_weights(scores: np.ndarray, valid: np.ndarray, relevant: np.ndarray, n_relevant: np.ndarray,
                           max_rounds: int = 20) -> tuple[np.ndarray, float]:
    """Coordinate ascent on the simplex for the blend weights with the best mean NDCG@10.

    Parameters
    ----------
    scores
        (n_components, n_rows, pool) normalised component scores.
    valid, relevant
        (n_rows, pool) booleans: candidates that may be ranked, and which of them are relevant.
    n_relevant
        (n_rows,) relevant items per row.

    Returns
    -------
    (weights, ndcg)
        Float32 weights summing to one, and the mean NDCG they reach.
    """
    n_components = scores.shape[0]

    def mean_ndcg(weights):
        blend = np.where(valid, np.tensordot(weights, scores, axes=1), -np.inf)
        return float(ndcg_at_k(blend, relevant, n_relevant).mean())

    corners = np.eye(n_components, dtype=np.float64)
    values = [mean_ndcg(corner) for corner in corners]
    best_weights, best = corners[int(np.argmax(values))], max(values)
    for _ in range(max_rounds):
        improved = False
        for component in range(n_components):
            for step in WEIGHT_STEPS:
                candidate = (1 - step) * best_weights + step * corners[component]
                value = mean_ndcg(candidate)
                if value > best + 1e-9:
                    best_weights, best, improved = candidate, value, True
        if not improved:
            break
    return best_weights.astype(np.float32), best


def _pool_part(normalised: list[np.ndarray], excluded: np.ndarray, relevant: np.ndarray, trained: np.ndarray,
               pool_size: int) -> tuple:
    """One batch's pool: the union of each component's ``pool_size`` best items outside ``excluded``."""
    tops = np.hstack([top_k_batch(np.where(excluded, -np.inf, z), pool_size) for z in normalised])
    tops.sort(axis=1)
    safe = np.maximum(tops, 0)
    valid = tops >= 0  # -1 pads a row with fewer finite candidates than the pool
    valid[:, 1:] &= tops[:, 1:] != tops[:, :-1]  # an item in several components' tops counts once
    pooled = np.stack([np.take_along_axis(z, safe, axis=1) for z in normalised])
    return pooled, valid, np.take_along_axis(relevant, safe, axis=1) & valid, ~trained[safe]
