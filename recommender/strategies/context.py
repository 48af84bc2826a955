"""Which of a visitor's events count as context, and how many: ``ContextBuilder``.

The one place that decides it, for every caller: serving, the admin preview and batch
precomputation build contexts from event-log rows (``recommender.serving.context`` and
``recommender.precompute`` run the database query and hand the rows here); offline evaluation,
the held-out check that guards activation and the hybrid's validation build them from a
``Dataset`` and a row mask. Impressions never count: being shown a product says nothing about
the visitor's taste. Of the events that count, the newest ``max_events`` are kept, oldest
first. No Django here: evaluation and training run without settings (the serving side passes
``SESSION_HISTORY_LENGTH`` in as ``max_events``).

The same rule decides what training and evaluation may *reveal* of a user: ``context_rows``
marks the interaction rows of a ``Dataset`` that count (``evaluation.protocols.reveal_rank``
numbers them per user), so "the first 3 events" of a held-out user are their first 3 counting
events, never an impression, and the torch strategies train on the sequences serving would see.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..data.dataset import EVENT_TYPES, Dataset
from .base import Context, Event

# Event types that say something about taste: every type but impressions.
CONTEXT_EVENT_TYPES = tuple(event for event in EVENT_TYPES if event != "impression")
# The default of ``RECOMMENDER["SESSION_HISTORY_LENGTH"]``: what a served context keeps.
DEFAULT_MAX_EVENTS = 20
# What offline evaluation and the strategies' own validation replay of a known user's history
# (longer than a session: the new-item and warm protocols give a user's whole past as context).
HISTORY_MAX_EVENTS = 50


def context_rows(dataset: Dataset) -> np.ndarray:
    """Whether each interaction row of ``dataset`` counts as context (every type but impressions)."""
    return dataset.interactions["event"].isin(CONTEXT_EVENT_TYPES).to_numpy()


@dataclass(frozen=True)
class ContextBuilder:
    """Builds ``Context`` objects from event rows or from a ``Dataset``.

    Parameters
    ----------
    max_events
        How many of the newest counting events a context keeps; None keeps them all.
    """

    max_events: int | None = DEFAULT_MAX_EVENTS

    def __post_init__(self):
        if self.max_events is not None and (isinstance(self.max_events, bool) or int(self.max_events) < 1):
            raise ValueError(f"max_events must be a positive integer or None, got {self.max_events!r}")

    @property
    def event_types(self) -> tuple[str, ...]:
        """The event types that count as context (for a database query's ``event__in``)."""
        return CONTEXT_EVENT_TYPES

    def counts(self, event_type: str) -> bool:
        """Whether an event of ``event_type`` counts as context."""
        return event_type in CONTEXT_EVENT_TYPES

    # --- from event rows (serving, preview, precompute) -----------------------------------------
    def events_from_rows(self, rows_newest_first: Iterable[Sequence]) -> tuple[Event, ...]:
        """Context events, oldest first, from ``(product id, event, timestamp, dwell, value)`` rows.

        Rows come newest first, as a query ordered by ``-timestamp`` gives them; a timestamp may
        be a datetime, epoch seconds or None. Rows that do not count are dropped, and only the
        newest ``max_events`` of the others are kept.
        """
        events = []
        for product_id, event, moment, dwell, value in rows_newest_first:
            if not self.counts(event):
                continue
            events.append(Event(item_id=str(product_id), event=event, timestamp=_epoch_seconds(moment),
                                dwell_seconds=_number(dwell), value=_number(value)))
            if self.max_events is not None and len(events) >= self.max_events:
                break
        return tuple(reversed(events))

    def build(self, *, profile: Mapping[str, Any] | None = None, events: Iterable[Event] = (),
              product_id: str | None = None, user_id: str | None = None, blend: str | None = None) -> Context:
        """A context of ``profile`` and ``events`` (oldest first) after this builder's rules."""
        counting = [event for event in events if self.counts(event.event)]
        if self.max_events is not None:
            counting = counting[-int(self.max_events):]
        return Context(profile=dict(profile or {}), events=tuple(counting),
                       product_id=None if product_id is None else str(product_id),
                       user_id=None if user_id is None else str(user_id), blend=blend)

    # --- from a dataset (evaluation, the held-out check, the hybrid's validation) ---------------
    def from_dataset(self, dataset: Dataset, user_ids: Sequence, row_mask: np.ndarray) -> list[Context]:
        """One context per user: their profile and their masked interactions as events, in order.

        ``row_mask`` selects rows of ``dataset.interactions`` (already in event order); rows of
        users not in ``user_ids`` are ignored, and rows that do not count as context are dropped.
        """
        row_mask = np.asarray(row_mask, dtype=bool) & context_rows(dataset)
        rows = dataset.interactions[row_mask]
        if self.max_events is not None:
            rows = rows.groupby("user_id", sort=False).tail(int(self.max_events))
        user_ids = list(user_ids)

        # Columns become Python lists once (None for missing) instead of a check per cell.
        def column(name):
            values = rows[name].to_numpy(dtype=np.float64)
            return np.where(np.isnan(values), None, values).tolist()

        events = [
            Event(item_id=item_id, event=event, value=value, timestamp=timestamp, dwell_seconds=dwell)
            for item_id, event, value, timestamp, dwell in zip(
                rows["item_id"].tolist(), rows["event"].tolist(), column("value"), column("timestamp"),
                column("dwell_seconds"))
        ]
        # Rows are in event order; a stable sort by user keeps that order within each user.
        owner = pd.Index(user_ids).get_indexer(rows["user_id"])
        order = np.argsort(owner, kind="stable")
        order = order[owner[order] >= 0]
        bounds = np.searchsorted(owner[order], np.arange(len(user_ids) + 1))
        order = order.tolist()
        profiles = profile_dicts(dataset.users, user_ids)
        return [
            Context(profile=profile, events=tuple(events[position] for position in order[bounds[row]:bounds[row + 1]]),
                    user_id=str(user_ids[row]))
            for row, profile in enumerate(profiles)
        ]


def profile_dicts(users: pd.DataFrame, user_ids: Sequence) -> list[dict]:
    """Each user's known profile attributes as a dict (missing values left out)."""
    profiles = users.reindex(pd.Index(list(user_ids), name="user_id"))
    columns = [column for column in profiles.columns if column != "user_id"]
    values = [profiles[column].astype(object).to_numpy() for column in columns]
    present = [pd.notna(column_values) for column_values in values]
    return [
        {column: column_values[row] for column, column_values, known in zip(columns, values, present) if known[row]}
        for row in range(len(profiles))
    ]


def _epoch_seconds(moment) -> float | None:
    if moment is None:
        return None
    if isinstance(moment, datetime.datetime):
        return moment.timestamp()
    return _number(moment)


def _number(value) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if np.isnan(number) else number
