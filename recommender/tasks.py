"""Celery tasks of the app: thin wrappers that take ids and keys and call the service modules.

Every task is safe to run twice (docs/architecture.md, "Layers") and retries only transient errors, with backoff.
"""

import logging

from celery import shared_task
from django.contrib.auth import get_user_model
from django.db import OperationalError

from . import events

logger = logging.getLogger(__name__)

# Transient failures worth a retry: the database restarting or a connection dropped.
TRANSIENT_ERRORS = (OperationalError,)


@shared_task(
    autoretry_for=TRANSIENT_ERRORS,
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


# --- training, evaluation, embeddings, precomputation (service: recommender.training) ----------
# Training tasks run long: acks_late (with the settings' reject_on_worker_lost) hands a task back
# to the broker when its worker dies; the stale-row cleanup and the per-strategy lock make a
# second delivery safe. Only transient database, broker and cache errors are retried.
def _training_task(**options):
    from .training import TRANSIENT_ERRORS as training_transient_errors

    return shared_task(
        bind=True,
        acks_late=True,
        autoretry_for=training_transient_errors,
        retry_backoff=True,
        retry_backoff_max=600,
        retry_jitter=True,
        max_retries=5,
        **options,
    )


@_training_task()
def train_strategy_task(self, key, version_id=None):
    """Train, evaluate and (guardedly) activate one strategy; return the run's summary dict."""
    from . import training

    try:
        version = training.train_strategy(key, version_id=version_id, task_id=self.request.id or "")
    except training.TrainingRefused as refused:
        logger.info("train_strategy_task(%s) refused: %s", key, refused)
        return {"strategy": key, "version": version_id, "status": "refused", "outcome": f"refused: {refused}"}
    return training.run_summary(version)


@_training_task()
def train_all_task(self, keys=None):
    """Queue every trainable strategy in parallel, then the hybrid; return the chord's id."""
    from . import training

    return training.train_all(keys).id


@_training_task()
def embed_products_task(self):
    """Embed products whose text is new or changed into the shared embedding cache."""
    from . import embeddings

    return embeddings.embed_products()


@_training_task()
def evaluate_active_task(self):
    """Score every active version on users who arrived after it was trained; record the metrics."""
    from . import training

    return training.evaluate_active()


@_training_task()
def precompute_recommendations_task(self, strategy_key=None, chunk_size=None):
    """Fan the warm users out over workers in chunks (a group of ``precompute_chunk_task``)."""
    from . import precompute

    return precompute.fan_out(strategy_key, chunk_size)


@_training_task()
def precompute_chunk_task(self, strategy_key, version_id, user_pks):
    """Score one chunk of warm users with the active version and cache their lists."""
    from . import precompute

    return precompute.precompute_for_users(strategy_key, version_id, user_pks)


# --- admin actions (services: recommender.training, recommender.evaluation_runs) -------------------
@_training_task()
def activate_version_task(self, version_id):
    """Activate a ready version of its strategy (a rollback: no metric guardrail); return its id."""
    from . import training
    from .models import ModelVersion

    version = ModelVersion.objects.get(pk=version_id)
    return training.rollback(version.strategy, to_version_id=version.pk).pk


@_training_task()
def retire_version_task(self, version_id):
    """Retire a ready or failed version and delete its files; return its id."""
    from . import training

    return training.retire(version_id).pk


@_training_task()
def run_evaluation_task(self, run_id):
    """Run a queued offline evaluation of the shop's own data; return the run's status."""
    from . import evaluation_runs

    run = evaluation_runs.execute(run_id)
    return None if run is None else run.status
