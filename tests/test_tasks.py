"""recommender.tasks: recording through Celery, retries on transient database errors, a real worker."""

import logging
import uuid

import pytest
from django.db import OperationalError, connection

from recommender.events import EventValidationError
from recommender.models import Interaction
from recommender.tasks import record_events_task
from recommender.testing.factories import make_product


@pytest.fixture
def products(db):
    return [make_product() for _ in range(2)]


def batch_of(products):
    return [{"product": str(product.pk), "event": "purchase", "value": 1} for product in products]


class FailingInserts:
    """A database execute wrapper that makes the first ``failures`` interaction inserts fail like a dropped connection."""

    def __init__(self, failures):
        self.failures = failures
        self.attempts = 0

    def __call__(self, execute, sql, params, many, context):
        if sql.startswith("INSERT") and "recommender_interaction" in sql:
            self.attempts += 1
            if self.attempts <= self.failures:
                raise OperationalError("server closed the connection unexpectedly")
        return execute(sql, params, many, context)


def test_task_records_for_a_visitor_and_is_safe_to_run_twice(products):
    """The task stores the batch for the visitor; run again with the same key it adds nothing."""
    kwargs = {"visitor_key": "v-1", "batch_key": "order-1"}
    assert record_events_task.apply(args=[batch_of(products)], kwargs=kwargs).get() == 2
    assert record_events_task.apply(args=[batch_of(products)], kwargs=kwargs).get() == 2
    assert Interaction.objects.filter(visitor_key="v-1").count() == 2


def test_task_finds_the_user_by_id(products, django_user_model, caplog):
    """A user id is looked up again; a user deleted meanwhile drops the batch with a warning."""
    user = django_user_model.objects.create_user("kim")
    record_events_task.apply(args=[batch_of(products)], kwargs={"user_id": user.pk}).get()
    assert Interaction.objects.filter(user=user).count() == 2
    with caplog.at_level(logging.WARNING, logger="recommender.tasks"):
        assert record_events_task.apply(args=[batch_of(products)], kwargs={"user_id": 10**9}).get() == 0
    assert "no longer exists" in caplog.text


def test_transient_database_error_is_retried(products):
    """An OperationalError on insert is retried and the batch is then stored once."""
    failing = FailingInserts(failures=1)
    with connection.execute_wrapper(failing):
        result = record_events_task.apply(
            args=[batch_of(products)], kwargs={"visitor_key": "v", "batch_key": "b"}, throw=False
        )
    assert result.get() == 2
    assert failing.attempts == 2
    assert Interaction.objects.count() == 2


def test_bad_events_are_not_retried(products):
    """A refused batch fails at once: retrying cannot fix bad data."""
    failing = FailingInserts(failures=0)
    with connection.execute_wrapper(failing):
        result = record_events_task.apply(
            args=[[{"product": str(products[0].pk), "event": "nope"}]], kwargs={"visitor_key": "v"}, throw=False
        )
    assert isinstance(result.result, EventValidationError)
    assert result.result.errors[0]["field"] == "event"
    assert result.state == "FAILURE"
    assert failing.attempts == 0


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_records_a_batch_through_the_broker(products):
    """A Celery worker consuming from the real broker runs the task and the events land in the database."""
    from celery.contrib.testing.worker import start_worker

    from shop_demo.celery import app

    # A queue of its own, so a worker of another test run on the same broker cannot take the task.
    queue = f"recommender-test-{uuid.uuid4().hex}"
    with start_worker(app, pool="solo", perform_ping_check=False, queues=[queue], shutdown_timeout=30):
        result = record_events_task.apply_async(
            args=[batch_of(products)], kwargs={"visitor_key": "worker-visitor", "batch_key": "w-1"}, queue=queue
        )
        assert result.get(timeout=30) == 2
    assert sorted(Interaction.objects.filter(visitor_key="worker-visitor").values_list("dedupe_key", flat=True)) == [
        "visitor:worker-visitor:w-1:0",
        "visitor:worker-visitor:w-1:1",
    ]
