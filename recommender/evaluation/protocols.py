"""Evaluation protocols (docs/architecture.md, "Offline evaluation"): new-user folds, new-item hold-out, warm last-event split.

Every split works on interaction row masks of one ``Dataset`` whose interactions are already
in event order (time, then file order), so "the first n events of a user" is the first n rows
of that user.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..data.dataset import Dataset


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
    """Interactions that count as relevant; every non-impression event if none is positive."""
    positive = dataset.is_positive(positive_threshold)
    if not positive.any():
        positive = dataset.interactions["event"].to_numpy() != "impression"
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
