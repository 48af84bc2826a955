"""Batch precomputation of recommendations for warm users, fanned out over Celery workers.

Warm signed-in users (at least ``PRECOMPUTE_MIN_EVENTS`` events, one of them in the last
``PRECOMPUTE_ACTIVE_DAYS`` days) are split into chunks of ``PRECOMPUTE_CHUNK_SIZE``; each chunk
is one task (a Celery group queued by ``tasks.queue_precompute``, so any number of workers share
the work) that scores its users in one ``score_batch`` call and stores each user's top
``PRECOMPUTE_SIZE`` in the cache under a key holding the active version id, so a new activation
makes old lists unreachable.

A stored list also holds the id of the user's latest event and their profile's version when it
was computed: serving's candidates step uses it only while the user has done nothing since and
kept their profile (``get_precomputed``), otherwise it scores live.
"""

from __future__ import annotations

import datetime

import numpy as np
from django.core.cache import caches
from django.db.models import Count, F, Max, Q, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from .conf import settings
from .models import EventType, Interaction, UserProfile
from .serving import loaded_models
from .serving.context import EVENT_COLUMNS, context_builder
from .serving.visitor import profile_version
from .strategies.base import Context, top_k_batch

KEY = "recommender:precomputed:{strategy}:{version}:{user}"


def _cache():
    return caches[settings.CACHE_ALIAS]


def cache_key(strategy_key: str, version_id: int, user_pk) -> str:
    return KEY.format(strategy=strategy_key, version=version_id, user=user_pk)


def warm_user_pks(now: datetime.datetime | None = None) -> list:
    """Signed-in users with enough events, recently active, not opted out; by primary key."""
    cutoff = (now or timezone.now()) - datetime.timedelta(days=settings.PRECOMPUTE_ACTIVE_DAYS)
    rows = (
        Interaction.objects.filter(user__isnull=False)
        .exclude(event=EventType.IMPRESSION)
        .exclude(user__recommender_profile__personalization_consent=False)
        .values("user_id")
        .annotate(events=Count("id"), latest=Max("timestamp"))
        .filter(events__gte=settings.PRECOMPUTE_MIN_EVENTS, latest__gte=cutoff)
        .order_by("user_id")
    )
    return [row["user_id"] for row in rows]


def precompute_for_users(strategy_key: str, version_id: int, user_pks: list, k: int | None = None) -> int:
    """Score ``user_pks`` with the active ``strategy_key`` and cache their lists; return how many.

    Does nothing (returns 0) when ``version_id`` is no longer the active version: the task was
    queued before an activation, and the new version gets its own run.
    """
    strategy = loaded_models.get_active_strategy(strategy_key)
    if strategy is None or getattr(strategy, "version_id", None) != version_id or not user_pks:
        return 0
    k = int(k or settings.PRECOMPUTE_SIZE)
    contexts, latest_event_ids, bought, profile_versions = user_contexts(user_pks)
    scores = strategy.score_batch(contexts).copy()
    for row, item_ids in enumerate(bought):
        positions = strategy.item_positions(item_ids)
        scores[row, positions[positions >= 0]] = -np.inf
    top = top_k_batch(scores, k)
    entries = {}
    for row, (user_pk, context, version) in enumerate(zip(user_pks, contexts, profile_versions)):
        positions = top[row][top[row] >= 0]
        entries[cache_key(strategy_key, version_id, user_pk)] = {
            "items": [str(item) for item in strategy.item_ids[positions]],
            "scores": scores[row, positions].tolist(),
            "reasons": strategy._explain(context, positions),
            "latest_event": latest_event_ids.get(user_pk, 0),
            "profile_version": version,
            "computed_at": timezone.now().isoformat(),
        }
    _cache().set_many(entries, timeout=settings.PRECOMPUTE_TIMEOUT)
    return len(entries)


def user_contexts(user_pks: list) -> tuple[list[Context], dict, list[set[str]], list[str]]:
    """Contexts of signed-in users (profile + latest events), their latest event ids, bought items
    and profile versions.

    Three queries whatever the number of users: profiles, the latest ``SESSION_HISTORY_LENGTH``
    events per user (a window function), and purchases.
    """
    builder = context_builder()
    profiles = {profile.user_id: profile for profile in UserProfile.objects.filter(user_id__in=user_pks)}
    recent = (
        Interaction.objects.filter(user_id__in=user_pks, event__in=builder.event_types)
        .annotate(newest_first=Window(RowNumber(), partition_by=[F("user_id")],
                                      order_by=[F("timestamp").desc(), F("pk").desc()]))
        .filter(newest_first__lte=builder.max_events)
        .order_by("user_id", "-timestamp", "-pk")
        .values_list("user_id", "pk", *EVENT_COLUMNS)
    )
    rows: dict = {}
    latest_event_ids: dict = {}
    for user_pk, pk, *event_row in recent:
        rows.setdefault(user_pk, []).append(event_row)
        latest_event_ids.setdefault(user_pk, pk)
    purchases = Interaction.objects.filter(Q(user_id__in=user_pks) & Q(event=EventType.PURCHASE)).values_list(
        "user_id", "product_id"
    )
    bought: dict = {}
    for user_pk, product_pk in purchases.distinct():
        bought.setdefault(user_pk, set()).add(str(product_pk))
    contexts = [
        builder.build(
            profile=profiles[user_pk].as_features() if user_pk in profiles and profiles[user_pk].personalization_consent else {},
            events=builder.events_from_rows(rows.get(user_pk, ())),
            user_id=user_pk,
        )
        for user_pk in user_pks
    ]
    versions = [profile_version(profiles.get(user_pk)) for user_pk in user_pks]
    return contexts, latest_event_ids, [bought.get(user_pk, set()) for user_pk in user_pks], versions


def get_precomputed(strategy_key: str, user_pk, latest_event_id=None, profile_version: str | None = None) -> dict | None:
    """The stored list of a user for the active version, or None (absent, stale or outdated).

    ``latest_event_id``: the id of the user's newest event that counts as context now; a list
    computed before it is outdated (the user did something since) and is not returned, nor is
    one computed before the profile last changed (``profile_version``). This is serving's read
    side (the candidates step); it costs one cache read and no query.
    """
    version_id = loaded_models.active_version_ids().get(strategy_key)
    if version_id is None:
        return None
    try:
        entry = _cache().get(cache_key(strategy_key, version_id, user_pk))
    except Exception:  # a cache outage: score live
        return None
    if entry is None:
        return None
    if latest_event_id is not None and str(entry["latest_event"]) != str(latest_event_id):
        return None
    if profile_version is not None and entry.get("profile_version") != profile_version:
        return None
    return entry
