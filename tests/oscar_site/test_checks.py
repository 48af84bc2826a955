"""System checks: the Oscar site is clean, and a misconfigured Oscar integration says what to fix."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import override_settings

from recommender.contrib.oscar.checks import check_oscar_catalog

pytestmark = pytest.mark.oscar

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_manage_py_check_is_clean_for_the_oscar_site(tmp_path):
    """`manage.py check` with the Oscar site's settings reports nothing, not even a warning."""
    env = {**os.environ, "RECOMMENDER_TEST_VAR_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--settings", "tests.oscar_site.settings", "--fail-level", "WARNING"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def ids(errors):
    return [error.id for error in errors]


def test_the_configured_site_passes():
    assert check_oscar_catalog(None) == []


@override_settings(RECOMMENDER={})
def test_without_the_oscar_adapter_the_check_names_it():
    """The default adapter would read Oscar products through field paths that do not exist."""
    errors = check_oscar_catalog(None)
    assert ids(errors) == ["recommender_oscar.E003"]
    assert "recommender.contrib.oscar.catalog.OscarCatalogAdapter" in errors[0].hint


@override_settings(RECOMMENDER_PRODUCT_MODEL="auth.User")
def test_another_product_model_is_an_error_with_the_right_value():
    errors = check_oscar_catalog(None)
    assert ids(errors) == ["recommender_oscar.E002"]
    assert '"catalogue.Product"' in errors[0].hint
