"""Evaluation protocols (docs/architecture.md, "Offline evaluation"): new-user folds, new-item hold-out, warm last-event split.

Every split works on interaction row masks of one ``Dataset`` whose interactions are in event
order, so "the first n events of a user" is the first n of that user's rows that count as
context (impressions never do: being shown a product says nothing about taste).

**Event order must be real time to reveal "the first n".** A dataset says whether its row order
is time in ``meta["order"]`` (``"time"``, the default, or ``"none"``; bundles keep it in
``bundle.json``). Where it is not (Book-Crossing: no timestamps, rows sorted by ISBN within each
user), ``in_reveal_order`` shuffles each user's events with a seed first, so that few-shot
protocols reveal a random order instead of one no shop would ever see. Every consumer of a
protocol (the evaluation runner, the hybrid's own validation inside ``fit``, the held-out check
that guards activation) goes through the same functions here:

- ``in_reveal_order`` (once, on the whole dataset);
- ``reveal_rank`` and ``cold_user_masks`` (which rows are revealed, which are the test; the
  long horizon takes every later positive, ``horizon=N`` the positives among the next N events);
- ``cold_users`` (contexts, what each user already has, what is relevant).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..data.dataset import EVENT_ORDERS, Dataset
from ..strategies.base import Context
from ..strategies.context import HISTORY_MAX_EVENTS, ContextBuilder, context_rows

# What ``cold_users`` counts as a user's regime of known events: (smallest, largest, label).
REGIMES = ((0, 0, "0"), (1, 2, "1-2"), (3, 9, "3-9"), (10, np.inf, "10+"))


@dataclass
class NewUserFold:
    """One fold of the new-user protocol: training data without the cold users."""

    fold: int
    train: Dataset
    cold_user_ids: np.ndarray


@dataclass
class NewItemSplit:
    """Items held out as new: training keeps them in the catalogue but without interactions."""

    train: Dataset
    new_item_ids: np.ndarray
    test_mask: np.ndarray  # interaction rows of the full dataset that involve new items


def interacting_user_ids(dataset: Dataset) -> np.ndarray:
    """Ids of users with at least one interaction, in first-appearance order."""
    return pd.unique(dataset.interactions["user_id"].to_numpy())


def new_user_splits(dataset: Dataset, folds: int = 5, seed: int = 0) -> list[NewUserFold]:
    """Split interacting users into ``folds`` seeded folds; each fold's users are cold.

    Everything of a cold user (profile row and interactions) is removed from that fold's
    training data.
    """
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    user_ids = interacting_user_ids(dataset)
    if len(user_ids) < folds:
        raise ValueError(f"{len(user_ids)} users with interactions cannot make {folds} folds")
    shuffled = np.random.default_rng(seed).permutation(user_ids)
    return [
        NewUserFold(fold=number, train=dataset.without_users(cold), cold_user_ids=np.asarray(cold, dtype=object))
        for number, cold in enumerate(np.array_split(shuffled, folds))
    ]


def event_rank_within_user(dataset: Dataset) -> np.ndarray:
    """For each interaction row, how many earlier rows the same user has (0 = first event)."""
    return dataset.interactions.groupby("user_id", sort=False).cumcount().to_numpy()


# --- reveal order and horizons ---------------------------------------------------------------------
def event_order(dataset: Dataset) -> str:
    """``"time"`` when the dataset's row order is real time (the default), else ``"none"``."""
    order = dataset.meta.get("order", "time")
    if order not in EVENT_ORDERS:
        raise ValueError(f"dataset meta 'order' must be one of {EVENT_ORDERS}, got {order!r}")
    return order


def in_reveal_order(dataset: Dataset, seed: int = 0) -> Dataset:
    """``dataset`` with its rows in the order few-shot protocols reveal them.

    Order ``"time"``: the dataset itself. Order ``"none"``: each user's events are shuffled
    (seeded) among the row positions that user already occupies, so every other user's rows
    stay where they were; timestamps are dropped, since they do not order the events. A
    dataset shuffled once is returned as it is (``meta["reveal_seed"]``), so nested callers
    (the runner, then the hybrid inside ``fit``) agree on one order.
    """
    if event_order(dataset) == "time" or "reveal_seed" in dataset.meta:
        return dataset
    user_codes = dataset.user_codes
    random_keys = np.random.default_rng(seed + 15_485_863).random(len(user_codes))
    slots = np.argsort(user_codes, kind="stable")  # each user's row positions, in row order
    shuffled = np.lexsort((random_keys, user_codes))  # each user's rows, in random order
    new_order = np.empty(len(user_codes), dtype=np.int64)
    new_order[slots] = shuffled
    interactions = dataset.interactions.iloc[new_order].reset_index(drop=True).assign(timestamp=np.nan)
    return Dataset(users=dataset.users, items=dataset.items, interactions=interactions, name=dataset.name,
                   meta={**dataset.meta, "reveal_seed": int(seed)})


def reveal_rank(dataset: Dataset) -> np.ndarray:
    """Per interaction row: how many earlier context events its user has; -1 for impressions.

    Only events that count as context (``ContextBuilder``: everything but impressions) are
    revealed, so only they take a place in the order.
    """
    counts = context_rows(dataset)
    rank = np.full(len(counts), -1, dtype=np.int64)
    rank[counts] = dataset.interactions[counts].groupby("user_id", sort=False).cumcount().to_numpy()
    return rank


def cold_user_masks(rank: np.ndarray, cold_rows: np.ndarray, positive: np.ndarray, reveal: int,
                    horizon: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rows revealed as context and rows tested, for cold users given their first ``reveal`` events.

    Parameters
    ----------
    rank
        ``reveal_rank`` of the dataset (in reveal order).
    cold_rows
        Interaction rows of the users being scored.
    positive
        Rows that count as relevant (``relevant_mask``).
    reveal
        Events given as context.
    horizon
        None: the long horizon, every later positive is relevant. N: only positives among the
        next N events after the revealed ones (what a shelf shown mid-session should catch).

    Returns
    -------
    (revealed, test)
        Boolean row masks over the dataset's interactions.
    """
    if horizon is not None and int(horizon) < 1:
        raise ValueError(f"horizon must be a positive number of events, got {horizon!r}")
    counted = rank >= 0
    revealed = cold_rows & counted & (rank < reveal)
    test = cold_rows & counted & (rank >= reveal) & positive
    if horizon is not None:
        test &= rank < reveal + int(horizon)
    return revealed, test


def regime_of(n_known_events: np.ndarray) -> np.ndarray:
    """Regime label ('0', '1-2', '3-9', '10+') for each number of known events."""
    labels = np.empty(len(n_known_events), dtype=object)
    for low, high, label in REGIMES:
        labels[(n_known_events >= low) & (n_known_events <= high)] = label
    return labels


@dataclass
class ColdUsers:
    """The users one evaluation scores (those with something relevant left), for every strategy."""

    user_ids: np.ndarray
    contexts: list[Context]
    known: sp.csr_matrix  # items each user already has (never recommended)
    relevant: sp.csr_matrix
    regimes: np.ndarray
    skipped: int  # users left out: nothing relevant in their test rows

    def __len__(self) -> int:
        return len(self.contexts)


def cold_users(dataset: Dataset, user_ids, known_mask: np.ndarray, test_mask: np.ndarray,
               max_events: int | None = HISTORY_MAX_EVENTS) -> ColdUsers:
    """Contexts of ``user_ids`` from their ``known_mask`` events; relevant = ``test_mask`` items they do not have.

    Users with nothing relevant left are dropped (and counted in ``skipped``).
    """
    user_ids = np.asarray(user_ids, dtype=object)
    known = relevance_matrix(dataset, user_ids, known_mask)
    relevant = relevance_matrix(dataset, user_ids, test_mask)
    relevant = (relevant - relevant.multiply(known)).tocsr()  # an item already had cannot be recommended
    relevant.eliminate_zeros()
    has_relevant = relevant.getnnz(axis=1) > 0
    user_ids, known, relevant = user_ids[has_relevant], known[has_relevant], relevant[has_relevant]
    contexts = ContextBuilder(max_events).from_dataset(dataset, user_ids, known_mask) if len(user_ids) else []
    n_known_events = np.array([len(context.events) for context in contexts], dtype=np.int64)
    return ColdUsers(user_ids, contexts, known, relevant, regime_of(n_known_events), int((~has_relevant).sum()))


def relevance_matrix(dataset: Dataset, user_ids, row_mask: np.ndarray, item_index: pd.Index | None = None) -> sp.csr_matrix:
    """(len(user_ids), n_items) 0/1 matrix of the masked interactions of ``user_ids``."""
    item_index = dataset.item_index if item_index is None else item_index
    user_index = pd.Index(user_ids)
    interactions = dataset.interactions[row_mask]
    rows = user_index.get_indexer(interactions["user_id"])
    cols = item_index.get_indexer(interactions["item_id"])
    keep = (rows >= 0) & (cols >= 0)
    matrix = sp.csr_matrix(
        (np.ones(int(keep.sum()), dtype=np.float32), (rows[keep], cols[keep])), shape=(len(user_index), len(item_index))
    )
    matrix.data[:] = 1.0
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def relevant_mask(dataset: Dataset, positive_threshold: float | None = None) -> np.ndarray:
    """Interactions that count as relevant; every event that counts as context (never an
    impression, ``ContextBuilder``'s rule) if none is positive."""
    positive = dataset.is_positive(positive_threshold)
    if not positive.any():
        positive = context_rows(dataset)
    return positive


def cold_start_validation(
    dataset: Dataset, share: float = 0.2, seed: int = 0, positive_threshold: float | None = None, max_users: int = 3000
) -> tuple[Dataset, pd.DataFrame, sp.csr_matrix]:
    """A zero-shot validation split *inside* training data, for choosing hyper-parameters.

    Returns the training part, the validation users' profiles (indexed by user id, one row per
    validation user with a relevant event) and their relevance matrix (rows in that order).
    """
    user_ids = interacting_user_ids(dataset)
    rng = np.random.default_rng(seed + 7919)
    n_validation = min(max(1, int(len(user_ids) * share)), max_users)
    validation_ids = rng.choice(user_ids, size=n_validation, replace=False) if len(user_ids) > 1 else user_ids[:0]
    train = dataset.without_users(validation_ids)
    relevant = relevance_matrix(dataset, validation_ids, relevant_mask(dataset, positive_threshold))
    has_relevant = relevant.getnnz(axis=1) > 0
    validation_ids = np.asarray(validation_ids, dtype=object)[has_relevant]
    profiles = dataset.users.reindex(pd.Index(validation_ids, name="user_id"))
    return train, profiles, relevant[has_relevant]


def new_item_split(
    dataset: Dataset, holdout: float = 0.2, new_item_ids=None, seed: int = 0
) -> NewItemSplit:
    """Hold out a share of the interacted items (or the given ids) as new products."""
    if new_item_ids is None:
        if not 0 < holdout < 1:
            raise ValueError(f"holdout must be between 0 and 1, got {holdout}")
        interacted = pd.unique(dataset.interactions["item_id"].to_numpy())
        n_new = max(1, int(round(len(interacted) * holdout)))
        new_item_ids = np.random.default_rng(seed).choice(interacted, size=n_new, replace=False)
    new_item_ids = np.asarray([str(item) for item in new_item_ids], dtype=object)
    unknown = pd.Index(new_item_ids).difference(dataset.item_index)
    if len(unknown):
        raise ValueError(f"{len(unknown)} new-item ids are not in the dataset's items, e.g. {list(unknown[:3])}")
    test_mask = dataset.interactions["item_id"].isin(set(new_item_ids)).to_numpy()
    return NewItemSplit(train=dataset.subset(~test_mask), new_item_ids=new_item_ids, test_mask=test_mask)


def warm_split(dataset: Dataset, n_last: int = 1) -> tuple[Dataset, np.ndarray]:
    """Hold out each user's last ``n_last`` events (users with more events than that).

    Returns the training dataset and the test row mask over ``dataset.interactions``.
    """
    counts = dataset.interactions.groupby("user_id", sort=False)["item_id"].transform("size").to_numpy()
    rank_from_end = counts - 1 - event_rank_within_user(dataset)
    test_mask = (rank_from_end < n_last) & (counts > n_last)
    return dataset.subset(~test_mask), test_mask
