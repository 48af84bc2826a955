"""recommender.checks: a host missing an app the recommender needs is told at startup."""

from django.conf import settings
from django.test import override_settings

from recommender.checks import check_required_apps


def test_the_test_settings_have_every_required_app():
    assert check_required_apps(None) == []


def test_a_missing_app_is_named_with_the_fix():
    """Without django.contrib.humanize the admin dashboard would fail to render: E008 says so."""
    apps = [app for app in settings.INSTALLED_APPS if app != "django.contrib.humanize"]
    with override_settings(INSTALLED_APPS=apps):
        errors = check_required_apps(None)
    assert [error.id for error in errors] == ["recommender.E008"]
    assert "'django.contrib.humanize'" in errors[0].hint
