"""The guardrail: activation only when not worse, rollback, the activation stamp, verified artifacts."""

import pytest
from django.test import override_settings

from recommender import artifacts
from recommender.conf import settings
from recommender.models import ModelVersion
from recommender.serving import loaded_models
from recommender.versions import guardrail, run

from .training_support import FAILING_PATH, strategies_settings
from .training_support import fresh_versions_state, shop, toy  # noqa: F401 (fixtures)

Status = ModelVersion.Status
pytestmark = pytest.mark.usefixtures("fresh_versions_state")


def test_retraining_activates_the_new_version_and_keeps_the_old_ready(shop, toy):
    """A second run replaces the active version; the old one stays loadable for a rollback."""
    first = run.train_strategy("toy")
    stamp = guardrail.active_versions_stamp()
    assert loaded_models.get_active_strategy("toy").version_id == first.pk
    second = run.train_strategy("toy")
    first.refresh_from_db()
    assert (first.status, second.status) == (Status.READY, Status.ACTIVE)
    assert guardrail.active_versions_stamp() != stamp
    assert loaded_models.get_active_strategy("toy").version_id == second.pk


def test_guardrail_refuses_a_worse_model(shop, toy):
    """A version whose new-user NDCG is worse than the active one's by more than the tolerance stays ready."""
    good = run.train_strategy("toy")
    with override_settings(RECOMMENDER={**settings.user_settings, "TRAINING_PARAMS": {"toy": {"reverse": True}}}):
        worse = run.train_strategy("toy")
    assert worse.metrics["key_value"] < good.metrics["key_value"] * (1 - settings.ACTIVATION_TOLERANCE)
    assert worse.status == Status.READY
    assert worse.metrics["guardrail"]["activated"] is False
    assert "worse by more than 2%" in worse.metrics["guardrail"]["reason"]
    good.refresh_from_db()
    assert good.status == Status.ACTIVE


def test_guardrail_tolerance_lets_an_equal_model_through(shop, toy):
    """The same model trained again (equal metric) is activated."""
    run.train_strategy("toy")
    again = run.train_strategy("toy")
    assert again.status == Status.ACTIVE


def test_rollback_reactivates_the_previous_version_in_one_call(shop, toy):
    """rollback() brings back the version active before, and serving follows it."""
    first = run.train_strategy("toy")
    second = run.train_strategy("toy")
    assert loaded_models.get_active_strategy("toy").version_id == second.pk
    restored = guardrail.rollback("toy")
    second.refresh_from_db()
    assert (restored.pk, restored.status, second.status) == (first.pk, Status.ACTIVE, Status.READY)
    assert loaded_models.get_active_strategy("toy").version_id == first.pk
    assert guardrail.rollback("toy", to_version_id=second.pk).pk == second.pk


def test_rollback_without_an_earlier_version_is_a_clear_error(shop, toy):
    """With a single version there is nothing to roll back to."""
    run.train_strategy("toy")
    with pytest.raises(guardrail.ActivationError, match="no earlier active version"):
        guardrail.rollback("toy")


def test_activation_verifies_the_artifact_first(shop, toy):
    """A version whose artifact lost its manifest cannot be activated."""
    first = run.train_strategy("toy")
    second = run.train_strategy("toy", activate_if_better=False)
    artifacts.get_storage().delete(f"{second.artifact_path}/{artifacts.MANIFEST_NAME}")
    with pytest.raises(artifacts.ArtifactError, match="missing"):
        guardrail.activate(second)
    first.refresh_from_db()
    assert first.status == Status.ACTIVE
