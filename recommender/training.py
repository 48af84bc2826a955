"""Training, guarded activation and rollback of strategy versions (the service behind the tasks).

One training run of a strategy (``train_strategy``):

1. refuse if another run of the same strategy is alive (see "Locking" below);
2. snapshot the database into a ``Dataset``;
3. fit once without a seeded share of the users and score them as brand-new users
   (reveal 0 and 3): the offline metrics of the version;
4. fit on all data, save the checksummed artifact, mark the row ``ready``;
5. activate it only if its key metric (NDCG@10 of new users at reveal 0) is not worse than the
   active version's by more than ``ACTIVATION_TOLERANCE`` (relative).

Any exception marks the row ``failed`` with the error; the active version is never touched
before step 5, and step 5 is one transaction.

Locking. The lasting lock is the database row itself: a ``training`` row of the strategy whose
heartbeat (written every ``TRAINING_HEARTBEAT_SECONDS`` by a thread of the training process) is
fresher than ``TRAINING_STALE_SECONDS``. Checking for such a row and inserting ours is made
atomic per strategy by a short transaction-scoped lock: ``pg_advisory_xact_lock`` on PostgreSQL
(a ``SELECT ... FOR UPDATE`` could not lock a row that does not exist yet), SQLite's database
write lock taken by a first no-op ``UPDATE`` (SQLite serialises writers), ``SELECT ... FOR
UPDATE`` of the strategy's rows elsewhere (InnoDB locks the index range). In front of it, a
cache lock (``cache.add`` with a timeout, refreshed by the heartbeat) refuses a second trigger
without touching the database when the cache is shared (Redis); it is only an optimisation,
the database decides. A worker that died leaves a row whose heartbeat stops: the cleanup at the
start of every training marks it failed.

Every activation bumps a version stamp in the Django cache (``bump_active_stamp``); serving
processes revalidate their loaded strategies against it (``recommender.serving.loaded_models``),
so a request costs one cache read and no database query.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import logging
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from django.core.cache import caches
from django.db import InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from . import artifacts
from .conf import settings
from .data.dataset import Dataset
from .models import ModelVersion
from .strategies import registry
from .strategies.base import Strategy, top_k_batch
from .strategies.context import HISTORY_MAX_EVENTS, ContextBuilder

logger = logging.getLogger(__name__)
Status = ModelVersion.Status

HYBRID_KEY = "hybrid"
KEY_METRIC = "ndcg"
KEY_K = 10
KEY_REVEAL = 0
REVEALS = (0, 3)
STAMP_KEY = "recommender:active-versions-stamp"
LOCK_KEY = "recommender:training-lock:{}"
SCORE_BATCH_SIZE = 256
# The cache lock says "starting" only for the moment between the check and the row insert.
STARTING_LOCK_SECONDS = 60


def _transient_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OperationalError, InterfaceError]
    try:
        from kombu.exceptions import OperationalError as BrokerError

        errors.append(BrokerError)
    except ImportError:  # pragma: no cover - kombu comes with celery
        pass
    try:
        from redis.exceptions import ConnectionError as RedisConnectionError, TimeoutError as RedisTimeoutError

        errors += [RedisConnectionError, RedisTimeoutError]
    except ImportError:
        pass
    return tuple(errors)


# Database, broker and cache hiccups: worth a retry with backoff, never a failed model.
TRANSIENT_ERRORS = _transient_errors()


class NothingToTrain(ValueError):
    """The shop has no products or no events yet: there is nothing to learn from."""


def check_trainable(dataset: Dataset) -> None:
    """Raise ``NothingToTrain`` with what to do when ``dataset`` cannot train any strategy."""
    counts = dataset.counts()
    if counts["items"] == 0 or counts["interactions"] == 0:
        raise NothingToTrain(
            f"Nothing to train on: the snapshot has {counts['items']} products and "
            f"{counts['interactions']} events. Import data (manage.py recommender_import DIR), "
            "seed the demo (manage.py seed_demo) or wait for visitors' events, then train again."
        )


class TrainingRefused(RuntimeError):
    """Another training of the same strategy is running; this one was not started."""


class ActivationError(RuntimeError):
    """The version cannot be activated (wrong status, no artifact, nothing to roll back to)."""


def _cache():
    return caches[settings.CACHE_ALIAS]


# --- which strategies ----------------------------------------------------------------------------
def trainable_strategy_keys(keys: Iterable[str] | None = None) -> list[str]:
    """Registered strategies whose code and dependencies import, components first, hybrid last."""
    available = []
    for key in registry.available_keys() if keys is None else keys:
        try:
            registry.get_strategy_class(key)
        except Exception as exc:  # a missing optional dependency, or a module not written yet
            if keys is not None:
                raise
            logger.info("Not training %s: %s", key, exc)
            continue
        available.append(key)
    return sorted(available, key=lambda key: key == HYBRID_KEY)


def strategy_params(key: str) -> dict:
    """Constructor params for training ``key``: the seed plus ``TRAINING_PARAMS[key]``."""
    return {"seed": settings.RANDOM_SEED, **(settings.TRAINING_PARAMS or {}).get(key, {})}


# --- starting, heartbeats, stale rows ------------------------------------------------------------
def _lock_strategy_rows(key: str) -> None:
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


def cleanup_stale_trainings(now=None) -> list[int]:
    """Mark ``training`` rows whose heartbeat stopped as failed; return their ids.

    A row's heartbeat is ``timings["heartbeat"]`` (epoch seconds), or its creation time when the
    run never wrote one. ``now`` (a datetime) is for tests.
    """
    now = now or timezone.now()
    limit = settings.TRAINING_STALE_SECONDS
    stale = []
    for pk, key, created_at, timings, task_id in ModelVersion.objects.filter(status=Status.TRAINING).values_list(
        "pk", "strategy", "created_at", "timings", "task_id"
    ):
        heartbeat = (timings or {}).get("heartbeat") or created_at.timestamp()
        silent_for = now.timestamp() - heartbeat
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
            if _cache().get(LOCK_KEY.format(key)) == pk:
                _cache().delete(LOCK_KEY.format(key))
    return stale


def queue_training(key: str) -> ModelVersion:
    """Create the ``training`` row of ``key`` now and queue the task that fills it.

    The row exists before any worker picks the task up, so callers (the API, the admin, the
    command) can report on it at once; raises ``TrainingRefused`` while ``key`` is training.
    """
    from .tasks import train_strategy_task

    task_id = str(uuid.uuid4())
    version = start_training(key, task_id=task_id)
    train_strategy_task.apply_async(args=(key,), kwargs={"version_id": version.pk}, task_id=task_id)
    return version


def start_training(key: str, *, task_id: str = "") -> ModelVersion:
    """Create the ``training`` row of a new run of ``key``, or raise ``TrainingRefused``.

    A ``training`` row with the same (non-empty) Celery ``task_id`` is taken over instead: it is
    this task's own earlier attempt (a retry or a redelivery after its worker was lost).
    """
    registry.get_strategy_class(key)  # an unknown key fails here, with the known keys listed
    cleanup_stale_trainings()
    lock_key = LOCK_KEY.format(key)
    _claim_cache_lock(lock_key, key, task_id)
    try:
        with transaction.atomic():
            _lock_strategy_rows(key)
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
                version = ModelVersion.objects.create(
                    strategy=key, status=Status.TRAINING, stage="queued", task_id=task_id,
                    timings={"heartbeat": time.time()},
                )
    except BaseException:
        if _cache().get(lock_key) == "starting":
            _cache().delete(lock_key)
        raise
    _cache().set(lock_key, version.pk, timeout=settings.TRAINING_STALE_SECONDS)
    return version


def _claim_cache_lock(lock_key: str, key: str, task_id: str) -> None:
    """Take the cache lock of ``key`` or raise ``TrainingRefused``.

    The lock holds the training row's id; a lock whose row is no longer training (its run
    ended without releasing it) or belongs to this very task is taken over.
    """
    if _cache().add(lock_key, "starting", timeout=STARTING_LOCK_SECONDS):
        return
    holder = _cache().get(lock_key)
    if isinstance(holder, int):
        row = ModelVersion.objects.filter(pk=holder).values_list("status", "task_id").first()
        if row is None or row[0] != Status.TRAINING or (task_id and row[1] == task_id):
            _cache().set(lock_key, "starting", timeout=STARTING_LOCK_SECONDS)
            return
    raise TrainingRefused(f"{key} is already training (version {holder}); try again when it finishes")


def _reset(version: ModelVersion) -> None:
    version.stage, version.progress, version.error = "queued", 0.0, ""
    version.timings = {"heartbeat": time.time()}
    version.save(update_fields=["stage", "progress", "error", "timings"])


def _take_over(key: str, version_id: int, task_id: str) -> ModelVersion:
    """Claim a row made by ``start_training`` (e.g. by the command that queued this run)."""
    cleanup_stale_trainings()
    with transaction.atomic():
        _lock_strategy_rows(key)
        version = ModelVersion.objects.select_for_update().filter(pk=version_id).first()
        if version is None or version.strategy != key:
            raise ValueError(f"version {version_id} is not a version of {key}")
        if version.status != Status.TRAINING:
            raise TrainingRefused(f"version {version_id} is {version.status}, not waiting to be trained: {version.error}")
        if version.task_id and version.task_id != task_id:
            raise TrainingRefused(f"version {version_id} is already being trained by task {version.task_id}")
        version.task_id = task_id or version.task_id
        version.timings = {"heartbeat": time.time()}
        version.save(update_fields=["task_id", "timings"])
    _cache().set(LOCK_KEY.format(key), version.pk, timeout=settings.TRAINING_STALE_SECONDS)
    return version


class _RunRecorder:
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
                    _cache().touch(LOCK_KEY.format(self.version.strategy), settings.TRAINING_STALE_SECONDS)
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


class RunAbandoned(RuntimeError):
    """The row of a running training was given up (marked failed) by the stale cleanup."""


# --- training ------------------------------------------------------------------------------------
def train_strategy(
    key: str,
    *,
    version_id: int | None = None,
    progress: Callable[[str, float], None] | None = None,
    task_id: str = "",
    dataset: Dataset | None = None,
    activate_if_better: bool = True,
) -> ModelVersion:
    """Train ``key`` on the database, evaluate, save and (guardedly) activate; return the row.

    Parameters
    ----------
    key
        Registered strategy key.
    version_id
        A ``training`` row already created by ``start_training`` (e.g. by the command that
        queued this run); None creates one.
    progress
        Optional ``callable(stage, fraction)`` called as the run advances.
    task_id
        The Celery task id running this, recorded on the row.
    dataset
        A snapshot to reuse (the command trains several strategies on one); None reads the
        database.
    activate_if_better
        False trains and saves without touching the active version.

    Returns
    -------
    ModelVersion
        ``ready`` or ``active`` on success, ``failed`` (with ``error``) when the strategy
        raised. Raises ``TrainingRefused`` when another run of ``key`` is alive, and re-raises
        ``TRANSIENT_ERRORS`` (after marking the row failed when the database allows) so the task
        retries.
    """
    version = _take_over(key, version_id, task_id) if version_id else start_training(key, task_id=task_id)
    try:
        with _RunRecorder(version, progress) as run:
            _run(run, key, dataset, activate_if_better)
    except RunAbandoned as exc:
        logger.warning("%s", exc)
    except TRANSIENT_ERRORS as exc:
        _fail(version, exc)
        raise
    except Exception as exc:
        logger.exception("Training %s v%s failed", key, version.pk)
        _fail(version, exc)
    except BaseException as exc:  # Ctrl-C, SystemExit, a Celery time limit: fail the row, then stop
        _fail(version, exc)
        raise
    finally:
        if _safe(lambda: _cache().get(LOCK_KEY.format(key))) == version.pk:
            _safe(lambda: _cache().delete(LOCK_KEY.format(key)))
    version.refresh_from_db()
    return version


# Params that make the held-out evaluation fit cheaper without changing what it measures much:
# the hybrid's second, all-data refit of its components is skipped there (it is done once, for
# the version that is saved).
EVALUATION_OVERRIDES = {"refit": False}


@contextlib.contextmanager
def _training_params(key: str):
    """``strategy_params(key)`` completed for this run.

    Strategies that take an ``embedding_cache`` get the shared embedding cache file (so only
    new or changed product texts are embedded); a strategy with ``component_params`` (the
    hybrid, which fits its own components) passes each component its ``TRAINING_PARAMS`` and
    the cache too, explicit ``component_params`` winning.
    """
    from .embeddings import shared_embedding_cache

    params = strategy_params(key)
    klass = registry.get_strategy_class(key)
    components = _component_classes(klass, params)
    wants_cache = [c for c in (klass, *components.values()) if "embedding_cache" in c.default_params]
    cache = shared_embedding_cache(params.get("text_model")) if wants_cache else contextlib.nullcontext()
    with cache as cache_path:
        if "embedding_cache" in klass.default_params and not params.get("embedding_cache"):
            params["embedding_cache"] = str(cache_path)
        if components:
            explicit = params.get("component_params") or {}
            params["component_params"] = {
                component: {
                    **({"embedding_cache": str(cache_path)} if "embedding_cache" in component_class.default_params else {}),
                    **{name: value for name, value in strategy_params(component).items() if name != "seed"},
                    **explicit.get(component, {}),
                }
                for component, component_class in components.items()
            }
        yield params


def _component_classes(klass, params: dict) -> dict:
    """{component key: class} of a strategy that fits components of its own (importable ones)."""
    if "component_params" not in klass.default_params:
        return {}
    classes = {}
    for component in params.get("components") or klass.default_params.get("components") or ():
        try:
            classes[component] = registry.get_strategy_class(component)
        except Exception:
            continue  # the strategy itself reports the components it cannot import
    return classes


def _run(run: _RunRecorder, key: str, dataset: Dataset | None, activate_if_better: bool) -> None:
    with _training_params(key) as params:
        _train_and_save(run, key, params, dataset)
    if activate_if_better:
        activate_if_not_worse(run.version)
    artifacts.prune(key)
    if run.progress is not None:
        run.progress("done", 1.0)


def _train_and_save(run: _RunRecorder, key: str, params: dict, dataset: Dataset | None) -> None:
    version = run.version
    run.stage("snapshot", 0.0)
    started = time.monotonic()
    if dataset is None:
        from .data.snapshot import build_dataset_from_db

        dataset = build_dataset_from_db(progress=lambda fraction: run.stage("snapshot", 0.15 * fraction))
    run.timed("snapshot", time.monotonic() - started)
    run.write(data_counts=dict(dataset.meta.get("counts") or dataset.counts()), params=params)
    check_trainable(dataset)

    run.stage("evaluate", 0.15)
    started = time.monotonic()
    klass = registry.get_strategy_class(key)
    refit = settings.TRAINING_REFIT_ON_ALL_DATA
    evaluation_params = {**params, **{name: value for name, value in EVALUATION_OVERRIDES.items()
                                      if refit and name in klass.default_params}}
    metrics, evaluated = fit_and_evaluate(
        lambda: klass(**evaluation_params), dataset, on_fitted=lambda: run.stage("evaluate", 0.4)
    )
    run.timed("evaluate", time.monotonic() - started)

    if refit or evaluated is None:
        run.stage("fit", 0.5)
        started = time.monotonic()
        strategy = klass(**params).fit(dataset)
        run.timed("fit", time.monotonic() - started)
        metrics["fitted_on"] = "all data"
    else:
        strategy = evaluated
        metrics["fitted_on"] = "all data but the held-out users (TRAINING_REFIT_ON_ALL_DATA is off)"

    run.stage("save", 0.85)
    started = time.monotonic()
    artifacts.save_artifact(strategy, version)
    run.timed("save", time.monotonic() - started)
    run.timed("total", time.monotonic() - run.started)
    run.write(
        status=Status.READY, stage="done", progress=1.0, metrics=metrics,
        params=_jsonable(strategy.params), finished_at=timezone.now(),
    )


def _fail(version: ModelVersion, exc: BaseException) -> None:
    error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    tail = "".join(traceback.format_tb(exc.__traceback__)[-3:])
    _safe(lambda: ModelVersion.objects.filter(pk=version.pk, status=Status.TRAINING).update(
        status=Status.FAILED, stage="failed", error=f"{error}\n\n{tail}"[:10000], finished_at=timezone.now()
    ))


def _safe(call):
    """Run a best-effort bookkeeping call; a broken database or cache must not mask the error."""
    try:
        return call()
    except Exception:
        logger.warning("Bookkeeping call failed", exc_info=True)
        return None


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


# --- offline evaluation on held-out new users ---------------------------------------------------
@dataclass
class HoldoutSplit:
    """Seeded held-out users and the row masks the new-user protocol needs."""

    train: Dataset
    cold_user_ids: np.ndarray
    cold_rows: np.ndarray  # interaction rows of the cold users (full dataset)
    rank: np.ndarray  # per interaction row: how many earlier events its user has
    relevant: np.ndarray  # per interaction row: counts as relevant
    info: dict = field(default_factory=dict)


def holdout_split(dataset: Dataset, *, share: float | None = None, max_users: int | None = None,
                  seed: int | None = None, positive_threshold: float | None = None) -> HoldoutSplit | None:
    """Remove a seeded share of the users with events; None when there are too few users."""
    from .evaluation.protocols import event_rank_within_user, interacting_user_ids, relevant_mask

    share = settings.TRAINING_HOLDOUT_SHARE if share is None else share
    max_users = settings.TRAINING_HOLDOUT_MAX_USERS if max_users is None else max_users
    seed = settings.RANDOM_SEED if seed is None else seed
    threshold = settings.TRAINING_POSITIVE_THRESHOLD if positive_threshold is None else positive_threshold
    user_ids = interacting_user_ids(dataset)
    n_cold = min(int(max_users), int(round(len(user_ids) * share)))
    if n_cold < 1 or n_cold >= len(user_ids):
        return None
    cold_user_ids = np.random.default_rng(seed).choice(user_ids, size=n_cold, replace=False)
    cold_rows = dataset.interactions["user_id"].isin(set(cold_user_ids)).to_numpy()
    info = {"users": int(n_cold), "share": share, "seed": seed, "positive_threshold": threshold, "k": KEY_K}
    return HoldoutSplit(
        train=dataset.without_users(cold_user_ids),
        cold_user_ids=np.asarray(cold_user_ids, dtype=object),
        cold_rows=cold_rows,
        rank=event_rank_within_user(dataset),
        relevant=relevant_mask(dataset, threshold),
        info=info,
    )


def evaluate_new_users(make_strategy: Callable[[], Strategy], dataset: Dataset, *,
                       reveals: Sequence[int] = REVEALS, k: int = KEY_K) -> dict:
    """New-user protocol on one seeded hold-out: fit without the held-out users, score them.

    Returns the ``metrics`` dict recorded on a ``ModelVersion``: ``key_value`` (NDCG@10 at
    reveal 0, None when no held-out user has a relevant event), ``new_user`` ({reveal: {ndcg,
    recall, precision, hr, mrr, coverage, users}}) and ``holdout`` (the split's parameters).
    """
    return fit_and_evaluate(make_strategy, dataset, reveals=reveals, k=k)[0]


def fit_and_evaluate(make_strategy: Callable[[], Strategy], dataset: Dataset, *,
                     reveals: Sequence[int] = REVEALS, k: int = KEY_K,
                     on_fitted: Callable[[], None] | None = None) -> tuple[dict, Strategy | None]:
    """``evaluate_new_users``, also returning the strategy fitted without the held-out users.

    The strategy is None when the data has too few users to hold any out (nothing is fitted).
    """
    split = holdout_split(dataset)
    if split is None:
        return {"key_metric": _key_metric_name(), "key_value": None, "new_user": {},
                "holdout": {"users": 0, "reason": "too few users with events to hold any out"}}, None
    strategy = make_strategy().fit(split.train)
    if on_fitted is not None:
        on_fitted()
    results = {str(reveal): score_new_users(strategy, dataset, split, reveal, k) for reveal in reveals}
    key_result = results.get(str(KEY_REVEAL), {})
    metrics = {
        "key_metric": _key_metric_name(),
        "key_value": key_result.get(KEY_METRIC) if key_result.get("users") else None,
        "new_user": results,
        "holdout": split.info,
    }
    return metrics, strategy


def _key_metric_name() -> str:
    return f"{KEY_METRIC}@{KEY_K} of new users at reveal {KEY_REVEAL}"


def score_new_users(strategy: Strategy, dataset: Dataset, split: HoldoutSplit, reveal: int, k: int) -> dict:
    """Metrics @k for the held-out users given their first ``reveal`` events as context."""
    from .evaluation.metrics import catalogue_coverage, ranking_metrics
    from .evaluation.protocols import relevance_matrix

    test_rows = split.cold_rows & (split.rank >= reveal) & split.relevant
    user_ids = pd.unique(dataset.interactions["user_id"].to_numpy()[test_rows])
    if len(user_ids) == 0:
        return {"users": 0}
    item_index = pd.Index(strategy.item_ids)
    relevant = relevance_matrix(dataset, user_ids, test_rows, item_index=item_index)
    revealed_mask = split.cold_rows & (split.rank < reveal)
    revealed = dataset.interactions[revealed_mask]
    contexts = ContextBuilder(HISTORY_MAX_EVENTS).from_dataset(dataset, user_ids, revealed_mask)
    revealed_rows = pd.Index(user_ids).get_indexer(revealed["user_id"])
    revealed_cols = item_index.get_indexer(revealed["item_id"])
    top = np.empty((len(user_ids), k), dtype=np.int64)
    for start in range(0, len(user_ids), SCORE_BATCH_SIZE):
        stop = start + SCORE_BATCH_SIZE
        scores = strategy.score_batch(contexts[start:stop]).copy()
        in_batch = (revealed_rows >= start) & (revealed_rows < stop) & (revealed_cols >= 0)
        scores[revealed_rows[in_batch] - start, revealed_cols[in_batch]] = -np.inf
        top[start:stop] = top_k_batch(scores, k)
    per_user = ranking_metrics(top, relevant, k)
    result = {name: float(np.nanmean(values)) for name, values in per_user.items()}
    result["coverage"] = catalogue_coverage(top, len(item_index))
    result["users"] = int(len(user_ids))
    return result


def evaluate_active(dataset: Dataset | None = None, *, k: int = KEY_K) -> dict:
    """Score each active version on users who arrived after its training data was taken.

    Those users are truly new to the model, so this is the new-user protocol on live data, with
    no refit. Products added since are made known through ``add_items`` on a private copy.
    Records ``metrics["live"]`` on each version; returns ``{strategy: live metrics}``.
    """
    from .data.snapshot import build_dataset_from_db
    from .evaluation.protocols import event_rank_within_user, relevant_mask

    dataset = dataset if dataset is not None else build_dataset_from_db()
    first_seen = dataset.interactions.groupby("user_id", sort=False)["timestamp"].transform("min").to_numpy()
    rank = event_rank_within_user(dataset)
    relevant = relevant_mask(dataset, settings.TRAINING_POSITIVE_THRESHOLD)
    results = {}
    for version in ModelVersion.objects.filter(status=Status.ACTIVE).order_by("strategy"):
        snapshot_at = (version.data_counts or {}).get("snapshot_at")
        if not snapshot_at:
            continue
        cutoff = datetime.datetime.fromisoformat(snapshot_at).timestamp()
        cold_rows = first_seen > cutoff
        strategy = artifacts.load_artifact(version)
        strategy.add_items(dataset.items[~dataset.items.index.isin(strategy.item_ids)])
        split = HoldoutSplit(train=dataset, cold_user_ids=np.asarray([], dtype=object), cold_rows=cold_rows,
                             rank=rank, relevant=relevant)
        live = {
            "since": snapshot_at,
            "evaluated_at": timezone.now().isoformat(),
            "new_user": {str(reveal): score_new_users(strategy, dataset, split, reveal, k) for reveal in REVEALS},
        }
        ModelVersion.objects.filter(pk=version.pk).update(metrics={**(version.metrics or {}), "live": live})
        results[version.strategy] = live
    return results


# --- activation ------------------------------------------------------------------------------------
def active_version(key: str) -> ModelVersion | None:
    return ModelVersion.objects.filter(strategy=key, status=Status.ACTIVE).first()


def activation_verdict(version: ModelVersion) -> tuple[bool, str]:
    """Whether ``version`` may replace the active version of its strategy, and why."""
    current = ModelVersion.objects.filter(strategy=version.strategy, status=Status.ACTIVE).exclude(pk=version.pk).first()
    new_value = _metric(version)
    if current is None:
        return True, "first active version"
    old_value = _metric(current)
    if old_value is None:
        return True, f"active v{current.pk} has no key metric to compare with"
    if new_value is None:
        return False, f"not evaluated (no held-out new user with a relevant event); active v{current.pk} kept"
    tolerance = float(settings.ACTIVATION_TOLERANCE)
    floor = old_value * (1.0 - tolerance)
    comparison = f"{KEY_METRIC}@{KEY_K} {new_value:.4f} vs active v{current.pk} {old_value:.4f}"
    if new_value < floor:
        return False, f"{comparison}: worse by more than {tolerance:.0%}"
    return True, comparison


def _metric(version: ModelVersion) -> float | None:
    value = (version.metrics or {}).get("key_value")
    return None if value is None or not np.isfinite(value) else float(value)


def activate_if_not_worse(version: ModelVersion) -> bool:
    """Activate ``version`` if the guardrail allows; record the decision in its metrics."""
    allowed, reason = activation_verdict(version)
    if allowed:
        try:
            activate(version)
        except (ActivationError, artifacts.ArtifactError) as exc:
            allowed, reason = False, f"activation refused: {exc}"
    metrics = {**(version.metrics or {}), "guardrail": {
        "activated": allowed, "reason": reason, "tolerance": float(settings.ACTIVATION_TOLERANCE),
    }}
    ModelVersion.objects.filter(pk=version.pk).update(metrics=metrics)
    version.metrics = metrics
    logger.info("%s: %s (%s)", version, "activated" if allowed else "not activated", reason)
    return allowed


def activate(version: ModelVersion) -> ModelVersion:
    """Make ``version`` the active one of its strategy, in one transaction; return it.

    The artifact is downloaded and verified first: a half-written or corrupted artifact is never
    activated (``ArtifactError``). The previous active version becomes ``ready`` (a rollback
    target). The cache stamp is bumped after the commit so serving processes reload.
    """
    artifacts.fetch_artifact(version)
    with transaction.atomic():
        _lock_strategy_rows(version.strategy)
        locked = ModelVersion.objects.select_for_update().filter(pk=version.pk).first()
        if locked is None or locked.status not in (Status.READY, Status.ACTIVE):
            status = locked.status if locked else "deleted"
            raise ActivationError(f"{version} is {status}; only a ready version can be activated")
        if locked.checksum != version.checksum or not locked.checksum:
            raise ActivationError(f"{version}: the artifact changed since it was verified")
        if locked.status == Status.ACTIVE:
            return locked
        previous = list(
            ModelVersion.objects.select_for_update().filter(strategy=version.strategy, status=Status.ACTIVE)
        )
        ModelVersion.objects.filter(pk__in=[row.pk for row in previous]).update(status=Status.READY)
        now = timezone.now()
        ModelVersion.objects.filter(pk=version.pk).update(status=Status.ACTIVE, activated_at=now)
        transaction.on_commit(bump_active_stamp)
    version.status, version.activated_at = Status.ACTIVE, now
    return version


def rollback(strategy_key: str, to_version_id: int | None = None) -> ModelVersion:
    """Activate an earlier version of ``strategy_key`` (by default the last one active before).

    Skips the metric guardrail: a rollback is a human decision. Raises ``ActivationError`` when
    there is nothing to roll back to.
    """
    candidates = ModelVersion.objects.filter(strategy=strategy_key, status=Status.READY).exclude(checksum="")
    if to_version_id is not None:
        target = candidates.filter(pk=to_version_id).first()
        if target is None:
            raise ActivationError(
                f"version {to_version_id} of {strategy_key} is not a ready version with an artifact; "
                f"ready versions: {list(candidates.values_list('pk', flat=True))}"
            )
    else:
        target = candidates.filter(activated_at__isnull=False).order_by("-activated_at").first()
        if target is None:
            raise ActivationError(f"{strategy_key} has no earlier active version to roll back to")
    return activate(target)


# --- the activation stamp (serving's loaded-model registry reads it: recommender/serving/loaded_models.py)
def bump_active_stamp() -> str:
    """Tell every serving process that the active versions changed."""
    stamp = uuid.uuid4().hex
    _cache().set(STAMP_KEY, stamp, timeout=None)
    return stamp


def active_versions_stamp() -> str:
    """A string that changes on every activation (for cache keys of served recommendations)."""
    stamp = _cache().get(STAMP_KEY)
    if stamp is None:
        _cache().add(STAMP_KEY, uuid.uuid4().hex, timeout=None)
        stamp = _cache().get(STAMP_KEY) or "unknown"
    return stamp


# --- orchestration ---------------------------------------------------------------------------------
def train_all(keys: Iterable[str] | None = None):
    """Queue every trainable strategy: components in parallel (a group), then the hybrid (a chord).

    Returns the Celery result of the group or chord.
    """
    from celery import chord, group

    from .tasks import train_strategy_task

    keys = trainable_strategy_keys(keys)
    components = [train_strategy_task.si(key) for key in keys if key != HYBRID_KEY]
    if HYBRID_KEY not in keys:
        return group(components).apply_async()
    if not components:
        return train_strategy_task.si(HYBRID_KEY).apply_async()
    return chord(group(components))(train_strategy_task.si(HYBRID_KEY))


def run_summary(version: ModelVersion) -> dict:
    """What a task returns and the command prints about one run."""
    guardrail = (version.metrics or {}).get("guardrail", {})
    if version.status == Status.FAILED:
        outcome = f"failed: {version.error.splitlines()[0] if version.error else 'unknown error'}"
    elif guardrail:
        outcome = "activated" if guardrail.get("activated") else f"not activated: {guardrail.get('reason')}"
    else:
        outcome = version.status
    return {
        "strategy": version.strategy,
        "version": version.pk,
        "status": version.status,
        "seconds": (version.timings or {}).get("total_seconds"),
        "key_value": (version.metrics or {}).get("key_value"),
        "activated": bool(guardrail.get("activated")) and version.status == Status.ACTIVE,
        "outcome": outcome,
    }



# --- retiring (the admin's "retire" action) --------------------------------------------------------
def retire(version_id: int) -> ModelVersion:
    """Retire a ready or failed version for good: mark it ``retired`` and delete its files.

    The active version is refused (activate or roll back to another one first), and so is a
    running training. Retiring an already retired version does nothing (safe to run twice).
    """
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().filter(pk=version_id).first()
        if version is None:
            raise ActivationError(f"version {version_id} does not exist")
        if version.status in (Status.ACTIVE, Status.TRAINING):
            raise ActivationError(
                f"{version} is {version.status}: "
                + ("activate another version or roll back first" if version.status == Status.ACTIVE
                   else "wait until it finishes")
            )
        ModelVersion.objects.filter(pk=version.pk).update(status=Status.RETIRED)
        version.status = Status.RETIRED
    if version.artifact_path:
        artifacts.delete_artifact(version)
    return version
