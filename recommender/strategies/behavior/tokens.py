"""Event sequences as the behavior network's token arrays: items, event types, dwell buckets.

Training reads each user's first events from a ``Dataset`` (``first_events``); serving reads a
context's last known events (``context_tokens``). Both give padded (rows, width) int arrays
in which item positions are shifted by one, so that 0 is padding.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ...data.dataset import EVENT_TYPES, Dataset
from ..base import Event

# Upper edges (seconds) of the dwell buckets; bucket 0 means "unknown".
DWELL_EDGES = np.array([5.0, 30.0, 120.0, 600.0])
N_DWELL_BUCKETS = len(DWELL_EDGES) + 2
N_EVENT_CODES = len(EVENT_TYPES) + 1


def dwell_buckets(dwell_seconds: np.ndarray) -> np.ndarray:
    """Bucket of each dwell time: 0 unknown, then <5 s, <30 s, <2 min, <10 min, longer."""
    dwell = np.asarray(dwell_seconds, dtype=np.float64)
    buckets = np.searchsorted(DWELL_EDGES, np.nan_to_num(dwell, nan=0.0), side="right") + 1
    return np.where(np.isnan(dwell), 0, buckets).astype(np.int64)


def event_codes(events) -> np.ndarray:
    """Index of each event type in ``EVENT_TYPES`` (unknown types: len(EVENT_TYPES))."""
    codes = pd.Categorical(np.asarray(events, dtype=object), categories=EVENT_TYPES).codes
    return np.where(codes < 0, len(EVENT_TYPES), codes).astype(np.int64)


def first_events(dataset: Dataset, mask: np.ndarray, max_events: int,
                 positive: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Each active user's first ``max_events`` masked events as padded (users, N) arrays.

    ``"positive"`` says which events are a choice (``positive``, one flag per interaction row;
    None: all of them)."""
    rows = np.flatnonzero(mask)
    users = dataset.user_codes[rows]
    order = np.argsort(users, kind="stable")  # interactions are already in event order
    rows, users = rows[order], users[order]
    starts = np.r_[0, np.flatnonzero(np.diff(users)) + 1]
    lengths = np.diff(np.r_[starts, len(users)])
    rank = np.arange(len(users)) - np.repeat(starts, lengths)
    keep = rank < max_events
    rows, users, rank = rows[keep], users[keep], rank[keep]
    active_users, user_row = np.unique(users, return_inverse=True)
    shape = (len(active_users), max_events)
    items = np.zeros(shape, dtype=np.int64)
    events = np.zeros(shape, dtype=np.int64)
    dwell = np.zeros(shape, dtype=np.int64)
    items[user_row, rank] = dataset.item_codes[rows] + 1
    events[user_row, rank] = event_codes(dataset.interactions["event"].to_numpy()[rows])
    dwell[user_row, rank] = dwell_buckets(dataset.interactions["dwell_seconds"].to_numpy()[rows])
    chosen = np.zeros(shape, dtype=bool)
    chosen[user_row, rank] = True if positive is None else positive[rows]
    return {"users": active_users, "items": items, "events": events, "dwell": dwell,
            "lengths": np.minimum(lengths, max_events), "positive": chosen}


def context_tokens(events_per_context: list[list[Event]], item_positions, max_events: int) -> dict[str, np.ndarray]:
    """Padded token arrays of serving contexts (their last ``max_events`` known events)."""
    n_contexts = len(events_per_context)
    width = max(1, max((min(len(events), max_events) for events in events_per_context), default=0))
    items = np.zeros((n_contexts, width), dtype=np.int64)
    event_types = np.zeros((n_contexts, width), dtype=np.int64)
    dwell = np.zeros((n_contexts, width), dtype=np.int64)
    lengths = np.zeros(n_contexts, dtype=np.int64)
    for row, events in enumerate(events_per_context):
        events = events[-max_events:]
        if not events:
            continue
        count = len(events)
        items[row, :count] = item_positions([event.item_id for event in events]) + 1
        event_types[row, :count] = event_codes([event.event for event in events])
        dwell[row, :count] = dwell_buckets([np.nan if event.dwell_seconds is None else event.dwell_seconds for event in events])
        lengths[row] = count
    return {"items": items, "events": event_types, "dwell": dwell, "lengths": lengths}
