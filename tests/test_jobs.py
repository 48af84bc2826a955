"""The jobs entry: rows first, then the task or canvas (train-all, precomputation), eagerly here."""

import io

import pytest
from django.core.management import call_command
from django.test import override_settings

from recommender import jobs, precompute
from recommender.conf import settings
from recommender.models import Interaction, ModelVersion
from recommender.versions import run

from .training_support import TOY_PATH
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
