"""Ranking metrics @K from top-k index arrays and relevance sets, vectorised over users.

``top_items`` is an int array (n_users, k) of item positions, best first, ``-1`` padding rows
that had fewer than ``k`` candidates; ``relevant`` is a sparse (n_users, n_items) matrix whose
non-zeros are the relevant items of each user. Recall divides by the number of relevant items
(not by ``min(n_relevant, k)``); NDCG uses binary gains and the ideal ranking of
``min(n_relevant, k)`` hits.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

METRIC_NAMES = ("ndcg", "recall", "precision", "hr", "mrr")


def hit_matrix(top_items: np.ndarray, relevant: sp.spmatrix) -> np.ndarray:
    """Boolean (n_users, k): whether each recommended item is relevant to its user."""
    relevant = sp.csr_matrix(relevant)
    n_users, n_items = relevant.shape
    coo = relevant.tocoo()
    relevant_keys = np.unique(coo.row.astype(np.int64) * n_items + coo.col)
    rows = np.arange(n_users, dtype=np.int64)[:, None]
    keys = rows * n_items + np.where(top_items >= 0, top_items, 0)
    return np.isin(keys, relevant_keys) & (top_items >= 0)


def ranking_metrics(top_items: np.ndarray, relevant: sp.spmatrix, k: int | None = None) -> dict[str, np.ndarray]:
    """Per-user NDCG, recall, precision, hit rate and MRR at ``k``.

    Parameters
    ----------
    top_items
        (n_users, >=k) item positions, best first, -1 for padding.
    relevant
        (n_users, n_items) sparse matrix of relevant items.
    k
        Cut-off; defaults to ``top_items.shape[1]``.

    Returns
    -------
    dict
        ``{name: float64 array (n_users,)}`` for each of ``METRIC_NAMES``. Users with no
        relevant item get NaN (callers skip them).
    """
    k = top_items.shape[1] if k is None else int(k)
    top_items = np.asarray(top_items)[:, :k]
    hits = hit_matrix(top_items, relevant).astype(np.float64)
    n_relevant = np.asarray(sp.csr_matrix(relevant).getnnz(axis=1), dtype=np.float64)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = hits @ discounts
    ideal_cumulative = np.concatenate([[0.0], np.cumsum(discounts)])
    idcg = ideal_cumulative[np.minimum(n_relevant, k).astype(int)]
    n_hits = hits.sum(axis=1)
    first_hit = np.where(hits.any(axis=1), hits.argmax(axis=1), -1)
    with np.errstate(divide="ignore", invalid="ignore"):
        metrics = {
            "ndcg": dcg / idcg,
            "recall": n_hits / n_relevant,
            "precision": n_hits / k,
            "hr": (n_hits > 0).astype(np.float64),
            "mrr": np.where(first_hit >= 0, 1.0 / (first_hit + 1.0), 0.0),
        }
    no_relevant = n_relevant == 0
    for values in metrics.values():
        values[no_relevant] = np.nan
    return metrics


def catalogue_coverage(top_items: np.ndarray, n_items: int) -> float:
    """Share of the catalogue that appears in at least one user's top-k."""
    shown = np.unique(top_items[top_items >= 0])
    return float(shown.size / n_items) if n_items else 0.0


def mean_ndcg(top_items: np.ndarray, relevant: sp.spmatrix, k: int) -> float:
    """Mean NDCG@k over users with at least one relevant item (0 when there are none)."""
    values = ranking_metrics(top_items, relevant, k)["ndcg"]
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else 0.0
