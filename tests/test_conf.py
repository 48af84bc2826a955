"""The settings object: defaults, overrides, reload on override_settings."""

import pytest
from django.test import override_settings

from recommender.conf import settings


def test_defaults_apply_when_host_sets_nothing():
    """A key the host does not set reads its default."""
    assert settings.MAX_EVENTS_PER_BATCH == 500


def test_override_settings_reloads_and_merges_dicts():
    """override_settings takes effect at once; a partial dict merges over the defaults."""
    with override_settings(RECOMMENDER={"MAX_EVENTS_PER_BATCH": 7, "EVENT_WEIGHTS": {"view": 2.0}}):
        assert settings.MAX_EVENTS_PER_BATCH == 7
        assert settings.EVENT_WEIGHTS["view"] == 2.0
        assert settings.EVENT_WEIGHTS["purchase"] == 5.0
    assert settings.MAX_EVENTS_PER_BATCH == 500


def test_unknown_setting_is_an_attribute_error():
    with pytest.raises(AttributeError, match="Invalid RECOMMENDER setting"):
        settings.NOT_A_SETTING


def test_placements_merge_per_placement_and_bad_entries_fail_the_checks():
    """A host's placement entry is merged over the built-in one; a bad entry or an unknown strategy
    key is a system-check error naming the placement."""
    from django.core.checks import run_checks
    from django.test import override_settings

    from recommender.serving.placements import get_placement

    with override_settings(RECOMMENDER={"PLACEMENTS": {"similar": {"title": "Alike"}, "deals": {"strategies": ["popularity"]}}}):
        similar = get_placement("similar")
        assert similar.title == "Alike" and similar.strategies == ("content",) and similar.similar_to_product
        assert get_placement("deals").strategy_chain("hybrid", ["popularity"]) == ["popularity", "hybrid"]
        assert get_placement("nowhere").title == "You may also like"
        assert not [error for error in run_checks() if error.id in ("recommender.E008", "recommender.E009")]
    with override_settings(RECOMMENDER={"PLACEMENTS": {"home": {"strategies": "hybrid"}, "x": {"strategies": ["nope"]}}}):
        ids = {(error.id, "home" in error.msg or "'x'" in error.msg) for error in run_checks()}
    assert ("recommender.E008", True) in ids and ("recommender.E009", True) in ids
