"""Locks and run records: who may train a strategy now, and the row each run writes as it goes.

The lasting lock is the database row itself: a ``training`` row of the strategy whose heartbeat
(written every ``TRAINING_HEARTBEAT_SECONDS`` by a thread of the training process) is fresher
than ``TRAINING_STALE_SECONDS``. Checking for such a row and inserting ours is made atomic per
strategy by a short transaction-scoped lock: ``pg_advisory_xact_lock`` on PostgreSQL (a
``SELECT ... FOR UPDATE`` could not lock a row that does not exist yet), SQLite's database write
lock taken by a first no-op ``UPDATE`` (SQLite serialises writers), ``SELECT ... FOR UPDATE`` of
the strategy's rows elsewhere (InnoDB locks the index range). In front of it, a cache lock
(``cache.add`` with a timeout, refreshed by the heartbeat) refuses a second trigger without
touching the database when the cache is shared (Redis); it is only an optimisation, the database
decides. A worker that died leaves a row whose heartbeat stops: the cleanup at the start of every
training marks it failed.

A row created for a run that waits for other runs first (the hybrid of a train-all, queued after
its components) names them in ``timings["waiting_for"]``: it stays alive while they are, and for
``TRAINING_STALE_SECONDS`` after the last of them finished.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import traceback
from collections.abc import Callable, Iterable

from django.core.cache import caches
from django.db import InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from ..conf import settings
from ..models import ModelVersion
from ..strategies import registry

logger = logging.getLogger(__name__)
Status = ModelVersion.Status

LOCK_KEY = "recommender:training-lock:{}"
# The cache lock says "starting" only for the moment between the check and the row insert.
STARTING_LOCK_SECONDS = 60
WAITING_STAGE = "waiting"


def _transient_errors() -> tuple[type[BaseException], ...]:
    from kombu.exceptions import OperationalError as BrokerError
    from redis.exceptions import ConnectionError as RedisConnectionError, TimeoutError as RedisTimeoutError

    return (OperationalError, InterfaceError, BrokerError, RedisConnectionError, RedisTimeoutError)


# Database, broker and cache hiccups: worth a retry with backoff, never a failed model.
TRANSIENT_ERRORS = _transient_errors()


class TrainingRefused(RuntimeError):
    """Another training of the same strategy is running; this one was not started."""


class RunAbandoned(RuntimeError):
    """The row of a running training was given up (marked failed) by the stale cleanup."""


def cache():
    return caches[settings.CACHE_ALIAS]


def lock_strategy_rows(key: str) -> None:
    """Serialise check-then-write sections on ``key``'s rows until the transaction ends."""
    if connection.vendor == "postgresql":
        lock_id = int.from_bytes(hashlib.sha256(f"recommender.train:{key}".encode()).digest()[:8], "big", signed=True)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [lock_id])
    elif connection.vendor == "sqlite":
        # A write statement takes SQLite's database write lock for the rest of the transaction.
        ModelVersion.objects.filter(pk=-1).update(stage="")
    else:
        list(ModelVersion.objects.select_for_update().filter(strategy=key).values_list("pk"))


# --- stale rows ------------------------------------------------------------------------------------
def cleanup_stale_trainings(now=None) -> list[int]:
    """Mark ``training`` rows whose heartbeat stopped as failed; return their ids.

    A row's heartbeat is ``timings["heartbeat"]`` (epoch seconds), or its creation time when the
    run never wrote one; a row waiting for other runs also lives on theirs (see the module
    docstring). ``now`` (a datetime) is for tests.
    """
    now = now or timezone.now()
    limit = settings.TRAINING_STALE_SECONDS
    rows = list(ModelVersion.objects.filter(status=Status.TRAINING).values_list(
        "pk", "strategy", "created_at", "timings", "task_id"))
    awaited = {pk for *_, timings, _ in rows for pk in (timings or {}).get("waiting_for", ())}
    awaited_alive = _last_signs_of_life(awaited)
    stale = []
    for pk, key, created_at, timings, task_id in rows:
        timings = timings or {}
        alive_at = max([timings.get("heartbeat") or created_at.timestamp()]
                       + [awaited_alive.get(other, 0.0) for other in timings.get("waiting_for", ())])
        silent_for = now.timestamp() - alive_at
        if silent_for <= limit:
            continue
        error = (
            f"No heartbeat for {silent_for:.0f} s (limit {limit} s): the worker running this training "
            f"died or was killed{f' (task {task_id})' if task_id else ''}. The previous version kept serving."
        )
        marked = ModelVersion.objects.filter(pk=pk, status=Status.TRAINING).update(
            status=Status.FAILED, stage="failed", error=error, finished_at=now
        )
        if marked:
            stale.append(pk)
            logger.warning("Training v%s marked failed: %s", pk, error)
            if cache().get(LOCK_KEY.format(key)) == pk:
                cache().delete(LOCK_KEY.format(key))
    return stale


def _last_signs_of_life(version_ids: Iterable[int]) -> dict[int, float]:
    """{version id: epoch seconds of its last heartbeat, or when it finished}."""
    alive = {}
    for pk, timings, finished_at in ModelVersion.objects.filter(pk__in=list(version_ids)).values_list(
            "pk", "timings", "finished_at"):
        moments = [(timings or {}).get("heartbeat") or 0.0]
        if finished_at is not None:
            moments.append(finished_at.timestamp())
        alive[pk] = max(moments)
    return alive


# --- starting a run --------------------------------------------------------------------------------
def start_training(key: str, *, task_id: str = "", waiting_for: Iterable[int] = ()) -> ModelVersion:
    """Create the ``training`` row of a new run of ``key``, or raise ``TrainingRefused``.

    A ``training`` row with the same (non-empty) Celery ``task_id`` is taken over instead: it is
    this task's own earlier attempt (a retry or a redelivery after its worker was lost).
    ``waiting_for``: ids of the rows of runs this one starts after (it stays alive on theirs).
    """
    registry.get_strategy_class(key, settings.STRATEGIES)  # an unknown key fails here, with the known keys
    cleanup_stale_trainings()
    lock_key = LOCK_KEY.format(key)
    _claim_cache_lock(lock_key, key, task_id)
    waiting_for = [int(pk) for pk in waiting_for]
    try:
        with transaction.atomic():
            lock_strategy_rows(key)
            running = ModelVersion.objects.filter(strategy=key, status=Status.TRAINING)
            own = running.filter(task_id=task_id).first() if task_id else None
            if own is not None:
                version = own
                _reset(version)
            elif running.exists():
                raise TrainingRefused(
                    f"{key} is already training (version {running.values_list('pk', flat=True).first()}); "
                    "try again when it finishes"
                )
            else:
                timings = {"heartbeat": time.time(), **({"waiting_for": waiting_for} if waiting_for else {})}
                version = ModelVersion.objects.create(
                    strategy=key, status=Status.TRAINING, stage=WAITING_STAGE if waiting_for else "queued",
                    task_id=task_id, timings=timings,
                )
    except BaseException:
        if cache().get(lock_key) == "starting":
            cache().delete(lock_key)
        raise
    cache().set(lock_key, version.pk, timeout=settings.TRAINING_STALE_SECONDS)
    return version


def _claim_cache_lock(lock_key: str, key: str, task_id: str) -> None:
    """Take the cache lock of ``key`` or raise ``TrainingRefused``.

    The lock holds the training row's id; a lock whose row is no longer training (its run
    ended without releasing it) or belongs to this very task is taken over.
    """
    if cache().add(lock_key, "starting", timeout=STARTING_LOCK_SECONDS):
        return
    holder = cache().get(lock_key)
    if isinstance(holder, int):
        row = ModelVersion.objects.filter(pk=holder).values_list("status", "task_id").first()
        if row is None or row[0] != Status.TRAINING or (task_id and row[1] == task_id):
            cache().set(lock_key, "starting", timeout=STARTING_LOCK_SECONDS)
            return
    raise TrainingRefused(f"{key} is already training (version {holder}); try again when it finishes")


def _reset(version: ModelVersion) -> None:
    version.stage, version.progress, version.error = "queued", 0.0, ""
    version.timings = {"heartbeat": time.time()}
    version.save(update_fields=["stage", "progress", "error", "timings"])


def take_over(key: str, version_id: int, task_id: str) -> ModelVersion:
    """Claim a row made by ``start_training`` (e.g. by the jobs entry that queued this run)."""
    cleanup_stale_trainings()
    with transaction.atomic():
        lock_strategy_rows(key)
        version = ModelVersion.objects.select_for_update().filter(pk=version_id).first()
        if version is None or version.strategy != key:
            raise ValueError(f"version {version_id} is not a version of {key}")
        if version.status != Status.TRAINING:
            raise TrainingRefused(f"version {version_id} is {version.status}, not waiting to be trained: {version.error}")
        if version.task_id and version.task_id != task_id:
            raise TrainingRefused(f"version {version_id} is already being trained by task {version.task_id}")
        version.task_id = task_id or version.task_id
        version.stage = "queued"
        waiting_for = (version.timings or {}).get("waiting_for")  # kept: the runs this one came after
        version.timings = {"heartbeat": time.time(), **({"waiting_for": waiting_for} if waiting_for else {})}
        version.save(update_fields=["task_id", "stage", "timings"])
    cache().set(LOCK_KEY.format(key), version.pk, timeout=settings.TRAINING_STALE_SECONDS)
    return version


def release_lock(version: ModelVersion) -> None:
    """Drop the cache lock of ``version``'s strategy if this run holds it (best effort)."""
    lock_key = LOCK_KEY.format(version.strategy)
    if safe(lambda: cache().get(lock_key)) == version.pk:
        safe(lambda: cache().delete(lock_key))


# --- a run's row while it runs ---------------------------------------------------------------------
class RunRecorder:
    """Writes a run's stage, progress and heartbeat to its row; a thread keeps the heartbeat going.

    Every write is conditional on the row still being ``training``: once the stale cleanup has
    given a run up, the run can no longer move its row forward (``RunAbandoned``).
    """

    def __init__(self, version: ModelVersion, progress: Callable[[str, float], None] | None):
        self.version = version
        self.progress = progress
        self.timings = dict(version.timings or {})
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None

    def __enter__(self):
        interval = settings.TRAINING_HEARTBEAT_SECONDS
        if interval and interval > 0:
            self._thread = threading.Thread(target=self._beat_forever, args=(interval,), daemon=True,
                                            name=f"recommender-heartbeat-{self.version.pk}")
            self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _beat_forever(self, interval: float) -> None:
        try:
            while not self._stop.wait(interval):
                try:
                    self.write()
                    cache().touch(LOCK_KEY.format(self.version.strategy), settings.TRAINING_STALE_SECONDS)
                except RunAbandoned:
                    return
                except Exception:  # a missed beat is harmless; the next one retries
                    logger.warning("Heartbeat of v%s failed", self.version.pk, exc_info=True)
        finally:
            connection.close()  # this thread's own connection

    def write(self, **fields) -> None:
        with self._lock:
            self.timings["heartbeat"] = time.time()
            updated = ModelVersion.objects.filter(pk=self.version.pk, status=Status.TRAINING).update(
                timings=dict(self.timings), **fields
            )
        if not updated:
            raise RunAbandoned(f"{self.version} is no longer training (marked {self._status()}); stopping")
        for name, value in fields.items():
            setattr(self.version, name, value)

    def _status(self) -> str:
        return ModelVersion.objects.filter(pk=self.version.pk).values_list("status", flat=True).first() or "deleted"

    def stage(self, name: str, progress: float) -> None:
        self.write(stage=name, progress=round(float(progress), 4))
        if self.progress is not None:
            self.progress(name, float(progress))

    def timed(self, name: str, seconds: float) -> None:
        with self._lock:
            self.timings[f"{name}_seconds"] = round(seconds, 3)


def fail(version: ModelVersion, exc: BaseException) -> None:
    """Mark ``version`` failed with the error and the end of its traceback (best effort)."""
    error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    tail = "".join(traceback.format_tb(exc.__traceback__)[-3:])
    safe(lambda: ModelVersion.objects.filter(pk=version.pk, status=Status.TRAINING).update(
        status=Status.FAILED, stage="failed", error=f"{error}\n\n{tail}"[:10000], finished_at=timezone.now()
    ))


def safe(call):
    """Run a best-effort bookkeeping call; a broken database or cache must not mask the error."""
    try:
        return call()
    except Exception:
        logger.warning("Bookkeeping call failed", exc_info=True)
        return None
