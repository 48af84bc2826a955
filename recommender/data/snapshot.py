"""A training ``Dataset`` built from the shop's own database, streamed in chunks.

Users are profiles (``str(user pk)`` for accounts, ``visitor:<key>`` for anonymous visitors),
items are the catalog adapter's rows (``str(pk)``), interactions are the event log plus any
explicit ``Rating`` that has no rating event of its own (imported ratings). Rows are read with
``.iterator(chunk_size)`` and turned into numpy arrays one chunk at a time, so memory stays
bounded by the arrays themselves rather than by millions of ORM tuples.
"""

from __future__ import annotations

import datetime
import itertools

import numpy as np
import pandas as pd
from django.db.models import Exists, OuterRef
from django.utils import timezone

from ..catalog import get_adapter
from ..conf import declared_profile_attributes
from ..models import EventType, Interaction, Rating, UserProfile
from .dataset import EVENT_TYPES, Dataset

VISITOR_PREFIX = "visitor:"
PROFILE_FIELDS = ("country", "region", "city", "language")


def user_id_for(user_pk, visitor_key) -> str:
    """The dataset id of an account (``"42"``) or an anonymous visitor (``"visitor:<key>"``)."""
    return str(user_pk) if user_pk is not None else f"{VISITOR_PREFIX}{visitor_key}"


def build_dataset_from_db(*, chunk_size: int = 20000, since: datetime.datetime | None = None,
                          progress=None, profile_attributes=None) -> Dataset:
    """Read profiles, products and events from the database into a ``Dataset``.

    Parameters
    ----------
    chunk_size
        Rows fetched per database round trip and converted to arrays at a time.
    since
        Only events (and ratings) at or after this time; profiles and products are always whole.
    progress
        Optional ``callable(fraction)`` called as the snapshot advances (0..1).
    profile_attributes
        Names of the free ``attributes`` that become user columns (default: the declared
        ``PROFILE_ATTRIBUTES``). Any other key a profile holds is left out, so no visitor can
        add columns to the training table.

    Returns
    -------
    Dataset
        ``meta["counts"]`` holds what to record on a ``ModelVersion``: users, profiles,
        visitors, items, interactions, ratings_only (ratings without an event), skipped
        (events of products outside the catalog adapter's queryset) and ``snapshot_at``.
    """
    report = progress or (lambda fraction: None)
    snapshot_at = timezone.now()
    declared = set(declared_profile_attributes(profile_attributes))
    users = _profiles_frame(chunk_size, declared)
    report(0.1)
    items = _items_frame(chunk_size)
    report(0.2)
    item_codes_by_pk = {pk: code for code, pk in enumerate(items.pop("pk"))}
    log = _InteractionLog(item_codes_by_pk)
    events = Interaction.objects.filter(timestamp__lte=snapshot_at)
    ratings = Rating.objects.filter(updated_at__lte=snapshot_at).exclude(
        Exists(Interaction.objects.filter(user=OuterRef("user"), product=OuterRef("product"), event=EventType.RATING))
    )
    if since is not None:
        events = events.filter(timestamp__gte=since)
        ratings = ratings.filter(updated_at__gte=since)
    total = max(1, events.count())
    rows = events.order_by("timestamp", "pk").values_list(
        "user_id", "visitor_key", "product_id", "event", "value", "timestamp", "dwell_seconds"
    )
    for chunk in _chunks(rows.iterator(chunk_size=chunk_size), chunk_size):
        log.add(chunk)
        report(0.2 + 0.75 * min(1.0, log.n_rows / total))
    n_events = log.n_rows
    rating_rows = ratings.order_by("updated_at", "pk").values_list(
        "user_id", "product_id", "score", "updated_at"
    )
    for chunk in _chunks(rating_rows.iterator(chunk_size=chunk_size), chunk_size):
        log.add([(user, "", product, EventType.RATING, score, when, None) for user, product, score, when in chunk])
    interactions = log.frame()
    report(1.0)
    counts = {
        "profiles": int(len(users)),
        "visitors": int(users.index.str.startswith(VISITOR_PREFIX).sum()),
        "items": int(len(items)),
        "interactions": int(len(interactions)),
        "ratings_only": int(log.n_rows - n_events),
        "skipped": int(log.n_skipped),
        "snapshot_at": snapshot_at.isoformat(),
        "since": since.isoformat() if since else None,
    }
    dataset = Dataset(users=users, items=items, interactions=interactions, name="database", meta={"counts": counts})
    counts["users"] = int(dataset.n_users)
    return dataset


def _chunks(iterator, size):
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _profiles_frame(chunk_size: int, declared: set[str]) -> pd.DataFrame:
    """One row per profile: ``age`` and the location/language columns, plus declared attributes.

    Only scalar values of the ``declared`` attribute names become columns. Profiles without
    personalisation consent keep their row but lose every attribute, so their demographics
    never shape a model.
    """
    current_year = timezone.now().year
    records = []
    rows = UserProfile.objects.order_by("pk").values_list(
        "user_id", "visitor_key", "birth_year", "gender", *PROFILE_FIELDS, "attributes", "personalization_consent"
    )
    for user_pk, visitor_key, birth_year, gender, *location, attributes, consent in rows.iterator(chunk_size=chunk_size):
        record = {"user_id": user_id_for(user_pk, visitor_key)}
        if consent:
            record.update(
                (key, value) for key, value in (attributes or {}).items()
                if key in declared and isinstance(value, (str, int, float, bool)) and key != "user_id"
            )
            record.update(age=current_year - birth_year if birth_year else None, gender=gender or None)
            record.update((name, value or None) for name, value in zip(PROFILE_FIELDS, location))
        records.append(record)
    frame = pd.DataFrame.from_records(records, columns=None if records else ["user_id"])
    return frame.set_index("user_id")


def _items_frame(chunk_size: int) -> pd.DataFrame:
    """The catalog adapter's rows indexed by ``str(pk)``, with the raw ``pk`` kept as a column."""
    rows = list(get_adapter().iter_rows(chunk_size=chunk_size))
    frame = pd.DataFrame.from_records(rows, columns=None if rows else ["pk", "title"])
    frame.index = pd.Index(frame["pk"].map(str), name="item_id", dtype=object)
    return frame


class _InteractionLog:
    """Accumulates event rows as compact arrays: codes instead of strings, floats for numbers."""

    def __init__(self, item_codes_by_pk: dict):
        self.item_codes_by_pk = item_codes_by_pk
        self.user_codes_by_id: dict[str, int] = {}
        self.parts: list[dict[str, np.ndarray]] = []
        self.event_codes = {event: code for code, event in enumerate(EVENT_TYPES)}
        self.n_rows = 0
        self.n_skipped = 0

    def add(self, rows) -> None:
        user_pks, visitor_keys, product_pks, events, values, times, dwells = zip(*rows)
        item_codes = np.fromiter((self.item_codes_by_pk.get(pk, -1) for pk in product_pks), np.int32, len(rows))
        known = item_codes >= 0
        self.n_skipped += int((~known).sum())
        codes_by_id = self.user_codes_by_id
        user_codes = np.fromiter(
            (codes_by_id.setdefault(user_id_for(pk, key), len(codes_by_id)) for pk, key in zip(user_pks, visitor_keys)),
            np.int32, len(rows),
        )
        part = {
            "user": user_codes,
            "item": item_codes,
            "event": np.fromiter((self.event_codes.get(event, -1) for event in events), np.int8, len(rows)),
            "value": np.array(values, dtype=np.float64),
            "timestamp": pd.DatetimeIndex(times).as_unit("us").asi8 / 1e6,
            "dwell_seconds": np.array(dwells, dtype=np.float64),
        }
        known &= part["event"] >= 0
        self.parts.append({name: array[known] for name, array in part.items()})
        self.n_rows += int(known.sum())

    def frame(self) -> pd.DataFrame:
        """The accumulated rows as the interactions frame ``Dataset`` expects."""
        columns = {name: np.concatenate([part[name] for part in self.parts]) for name in self.parts[0]} if self.parts else None
        if columns is None:
            return pd.DataFrame(columns=["user_id", "item_id", "event", "value", "timestamp", "dwell_seconds"])
        user_ids = np.array(list(self.user_codes_by_id), dtype=object)
        item_ids = np.array([str(pk) for pk in self.item_codes_by_pk], dtype=object)
        return pd.DataFrame({
            "user_id": user_ids[columns["user"]],
            "item_id": item_ids[columns["item"]],
            "event": np.array(EVENT_TYPES, dtype=object)[columns["event"]],
            "value": columns["value"],
            "timestamp": columns["timestamp"],
            "dwell_seconds": columns["dwell_seconds"],
        })
