"""The one door to background work: the admin, the API and the management command start jobs here.

Each job creates the rows it will fill first (a training's ``ModelVersion``, an
``EvaluationRun``), so the caller can report on them at once, then enqueues the task or canvas of
``recommender.tasks``. Celery beat starts the same canvases through the tasks named in
``recommender.schedules``. Nothing below the entry points imports the tasks module; see
docs/architecture.md, "The training layer".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.db import transaction

from . import evaluation_runs, tasks
from .models import EvaluationRun, ModelVersion
from .versions.records import TrainingRefused

__all__ = ["TrainingRefused", "activate", "evaluate", "precompute", "retire", "train", "train_all"]


def train(key: str) -> ModelVersion:
    """Queue a run of ``key``; return its ``training`` row. ``TrainingRefused`` while ``key`` trains."""
    return tasks.queue_training(key)


def train_all(keys: Iterable[str] | None = None) -> tasks.TrainAll:
    """Queue every trainable strategy (or ``keys``): components in parallel, then the hybrid.

    Returns the rows created (``.versions``) and the strategies refused because they are
    training now (``.refused``).
    """
    return tasks.start_train_all(keys)


def activate(version_id: int):
    """Queue the activation of a ready version (a rollback to it); return the Celery result."""
    return tasks.activate_version_task.delay(version_id)


def retire(version_id: int):
    """Queue the retirement of a ready or failed version (its files are deleted); return the Celery result."""
    return tasks.retire_version_task.delay(version_id)


def evaluate(strategies: Sequence[str], folds: int = 3, reveals: Sequence[int] = evaluation_runs.DEFAULT_REVEALS,
             k: int = evaluation_runs.K) -> EvaluationRun:
    """Create a queued offline evaluation of the shop's own data; its task is queued after the commit."""
    run = evaluation_runs.start(strategies, folds=folds, reveals=reveals, k=k)
    transaction.on_commit(lambda: tasks.queue_evaluation(run.pk))
    return run


def precompute(strategy_key: str | None = None, chunk_size: int | None = None) -> dict:
    """Queue the precomputation of warm users' lists for the active version; return counts."""
    return tasks.queue_precompute(strategy_key, chunk_size)
