"""The held-out check that guards activation: a seeded share of the users scored as new users.

A training run removes the held-out users from a first fit and scores them as brand-new
visitors, revealing 0 and then 3 of their first events: the new-user protocol of
``evaluation.protocols`` (``reveal_rank``, ``cold_user_masks``, ``cold_users``) scored by the
runner's ``score_cold_users`` (the full candidate set, never an item the user already has).
Events count as revealed only where ``ContextBuilder`` counts them as context, so impressions
never do, as in serving. The result is the ``metrics`` of a
``ModelVersion``; its ``key_value`` (NDCG@10 at reveal 0) is what the guardrail compares.

Which users are held out is decided per user by a seeded hash of the user id, not by drawing
from the list of users: two snapshots of a live shop taken minutes apart hold out (nearly) the
same users, so the runs of one train-all agree on who is new to every component.

No Django here: the service layer passes the settings in (``HoldoutPlan``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..data.dataset import Dataset
from ..strategies.base import Strategy
from ..strategies.context import HISTORY_MAX_EVENTS
from .metrics import METRIC_NAMES
from .protocols import cold_user_masks, cold_users, in_reveal_order, interacting_user_ids, relevant_mask, reveal_rank
from .runner import score_cold_users

KEY_METRIC = "ndcg"
KEY_K = 10
KEY_REVEAL = 0
REVEALS = (0, 3)
KEY_METRIC_NAME = f"{KEY_METRIC}@{KEY_K} of new users at reveal {KEY_REVEAL}"


@dataclass(frozen=True)
class HoldoutPlan:
    """How many users to hold out, how they are chosen and what counts as relevant.

    The defaults are those of ``RECOMMENDER["TRAINING_HOLDOUT_SHARE"]``,
    ``["TRAINING_HOLDOUT_MAX_USERS"]``, ``["RANDOM_SEED"]`` and ``["TRAINING_POSITIVE_THRESHOLD"]``.
    """

    share: float = 0.1
    max_users: int = 1000
    seed: int = 0
    positive_threshold: float | None = 4.0


@dataclass
class HoldoutSplit:
    """Held-out users and the row masks the new-user protocol needs (rows of ``dataset``)."""

    dataset: Dataset  # the whole snapshot, in reveal order (``protocols.in_reveal_order``)
    train: Dataset
    cold_user_ids: np.ndarray
    cold_rows: np.ndarray  # interaction rows of the held-out users
    rank: np.ndarray  # per row: ``reveal_rank``, how many earlier context events its user has (-1: no context event)
    relevant: np.ndarray  # per row: counts as relevant
    info: dict = field(default_factory=dict)


def held_out_user_ids(user_ids: np.ndarray, n: int, seed: int) -> np.ndarray:
    """The ``n`` users of ``user_ids`` with the smallest seeded hash of their id."""
    user_ids = np.asarray(user_ids, dtype=object)
    hash_key = hashlib.sha256(f"recommender-holdout:{int(seed)}".encode()).hexdigest()[:16]
    keys = pd.util.hash_array(user_ids.astype(str).astype(object), hash_key=hash_key)
    return user_ids[np.argsort(keys, kind="stable")[:n]]


def holdout_split(dataset: Dataset, plan: HoldoutPlan = HoldoutPlan()) -> HoldoutSplit | None:
    """Hold out ``plan.share`` of the users with events (at most ``plan.max_users``); None when too few.

    Where the dataset's row order is not time, its users' events are revealed in a seeded random
    order (``protocols.in_reveal_order``), as the evaluation runner does.
    """
    dataset = in_reveal_order(dataset, plan.seed)
    user_ids = interacting_user_ids(dataset)
    n_cold = min(int(plan.max_users), int(round(len(user_ids) * plan.share)))
    if n_cold < 1 or n_cold >= len(user_ids):
        return None
    cold_user_ids = held_out_user_ids(user_ids, n_cold, plan.seed)
    info = {"users": int(n_cold), "share": plan.share, "seed": plan.seed,
            "positive_threshold": plan.positive_threshold, "k": KEY_K}
    return HoldoutSplit(
        dataset=dataset,
        train=dataset.without_users(cold_user_ids),
        cold_user_ids=cold_user_ids,
        cold_rows=_rows_of(dataset, cold_user_ids),
        rank=reveal_rank(dataset),
        relevant=relevant_mask(dataset, plan.positive_threshold),
        info=info,
    )


def _rows_of(dataset: Dataset, user_ids) -> np.ndarray:
    return dataset.interactions["user_id"].isin(set(user_ids)).to_numpy()


def no_holdout_metrics(reason: str = "too few users with events to hold any out") -> dict:
    """The metrics of a version that could not be checked on held-out users."""
    return {"key_metric": KEY_METRIC_NAME, "key_value": None, "new_user": {}, "holdout": {"users": 0, "reason": reason}}


def evaluate(strategy: Strategy, split: HoldoutSplit, *, reveals: Sequence[int] = REVEALS, k: int = KEY_K) -> dict:
    """Metrics of ``strategy`` (fitted without the held-out users) on the held-out users.

    Returns the ``metrics`` dict recorded on a ``ModelVersion``: ``key_value`` (NDCG@10 at
    reveal 0, None when no held-out user has a relevant event), ``new_user`` ({reveal: {ndcg,
    recall, precision, hr, mrr, coverage, users}}) and ``holdout`` (the split's parameters).
    """
    return evaluate_parts([(strategy, split.cold_user_ids)], split, reveals=reveals, k=k)


def evaluate_parts(parts: Sequence[tuple[Strategy, np.ndarray]], split: HoldoutSplit, *,
                   reveals: Sequence[int] = REVEALS, k: int = KEY_K) -> dict:
    """``evaluate`` where each part of the held-out users is scored by its own strategy, pooled.

    ``parts`` are ``(strategy, user ids)``; each strategy must be new to its users (cross-fitting:
    a strategy whose blend was learned on one half of the held-out users scores the other half).
    """
    results = {str(reveal): _pooled(parts, split.dataset, split.cold_rows, split.rank, split.relevant, reveal, k)
               for reveal in reveals}
    key_result = results.get(str(KEY_REVEAL), {})
    return {
        "key_metric": KEY_METRIC_NAME,
        "key_value": key_result.get(KEY_METRIC) if key_result.get("users") else None,
        "new_user": results,
        "holdout": split.info,
    }


def fit_and_evaluate(make_strategy: Callable[[], Strategy], dataset: Dataset, plan: HoldoutPlan = HoldoutPlan(), *,
                     reveals: Sequence[int] = REVEALS, k: int = KEY_K) -> tuple[dict, Strategy | None]:
    """Fit ``make_strategy()`` without the held-out users and score them; return (metrics, strategy).

    The strategy is None when the data has too few users to hold any out (nothing is fitted).
    """
    split = holdout_split(dataset, plan)
    if split is None:
        return no_holdout_metrics(), None
    strategy = make_strategy().fit(split.train)
    return evaluate(strategy, split, reveals=reveals, k=k), strategy


def score_new_users(strategy: Strategy, dataset: Dataset, cold_rows: np.ndarray, rank: np.ndarray,
                    relevant: np.ndarray, reveal: int, k: int = KEY_K) -> dict:
    """Metrics @k for the users of ``cold_rows`` given their first ``reveal`` context events."""
    return _pooled([(strategy, None)], dataset, cold_rows, rank, relevant, reveal, k)


def _pooled(parts, dataset: Dataset, cold_rows: np.ndarray, rank: np.ndarray, relevant: np.ndarray,
            reveal: int, k: int) -> dict:
    """Per-user metrics of every part at ``reveal``, pooled; coverage over the union of their lists."""
    per_user = {name: [] for name in METRIC_NAMES}
    shown, n_items = [], 0
    for strategy, user_ids in parts:
        rows = cold_rows if user_ids is None else cold_rows & _rows_of(dataset, user_ids)
        metrics, top_item_ids = _score(strategy, dataset, rows, rank, relevant, reveal, k)
        for name in METRIC_NAMES:
            per_user[name].append(metrics[name])
        shown.append(top_item_ids)
        n_items = max(n_items, strategy.n_items)
    values = {name: np.concatenate(arrays) for name, arrays in per_user.items()}
    n_users = len(values[KEY_METRIC])
    if n_users == 0:
        return {"users": 0}
    result = {name: float(np.nanmean(array)) for name, array in values.items()}
    result["coverage"] = float(len(np.unique(np.concatenate(shown)))) / n_items if n_items else 0.0
    result["users"] = int(n_users)
    return result


def _score(strategy: Strategy, dataset: Dataset, cold_rows: np.ndarray, rank: np.ndarray, relevant: np.ndarray,
           reveal: int, k: int) -> tuple[dict, np.ndarray]:
    """Per-user metrics of ``strategy`` for the users of ``cold_rows``, and the item ids it showed."""
    revealed, test = cold_user_masks(rank, cold_rows, relevant, reveal)
    user_ids = pd.unique(dataset.interactions["user_id"].to_numpy()[test])
    users = cold_users(dataset, user_ids, revealed, test, HISTORY_MAX_EVENTS)
    if not len(users):
        return {name: np.zeros(0) for name in METRIC_NAMES}, np.zeros(0, dtype=object)
    metrics, top = score_cold_users(strategy, dataset, users, k)
    return metrics, dataset.item_ids[top[top >= 0]]
