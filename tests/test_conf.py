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
