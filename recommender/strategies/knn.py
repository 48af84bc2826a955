"""Item-item nearest neighbours on the training interactions: "because you viewed X".

The few-shot baseline: a session's revealed items vote for their most similar items (cosine
over users, shrunk, top-N kept sparse; carts and purchases weigh more than views, so the
neighbours are co-purchases before co-views). Without any known event it falls back to popularity.

The product in view, when the context has one (a product page's "also bought"), leads: its own
co-occurrence row weighs twice the whole session (see docs/architecture.md, "Placements carry
intent"). ``recommend`` lists only items that co-occur with the context's products, never a
popularity list; a product in view without any co-occurrence data (a new product) gets an empty
list, so serving asks the placement's next strategy (content neighbours).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..data.dataset import DEFAULT_EVENT_WEIGHTS, Dataset
from .base import Context, Event, Recommendations, Strategy, _check_k, index_positions, top_k_indices
from .popularity import interaction_weights

# The product in view, as an explanation's source event (not an event type of the log).
IN_VIEW = "in_view"
EVENT_VERBS = {"view": "viewed", "click": "viewed", "cart": "added", "purchase": "bought", "rating": "rated"}
# Weight of popularity next to similarity: only breaks ties and fills lists for empty contexts.
POPULARITY_TIE_BREAK = 1e-3
# With a product in view, the session's events together weigh this much of the product's row.
SESSION_SHARE_WITH_PRODUCT = 0.5
# A score above the popularity tie-break by this much comes from co-occurrence.
CO_OCCURRENCE_MARGIN = 1e-7


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
    session_gap_seconds
        None: items co-occur when one user had both (their whole history is one basket). N: a
        pause of more than N seconds between a user's events starts a new session, and items
        co-occur only within a session (what a shopper looks at and buys together, not across
        visits with other missions); events without a timestamp stay in their user's session.
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
        "session_gap_seconds": None,
    }

    def _fit(self, dataset: Dataset) -> None:
        from ..evaluation.protocols import event_rank_within_user

        weights = interaction_weights(dataset, self.params["weighting"], self.params["positive_threshold"],
                                      event_weights=self.params["event_weights"])
        counts = dataset.interactions.groupby("user_id", sort=False)["item_id"].transform("size").to_numpy()
        recent = counts - event_rank_within_user(dataset) <= self.params["max_events_per_user"]
        user_item = self._basket_matrix(dataset, weights.astype(np.float32), recent)
        user_item.data = np.log1p(user_item.data)  # repeated views of one item saturate
        self.similarity_ = item_cosine_similarity(user_item, self.params["neighbours"], self.params["shrinkage"])
        popularity = np.asarray(user_item.sum(axis=0)).ravel()
        self.popularity_ = (popularity / popularity.max() if popularity.max() > 0 else popularity).astype(np.float32)
        self.titles_ = dataset.items["title"].to_numpy(dtype=object)

    def _basket_matrix(self, dataset: Dataset, weights: np.ndarray, mask: np.ndarray) -> sp.csr_matrix:
        """Baskets × items weights: one basket per user, or per session (``session_gap_seconds``)."""
        gap = self.params["session_gap_seconds"]
        if gap is None:
            return dataset.interaction_matrix(weights=weights, mask=mask)
        users = dataset.user_codes[mask]
        times = dataset.interactions["timestamp"].to_numpy(dtype=np.float64)[mask]
        order = np.lexsort((times, users))
        users, times = users[order], times[order]
        starts = np.ones(len(users), dtype=bool)
        # A NaN time compares False: it never starts a session of its own.
        starts[1:] = (users[1:] != users[:-1]) | (times[1:] - times[:-1] > float(gap))
        baskets = np.cumsum(starts) - 1
        matrix = sp.csr_matrix((weights[mask][order], (baskets, dataset.item_codes[mask][order])),
                               shape=(int(baskets[-1]) + 1 if len(baskets) else 0, dataset.n_items))
        matrix.sum_duplicates()
        matrix.eliminate_zeros()
        return matrix

    def _score_cache_key(self, context: Context):
        # Without a known event or product in view every context gets the popularity tie-break alone.
        known = self.item_positions([*context.event_item_ids, *([context.product_id] if context.product_id else [])])
        return () if not (known >= 0).any() else None

    def _score_batch(self, contexts: Sequence[Context]) -> np.ndarray:
        if len(contexts) == 1:
            positions, weights = self._query_row(contexts[0])
            scores = weighted_row_sum(self.similarity_, positions, weights)
            return (scores + POPULARITY_TIE_BREAK * self.popularity_)[None, :]
        query = event_query_matrix(contexts, self._item_index, self.params["recency_decay"], self.params["event_weights"])
        totals = np.asarray(query.sum(axis=1)).ravel()
        query = sp.diags(1.0 / np.maximum(totals, 1e-12)).astype(np.float32) @ query
        in_view = self.item_positions([context.product_id or "" for context in contexts])
        rows = np.flatnonzero(in_view >= 0)
        if len(rows):  # the session weighs SESSION_SHARE_WITH_PRODUCT of the product in view
            scale = np.ones(len(contexts), dtype=np.float32)
            scale[rows] = SESSION_SHARE_WITH_PRODUCT
            products = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, in_view[rows])),
                                     shape=query.shape)
            query = (sp.diags(scale) @ query + products).tocsr()
        scores = (query @ self.similarity_).toarray()
        return scores + POPULARITY_TIE_BREAK * self.popularity_[None, :]

    def _query_row(self, context: Context) -> tuple[np.ndarray, np.ndarray]:
        """Positions and weights of the context's known items: the session's events summing to one,
        or, with a known product in view, the product at one and the session at
        ``SESSION_SHARE_WITH_PRODUCT``."""
        positions, weights = event_query_row(context, self._item_index, self.params["recency_decay"],
                                             self.params["event_weights"])
        weights = weights * (np.float32(1.0) / np.maximum(weights.sum(dtype=np.float32), np.float32(1e-12)))
        in_view = self.item_positions([context.product_id])[0] if context.product_id is not None else -1
        if in_view < 0:
            return positions, weights
        weights = weights * np.float32(SESSION_SHARE_WITH_PRODUCT)
        where = np.searchsorted(positions, in_view)
        if where < len(positions) and positions[where] == in_view:
            weights[where] += 1.0
            return positions, weights
        return np.insert(positions, where, in_view), np.insert(weights, where, np.float32(1.0))

    def has_neighbours(self, item_id: str) -> bool:
        """Whether ``item_id`` co-occurs with any other product in the training data."""
        position = self.item_positions([item_id])[0]
        return position >= 0 and self.similarity_.indptr[position + 1] > self.similarity_.indptr[position]

    def recommend(self, context: Context | None = None, k: int = 10, exclude=(), allowed=None) -> Recommendations:
        """The base contract, except that a context with known products (events or the product in
        view) lists only items that co-occur with them: possibly fewer than ``k``, never a
        popularity fill; a product in view without co-occurrence data gets an empty list."""
        context = context or Context()
        if context.product_id is not None and not self.has_neighbours(context.product_id):
            return Recommendations.empty(self.key)
        if self._score_cache_key(context) == ():  # nothing known: the popularity tie-break fills the list
            return super().recommend(context, k=k, exclude=exclude, allowed=allowed)
        _check_k(k)
        scores = self.score(context).copy()
        self._filter_candidates(scores, exclude, allowed)
        # Only co-occurring items: the popularity tie-break orders them, it never adds items.
        scores[scores <= POPULARITY_TIE_BREAK * self.popularity_ + CO_OCCURRENCE_MARGIN] = -np.inf
        return self._ranked(context, scores, top_k_indices(scores, int(k)))

    def _explain(self, context: Context, item_positions: np.ndarray) -> list[str]:
        known = [(event, position) for event, position in
                 zip(context.events, self.item_positions(context.event_item_ids)) if position >= 0]
        if context.product_id is not None:
            # The product in view leads (its reason wins ties with the session's view of it).
            in_view = self.item_positions([context.product_id])[0]
            if in_view >= 0:
                known = [(Event(context.product_id, IN_VIEW), in_view)] + [
                    (event, position) for event, position in known if position != in_view]
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
            if event.event == IN_VIEW:
                reasons.append(f"Often chosen with {title}")
            else:
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
