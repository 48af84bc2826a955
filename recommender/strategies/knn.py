"""Item-item nearest neighbours on the training interactions: "because you viewed X".

The few-shot baseline: a session's revealed items vote for their most similar items (cosine
over users, shrunk, top-N kept sparse). Without any known event it falls back to popularity.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..data.dataset import DEFAULT_EVENT_WEIGHTS, Dataset
from .base import Context, Strategy, index_positions
from .popularity import interaction_weights

EVENT_VERBS = {"view": "viewed", "click": "viewed", "cart": "added", "purchase": "bought", "rating": "rated"}
# Weight of popularity next to similarity: only breaks ties and fills lists for empty contexts.
POPULARITY_TIE_BREAK = 1e-3


def keep_top_per_row(matrix: sp.csr_matrix, n: int) -> sp.csr_matrix:
    """Keep the ``n`` largest entries of each CSR row.

    Only rows longer than ``n`` are touched, each with one ``argpartition`` over its own
    entries, so the cost is linear in the non-zeros (a global sort is not).
    """
    matrix = sp.csr_matrix(matrix)
    lengths = np.diff(matrix.indptr)
    keep = np.ones(matrix.nnz, dtype=bool)
    for row in np.flatnonzero(lengths > n):
        start, stop = matrix.indptr[row], matrix.indptr[row + 1]
        dropped = np.argpartition(-matrix.data[start:stop], n - 1)[n:]
        keep[start + dropped] = False
    row_of_entry = np.repeat(np.arange(matrix.shape[0]), lengths)
    kept_per_row = np.bincount(row_of_entry[keep], minlength=matrix.shape[0])
    indptr = np.concatenate([[0], np.cumsum(kept_per_row)])
    return sp.csr_matrix((matrix.data[keep], matrix.indices[keep], indptr), shape=matrix.shape)


def item_cosine_similarity(user_item: sp.csr_matrix, neighbours: int = 50, shrinkage: float = 10.0) -> sp.csr_matrix:
    """Item × item cosine similarity, shrunk by support, top ``neighbours`` per row, no diagonal.

    Parameters
    ----------
    user_item
        Users × items weights.
    neighbours
        Entries kept per item row.
    shrinkage
        ``dot / (|a| |b| + shrinkage)``: pairs seen together by few users count less.
    """
    item_user = sp.csr_matrix(user_item.T, dtype=np.float32)
    norms = np.sqrt(np.asarray(item_user.multiply(item_user).sum(axis=1)).ravel())
    dots = (item_user @ item_user.T).tocsr()
    # Stays CSR throughout (no COO round trip, no setdiag restructuring): the diagonal is
    # zeroed through a mask, and the columns are sorted as a COO → CSR conversion would leave
    # them, so the top-N cut sees each row's entries in the same order.
    dots.sort_indices()
    rows = np.repeat(np.arange(dots.shape[0]), np.diff(dots.indptr))
    dots.data[rows == dots.indices] = 0
    dots.data /= norms[rows] * norms[dots.indices] + shrinkage
    dots.eliminate_zeros()
    return keep_top_per_row(dots, neighbours).astype(np.float32)


def event_query_matrix(
    contexts: Sequence[Context], item_index: pd.Index, recency_decay: float = 1.0,
    event_weights: dict | None = None,
) -> sp.csr_matrix:
    """Contexts × items weights of each context's known events (unknown ids are dropped).

    The newest event weighs 1 × its event weight, the one before ``recency_decay`` ×, etc.
    """
    table = {**DEFAULT_EVENT_WEIGHTS, **(event_weights or {})}
    rows, item_ids, weights = [], [], []
    for row, context in enumerate(contexts):
        for age, event in enumerate(reversed(context.events)):
            rows.append(row)
            item_ids.append(str(event.item_id))
            weights.append(table.get(event.event, 1.0) * recency_decay ** age)
    cols = index_positions(item_index, item_ids) if item_ids else np.zeros(0, dtype=np.int64)
    rows, weights = np.asarray(rows, dtype=np.int64), np.asarray(weights, dtype=np.float32)
    known = (cols >= 0) & (weights > 0)
    matrix = sp.csr_matrix((weights[known], (rows[known], cols[known])), shape=(len(contexts), len(item_index)))
    matrix.sum_duplicates()
    return matrix


def event_query_row(
    context: Context, item_index: pd.Index, recency_decay: float = 1.0, event_weights: dict | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One context's row of ``event_query_matrix`` as (item positions ascending, float32 weights).

    The single-request form: no sparse matrix is built for a handful of events.
    """
    table = {**DEFAULT_EVENT_WEIGHTS, **(event_weights or {})}
    events = context.events[::-1]
    positions = index_positions(item_index, [str(event.item_id) for event in events])
    weights = np.array([table.get(event.event, 1.0) * recency_decay ** age for age, event in enumerate(events)],
                       dtype=np.float32)
    known = (positions >= 0) & (weights > 0)
    positions, inverse = np.unique(positions[known], return_inverse=True)  # an item seen twice: weights add up
    summed = np.zeros(len(positions), dtype=np.float32)
    np.add.at(summed, inverse, weights[known])
    return positions, summed


def weighted_row_sum(matrix: sp.csr_matrix, rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``weights @ matrix[rows]`` as a dense float32 row, read straight from the CSR slices.

    Accumulates in the order a sparse product does (rows in the given order, float32), without
    building a sparse matrix for a single request.
    """
    total = np.zeros(matrix.shape[1], dtype=np.float32)
    indptr, indices, data = matrix.indptr, matrix.indices, matrix.data
    for row, weight in zip(rows.tolist(), np.asarray(weights, dtype=np.float32)):
        start, stop = indptr[row], indptr[row + 1]
        total[indices[start:stop]] += weight * data[start:stop]  # a CSR row holds each column once
    return total


def dense_block(matrix: sp.csr_matrix, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """``matrix[rows][:, columns]`` as a dense array, read row by row from the CSR slices.

    For a recommendation's explanation (a few event rows × k items), where scipy's fancy
    indexing costs far more than the values it returns.
    """
    columns = np.asarray(columns, dtype=np.int64)
    block = np.zeros((len(rows), len(columns)), dtype=matrix.dtype)
    dense_row = np.zeros(matrix.shape[1], dtype=matrix.dtype)
    for number, row in enumerate(np.asarray(rows).tolist()):
        start, stop = matrix.indptr[row], matrix.indptr[row + 1]
        dense_row[matrix.indices[start:stop]] = matrix.data[start:stop]
        block[number] = dense_row[columns]
        dense_row[matrix.indices[start:stop]] = 0
    return block


class ItemKNNStrategy(Strategy):
    """Item-based collaborative filtering over a session's revealed events.

    Params
    ------
    neighbours
        Similar items kept per item.
    shrinkage
        Support shrinkage in the cosine denominator.
    recency_decay
        Each older event of the context counts this much less than the next one.
    weighting, positive_threshold
        Interaction weights for the training matrix (see ``popularity.interaction_weights``).
    max_events_per_user
        Only each user's latest events build the similarity (bounds cost for heavy users).
    event_weights
        Weight of each event type, in the training matrix and for a context's events (None:
        ``DEFAULT_EVENT_WEIGHTS``); training passes the shop's ``EVENT_WEIGHTS``.
    """

    key = "item_knn"
    label = "Similar to what you viewed"
    needs_events = True
    default_params = {
        "neighbours": 50,
        "shrinkage": 10.0,
        "recency_decay": 0.9,
        "weighting": "events",
        "positive_threshold": None,
        "max_events_per_user": 200,
        "event_weights": None,
    }

    def _fit(self, dataset: Dataset) -> None:
        from ..evaluation.protocols import event_rank_within_user

        weights = interaction_weights(dataset, self.params["weighting"], self.params["positive_threshold"],
                                      event_weights=self.params["event_weights"])
        counts = dataset.interactions.groupby("user_id", sort=False)["item_id"].transform("size").to_numpy()
        recent = counts - event_rank_within_user(dataset) <= self.params["max_events_per_user"]
        user_item = dataset.interaction_matrix(weights=weights.astype(np.float32), mask=recent)
        user_item.data = np.log1p(user_item.data)  # repeated views of one item saturate
        self.similarity_ = item_cosine_similarity(user_item, self.params["neighbours"], self.params["shrinkage"])
        popularity = np.asarray(user_item.sum(axis=0)).ravel()
        self.popularity_ = (popularity / popularity.max() if popularity.max() > 0 else popularity).astype(np.float32)
        self.titles_ = dataset.items["title"].to_numpy(dtype=object)

    def _score_cache_key(self, context: Context):
        # Without a known event every context gets the popularity tie-break alone.
        return () if not (self.item_positions(context.event_item_ids) >= 0).any() else None

    def _score_batch(self, contexts: Sequence[Context]) -> np.ndarray:
        if len(contexts) == 1:
            positions, weights = event_query_row(contexts[0], self._item_index, self.params["recency_decay"],
                                                 self.params["event_weights"])
            total = np.maximum(weights.sum(dtype=np.float32), np.float32(1e-12))
            scores = weighted_row_sum(self.similarity_, positions, weights * (np.float32(1.0) / total))
            return (scores + POPULARITY_TIE_BREAK * self.popularity_)[None, :]
        query = event_query_matrix(contexts, self._item_index, self.params["recency_decay"], self.params["event_weights"])
        totals = np.asarray(query.sum(axis=1)).ravel()
        query = sp.diags(1.0 / np.maximum(totals, 1e-12)).astype(np.float32) @ query
        scores = (query @ self.similarity_).toarray()
        return scores + POPULARITY_TIE_BREAK * self.popularity_[None, :]

    def _explain(self, context: Context, item_positions: np.ndarray) -> list[str]:
        known = [(event, position) for event, position in
                 zip(context.events, self.item_positions(context.event_item_ids)) if position >= 0]
        if not known or not len(item_positions):
            return ["Popular right now"] * len(item_positions)
        event_positions = np.array([position for _, position in known])
        contributions = dense_block(self.similarity_, event_positions, item_positions)
        best = contributions.argmax(axis=0)
        reasons = []
        for column, event_number in enumerate(best):
            if contributions[event_number, column] <= 0:
                reasons.append("Popular right now")
                continue
            event = known[event_number][0]
            title = self.titles_[known[event_number][1]] or event.item_id
            reasons.append(f"Because you {EVENT_VERBS.get(event.event, 'viewed')} {title}")
        return reasons

    def _add_items(self, new_items: pd.DataFrame) -> None:
        n_items = len(self.item_ids)
        self.similarity_ = sp.csr_matrix(self.similarity_, copy=True)
        self.similarity_.resize((n_items, n_items))
        self.popularity_ = np.concatenate([self.popularity_, np.zeros(len(new_items), dtype=np.float32)])
        self.titles_ = np.concatenate([self.titles_, new_items["title"].to_numpy(dtype=object)])

    def _save_state(self, directory: Path) -> None:
        sp.save_npz(directory / "similarity.npz", self.similarity_)
        np.save(directory / "popularity.npy", self.popularity_)
        np.save(directory / "titles.npy", self.titles_.astype(str))

    def _load_state(self, directory: Path) -> None:
        self.similarity_ = sp.load_npz(directory / "similarity.npz").tocsr()
        self.popularity_ = np.load(directory / "popularity.npy")
        self.titles_ = np.load(directory / "titles.npy").astype(object)
