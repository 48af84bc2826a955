"""Run the evaluation protocols over strategies and collect metrics (docs/architecture.md, "Offline evaluation").

``evaluate`` fits each strategy on the training part of every fold only (strategies that tune
do so on a validation split inside that training data), builds contexts for the held-out
users (profile + the events they revealed), scores the full catalogue in batches, never
recommends an item the user already has, and reports NDCG, recall, precision, hit rate, MRR
and catalogue coverage @K, per reveal and per regime of known events.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..data.dataset import Dataset
from ..strategies.base import Context, Strategy, top_k_batch
from ..strategies.context import HISTORY_MAX_EVENTS, ContextBuilder
from ..strategies.registry import get_strategy_class
from .metrics import METRIC_NAMES, catalogue_coverage, ranking_metrics
from .protocols import (REGIMES, ColdUsers, cold_user_masks, cold_users, in_reveal_order, new_item_split,
                        new_user_splits, regime_of, relevant_mask, reveal_rank, warm_split)

PROTOCOLS = ("new-user", "new-item", "warm")
BATCH_SIZE = 512
MAX_CONTEXT_EVENTS = HISTORY_MAX_EVENTS
__all__ = ["PROTOCOLS", "REGIMES", "evaluate", "regime_of", "score_cold_users", "score_top_k", "user_contexts"]


@dataclass
class _Tally:
    """Per-user metrics of one (strategy, reveal) pooled over folds."""

    metrics: dict[str, list[np.ndarray]] = field(default_factory=lambda: {name: [] for name in METRIC_NAMES})
    regimes: list[np.ndarray] = field(default_factory=list)
    shown_items: list[np.ndarray] = field(default_factory=list)
    fit_seconds: list[float] = field(default_factory=list)
    skipped: int = 0

    def add(self, metrics: Mapping[str, np.ndarray], regimes: np.ndarray, top_items: np.ndarray):
        for name in METRIC_NAMES:
            self.metrics[name].append(metrics[name])
        self.regimes.append(regimes)
        self.shown_items.append(np.unique(top_items[top_items >= 0]))

    def rows(self, strategy: str, reveal, horizon: int | None, n_items: int) -> list[dict]:
        values = {name: np.concatenate(parts) if parts else np.zeros(0) for name, parts in self.metrics.items()}
        regimes = np.concatenate(self.regimes) if self.regimes else np.zeros(0, dtype=object)
        shown = np.unique(np.concatenate(self.shown_items)) if self.shown_items else np.zeros(0, dtype=int)
        base = {"strategy": strategy, "reveal": reveal, "horizon": horizon, "fit_seconds": float(np.mean(self.fit_seconds)) if self.fit_seconds else 0.0}
        rows = [{**base, "regime": "all", **_means(values, np.ones(len(regimes), dtype=bool)),
                 "coverage": catalogue_coverage(shown, n_items), "users": int(len(regimes)),
                 "skipped_users": int(self.skipped)}]
        for label in pd.unique(regimes):
            selected = regimes == label
            if selected.sum() != len(regimes):
                rows.append({**base, "regime": label, **_means(values, selected), "coverage": None,
                             "users": int(selected.sum()), "skipped_users": None})
        return rows


def _means(values: Mapping[str, np.ndarray], selected: np.ndarray) -> dict[str, float]:
    return {name: float(values[name][selected].mean()) if selected.any() else 0.0 for name in METRIC_NAMES}


def build_strategy(key: str, params: Mapping | None, seed: int, positive_threshold: float | None,
                   host_strategies: Mapping[str, str] | None = None) -> Strategy:
    """Instantiate ``key`` (a built-in or one of ``host_strategies``); strategies that define
    ``positive_threshold`` get the task's one."""
    klass = get_strategy_class(key, host_strategies)
    params = dict(params or {})
    if "positive_threshold" in klass.default_params:
        params.setdefault("positive_threshold", positive_threshold)
    return klass(seed=seed, **params)


def user_contexts(dataset: Dataset, user_ids: Sequence[str], row_mask: np.ndarray, max_events: int | None = None) -> list[Context]:
    """One context per user from their masked interactions (``ContextBuilder.from_dataset``)."""
    return ContextBuilder(max_events=max_events or None).from_dataset(dataset, user_ids, row_mask)


def score_top_k(
    strategy: Strategy, contexts: Sequence[Context], known: sp.csr_matrix, k: int,
    candidates: np.ndarray | None = None, batch_size: int = BATCH_SIZE,
) -> np.ndarray:
    """Top-k item positions per context, never an item in ``known`` (nor outside ``candidates``)."""
    top = np.empty((len(contexts), k), dtype=np.int64)
    for start in range(0, len(contexts), batch_size):
        stop = min(start + batch_size, len(contexts))
        scores = strategy.score_batch(contexts[start:stop]).copy()
        block = known[start:stop].tocoo()
        scores[block.row, block.col] = -np.inf
        if candidates is not None:
            scores[:, ~candidates] = -np.inf
        top[start:stop] = top_k_batch(scores, k)
    return top


def evaluate(
    dataset: Dataset,
    strategies: Iterable[str],
    protocol: str = "new-user",
    reveal: Sequence[int] = (0, 1, 3, 5),
    folds: int = 5,
    k: int = 10,
    positive_threshold: float | None = None,
    seed: int = 0,
    progress: bool = True,
    strategy_params: Mapping[str, Mapping] | None = None,
    holdout_items: float = 0.2,
    new_item_ids: Sequence[str] | None = None,
    batch_size: int = BATCH_SIZE,
    horizons: Sequence[int | None] = (None,),
    host_strategies: Mapping[str, str] | None = None,
) -> list[dict]:
    """Evaluate ``strategies`` (registry keys) on ``dataset`` under ``protocol``.

    Parameters
    ----------
    protocol
        ``"new-user"`` (folds of cold users, first ``reveal`` events as context),
        ``"new-item"`` (held-out items ranked for users from their history) or ``"warm"``
        (each user's last event).
    positive_threshold
        Ratings at or above it are relevant (carts and purchases always are).
    strategy_params
        Extra params per strategy key.
    horizons
        New-user protocol: which later positives are relevant. None is the long horizon (every
        later positive); N the positives among the next N events after the revealed ones. Each
        fitted strategy is scored on every horizon.
    host_strategies
        Strategies registered besides the built-in ones, {key: dotted path} (a shop's
        ``RECOMMENDER["STRATEGIES"]``, passed in by the Django side).

    Where the dataset's event order is not time (``meta["order"] == "none"``), each user's
    events are first put in a seeded random order (``in_reveal_order``).

    Returns
    -------
    list of dict
        One row per (strategy, reveal, horizon, regime) with ``ndcg``, ``recall``,
        ``precision``, ``hr``, ``mrr``, ``coverage``, ``users``, ``skipped_users``,
        ``fit_seconds``, ``horizon``; the row with ``regime == "all"`` is the headline figure.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"Unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    horizons = list(dict.fromkeys(None if horizon is None else int(horizon) for horizon in horizons))
    if any(horizon is not None and horizon < 1 for horizon in horizons) or not horizons:
        raise ValueError(f"horizons must be None or positive numbers of events, got {horizons}")
    if protocol != "new-user" and horizons != [None]:
        raise ValueError("a short horizon applies to the new-user protocol only")
    strategies = list(strategies)
    strategy_params = strategy_params or {}
    dataset = in_reveal_order(dataset, seed)
    positive = relevant_mask(dataset, positive_threshold)
    counts_as_context = reveal_rank(dataset) >= 0
    tallies: dict[tuple[str, object, int | None], _Tally] = {}
    progress_bar = _progress(progress, total=(folds if protocol == "new-user" else 1) * len(strategies), protocol=protocol)

    def fit(key: str, train: Dataset) -> tuple[Strategy, float]:
        started = time.perf_counter()
        strategy = build_strategy(key, strategy_params.get(key), seed, positive_threshold, host_strategies).fit(train)
        return strategy, time.perf_counter() - started

    def score(key: str, reveal_key, horizon, strategy: Strategy, seconds: float, users: ColdUsers, candidates=None):
        tally = tallies.setdefault((key, reveal_key, horizon), _Tally())
        tally.fit_seconds.append(seconds)
        _score_prepared(dataset, strategy, users, k, tally, candidates, batch_size)

    if protocol == "new-user":
        rank = reveal_rank(dataset)
        for fold in new_user_splits(dataset, folds, seed):
            cold = dataset.interactions["user_id"].isin(set(fold.cold_user_ids)).to_numpy()
            # Contexts and relevance depend on the fold, the reveal and the horizon only: built once for all strategies.
            prepared = {}
            for n in reveal:
                for horizon in horizons:
                    revealed, test = cold_user_masks(rank, cold, positive, int(n), horizon)
                    prepared[int(n), horizon] = cold_users(dataset, fold.cold_user_ids, revealed, test, MAX_CONTEXT_EVENTS)
            for key in strategies:
                strategy, seconds = fit(key, fold.train)
                for (n, horizon), users in prepared.items():
                    score(key, n, horizon, strategy, seconds, users)
                progress_bar.update(1)
    elif protocol == "new-item":
        split = new_item_split(dataset, holdout_items, new_item_ids, seed)
        candidates = dataset.item_index.isin(set(split.new_item_ids))
        users = pd.unique(dataset.interactions.loc[split.test_mask & positive, "user_id"].to_numpy())
        prepared = cold_users(dataset, users, ~split.test_mask & counts_as_context, split.test_mask & positive,
                              MAX_CONTEXT_EVENTS)
        for key in strategies:
            strategy, seconds = fit(key, split.train)
            score(key, None, None, strategy, seconds, prepared, candidates)
            progress_bar.update(1)
    else:
        train, test_mask = warm_split(dataset)
        users = pd.unique(dataset.interactions.loc[test_mask & positive, "user_id"].to_numpy())
        prepared = cold_users(dataset, users, ~test_mask & counts_as_context, test_mask & positive, MAX_CONTEXT_EVENTS)
        for key in strategies:
            strategy, seconds = fit(key, train)
            score(key, None, None, strategy, seconds, prepared)
            progress_bar.update(1)
    progress_bar.close()
    return [row for (key, n, horizon), tally in tallies.items() for row in tally.rows(key, n, horizon, dataset.n_items)]


def _score_prepared(
    dataset: Dataset, strategy: Strategy, prepared: ColdUsers, k: int, tally: _Tally,
    candidates: np.ndarray | None, batch_size: int,
) -> None:
    """Score the prepared users with ``strategy`` and add their metrics to ``tally``."""
    tally.skipped += prepared.skipped
    if not prepared.contexts:
        return
    metrics, top = score_cold_users(strategy, dataset, prepared, k, candidates, batch_size)
    tally.add(metrics, prepared.regimes, top)


def score_cold_users(strategy: Strategy, dataset: Dataset, users: ColdUsers, k: int,
                     candidates: np.ndarray | None = None, batch_size: int = BATCH_SIZE) -> tuple[dict, np.ndarray]:
    """Per-user metrics @k of ``strategy`` for ``users``, and their top-k as dataset item positions.

    The strategy's items may differ from the dataset's (products added since it was fitted):
    what each user has and the candidates are re-indexed to the strategy's items first.
    """
    known = _align_columns(users.known, strategy, dataset)
    top = score_top_k(strategy, users.contexts, known, k, _align_candidates(candidates, strategy, dataset), batch_size)
    top = _to_dataset_positions(top, strategy, dataset)
    return ranking_metrics(top, users.relevant, k), top


def _align_columns(matrix: sp.csr_matrix, strategy: Strategy, dataset: Dataset) -> sp.csr_matrix:
    """Re-index dataset item columns to the strategy's item order (they match unless items were added)."""
    if len(strategy.item_ids) == dataset.n_items and np.array_equal(strategy.item_ids, dataset.item_ids):
        return matrix
    positions = strategy.item_positions(dataset.item_ids)
    coo = matrix.tocoo()
    keep = positions[coo.col] >= 0
    return sp.csr_matrix((coo.data[keep], (coo.row[keep], positions[coo.col[keep]])), shape=(matrix.shape[0], strategy.n_items))


def _align_candidates(candidates, strategy: Strategy, dataset: Dataset):
    if candidates is None:
        return None
    aligned = np.zeros(strategy.n_items, dtype=bool)
    positions = strategy.item_positions(dataset.item_ids[candidates])
    aligned[positions[positions >= 0]] = True
    return aligned


def _to_dataset_positions(top: np.ndarray, strategy: Strategy, dataset: Dataset) -> np.ndarray:
    if len(strategy.item_ids) == dataset.n_items and np.array_equal(strategy.item_ids, dataset.item_ids):
        return top
    lookup = dataset.item_index.get_indexer(pd.Index(strategy.item_ids))
    return np.where(top >= 0, lookup[np.maximum(top, 0)], -1)


class _NoProgress:
    def update(self, n=1):
        pass

    def close(self):
        pass


def _progress(enabled: bool, total: int, protocol: str) -> Callable:
    if not enabled:
        return _NoProgress()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"{protocol}: fit + score", unit="fit")
