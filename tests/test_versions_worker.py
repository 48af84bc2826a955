"""Training on a real Celery worker through Redis, on PostgreSQL: retrain, refusal, and the kill test.

Run with the CI services (see .ci/run):

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test CELERY_BROKER_URL=redis://127.0.0.1:6379/0 \\
    CELERY_RESULT_BACKEND=redis://127.0.0.1:6379/0 REDIS_URL=redis://127.0.0.1:6379/1 \\
    .venv/bin/python -m pytest tests/test_versions_worker.py

The worker is a ``celery -A shop_demo worker`` subprocess on the test database
(``test_<name>``: pytest-django's), with the test strategies registered
(``tests.settings_training_worker``) and its own queue, so it never takes another run's tasks.
"""

import datetime
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone

from recommender import jobs
from recommender.versions import guardrail, records, run
from recommender.conf import settings
from recommender.serving import loaded_models
from recommender.models import ModelVersion
from recommender.tasks import train_strategy_task

from .training_support import BLOCKING_PATH, TOY_BLEND_PATH, TOY_PATH, routed_to, seed_shop, strategies_settings

pytestmark = [pytest.mark.worker, pytest.mark.postgres, pytest.mark.slow]
Status = ModelVersion.Status
REPO_ROOT = Path(__file__).resolve().parent.parent
WORKER_START_SECONDS = 60


def wait_until(predicate, timeout, what, worker=None):
    """Poll ``predicate`` (an external process is doing the work) until true or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if worker is not None and worker.poll() is not None:
            pytest.fail(f"the worker exited ({worker.returncode}) while waiting for {what}:\n{worker.log_text()}")
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout} s waiting for {what}" + (f":\n{worker.log_text()}" if worker else ""))


class Worker:
    """A ``celery worker`` subprocess in its own process group, on its own queue."""

    def __init__(self, log_path: Path, **env):
        self.queue = f"recommender-test-{uuid.uuid4().hex[:12]}"
        self.log_path = log_path
        database = connection.settings_dict
        environment = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings_training_worker",
            # The worker must use pytest-django's test database, not the one DATABASE_URL names.
            "DATABASE_URL": f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}",
            # ...and the same MEDIA_ROOT, where the artifacts are stored.
            "RECOMMENDER_TEST_VAR_DIR": str(django_settings.TEST_VAR_DIR),
            "RECOMMENDER_TEST_QUEUE": self.queue,  # what the worker queues itself (a chord's body)
            **env,
        }
        self.log = log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "shop_demo", "worker", "--pool=solo", "--loglevel=INFO",
             "-Q", self.queue, "-n", f"{self.queue}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=REPO_ROOT, env=environment, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        wait_until(lambda: "ready." in self.log_text(), WORKER_START_SECONDS, "the worker to start", self)

    def poll(self):
        return self.process.poll()

    @property
    def returncode(self):
        return self.process.returncode

    def log_text(self):
        return self.log_path.read_text() if self.log_path.exists() else ""

    def kill(self):
        """SIGKILL the whole process group: no cleanup code of the worker runs."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self.log.close()

    def forget_queue(self):
        """Remove this worker's queue and its unacknowledged messages from Redis."""
        import redis

        client = redis.Redis.from_url(os.environ["CELERY_BROKER_URL"])
        client.delete(self.queue, f"_kombu.binding.{self.queue}", f"_kombu.binding_permanent.{self.queue}")
        for tag, payload in client.hscan_iter("unacked"):
            if self.queue.encode() in payload:
                client.hdel("unacked", tag)
                client.zrem("unacked_index", tag)


@pytest.fixture
def start_worker(tmp_path):
    workers = []

    def start(**env):
        worker = Worker(tmp_path / f"worker-{len(workers)}.log", **env)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.kill()
        worker.forget_queue()


@pytest.fixture
def shop(transactional_db):
    loaded_models.forget_loaded_models()
    with strategies_settings(toy=TOY_PATH, toy2=TOY_PATH, toy_blend=TOY_BLEND_PATH, blocking=BLOCKING_PATH):
        yield seed_shop()
    loaded_models.forget_loaded_models()


def test_worker_trains_all_strategies_and_activates_them(shop, start_worker):
    """train_all's group runs on a real worker through Redis and activates a version of each strategy."""
    worker = start_worker()
    for key in ("toy", "toy2"):
        version = records.start_training(key)
        train_strategy_task.apply_async((key,), {"version_id": version.pk}, queue=worker.queue)
    wait_until(lambda: ModelVersion.objects.filter(status=Status.ACTIVE).count() == 2, 120,
               "both versions to become active", worker)
    for key in ("toy", "toy2"):
        assert loaded_models.get_active_strategy(key).version_id == guardrail.active_version(key).pk


def test_a_train_all_runs_its_chord_on_the_worker(shop, start_worker):
    """jobs.train_all's group and chord on a real worker through Redis: the components first, then the
    composite, handed the versions they just trained."""
    worker = start_worker()
    with routed_to(worker.queue):
        started = jobs.train_all(["toy_blend", "toy", "toy2"])
    blend_id = started.versions["toy_blend"].pk
    wait_until(lambda: ModelVersion.objects.get(pk=blend_id).status != Status.TRAINING, 180,
               "the composite to finish", worker)
    blend = ModelVersion.objects.get(pk=blend_id)
    assert blend.status == Status.ACTIVE, blend.error
    components = {key: started.versions[key].pk for key in ("toy", "toy2")}
    assert ModelVersion.objects.filter(pk__in=components.values(), status=Status.ACTIVE).count() == 2
    assert blend.metrics["components_given"] == {key: {"version": pk, "same_run": True} for key, pk in components.items()}
    assert blend.created_at < min(ModelVersion.objects.get(pk=pk).finished_at for pk in components.values())
    assert loaded_models.get_active_strategy("toy_blend").version_id == blend_id


def test_killing_the_worker_mid_training_keeps_the_previous_version_serving(shop, start_worker, tmp_path):
    """SIGKILL during a fit: the old version still serves, a second trigger is refused, the row ends failed."""
    previous = run.train_strategy("blocking")  # in this process: the version that must survive
    assert previous.status == Status.ACTIVE
    marker = tmp_path / "fit-started"
    worker = start_worker(TRAINING_TEST_MARKER=str(marker))
    doomed = records.start_training("blocking")
    train_strategy_task.apply_async(("blocking",), {"version_id": doomed.pk}, queue=worker.queue)
    wait_until(marker.exists, 120, "the worker to start fitting", worker)
    doomed.refresh_from_db()
    assert (doomed.status, doomed.stage) == (Status.TRAINING, "evaluate") and doomed.task_id

    with pytest.raises(records.TrainingRefused, match="already training"):
        run.train_strategy("blocking")

    worker.kill()

    loaded_models.forget_loaded_models()  # a serving process that starts now
    assert loaded_models.get_active_strategy("blocking").version_id == previous.pk
    assert records.cleanup_stale_trainings() == []  # not yet silent for long enough
    later = timezone.now() + datetime.timedelta(seconds=settings.TRAINING_STALE_SECONDS + 1)
    assert records.cleanup_stale_trainings(now=later) == [doomed.pk]
    doomed.refresh_from_db()
    previous.refresh_from_db()
    assert doomed.status == Status.FAILED and "worker running this training died" in doomed.error
    assert previous.status == Status.ACTIVE
    assert loaded_models.get_active_strategy("blocking").version_id == previous.pk
    assert doomed.metrics == {}  # it never got as far as an evaluation result
