"""Recording behaviour: the one way events get into the interaction log.

The DRF endpoint (and so the JS beacon), the cart and order signal receivers and the Celery
task all call ``record``. It validates the whole batch before writing anything and then writes
it in one transaction: a batch is stored entirely or not at all.

A product page is one view even though two parts report it: the page view the server records
(it works without JavaScript) and the beacon's dwell report when the page is left. A dwell
report (a "view" with ``dwell_only``) gives its time to the visitor's latest view of that
product that has none, and becomes a view of its own only when there is no such view.

Anonymous visitors are tracked by a stable id kept in their session (``visitor_key_for``); when
they sign up or log in, ``merge_visitor_into_user`` moves their events and profile to the
account.

Every batch comes with a trust level, set by the entry point that received it (see the trust
boundary in docs/architecture.md):

- ``SERVER``: the host's own code (order and cart signals, its views, imports, tasks). Any
  event type, any timestamp from 2000-01-01 up to now (plus the clock-skew allowance).
- ``CLIENT``: whatever a browser sent (the events API and the beacon). Only what a visitor can
  honestly report about themselves: impressions, views (with dwell time) and clicks, plus
  ratings when signed in. Cart and purchase are the shop's own facts and are refused unless
  ``ACCEPT_CLIENT_CART_AND_PURCHASE`` opts in. The server's clock stamps the events, and one
  visitor stores at most ``MAX_CLIENT_EVENTS_PER_DAY`` of them in 24 hours. A client names no
  placement, strategy or arm: an impression or click gets them only from the signed ``token``
  of the served list it came from (``recommender.attribution``), when the token is valid, was
  served to this visitor and lists the product; otherwise the event is stored unattributed.
"""

import datetime
import hashlib
import json
import math
import uuid
from collections.abc import Mapping

from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, models, transaction
from django.db.models import Case, CharField, Count, Value, When
from django.db.models.functions import Cast, Concat, TruncDate
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from . import attribution
from .catalog import get_adapter, get_product_model
from .conf import settings
from .models import EventType, Interaction, Rating, UserProfile

SERVER = "server"
CLIENT = "client"
TRUST_LEVELS = (SERVER, CLIENT)
# Facts of the shop's own checkout, never a browser's say-so.
SERVER_EVENT_TYPES = frozenset({EventType.CART, EventType.PURCHASE})
# Events a served list's token attributes (to its placement, strategy and arm).
ATTRIBUTED_EVENT_TYPES = frozenset({EventType.IMPRESSION, EventType.CLICK})
ATTRIBUTION_FIELDS = ("placement", "strategy", "arm")
# No shop's event log is older than this; earlier times are clock or encoding errors (epoch 0).
EARLIEST_TIMESTAMP = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)
CLIENT_QUOTA_WINDOW = datetime.timedelta(days=1)
# Length of the placement / strategy / arm columns.
LABEL_MAX_LENGTH = 64
BATCH_KEY_MAX_LENGTH = 100
# "<owner>:<batch key>" longer than this is hashed, leaving room for ":<index>" in the
# 128-character dedupe_key.
DEDUPE_PREFIX_MAX_LENGTH = 120
VISITOR_KEY_MAX_LENGTH = 64
# Profile fields an anonymous profile may fill in on the account's profile when they merge.
PROFILE_MERGE_FIELDS = ("birth_year", "gender", "country", "region", "city", "language")
# Computed once: EventType.values builds a new list on every access.
EVENT_TYPES = frozenset(EventType.values)
# A dwell report joins a view recorded at most this long before the dwell began (report time
# minus dwell): the page's render, the beacon's send delay and some clock skew fit in it.
DWELL_VIEW_SLACK_SECONDS = 300


class EventValidationError(ValueError):
    """A batch was refused; nothing of it was stored.

    ``errors`` is a list of ``{"index": i, "field": name, "message": text}``; ``index`` is the
    event's position in the batch, or None for a problem with the batch as a whole.
    """

    def __init__(self, errors):
        self.errors = list(errors)
        # The errors themselves are the args, so the exception survives pickling and Celery results.
        super().__init__(self.errors)

    def __str__(self):
        return "; ".join(_describe(error) for error in self.errors)


class EventQuotaExceeded(Exception):
    """A visitor's client events of the last 24 hours would pass ``MAX_CLIENT_EVENTS_PER_DAY``.

    Nothing of the batch was stored; ``retry_after`` is the number of seconds until enough of
    the visitor's stored events have left the window for this batch to fit.
    """

    def __init__(self, message, retry_after):
        self.retry_after = retry_after
        super().__init__(message, retry_after)

    def __str__(self):
        return self.args[0]


def _describe(error):
    where = "batch" if error["index"] is None else f"event {error['index']}"
    field = f" {error['field']}" if error["field"] else ""
    return f"{where}{field}: {error['message']}"


def _error(index, field, message):
    return {"index": index, "field": field, "message": message}


class _Invalid(Exception):
    """One field of one event is wrong; the message says how."""


def _shown(value, length=40):
    """repr() of a client's value, cut short so a huge string cannot flood an error message."""
    text = repr(value)
    return text if len(text) <= length else text[: length - 3] + "..."


# --- field cleaners: each takes the raw value and ``now`` and returns the stored value -----------


def _clean_product(value, now):
    if isinstance(value, models.Model):
        if not isinstance(value, get_product_model()):
            raise _Invalid(f"a {type(value).__name__} is not a product")
        if value.pk is None:
            raise _Invalid("the product has not been saved")
        return value.pk
    if value is None or value == "":
        raise _Invalid("required: the product's id")
    if isinstance(value, bool) or not isinstance(value, (str, int, uuid.UUID)):
        raise _Invalid(f"must be a product id (string or integer), not {type(value).__name__}")
    try:
        pk = get_adapter().pk_from_string(value)
    except (ValidationError, ValueError, TypeError):
        raise _Invalid(f"{_shown(value)} is not a valid product id")
    if isinstance(pk, int) and not _fits_pk_column(pk):
        # SQLite raises OverflowError on such a query parameter instead of finding nothing.
        raise _Invalid(f"{_shown(value)} is not a valid product id (out of range)")
    return pk


def _fits_pk_column(pk):
    internal_type = get_product_model()._meta.pk.get_internal_type()
    low, high = connection.ops.integer_field_range(internal_type)
    return (low is None or pk >= low) and (high is None or pk <= high)


def _clean_event_type(value, now):
    if value is None or value == "":
        raise _Invalid(f"required: one of {', '.join(EventType.values)}")
    if value not in EVENT_TYPES:
        raise _Invalid(f"unknown event {_shown(value)}; one of {', '.join(EventType.values)}")
    return value


def _number(value):
    if isinstance(value, bool):
        raise _Invalid("must be a number, not a boolean")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _Invalid(f"must be a number, not {_shown(value)}")
    if not math.isfinite(number):
        raise _Invalid("must be a finite number")
    return number


def _clean_value(value, now):
    return None if value is None else _number(value)


def _clean_dwell(value, now):
    if value is None:
        return None
    seconds = _number(value)
    limit = settings.MAX_DWELL_SECONDS
    if not 0 <= seconds <= limit:
        raise _Invalid(f"must be between 0 and {limit} seconds, not {seconds:g}")
    return seconds


def _parse_timestamp(value):
    if isinstance(value, datetime.datetime):
        return value
    if isinstance(value, bool):
        raise _Invalid("must be an ISO 8601 date-time or epoch seconds, not a boolean")
    if isinstance(value, (int, float)):
        try:
            return datetime.datetime.fromtimestamp(value, tz=datetime.timezone.utc)
        except (OverflowError, OSError, ValueError):
            raise _Invalid(f"{_shown(value)} is out of range for epoch seconds")
    if isinstance(value, str):
        try:
            parsed = parse_datetime(value.strip())
        except ValueError:
            parsed = None
        if parsed is not None:
            return parsed
    raise _Invalid(f"{_shown(value)} is not an ISO 8601 date-time or epoch seconds")


def _clean_timestamp(value, now):
    if value is None or value == "":
        return now
    moment = _parse_timestamp(value)
    if timezone.is_naive(moment):
        # A time without a zone is taken as UTC, the zone the beacon and the API document.
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    try:
        ahead = (moment - now).total_seconds()
    except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00: before the first representable UTC time
        raise _Invalid(f"{_shown(value)} is out of range (before {EARLIEST_TIMESTAMP.date()})")
    if moment < EARLIEST_TIMESTAMP:
        raise _Invalid(f"{_shown(value)} is before {EARLIEST_TIMESTAMP.date()} (check the client's clock or the "
                       "timestamp's unit: epoch seconds)")
    if ahead > settings.MAX_CLOCK_SKEW_SECONDS:
        raise _Invalid(
            f"{ahead:.0f} seconds in the future; at most {settings.MAX_CLOCK_SKEW_SECONDS} allowed "
            "(check the client's clock)"
        )
    return moment


def _clean_label(value, now):
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _Invalid(f"must be a string, not {type(value).__name__}")
    if len(value) > LABEL_MAX_LENGTH:
        raise _Invalid(f"at most {LABEL_MAX_LENGTH} characters, not {len(value)}")
    if "\x00" in value:
        raise _Invalid("must not contain NUL characters")
    return value


def _clean_token(value, now):
    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        raise _Invalid(f"must be the served list's token (a string), not {type(value).__name__}")
    if len(value) > attribution.TOKEN_MAX_LENGTH:
        raise _Invalid(f"at most {attribution.TOKEN_MAX_LENGTH} characters, not {len(value)}")
    return value


def _clean_flag(value, now):
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _Invalid(f"must be true or false, not {_shown(value)}")
    return value


def _clean_context(value, now):
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _Invalid(f"must be an object, not {type(value).__name__}")
    try:
        # allow_nan=False: PostgreSQL's jsonb refuses NaN, so refuse it here with a clear message.
        encoded = json.dumps(dict(value), allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise _Invalid(f"must be plain JSON: {exc}")
    # PostgreSQL's jsonb cannot hold \u0000, in keys or in values.
    if "\\u0000" in encoded:
        raise _Invalid("must not contain NUL characters")
    limit = settings.MAX_EVENT_CONTEXT_BYTES
    if len(encoded.encode()) > limit:
        raise _Invalid(f"at most {limit} bytes as JSON, not {len(encoded.encode())}")
    return dict(value)


FIELD_CLEANERS = {
    "product": _clean_product,
    "event": _clean_event_type,
    "value": _clean_value,
    "dwell_seconds": _clean_dwell,
    "timestamp": _clean_timestamp,
    "placement": _clean_label,
    "strategy": _clean_label,
    "arm": _clean_label,
    "context": _clean_context,
    "dwell_only": _clean_flag,
    "token": _clean_token,
}


def _clean_event(event, now, trust=SERVER, signed_in=True):
    """Return (Interaction field values, [(field, message), ...]) for one raw event."""
    if not isinstance(event, Mapping):
        return None, [(None, f"must be an object with 'product' and 'event', not {type(event).__name__}")]
    problems = [
        (str(name)[:64], f"unknown field; known fields: {', '.join(FIELD_CLEANERS)}")
        for name in event
        if name not in FIELD_CLEANERS
    ]
    row = {}
    for name, clean in FIELD_CLEANERS.items():
        try:
            row[name] = clean(event.get(name), now)
        except _Invalid as exc:
            problems.append((name, str(exc)))
    if row.get("event") == EventType.RATING and "value" in row and row["value"] is None:
        problems.append(("value", "required for a rating: the score"))
    if row.get("dwell_only") and (row.get("event") != EventType.VIEW or row.get("dwell_seconds") is None):
        problems.append(("dwell_only", "only for a 'view' with dwell_seconds (the time spent on the page)"))
    if row.get("token") and row.get("event") not in ATTRIBUTED_EVENT_TYPES:
        problems.append(("token", "only impressions and clicks carry a served list's token"))
    if trust == CLIENT:
        problems.extend(_client_problems(row, signed_in))
        # The browser's clock is not evidence of when something happened: the server's is.
        row["timestamp"] = now
    return row, problems


def _client_problems(row, signed_in):
    """What a browser may not report: the shop's cart and purchase facts, anonymous ratings."""
    event = row.get("event")
    labelled = [(name, "set from the served list's signed token (send it as 'token'), never by the client")
                for name in ATTRIBUTION_FIELDS if row.get(name)]
    if labelled:
        return labelled
    if event in SERVER_EVENT_TYPES and not settings.ACCEPT_CLIENT_CART_AND_PURCHASE:
        return [("event", f"'{event}' events are recorded by the shop's own server code (its cart and order "
                          "signals), not accepted from the browser; a host that must accept them sets "
                          "RECOMMENDER['ACCEPT_CLIENT_CART_AND_PURCHASE'] = True")]
    if event == EventType.RATING and not signed_in:
        return [("event", "ratings need a signed-in user: sign in to rate products")]
    return []


def _unknown_product_errors(rows, raw_events):
    """Errors for events whose product does not exist, found with one query for the batch."""
    wanted = {row["product"] for row in rows.values() if "product" in row}
    if not wanted:
        return []
    found = set(get_adapter().queryset().filter(pk__in=wanted).values_list("pk", flat=True))
    errors = []
    for index, row in rows.items():
        if "product" in row and row["product"] not in found:
            raw = raw_events[index]["product"]
            shown = raw.pk if isinstance(raw, models.Model) else raw
            errors.append(_error(index, "product", f"unknown product '{str(shown)[:40]}'"))
    return errors


def clean_batch(events, batch_key=None, *, trust=SERVER, signed_in=True):
    """Return the batch as a list of Interaction field dicts, or raise ``EventValidationError``.

    Every problem of every event is reported at once; a batch over
    ``MAX_EVENTS_PER_BATCH`` is refused before any event is looked at. ``trust`` and
    ``signed_in`` decide what a ``CLIENT`` batch may hold (see the module docstring).
    """
    if trust not in TRUST_LEVELS:
        raise ValueError(f"trust must be one of {TRUST_LEVELS}, not {trust!r}")
    if isinstance(events, (str, bytes, Mapping)) or not hasattr(events, "__iter__"):
        raise EventValidationError([_error(None, "events", "must be a list of events")])
    events = list(events)
    limit = settings.MAX_EVENTS_PER_BATCH
    if len(events) > limit:
        raise EventValidationError(
            [_error(None, "events", f"a batch holds at most {limit} events, not {len(events)}; split it")]
        )
    errors = _batch_key_errors(batch_key)
    now = timezone.now()
    rows = {}
    for index, event in enumerate(events):
        row, problems = _clean_event(event, now, trust, signed_in)
        errors.extend(_error(index, field, message) for field, message in problems)
        if row is not None:
            rows[index] = row
    errors.extend(_unknown_product_errors(rows, events))
    if errors:
        raise EventValidationError(sorted(errors, key=lambda error: (error["index"] is not None, error["index"] or 0)))
    return [rows[index] for index in range(len(events))]


def _batch_key_errors(batch_key):
    if batch_key is None:
        return []
    if not isinstance(batch_key, str) or not batch_key:
        return [_error(None, "batch_id", "must be a non-empty string")]
    if len(batch_key) > BATCH_KEY_MAX_LENGTH:
        return [_error(None, "batch_id", f"at most {BATCH_KEY_MAX_LENGTH} characters, not {len(batch_key)}")]
    return []


def _owner(user, visitor_key):
    """Return the owner columns of a row: an account, or an anonymous visitor's key."""
    if visitor_key and (not isinstance(visitor_key, str) or len(visitor_key) > VISITOR_KEY_MAX_LENGTH):
        raise ValueError(f"visitor_key must be a string of at most {VISITOR_KEY_MAX_LENGTH} characters")
    if user is not None and user.is_authenticated:
        # The visitor key is kept beside the account: it says which browser session it was.
        return {"user": user, "visitor_key": visitor_key or ""}
    if not visitor_key:
        raise ValueError("record() needs a signed-in user or a visitor_key to own the events")
    return {"user": None, "visitor_key": visitor_key}


# --- writing ------------------------------------------------------------------------------------


def record(events, *, user=None, visitor_key="", batch_key=None, trust=SERVER):
    """Validate and store a batch of events; return the stored ``Interaction`` rows in batch order.

    ``events`` are mappings with ``product`` (id or instance), ``event`` (an ``EventType``) and
    optionally ``value`` (required for ratings), ``dwell_seconds``, ``timestamp`` (ISO 8601,
    epoch seconds or datetime; default now), ``placement``, ``strategy``, ``arm``, a small
    ``context`` dict and ``dwell_only`` (see the module docstring). The events belong to
    ``user`` when signed in, else to ``visitor_key``.

    ``trust`` is who vouches for the batch: ``SERVER`` (the host's own code, the default) or
    ``CLIENT`` (a browser; the entry point that received it says so). A ``CLIENT`` batch over
    the visitor's daily allowance raises ``EventQuotaExceeded``.

    ``batch_key`` is the client's idempotency key, scoped to the owner: a batch the same owner
    retries with the same key is stored once, and the rows of the first attempt are returned;
    another visitor's batch with the same key is their own. Raises ``EventValidationError`` and
    stores nothing when any event is wrong.
    """
    owner = _owner(user, visitor_key)
    rows = clean_batch(events, batch_key, trust=trust, signed_in=owner["user"] is not None)
    _attribute(rows, owner)
    dwell_reports = {index for index, row in enumerate(rows) if row.pop("dwell_only")}
    dedupe_prefix = None if batch_key is None else _dedupe_prefix(owner, batch_key)
    interactions = [
        Interaction(
            **owner,
            product_id=row.pop("product"),
            dedupe_key=None if dedupe_prefix is None else f"{dedupe_prefix}:{index}",
            **row,
        )
        for index, row in enumerate(rows)
    ]
    with transaction.atomic():
        if trust == CLIENT and interactions:
            _check_client_quota(owner, interactions, batch_key)
        stored = _insert(interactions, batch_key, dwell_reports)
        if owner["user"] is not None:
            ratings = [row for row in stored if row.event == EventType.RATING and row.user_id == owner["user"].pk]
            _upsert_ratings(owner["user"], ratings)
    return stored


def _attribute(rows, owner):
    """Set placement, strategy, arm and served list of each row from its token, where the token is valid.

    A row whose token does not hold (forged, expired, another visitor's, another product) keeps
    what its trust level allows: a client's nothing, the server's own labels.
    """
    identities = [f"user:{owner['user'].pk}"] if owner["user"] is not None else []
    if owner["visitor_key"]:
        identities.append(f"visitor:{owner['visitor_key']}")
    verified = {}
    for row in rows:
        token = row.pop("token")
        if not token:
            continue
        if token not in verified:
            verified[token] = attribution.verify(token, identities)
        served = verified[token]
        if served is not None and served.covers(row["product"]):
            slot = served.slot_of(row["product"])
            # An exploration slot's events are the exploration strategy's, whatever the rest of the list's.
            strategy = attribution.EXPLORATION_STRATEGY if slot in served.explored else served.strategy
            row.update(placement=served.placement[:LABEL_MAX_LENGTH], strategy=strategy[:LABEL_MAX_LENGTH],
                       arm=served.arm[:LABEL_MAX_LENGTH], served_list=served.served_id)
            if served.explored:
                # A list with an exploration slot: the slot each product was shown in, from the signed
                # list (0-based; the beacon's own "position" is the client's word), so exploration's
                # click-through compares with the rest of its shelves position by position.
                row["context"] = {**(row.get("context") or {}), "slot": slot}


def _dedupe_prefix(owner, batch_key):
    """The batch's key within its owner: two visitors' batches never share dedupe keys."""
    who = f"user:{owner['user'].pk}" if owner["user"] is not None else f"visitor:{owner['visitor_key']}"
    prefix = f"{who}:{batch_key}"
    if len(prefix) <= DEDUPE_PREFIX_MAX_LENGTH:
        return prefix
    return "h" + hashlib.sha256(prefix.encode()).hexdigest()  # 65 characters, readable no more


def _owned_events(owner):
    if owner["user"] is not None:
        return Interaction.objects.filter(user=owner["user"])
    return Interaction.objects.filter(user__isnull=True, visitor_key=owner["visitor_key"])


def _check_client_quota(owner, interactions, batch_key):
    """Refuse a client batch that would take its owner past ``MAX_CLIENT_EVENTS_PER_DAY``.

    Counted in the database over the owner's newest events (index ``(owner, -timestamp)``),
    at most the allowance of them; a retried batch already stored is not counted again.
    """
    allowance = settings.MAX_CLIENT_EVENTS_PER_DAY
    if allowance is None:
        return
    now = interactions[0].timestamp
    window = _owned_events(owner).filter(timestamp__gt=now - CLIENT_QUOTA_WINDOW)
    if batch_key is not None and window.filter(dedupe_key=interactions[0].dedupe_key).exists():
        return  # a retry: _insert returns the first attempt's rows and stores nothing
    stored = window.order_by("-timestamp")[:allowance].count()
    excess = stored + len(interactions) - allowance
    if excess <= 0:
        return
    # The batch fits once ``excess`` of the stored events have left the 24-hour window.
    leaving = list(window.order_by("timestamp").values_list("timestamp", flat=True)[excess - 1:excess])
    retry_after = CLIENT_QUOTA_WINDOW.total_seconds()
    if leaving and excess <= stored:
        retry_after = max(1.0, (leaving[0] + CLIENT_QUOTA_WINDOW - now).total_seconds())
    raise EventQuotaExceeded(
        f"this visitor has stored {stored} events in the last 24 hours; at most {allowance} are "
        f"accepted (MAX_CLIENT_EVENTS_PER_DAY), so this batch of {len(interactions)} was refused",
        retry_after=int(math.ceil(retry_after)),
    )


def _insert(interactions, batch_key, dwell_reports):
    """Store the batch (dwell reports join their views); return the stored rows in batch order."""
    keys = [interaction.dedupe_key for interaction in interactions]
    # A retried batch finds its first attempt here and stores nothing again.
    stored = {} if batch_key is None else Interaction.objects.in_bulk(keys, field_name="dedupe_key")
    pending = [index for index, key in enumerate(keys) if key is None or key not in stored]
    joined = _join_dwell_reports([interactions[index] for index in pending if index in dwell_reports])
    fresh = [interactions[index] for index in pending if id(interactions[index]) not in joined]
    try:
        with transaction.atomic():
            Interaction.objects.bulk_create(fresh)
    except IntegrityError:
        if batch_key is None:
            raise
        # The same batch is being stored concurrently (a retry racing its first attempt): keep theirs.
        Interaction.objects.bulk_create(fresh, ignore_conflicts=True)
        stored = Interaction.objects.in_bulk(keys, field_name="dedupe_key")
        return [stored[key] for key in keys if key in stored]
    return [stored.get(interaction.dedupe_key) or joined.get(id(interaction)) or interaction
            for interaction in interactions]


def _join_dwell_reports(reports):
    """Give each dwell report's time to the owner's latest dwell-less view of its product.

    Returns {id(report): the view it joined}; a report without such a view is left to be
    stored as a view itself. Candidates are views the server recorded (no batch key): the
    report takes over its batch key, so a retried batch finds it. One query and one update for
    the batch.
    """
    if not reports:
        return {}
    first = reports[0]  # all events of a batch have the same owner
    owner = {"user_id": first.user_id} if first.user_id is not None else {
        "user__isnull": True, "visitor_key": first.visitor_key}
    slack = datetime.timedelta(seconds=DWELL_VIEW_SLACK_SECONDS)

    def earliest(report):
        return report.timestamp - datetime.timedelta(seconds=report.dwell_seconds) - slack

    candidates = list(
        Interaction.objects.select_for_update()
        .filter(**owner, event=EventType.VIEW, dwell_seconds__isnull=True, dedupe_key__isnull=True,
                product_id__in={report.product_id for report in reports},
                timestamp__gte=min(map(earliest, reports)),
                timestamp__lte=max(report.timestamp for report in reports))
        .order_by("-timestamp", "-pk")
    )
    joined = {}
    for report in reports:
        view = next((view for view in candidates if view.product_id == report.product_id
                     and earliest(report) <= view.timestamp <= report.timestamp), None)
        if view is None:
            continue
        candidates.remove(view)
        view.dwell_seconds, view.dedupe_key = report.dwell_seconds, report.dedupe_key
        joined[id(report)] = view
    if joined:
        Interaction.objects.bulk_update(list(joined.values()), ["dwell_seconds", "dedupe_key"])
    return joined


def _upsert_ratings(user, rating_events):
    """Store the newest score per product as the user's ``Rating``, ordered by the events' own time.

    A score only replaces one given at or before its event's time (``rated_at``), whichever
    order the batches arrive in. Safe under concurrent writers: missing rows are inserted
    first (a racing insert of the same pair waits on the unique constraint, then is ignored),
    then every row of the batch is locked and compared under the lock.
    """
    newest = {}
    for event in sorted(rating_events, key=lambda event: event.timestamp):
        newest[event.product_id] = event
    if not newest:
        return
    Rating.objects.bulk_create(
        [Rating(user=user, product_id=product_id, score=event.value, created_at=event.timestamp,
                rated_at=event.timestamp) for product_id, event in newest.items()],
        ignore_conflicts=True,
    )
    now = timezone.now()
    locked = Rating.objects.select_for_update().filter(user=user, product_id__in=list(newest)).order_by("pk")
    changed = []
    for rating in locked:
        event = newest[rating.product_id]
        if rating.rated_at < event.timestamp or (rating.rated_at == event.timestamp and rating.score != event.value):
            rating.score, rating.rated_at, rating.updated_at = event.value, event.timestamp, now
            changed.append(rating)
    if changed:
        Rating.objects.bulk_update(changed, ["score", "rated_at", "updated_at"])


# --- visitors -------------------------------------------------------------------------------------


def visitor_key_for(request, create=True):
    """Return the anonymous visitor's stable id, kept in the session ("" if none and not created).

    Not the session key itself: Django cycles that on login, while session data survives
    ``cycle_key``, so the receiver of ``user_logged_in`` still finds the visitor's id.
    """
    session = getattr(request, "session", None)
    if session is None:
        return ""
    key = session.get(settings.VISITOR_SESSION_KEY) or ""
    if not key and create:
        key = uuid.uuid4().hex
        session[settings.VISITOR_SESSION_KEY] = key
    return key


def record_for_request(request, events, *, trust, batch_key=None):
    """``record`` for whoever made the request: the signed-in user, else the session's visitor.

    ``trust`` has no default: the view says whether the events are the browser's word
    (``CLIENT``: the body of the request) or what the server itself saw (``SERVER``: the page
    it rendered).
    """
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return record(events, user=user, visitor_key=visitor_key_for(request, create=False), batch_key=batch_key,
                      trust=trust)
    return record(events, visitor_key=visitor_key_for(request), batch_key=batch_key, trust=trust)


def merge_visitor_into_user(visitor_key, user):
    """Move an anonymous visitor's events, ratings and profile to ``user``; return events moved.

    Events are reassigned, not copied, so nothing is counted twice; running it again moves
    nothing. The anonymous profile fills only the blanks of the account's profile.
    """
    if not visitor_key:
        return 0
    with transaction.atomic():
        unowned = Interaction.objects.filter(visitor_key=visitor_key, user__isnull=True)
        ratings = list(unowned.filter(event=EventType.RATING, value__isnull=False))
        moved = unowned.update(user=user)
        _upsert_ratings(user, ratings)
        _merge_profile(visitor_key, user)
    return moved


def _merge_profile(visitor_key, user):
    anonymous = UserProfile.objects.select_for_update().filter(visitor_key=visitor_key, user__isnull=True).first()
    if anonymous is None:
        return
    profile = UserProfile.objects.select_for_update().filter(user=user).first()
    if profile is None:
        anonymous.user, anonymous.visitor_key = user, None
        anonymous.save()
        return
    for name in PROFILE_MERGE_FIELDS:
        if getattr(profile, name) in (None, "") and getattr(anonymous, name) not in (None, ""):
            setattr(profile, name, getattr(anonymous, name))
    profile.attributes = {**(anonymous.attributes or {}), **(profile.attributes or {})}
    # A visitor who withdrew consent before logging in keeps it withdrawn.
    profile.personalization_consent = profile.personalization_consent and anonymous.personalization_consent
    anonymous.delete()
    profile.save()


# --- reading --------------------------------------------------------------------------------------


def recent_events(user=None, visitor_key="", limit=None, event_types=None):
    """Return a user's or visitor's latest events, newest first, as ``strategies.base.Event``.

    ``limit`` defaults to ``SESSION_HISTORY_LENGTH``. Impressions are left out unless asked for
    in ``event_types``: being shown a product says nothing about the visitor's taste.
    A strategy's ``Context.events`` are oldest first: reverse the list.
    """
    return [event for _, event in recent_event_rows(user, visitor_key, limit, event_types)]


def recent_event_rows(user=None, visitor_key="", limit=None, event_types=None):
    """``recent_events`` as ``(interaction pk, Event)`` pairs: the newest pk stamps what is known."""
    from .strategies.base import Event

    if user is not None and user.is_authenticated:
        queryset = Interaction.objects.filter(user=user)
    elif visitor_key:
        queryset = Interaction.objects.filter(visitor_key=visitor_key)
    else:
        return []
    if event_types is None:
        event_types = [event for event in EventType.values if event != EventType.IMPRESSION]
    limit = settings.SESSION_HISTORY_LENGTH if limit is None else limit
    rows = (
        queryset.filter(event__in=list(event_types))
        .order_by("-timestamp", "-pk")
        .values_list("pk", "product_id", "event", "timestamp", "dwell_seconds", "value")[:limit]
    )
    return [
        (pk, Event(item_id=str(product_id), event=event, timestamp=moment.timestamp(), dwell_seconds=dwell, value=value))
        for pk, product_id, event, moment, dwell, value in rows
    ]


def visitor_days_by_product(events, *, event_types=None, exclude_types=(), limit=None):
    """``[(product pk, visitor-days)]``, most first: for each product, how many distinct
    (visitor, UTC day) pairs have one of ``event_types`` (default any but ``exclude_types``).

    The database's own popularity counts (the bestseller shelf, the fallback list before any
    model is trained) count this way, as the trained models do (``data.weights``): 500
    purchases by one visitor on one day count once. ``events`` is the ``Interaction``
    queryset to count in (e.g. a time window). One GROUP BY query.
    """
    if event_types is not None:
        events = events.filter(event__in=list(event_types))
    if exclude_types:
        events = events.exclude(event__in=list(exclude_types))
    # Case, not Coalesce: Concat turns a NULL user_id into "", so "u" + NULL is "u", never NULL.
    visitor = Case(
        When(user_id__isnull=True, then=Concat(Value("v"), "visitor_key")),
        default=Concat(Value("u"), Cast("user_id", CharField())), output_field=CharField(),
    )
    visitor_day = Concat(visitor, Value("@"), Cast(TruncDate("timestamp"), CharField()), output_field=CharField())
    counted = (events.values("product").annotate(visitor_days=Count(visitor_day, distinct=True))
               .order_by("-visitor_days", "product").values_list("product", "visitor_days"))
    return list(counted if limit is None else counted[:limit])
