"""Interest weights of interactions, with one visitor's repeats counted once.

Every count that feeds a shelf or a model (popularity, segment popularity, item-kNN
co-occurrence, every strategy's training matrix) is a sum of per-interaction weights. Summed
raw, one visitor who sends the same event 500 times outweighs 499 real shoppers. So within each
(visitor, product, day) only the visitor's strongest event keeps its weight and the others
weigh 0: a flood counts once, as one visitor's one day of interest (a view then a purchase of
the same product on the same day counts as the purchase). Days are UTC days of the event's
timestamp; interactions without a timestamp form one "day" per visitor and product.

Plain numpy and pandas: no Django settings; the event-weight table is a parameter.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

SECONDS_PER_DAY = 86400.0


def visitor_day_groups(user_codes: np.ndarray, item_codes: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
    """Group number of each interaction: equal for the same visitor, product and UTC day (int64).

    ``timestamps`` are epoch seconds; NaN puts the interaction in one timeless day of its
    visitor and product.
    """
    days = np.floor(np.asarray(timestamps, dtype=np.float64) / SECONDS_PER_DAY)
    days = np.where(np.isnan(days), np.iinfo(np.int64).min, days).astype(np.int64)
    keys = pd.DataFrame({"user": np.asarray(user_codes), "item": np.asarray(item_codes), "day": days})
    return keys.groupby(["user", "item", "day"], sort=False).ngroup().to_numpy(dtype=np.int64)


def strongest_per_group(weights: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """``weights`` with only the first strongest interaction of each group kept, the rest 0.

    The sum of the result over a group is the group's largest weight; so a visitor's day of
    repeats weighs what their single strongest event weighs.
    """
    weights = np.asarray(weights)
    if not len(weights):
        return weights.copy()
    order = np.lexsort((-weights, groups))  # by group, strongest first (stable: earliest on ties)
    sorted_groups = groups[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = sorted_groups[1:] != sorted_groups[:-1]
    kept = np.zeros(len(weights), dtype=bool)
    kept[order[first]] = True
    return np.where(kept, weights, 0).astype(weights.dtype, copy=False)


def event_type_weights(events: np.ndarray, table: Mapping[str, float], event_types) -> np.ndarray:
    """The table's weight of each interaction's event type, before any capping (float32)."""
    lookup = np.array([float(table.get(event, 0.0)) for event in event_types] + [0.0], dtype=np.float32)
    codes = pd.Index(list(event_types)).get_indexer(events)  # -1 (an unknown type) picks the trailing 0
    return lookup[codes]


def capped_event_weights(events: np.ndarray, groups: np.ndarray, table: Mapping[str, float],
                         event_types) -> np.ndarray:
    """Interest weight of each interaction: its event type's weight in ``table``, the visitor's
    repeats of a (product, day) counted once at their strongest (float32)."""
    return strongest_per_group(event_type_weights(events, table, event_types), groups)
