"""docs/oscar.md matches the code: its commands exist in the Oscar shop, its settings are the site's."""

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import get_commands

pytestmark = pytest.mark.oscar

GUIDE = (Path(__file__).resolve().parents[2] / "docs" / "oscar.md").read_text()


def test_the_guide_names_only_commands_of_the_oscar_shop():
    used = set(re.findall(r"manage\.py (\w+)", GUIDE))
    assert {"recommender_oscar_history", "recommender_train", "migrate"} <= used
    assert used <= set(get_commands()), sorted(used - set(get_commands()))


def test_the_guides_apps_and_settings_are_the_test_sites():
    """What the guide tells a shop owner to add is what this test site runs with."""
    block = GUIDE.split("INSTALLED_APPS += [", 1)[1].split("]", 1)[0]
    guide_apps = [re.search(r'"([\w.]+)"', line).group(1) for line in block.splitlines() if line.strip()]
    assert guide_apps == settings.INSTALLED_APPS[-len(guide_apps):]
    assert f'RECOMMENDER_PRODUCT_MODEL = "{settings.RECOMMENDER_PRODUCT_MODEL}"' in GUIDE
    assert f'"CATALOG_ADAPTER": "{settings.RECOMMENDER["CATALOG_ADAPTER"]}"' in GUIDE
