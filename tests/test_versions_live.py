"""Active versions scored on users who arrived after they were trained."""

import datetime

import pytest
from django.utils import timezone

from recommender.models import Interaction, ModelVersion
from recommender.versions import live, run

from .training_support import fresh_versions_state, shop, toy  # noqa: F401 (fixtures)

pytestmark = pytest.mark.usefixtures("fresh_versions_state")


def test_evaluate_active_scores_users_who_arrived_after_training(shop, toy):
    """Users whose first event is after the version's snapshot are scored as its new users."""
    from django.contrib.auth import get_user_model

    products, _ = shop
    version = run.train_strategy("toy")
    # Pretend the version was trained 20 minutes ago; eight shoppers arrived 10 minutes ago.
    snapshot_at = timezone.now() - datetime.timedelta(minutes=20)
    ModelVersion.objects.filter(pk=version.pk).update(
        data_counts={**version.data_counts, "snapshot_at": snapshot_at.isoformat()})
    arrived = timezone.now() - datetime.timedelta(minutes=10)
    newcomers = [get_user_model().objects.create(username=f"newcomer-{n}") for n in range(8)]
    Interaction.objects.bulk_create(
        Interaction(user=user, product=products[n % 2], event="purchase", timestamp=arrived)
        for n, user in enumerate(newcomers)
    )
    scored = live.evaluate_active()["toy"]
    assert scored["new_user"]["0"]["users"] == 8
    assert 0 < scored["new_user"]["0"]["ndcg"] <= 1
    version.refresh_from_db()
    assert version.metrics["live"]["new_user"]["0"]["users"] == 8
    assert version.metrics["key_value"] is not None  # the offline metrics are kept
