"""Step 2 of the request path: what is known about the visitor, as a strategy ``Context``.

The database side of ``ContextBuilder`` (``recommender.strategies.context``, which decides
which events count and how many): one query reads the visitor's newest counting events, and
the id of the newest one stamps the served-list cache key, so a new click shows on the next
page. Without personalisation consent neither the profile nor the events are read. Serving,
the admin preview and precompute build their contexts here; see docs/architecture.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..conf import settings
from ..strategies.base import Context, Event
from ..strategies.context import ContextBuilder
from .visitor import Visitor

# Event-log columns a context event is built from, after the row's primary key.
EVENT_COLUMNS = ("product_id", "event", "timestamp", "dwell_seconds", "value")


def context_builder() -> ContextBuilder:
    """The builder serving uses: ``SESSION_HISTORY_LENGTH`` newest events."""
    return ContextBuilder(max_events=settings.SESSION_HISTORY_LENGTH)


@dataclass(frozen=True)
class KnownEvents:
    """A visitor's context events (oldest first) and a stamp of the newest one.

    ``stamp`` is the newest counting event's id, "0" when there is none yet, "-" when the
    events were not read (an unknown visitor, or no consent).
    """

    events: tuple[Event, ...] = ()
    stamp: str = "-"


def known_events(visitor: Visitor, builder: ContextBuilder | None = None) -> KnownEvents:
    """The visitor's newest counting events: one query on the visitor's (owner, time) index.

    Read once per ``Visitor`` (so once per request: the onboarding strip and every shelf of a
    page share it); a visitor resolved for a later request reads again.
    """
    if not visitor.known or not visitor.consent:
        return KnownEvents()
    builder = builder or context_builder()
    known = visitor.known_events_read.get(builder)
    if known is None:
        rows = visitor.interactions().filter(event__in=builder.event_types).order_by("-timestamp", "-pk")
        rows = list(rows.values_list("pk", *EVENT_COLUMNS)[:builder.max_events] if builder.max_events else
                    rows.values_list("pk", *EVENT_COLUMNS))
        known = KnownEvents(events=builder.events_from_rows(row[1:] for row in rows),
                            stamp=str(rows[0][0]) if rows else "0")
        visitor.known_events_read[builder] = known
    return known


def visitor_context(visitor: Visitor, known: KnownEvents | None = None, product_id: str | None = None,
                    builder: ContextBuilder | None = None, blend: str | None = None) -> Context:
    """The context strategies get for ``visitor`` (with the product in view, if any, and the
    placement's ``blend``).

    Without consent: only the product in view. ``known`` is ``known_events(visitor)`` when the
    caller already has it (its stamp went into a cache key); None reads it.
    """
    builder = builder or context_builder()
    user_id = None if visitor.user is None else visitor.user.pk
    if not visitor.consent:
        return builder.build(product_id=product_id, user_id=user_id, blend=blend)
    known = known_events(visitor, builder) if known is None else known
    profile = visitor.profile()
    return builder.build(profile=profile.as_features() if profile else {}, events=known.events,
                         product_id=product_id, user_id=user_id, blend=blend)
