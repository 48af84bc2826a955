"""Locks and run records: one live run per strategy, retries taking over their row, stale rows failed."""

import datetime

import pytest
from django.utils import timezone

from recommender.conf import settings
from recommender.models import ModelVersion
from recommender.versions import records, run

from .training_support import forget_training_cache_keys
from .training_support import fresh_versions_state, shop, toy  # noqa: F401 (fixtures)

Status = ModelVersion.Status
pytestmark = pytest.mark.usefixtures("fresh_versions_state")


def test_a_second_training_of_the_same_strategy_is_refused(shop, toy):
    """While a run is alive, another trigger is refused and creates no row, even without the cache lock."""
    running = records.start_training("toy")
    with pytest.raises(records.TrainingRefused, match="already training"):
        run.train_strategy("toy")
    forget_training_cache_keys()  # the database alone still refuses
    with pytest.raises(records.TrainingRefused, match=f"version {running.pk}"):
        run.train_strategy("toy")
    assert ModelVersion.objects.filter(strategy="toy").count() == 1
    assert run.train_strategy("toy2").status == Status.ACTIVE  # other strategies are not blocked


def test_a_retry_of_the_same_task_takes_over_its_own_row(shop, toy):
    """A Celery retry (same task id) continues the row its first attempt created."""
    first_attempt = records.start_training("toy", task_id="task-1")
    version = run.train_strategy("toy", task_id="task-1")
    assert version.pk == first_attempt.pk and version.status == Status.ACTIVE


def test_stale_training_rows_are_failed_by_the_cleanup(shop, toy):
    """A row without a heartbeat for longer than the limit is marked failed; training can start again."""
    dead = records.start_training("toy", task_id="dead-task")
    assert records.cleanup_stale_trainings() == []
    later = timezone.now() + datetime.timedelta(seconds=settings.TRAINING_STALE_SECONDS + 1)
    assert records.cleanup_stale_trainings(now=later) == [dead.pk]
    dead.refresh_from_db()
    assert dead.status == Status.FAILED and "dead-task" in dead.error
    assert run.train_strategy("toy").status == Status.ACTIVE


def test_run_given_a_version_id_trains_that_row(shop, toy):
    """A row created by the command (start_training) is the one the worker trains."""
    queued = records.start_training("toy")
    version = run.train_strategy("toy", version_id=queued.pk, task_id="worker-task")
    assert (version.pk, version.status, version.task_id) == (queued.pk, Status.ACTIVE, "worker-task")


def test_a_second_delivery_of_a_queued_row_is_refused(shop, toy):
    """A row another task has claimed is not trained a second time by a different task."""
    queued = records.start_training("toy")
    ModelVersion.objects.filter(pk=queued.pk).update(task_id="first-task")
    with pytest.raises(records.TrainingRefused, match="first-task"):
        run.train_strategy("toy", version_id=queued.pk, task_id="second-task")
