"""Celery in one place: the app's tasks and every canvas that enqueues them.

Tasks are thin: they take ids and keys, re-fetch state and call one service function; every
task is safe to run twice and retries only transient errors, with backoff. The canvases (a
train-all's group of components and the chord that trains the hybrid after them, the
precomputation fan-out, single runs) are the ``queue_*`` and ``start_*`` functions below; they
create the rows a caller reports on before anything is enqueued. Entry points reach them
through ``recommender.jobs``, Celery beat through the tasks named in ``recommender.schedules``;
no service module imports this one. See docs/architecture.md, "The training layer".
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from celery import chord, group, shared_task
from django.contrib.auth import get_user_model
from django.db import OperationalError

from . import embeddings, evaluation_runs, events, precompute
from .conf import settings
from .models import ModelVersion
from .serving import loaded_models
from .versions import guardrail, live, records, run, specs

logger = logging.getLogger(__name__)


# --- events ----------------------------------------------------------------------------------------
@shared_task(
    autoretry_for=(OperationalError,),  # the database restarting or a connection dropped
    retry_backoff=True,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=8,
)
def record_events_task(events_batch, user_id=None, visitor_key="", batch_key=None):
    """Record a batch of JSON events for a user id or a visitor key; return how many are stored.

    Give a ``batch_key`` so that a redelivered or retried task stores the batch once.
    """
    user = None
    if user_id is not None:
        user = get_user_model()._default_manager.filter(pk=user_id).first()
        if user is None:
            logger.warning("record_events_task: user %s no longer exists; %d events dropped", user_id, len(events_batch))
            return 0
    return len(events.record(events_batch, user=user, visitor_key=visitor_key, batch_key=batch_key))


# --- training, evaluation, embeddings, precomputation ----------------------------------------------
# Training tasks run long: acks_late (with the settings' reject_on_worker_lost) hands a task back
# to the broker when its worker dies; the stale-row cleanup and the per-strategy lock make a
# second delivery safe. Only transient database, broker and cache errors are retried.
def _training_task(**options):
    return shared_task(
        bind=True,
        acks_late=True,
        autoretry_for=records.TRANSIENT_ERRORS,
        retry_backoff=True,
        retry_backoff_max=600,
        retry_jitter=True,
        max_retries=5,
        **options,
    )


def _train(key, version_id, task_id) -> dict:
    try:
        version = run.train_strategy(key, version_id=version_id, task_id=task_id or "")
    except records.TrainingRefused as refused:
        logger.info("Training %s refused: %s", key, refused)
        return run.refused_summary(key, refused, version_id)
    return run.run_summary(version)


@_training_task()
def train_strategy_task(self, key, version_id=None):
    """Train, evaluate and (guardedly) activate one strategy; return the run's summary dict."""
    return _train(key, version_id, self.request.id)


@_training_task()
def train_after_components_task(self, component_summaries, key, version_id=None):
    """The chord's body: train a composite (the hybrid) once its components' runs ended."""
    finished = [summary.get("strategy") for summary in component_summaries or () if isinstance(summary, dict)]
    logger.info("Training %s after its components %s", key, finished)
    return _train(key, version_id, self.request.id)


@_training_task()
def train_all_task(self, keys=None):
    """Celery beat's nightly retrain: ``start_train_all``; return the ids of the rows it created."""
    return start_train_all(keys).summary()


@_training_task()
def embed_products_task(self):
    """Embed products whose text is new or changed into the shared embedding cache."""
    return embeddings.embed_products()


@_training_task()
def evaluate_active_task(self):
    """Score every active version on users who arrived after it was trained; record the metrics."""
    return live.evaluate_active()


@_training_task()
def precompute_recommendations_task(self, strategy_key=None, chunk_size=None):
    """Celery beat's precomputation: ``queue_precompute`` (a group of ``precompute_chunk_task``)."""
    return queue_precompute(strategy_key, chunk_size)


@_training_task()
def precompute_chunk_task(self, strategy_key, version_id, user_pks):
    """Score one chunk of warm users with the active version and cache their lists."""
    return precompute.precompute_for_users(strategy_key, version_id, user_pks)


@_training_task()
def activate_version_task(self, version_id):
    """Activate a ready version of its strategy (a rollback: no metric guardrail); return its id."""
    return guardrail.activate_version(version_id).pk


@_training_task()
def retire_version_task(self, version_id):
    """Retire a ready or failed version and delete its files; return its id."""
    return guardrail.retire(version_id).pk


@_training_task()
def run_evaluation_task(self, run_id):
    """Run a queued offline evaluation of the shop's own data; return the run's status."""
    evaluation_run = evaluation_runs.execute(run_id)
    return None if evaluation_run is None else evaluation_run.status


# --- canvases ----------------------------------------------------------------------------------------
def queue_training(key: str) -> ModelVersion:
    """Create the ``training`` row of ``key`` now and queue the task that fills it.

    Raises ``TrainingRefused`` while ``key`` is training (and queues nothing).
    """
    task_id = str(uuid.uuid4())
    version = records.start_training(key, task_id=task_id)
    train_strategy_task.apply_async(args=(key,), kwargs={"version_id": version.pk}, task_id=task_id)
    return version


@dataclass
class TrainAll:
    """What ``start_train_all`` created: a row per started strategy, and who was refused why."""

    versions: dict[str, ModelVersion] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    result: object = None  # the Celery result of the group or chord

    def summary(self) -> dict:
        return {"versions": {key: version.pk for key, version in self.versions.items()}, "refused": self.refused}


def start_train_all(keys: Iterable[str] | None = None) -> TrainAll:
    """Train every trainable strategy: components in parallel (a group), then composites (a chord).

    Every row is created first: the components' rows, then each composite's, waiting for them
    (``records``: it stays alive while they run). A strategy already training is refused and
    left out; a composite then waits only for the components that started.
    """
    started = TrainAll()
    task_ids = {}
    ordered = specs.trainable_strategy_keys(keys)
    composites = [key for key in ordered if specs.is_composite(key)]
    for key in ordered:
        task_ids[key] = str(uuid.uuid4())
        waiting_for = [version.pk for other, version in started.versions.items()
                       if other not in composites] if key in composites else ()
        try:
            started.versions[key] = records.start_training(key, task_id=task_ids[key], waiting_for=waiting_for)
        except records.TrainingRefused as refused:
            started.refused[key] = str(refused)
    components = [train_strategy_task.si(key, version_id=version.pk).set(task_id=task_ids[key])
                  for key, version in started.versions.items() if key not in composites]
    after = [train_after_components_task.s(key, version_id=version.pk).set(task_id=task_ids[key])
             for key, version in started.versions.items() if key in composites]
    if not after:
        started.result = group(components).apply_async() if components else None
    elif not components:
        started.result = group(signature.clone(args=([],)) for signature in after).apply_async()
    else:
        started.result = chord(group(components))(after[0] if len(after) == 1 else group(after))
    return started


def queue_precompute(strategy_key: str | None = None, chunk_size: int | None = None) -> dict:
    """Queue one chunk task per ``chunk_size`` warm users of the active version (a group); return counts."""
    strategy_key = strategy_key or settings.DEFAULT_STRATEGY
    version_id = loaded_models.active_version_ids().get(strategy_key)
    if version_id is None:
        return {"strategy": strategy_key, "users": 0, "chunks": 0, "reason": "no active version"}
    user_pks = precompute.warm_user_pks()
    size = int(chunk_size or settings.PRECOMPUTE_CHUNK_SIZE)
    chunks = [user_pks[start:start + size] for start in range(0, len(user_pks), size)]
    if chunks:
        group(precompute_chunk_task.s(strategy_key, version_id, chunk) for chunk in chunks).apply_async()
    return {"strategy": strategy_key, "version": version_id, "users": len(user_pks), "chunks": len(chunks)}


def queue_evaluation(run_id: int) -> str:
    """Queue a created evaluation run; record and return its task id."""
    result = run_evaluation_task.delay(run_id)
    evaluation_runs.record_task_id(run_id, result.id or "")
    return result.id or ""
