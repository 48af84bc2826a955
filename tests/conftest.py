"""Shared fixtures and markers.

The suite runs on SQLite + eager Celery by default, and on PostgreSQL + Redis + a real worker
when DATABASE_URL / CELERY_BROKER_URL are set (see .ci/run).
"""

import os
from pathlib import Path

import pytest
from django.conf import settings

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("RECOMMENDER_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def uses_demo_catalog():
    return settings.RECOMMENDER_PRODUCT_MODEL == "catalog.Product"


def uses_postgres():
    return settings.DATABASES["default"]["ENGINE"].endswith("postgresql")


def uses_broker():
    return not settings.CELERY_TASK_ALWAYS_EAGER


def pytest_collection_modifyitems(config, items):
    skips = {
        "shop": (not uses_demo_catalog(), "demo-shop test; this run uses another host catalog"),
        "postgres": (not uses_postgres(), "needs PostgreSQL: set DATABASE_URL (see .ci/run)"),
        "worker": (not uses_broker(), "needs a broker for a real Celery worker: set CELERY_BROKER_URL"),
        "shared_data": (not SHARED_DATA.is_dir(), f"real data not found at {SHARED_DATA}"),
    }
    for item in items:
        for marker, (skip, reason) in skips.items():
            if skip and marker in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Each test starts with an empty cache (served lists, version stamps, throttles)."""
    from django.core.cache import caches

    caches["default"].clear()
    yield


@pytest.fixture
def shared_data():
    """Path of ../shared/data (tests using it carry the ``shared_data`` marker)."""
    return SHARED_DATA
