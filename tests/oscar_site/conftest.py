"""Fixtures of the Oscar pass: a small Oscar shop built with Oscar's own test factories.

These tests need the Oscar site's settings (``tests.oscar_site.settings``, see ``make test-oscar``);
under any other settings nothing here is collected.
"""

import pytest
from django.conf import settings

OSCAR_SITE = settings.ROOT_URLCONF == "tests.oscar_site.urls"
if not OSCAR_SITE:
    collect_ignore_glob = ["test_*.py", "shop.py"]
else:
    from .shop import Shopper, build_catalogue

    @pytest.fixture
    def catalogue(db):
        return build_catalogue()

    @pytest.fixture
    def shopper():
        return Shopper()
