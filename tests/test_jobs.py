"""The jobs entry: rows first, then the task or canvas (train-all, precomputation), eagerly here."""

import datetime
import io

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from recommender import jobs, precompute, tasks
from recommender.conf import settings
from recommender.models import Interaction, ModelVersion
from recommender.versions import records, run

from .training_support import TOY_BLEND_PATH, TOY_PATH, ToyBlend, strategies_settings
from .training_support import eager_tasks, fresh_versions_state, shop, toy  # noqa: F401 (fixtures)

Status = ModelVersion.Status
pytestmark = pytest.mark.usefixtures("fresh_versions_state")


def test_train_all_trains_every_given_strategy(shop, toy, eager_tasks):
    """train_all runs the group of strategies (eagerly here) and activates each."""
    jobs.train_all(["toy", "toy2"])
    active = set(ModelVersion.objects.filter(status=Status.ACTIVE).values_list("strategy", flat=True))
    assert active == {"toy", "toy2"}


def test_command_queues_tasks_when_not_sync(shop, toy, eager_tasks):
    """Without --sync the command queues tasks (eager here) and reports their rows."""
    out = io.StringIO()
    call_command("recommender_train", "--strategy", "toy", "--no-progress", stdout=out)
    assert "activated" in out.getvalue()


def test_precompute_stores_lists_for_warm_users(shop, toy, eager_tasks):
    """Warm users get a cached list for the active version; a new event makes it outdated."""
    products, users = shop
    version = run.train_strategy("toy")
    with override_settings(RECOMMENDER={**settings.user_settings, "STRATEGIES": {"toy": TOY_PATH},
                                        "PRECOMPUTE_MIN_EVENTS": 6, "DEFAULT_STRATEGY": "toy"}):
        summary = jobs.precompute(chunk_size=25)
        assert summary == {"strategy": "toy", "version": version.pk, "users": 60, "chunks": 3}
        latest = Interaction.objects.filter(user=users[0]).order_by("-timestamp", "-pk").first()
        stored = precompute.get_precomputed("toy", users[0].pk, latest_event_id=latest.pk)
        bought = {str(pk) for pk in Interaction.objects.filter(user=users[0], event="purchase")
                  .values_list("product_id", flat=True)}
        assert len(stored["items"]) == len(products) - len(bought)
        assert not set(stored["items"]) & bought
        assert precompute.get_precomputed("toy", users[0].pk, latest_event_id=latest.pk + 10_000) is None


@pytest.fixture
def toys_and_blend():
    """Two toy components and a toy composite built from them (registered like the hybrid)."""
    ToyBlend.fits_.clear()
    with strategies_settings(toy=TOY_PATH, toy2=TOY_PATH, toy_blend=TOY_BLEND_PATH):
        yield


def test_train_all_creates_every_row_first_and_the_blend_waits(shop, toys_and_blend, monkeypatch):
    """Before anything runs, each strategy has its row; the composite's names the rows it waits for,
    and the canvas is the components' group with the composite's task as the chord's body."""
    queued = {}

    def fake_chord(header):
        def apply(body):
            queued["header"], queued["body"] = header, body
        return apply

    monkeypatch.setattr(tasks, "chord", fake_chord)
    started = jobs.train_all(["toy_blend", "toy2", "toy"])
    assert list(started.versions)[-1] == "toy_blend" and len(started.versions) == 3 and not started.refused
    rows = {key: ModelVersion.objects.get(pk=version.pk) for key, version in started.versions.items()}
    assert all(row.status == Status.TRAINING for row in rows.values())
    blend = rows["toy_blend"]
    components = sorted(row.pk for key, row in rows.items() if key != "toy_blend")
    assert blend.stage == "waiting" and sorted(blend.timings["waiting_for"]) == components
    header_ids = sorted(signature.kwargs["version_id"] for signature in queued["header"].tasks)
    assert header_ids == components
    body = queued["body"]
    assert body.task == "recommender.tasks.train_after_components_task" and body.options["task_id"] == blend.task_id
    assert jobs.train_all(["toy"]).refused.keys() == {"toy"}  # training now: refused, nothing queued


def test_a_waiting_row_lives_as_long_as_what_it_waits_for(shop, toys_and_blend):
    """The stale cleanup leaves a waiting row alone while a component runs, and for the stale limit after it ended."""
    component = records.start_training("toy")
    waiting = records.start_training("toy_blend", waiting_for=[component.pk])
    much_later = timezone.now() + datetime.timedelta(seconds=settings.TRAINING_STALE_SECONDS + 60)
    ModelVersion.objects.filter(pk=waiting.pk).update(timings={**waiting.timings, "heartbeat": 0.0})
    ModelVersion.objects.filter(pk=component.pk).update(
        timings={"heartbeat": much_later.timestamp() - 10})  # the component beat a moment ago
    assert records.cleanup_stale_trainings(now=much_later) == []
    ModelVersion.objects.filter(pk=component.pk).update(status=Status.READY, finished_at=much_later)
    assert records.cleanup_stale_trainings(now=much_later) == []
    even_later = much_later + datetime.timedelta(seconds=settings.TRAINING_STALE_SECONDS + 1)
    assert records.cleanup_stale_trainings(now=even_later) == [waiting.pk]


def test_train_all_hands_the_blend_the_components_it_just_trained(shop, toys_and_blend, eager_tasks):
    """The composite is trained after its components and serves their new active versions, refitting none."""
    started = jobs.train_all(["toy_blend", "toy", "toy2"])
    assert list(started.versions)[-1] == "toy_blend"  # components first
    blend = ModelVersion.objects.get(pk=started.versions["toy_blend"].pk)
    assert blend.status == Status.ACTIVE
    components = {key: ModelVersion.objects.get(strategy=key, status=Status.ACTIVE).pk for key in ("toy", "toy2")}
    assert blend.metrics["components_given"] == {key: {"version": pk, "same_run": True} for key, pk in components.items()}
    # The held-out check fits both components itself (it may not serve fits that saw its held-out
    # users); the all-data fit fits none.
    assert sorted(ToyBlend.fits_) == ["toy", "toy2"]
