"""Docs that must match the code: every setting documented, the README's commands real."""

import re
from pathlib import Path

import pytest
from django.core.management import get_commands

from recommender.conf import DEFAULTS

ROOT = Path(__file__).resolve().parent.parent


def test_every_setting_is_in_the_settings_reference():
    """docs/settings.md has a row for each key of recommender.conf.DEFAULTS."""
    text = (ROOT / "docs" / "settings.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", text, flags=re.M))
    missing = sorted(set(DEFAULTS) - documented)
    assert not missing, f"undocumented settings: {missing}"


@pytest.mark.shop  # seed_demo belongs to the demo shop
def test_readme_names_only_commands_that_exist():
    """Every `manage.py <command>` in the README and the docs is a real command."""
    commands = set(get_commands())
    # docs/oscar.md names the Oscar app's commands: the oscar pass checks it (tests/oscar_site/test_docs.py).
    texts = [ROOT / "README.md", *sorted(path for path in (ROOT / "docs").glob("*.md") if path.name != "oscar.md")]
    used = {name for path in texts for name in re.findall(r"manage\.py (\w+)", path.read_text())}
    assert used, "expected the docs to show management commands"
    assert used <= commands, f"unknown commands in docs: {sorted(used - commands)}"


def test_every_test_named_in_reliability_md_exists():
    """docs/reliability.md names the test that defeats each attack: each named test is a real function."""
    text = (ROOT / "docs" / "reliability.md").read_text()
    named = set(re.findall(r"`?(tests/test_\w+\.py)::(test_\w+)", text))
    named |= {(path, name) for path, names in re.findall(r"`(tests/test_\w+\.py)` \(([^)]*)\)", text)
              for name in re.findall(r"`(test_\w+)`", names)}
    assert len(named) >= 30
    missing = [f"{path}::{name}" for path, name in sorted(named)
               if f"def {name}(" not in (ROOT / path).read_text()]
    assert not missing, f"reliability.md names tests that do not exist: {missing}"
