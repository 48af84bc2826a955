"""Training service: versions, offline metrics, guarded activation, rollback, locking, failures."""

import datetime
import io

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from recommender import artifacts, precompute, training
from recommender.conf import settings
from recommender.data.snapshot import build_dataset_from_db
from recommender.models import Interaction, ModelVersion
from recommender.serving import loaded_models
from recommender.testing.factories import planted_dataset

from .training_support import (FAILING_PATH, TOY_PATH, ToyStrategy, eager_celery, forget_training_cache_keys,
                               fresh_training_state, seed_shop, strategies_settings)

Status = ModelVersion.Status


@pytest.fixture(autouse=True)
def fresh_serving_state():
    """Each test starts with an empty cache and no loaded models in this process."""
    with fresh_training_state():
        yield


@pytest.fixture
def eager_tasks():
    """Tasks run in this process even where a broker is configured: no worker serves these tests."""
    with eager_celery(propagate=True):
        yield


@pytest.fixture
def toy():
    with strategies_settings(toy=TOY_PATH, toy2=TOY_PATH):
        yield "toy"


@pytest.fixture
def shop(transactional_db):
    """A seeded shop; real commits, because activation bumps the serving stamp on commit."""
    return seed_shop()


def test_first_training_activates_and_records_everything(shop, toy):
    """A first run ends active, with counts, params, timings, metrics and a verified artifact."""
    version = training.train_strategy("toy")
    assert version.status == Status.ACTIVE
    assert version.activated_at is not None
    assert version.data_counts["interactions"] == 60 * 6
    assert version.data_counts["items"] == 16
    assert version.params["reverse"] is False
    assert version.timings["fit_seconds"] >= 0 and "heartbeat" in version.timings
    assert 0 < version.metrics["key_value"] <= 1
    assert version.metrics["new_user"]["0"]["users"] == version.metrics["holdout"]["users"] == 6
    assert version.metrics["guardrail"]["activated"] is True
    assert version.checksum and version.artifact_bytes > 0
    served = loaded_models.get_active_strategy("toy")
    assert isinstance(served, ToyStrategy) and served.version_id == version.pk


def test_without_refit_the_evaluated_model_is_the_saved_one(shop, toy):
    """TRAINING_REFIT_ON_ALL_DATA off: one fit, without the held-out users, is saved and served."""
    with override_settings(RECOMMENDER={**settings.user_settings, "TRAINING_REFIT_ON_ALL_DATA": False}):
        version = training.train_strategy("toy")
    assert version.status == Status.ACTIVE and "fit_seconds" not in version.timings
    assert version.metrics["fitted_on"].startswith("all data but the held-out users")
    served = loaded_models.get_active_strategy("toy")
    on_all_data = ToyStrategy().fit(build_dataset_from_db())
    assert served.counts_.sum() < on_all_data.counts_.sum()  # the held-out users' events are not in it


def test_retraining_activates_the_new_version_and_keeps_the_old_ready(shop, toy):
    """A second run replaces the active version; the old one stays loadable for a rollback."""
    first = training.train_strategy("toy")
    stamp = training.active_versions_stamp()
    assert loaded_models.get_active_strategy("toy").version_id == first.pk
    second = training.train_strategy("toy")
    first.refresh_from_db()
    assert (first.status, second.status) == (Status.READY, Status.ACTIVE)
    assert training.active_versions_stamp() != stamp
    assert loaded_models.get_active_strategy("toy").version_id == second.pk


def test_failing_strategy_leaves_the_previous_version_active(shop, toy):
    """A strategy that raises gives a failed row with the error; the active version is untouched."""
    good = training.train_strategy("toy")
    with strategies_settings(toy=FAILING_PATH):
        failed = training.train_strategy("toy")
    assert failed.status == Status.FAILED
    assert "planted failure in _fit" in failed.error
    good.refresh_from_db()
    assert good.status == Status.ACTIVE
    assert loaded_models.get_active_strategy("toy").version_id == good.pk


def test_guardrail_refuses_a_worse_model(shop, toy):
    """A version whose new-user NDCG is worse than the active one's by more than the tolerance stays ready."""
    good = training.train_strategy("toy")
    with override_settings(RECOMMENDER={**settings.user_settings, "TRAINING_PARAMS": {"toy": {"reverse": True}}}):
        worse = training.train_strategy("toy")
    assert worse.metrics["key_value"] < good.metrics["key_value"] * (1 - settings.ACTIVATION_TOLERANCE)
    assert worse.status == Status.READY
    assert worse.metrics["guardrail"]["activated"] is False
    assert "worse by more than 2%" in worse.metrics["guardrail"]["reason"]
    good.refresh_from_db()
    assert good.status == Status.ACTIVE


def test_guardrail_tolerance_lets_an_equal_model_through(shop, toy):
    """The same model trained again (equal metric) is activated."""
    training.train_strategy("toy")
    again = training.train_strategy("toy")
    assert again.status == Status.ACTIVE


def test_rollback_reactivates_the_previous_version_in_one_call(shop, toy):
    """rollback() brings back the version active before, and serving follows it."""
    first = training.train_strategy("toy")
    second = training.train_strategy("toy")
    assert loaded_models.get_active_strategy("toy").version_id == second.pk
    restored = training.rollback("toy")
    second.refresh_from_db()
    assert (restored.pk, restored.status, second.status) == (first.pk, Status.ACTIVE, Status.READY)
    assert loaded_models.get_active_strategy("toy").version_id == first.pk
    assert training.rollback("toy", to_version_id=second.pk).pk == second.pk


def test_rollback_without_an_earlier_version_is_a_clear_error(shop, toy):
    """With a single version there is nothing to roll back to."""
    training.train_strategy("toy")
    with pytest.raises(training.ActivationError, match="no earlier active version"):
        training.rollback("toy")


def test_a_second_training_of_the_same_strategy_is_refused(shop, toy):
    """While a run is alive, another trigger is refused and creates no row, even without the cache lock."""
    running = training.start_training("toy")
    with pytest.raises(training.TrainingRefused, match="already training"):
        training.train_strategy("toy")
    forget_training_cache_keys()  # the database alone still refuses
    with pytest.raises(training.TrainingRefused, match=f"version {running.pk}"):
        training.train_strategy("toy")
    assert ModelVersion.objects.filter(strategy="toy").count() == 1
    assert training.train_strategy("toy2").status == Status.ACTIVE  # other strategies are not blocked


def test_a_retry_of_the_same_task_takes_over_its_own_row(shop, toy):
    """A Celery retry (same task id) continues the row its first attempt created."""
    first_attempt = training.start_training("toy", task_id="task-1")
    version = training.train_strategy("toy", task_id="task-1")
    assert version.pk == first_attempt.pk and version.status == Status.ACTIVE


def test_stale_training_rows_are_failed_by_the_cleanup(shop, toy):
    """A row without a heartbeat for longer than the limit is marked failed; training can start again."""
    dead = training.start_training("toy", task_id="dead-task")
    assert training.cleanup_stale_trainings() == []
    later = timezone.now() + datetime.timedelta(seconds=settings.TRAINING_STALE_SECONDS + 1)
    assert training.cleanup_stale_trainings(now=later) == [dead.pk]
    dead.refresh_from_db()
    assert dead.status == Status.FAILED and "dead-task" in dead.error
    assert training.train_strategy("toy").status == Status.ACTIVE


def test_run_given_a_version_id_trains_that_row(shop, toy):
    """A row created by the command (start_training) is the one the worker trains."""
    queued = training.start_training("toy")
    version = training.train_strategy("toy", version_id=queued.pk, task_id="worker-task")
    assert (version.pk, version.status, version.task_id) == (queued.pk, Status.ACTIVE, "worker-task")


def test_a_second_delivery_of_a_queued_row_is_refused(shop, toy):
    """A row another task has claimed is not trained a second time by a different task."""
    queued = training.start_training("toy")
    ModelVersion.objects.filter(pk=queued.pk).update(task_id="first-task")
    with pytest.raises(training.TrainingRefused, match="first-task"):
        training.train_strategy("toy", version_id=queued.pk, task_id="second-task")


def test_old_versions_are_pruned_after_training(shop, toy):
    """Only KEEP_VERSIONS versions keep their files; older ones are retired."""
    with override_settings(RECOMMENDER={**settings.user_settings, "KEEP_VERSIONS": 2}):
        versions = [training.train_strategy("toy") for _ in range(3)]
    for version in versions:
        version.refresh_from_db()
    assert [version.status for version in versions] == [Status.RETIRED, Status.READY, Status.ACTIVE]
    assert versions[0].artifact_path == "" and versions[1].artifact_path


def test_train_all_trains_every_given_strategy(shop, toy, eager_tasks):
    """train_all runs the group of strategies (eagerly here) and activates each."""
    training.train_all(["toy", "toy2"])
    active = set(ModelVersion.objects.filter(status=Status.ACTIVE).values_list("strategy", flat=True))
    assert active == {"toy", "toy2"}


def test_default_strategy_list_skips_unimportable_strategies(toy):
    """Strategies whose module does not import are left out of the default list; hybrid comes last."""
    with strategies_settings(toy=TOY_PATH, broken="tests.no_such_module.Strategy"):
        keys = training.trainable_strategy_keys()
    assert "toy" in keys and "broken" not in keys
    assert "hybrid" not in keys[:-1]


def test_evaluate_new_users_ranks_a_good_model_above_a_reversed_one():
    """On planted data, popularity beats its reverse at reveal 0 and 3 for held-out users."""
    dataset = planted_dataset(n_users=200, n_items=40)
    good = training.evaluate_new_users(lambda: ToyStrategy(), dataset)
    bad = training.evaluate_new_users(lambda: ToyStrategy(reverse=True), dataset)
    assert good["holdout"]["users"] == 20
    for reveal in ("0", "3"):
        assert good["new_user"][reveal]["ndcg"] > bad["new_user"][reveal]["ndcg"]
    assert good["key_value"] == good["new_user"]["0"]["ndcg"]


def test_command_trains_in_process_and_prints_a_summary(shop, toy):
    """recommender_train --sync trains the named strategies and ends with the summary table."""
    out = io.StringIO()
    call_command("recommender_train", "--strategy", "toy", "--strategy", "toy2", "--sync", "--no-progress", stdout=out)
    table = out.getvalue()
    assert "strategy" in table and "ndcg@10" in table
    assert table.count("activated") == 2
    assert ModelVersion.objects.filter(status=Status.ACTIVE).count() == 2


def test_command_queues_tasks_when_not_sync(shop, toy, eager_tasks):
    """Without --sync the command queues tasks (eager here) and reports their rows."""
    out = io.StringIO()
    call_command("recommender_train", "--strategy", "toy", "--no-progress", stdout=out)
    assert "activated" in out.getvalue()


def test_evaluate_active_scores_users_who_arrived_after_training(shop, toy):
    """Users whose first event is after the version's snapshot are scored as its new users."""
    from django.contrib.auth import get_user_model

    products, _ = shop
    version = training.train_strategy("toy")
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
    live = training.evaluate_active()["toy"]
    assert live["new_user"]["0"]["users"] == 8
    assert 0 < live["new_user"]["0"]["ndcg"] <= 1
    version.refresh_from_db()
    assert version.metrics["live"]["new_user"]["0"]["users"] == 8
    assert version.metrics["key_value"] is not None  # the offline metrics are kept


def test_precompute_stores_lists_for_warm_users(shop, toy, eager_tasks):
    """Warm users get a cached list for the active version; a new event makes it outdated."""
    products, users = shop
    version = training.train_strategy("toy")
    with override_settings(RECOMMENDER={**settings.user_settings, "STRATEGIES": {"toy": TOY_PATH},
                                        "PRECOMPUTE_MIN_EVENTS": 6, "DEFAULT_STRATEGY": "toy"}):
        summary = precompute.fan_out(chunk_size=25)
        assert summary == {"strategy": "toy", "version": version.pk, "users": 60, "chunks": 3}
        latest = Interaction.objects.filter(user=users[0]).order_by("-timestamp", "-pk").first()
        stored = precompute.get_precomputed("toy", users[0].pk, latest_event_id=latest.pk)
        bought = {str(pk) for pk in Interaction.objects.filter(user=users[0], event="purchase")
                  .values_list("product_id", flat=True)}
        assert len(stored["items"]) == len(products) - len(bought)
        assert not set(stored["items"]) & bought
        assert precompute.get_precomputed("toy", users[0].pk, latest_event_id=latest.pk + 10_000) is None


def test_unknown_strategy_key_is_refused_before_any_row(db):
    """An unknown key fails with the known keys listed and leaves no row."""
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="Known strategies"):
        training.train_strategy("nope")
    assert not ModelVersion.objects.exists()


def test_activation_verifies_the_artifact_first(shop, toy):
    """A version whose artifact lost its manifest cannot be activated."""
    first = training.train_strategy("toy")
    second = training.train_strategy("toy", activate_if_better=False)
    artifacts.get_storage().delete(f"{second.artifact_path}/{artifacts.MANIFEST_NAME}")
    with pytest.raises(artifacts.ArtifactError, match="missing"):
        training.activate(second)
    first.refresh_from_db()
    assert first.status == Status.ACTIVE


@pytest.mark.django_db
def test_training_an_empty_shop_fails_with_what_to_do():
    """With no products or events, training fails saying how to get data, and activates nothing."""
    version = training.train_strategy("popularity")
    assert version.status == ModelVersion.Status.FAILED
    assert "Nothing to train on" in version.error and "recommender_import" in version.error
    assert not ModelVersion.objects.filter(status=ModelVersion.Status.ACTIVE).exists()


@pytest.mark.django_db
def test_train_command_on_an_empty_shop_is_a_clear_error():
    """recommender_train --sync on an empty database stops with a CommandError, creating no rows."""
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="Nothing to train on"):
        call_command("recommender_train", "--sync", "--no-progress", "--strategy", "popularity")
    assert not ModelVersion.objects.exists()
