"""One training run: what it records, refit or not, failures, pruning, the in-process train-all and its command."""

import io

import numpy as np

import pytest
from django.core.management import call_command
from django.test import override_settings

from recommender.conf import settings
from recommender.data.snapshot import build_dataset_from_db
from recommender.models import ModelVersion
from recommender.serving import loaded_models
from recommender.strategies.base import Context, Event
from recommender.versions import run, specs

from .training_support import FAILING_PATH, TOY_BLEND_PATH, TOY_PATH, ToyBlend, ToyStrategy, strategies_settings
from .training_support import fresh_versions_state, shop, toy  # noqa: F401 (fixtures)

Status = ModelVersion.Status
pytestmark = pytest.mark.usefixtures("fresh_versions_state")


def test_first_training_activates_and_records_everything(shop, toy):
    """A first run ends active, with counts, params, timings, metrics and a verified artifact."""
    version = run.train_strategy("toy")
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
        version = run.train_strategy("toy")
    assert version.status == Status.ACTIVE and "fit_seconds" not in version.timings
    assert version.metrics["fitted_on"].startswith("all data but the held-out users")
    served = loaded_models.get_active_strategy("toy")
    on_all_data = ToyStrategy().fit(build_dataset_from_db())
    assert served.counts_.sum() < on_all_data.counts_.sum()  # the held-out users' events are not in it


def test_failing_strategy_leaves_the_previous_version_active(shop, toy):
    """A strategy that raises gives a failed row with the error; the active version is untouched."""
    good = run.train_strategy("toy")
    with strategies_settings(toy=FAILING_PATH):
        failed = run.train_strategy("toy")
    assert failed.status == Status.FAILED
    assert "planted failure in _fit" in failed.error
    good.refresh_from_db()
    assert good.status == Status.ACTIVE
    assert loaded_models.get_active_strategy("toy").version_id == good.pk


def test_old_versions_are_pruned_after_training(shop, toy):
    """Only KEEP_VERSIONS versions keep their files; older ones are retired."""
    with override_settings(RECOMMENDER={**settings.user_settings, "KEEP_VERSIONS": 2}):
        versions = [run.train_strategy("toy") for _ in range(3)]
    for version in versions:
        version.refresh_from_db()
    assert [version.status for version in versions] == [Status.RETIRED, Status.READY, Status.ACTIVE]
    assert versions[0].artifact_path == "" and versions[1].artifact_path


def test_unknown_strategy_key_is_refused_before_any_row(db):
    """An unknown key fails with the known keys listed and leaves no row."""
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="Known strategies"):
        run.train_strategy("nope")
    assert not ModelVersion.objects.exists()


@pytest.mark.django_db
def test_training_an_empty_shop_fails_with_what_to_do():
    """With no products or events, training fails saying how to get data, and activates nothing."""
    version = run.train_strategy("popularity")
    assert version.status == ModelVersion.Status.FAILED
    assert "Nothing to train on" in version.error and "recommender_import" in version.error
    assert not ModelVersion.objects.filter(status=ModelVersion.Status.ACTIVE).exists()


def test_default_strategy_list_skips_unimportable_strategies(toy):
    """Strategies whose module does not import are left out of the default list; hybrid comes last."""
    with strategies_settings(toy=TOY_PATH, broken="tests.no_such_module.Strategy"):
        keys = specs.trainable_strategy_keys()
    assert "toy" in keys and "broken" not in keys
    assert "hybrid" not in keys[:-1]


def test_command_trains_in_process_and_prints_a_summary(shop, toy):
    """recommender_train --sync trains the named strategies and ends with the summary table."""
    out = io.StringIO()
    call_command("recommender_train", "--strategy", "toy", "--strategy", "toy2", "--sync", "--no-progress", stdout=out)
    table = out.getvalue()
    assert "strategy" in table and "ndcg@10" in table
    assert table.count("activated") == 2
    assert ModelVersion.objects.filter(status=Status.ACTIVE).count() == 2


@pytest.mark.django_db
def test_train_command_on_an_empty_shop_is_a_clear_error():
    """recommender_train --sync on an empty database stops with a CommandError, creating no rows."""
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="Nothing to train on"):
        call_command("recommender_train", "--sync", "--no-progress", "--strategy", "popularity")
    assert not ModelVersion.objects.exists()


def test_the_in_process_train_all_hands_the_composite_what_it_just_trained(shop):
    """recommender_train --sync's train_here: components first, then the composite serving those very fits."""
    ToyBlend.fits_.clear()
    with strategies_settings(toy=TOY_PATH, toy2=TOY_PATH, toy_blend=TOY_BLEND_PATH):
        summaries = run.train_here(["toy_blend", "toy", "toy2"], build_dataset_from_db())
    assert [summary["strategy"] for summary in summaries][-1] == "toy_blend"
    assert all(summary["activated"] for summary in summaries)
    blend = ModelVersion.objects.get(strategy="toy_blend")
    components = {key: ModelVersion.objects.get(strategy=key).pk for key in ("toy", "toy2")}
    assert blend.metrics["components_given"] == {key: {"version": pk, "same_run": True} for key, pk in components.items()}
    assert sorted(ToyBlend.fits_) == ["toy", "toy2"]  # in its held-out check only
    served = loaded_models.get_active_strategy("toy_blend")
    assert sorted(served.components_) == ["toy", "toy2"]


def test_a_composite_alone_reuses_the_active_components(shop):
    """Training only the composite hands it the active component versions; a missing one it fits itself."""
    ToyBlend.fits_.clear()
    with strategies_settings(toy=TOY_PATH, toy2=TOY_PATH, toy_blend=TOY_BLEND_PATH):
        toy = run.train_strategy("toy")
        blend = run.train_strategy("toy_blend")
    assert blend.status == Status.ACTIVE
    assert blend.metrics["components_given"] == {"toy": {"version": toy.pk, "same_run": False}}
    assert sorted(ToyBlend.fits_) == ["toy", "toy2", "toy2"]  # both in the held-out check, toy2 again for serving


def test_the_hybrid_serves_the_component_versions_of_its_train_all(shop):
    """The real hybrid, trained last by train_here, serves the item-kNN and segment popularity versions
    trained just before it (the same fitted arrays), not refits of its own."""
    training_params = {"hybrid": {"components": ["segment_popularity", "item_knn"]}}
    with override_settings(RECOMMENDER={**settings.user_settings, "TRAINING_PARAMS": training_params}):
        summaries = run.train_here(["hybrid", "segment_popularity", "item_knn"], build_dataset_from_db())
    assert [summary["strategy"] for summary in summaries][-1] == "hybrid"
    hybrid = ModelVersion.objects.get(strategy="hybrid")
    knn = ModelVersion.objects.get(strategy="item_knn")
    assert hybrid.metrics["components_given"]["item_knn"] == {"version": knn.pk, "same_run": True}
    served = loaded_models.get_active_strategy("hybrid")
    assert served.reused_components_ == ["segment_popularity", "item_knn"]
    alone = loaded_models.get_active_strategy("item_knn")
    context_item = str(build_dataset_from_db().item_ids[0])
    context = Context(events=(Event(context_item, "view"),))
    np.testing.assert_array_equal(served.components_["item_knn"].score(context), alone.score(context))
