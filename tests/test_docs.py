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


def test_code_cites_the_repository_not_outside_documents():
    """Docstrings and comments point to docs/architecture.md, never to DESIGN/STYLE sections kept outside the repository."""
    outside = re.compile(r"DESIGN §|STYLE rules? \d|DESIGN\.md|STYLE\.md")
    files = [path for folder in ("recommender", "benchmarks", "shop_demo", "tests") for path in (ROOT / folder).rglob("*.py")]
    files += sorted((ROOT / "docs").glob("*.md"))
    citing = [str(path.relative_to(ROOT)) for path in files if outside.search(path.read_text(errors="ignore"))
              and path != Path(__file__).resolve()]
    assert not citing, f"cite docs/architecture.md instead in: {citing}"


def test_architecture_names_every_serving_step():
    """docs/architecture.md describes each module of the request path (it must stay true)."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    steps = sorted(path.stem for path in (ROOT / "recommender" / "serving").glob("*.py") if path.stem != "__init__")
    missing = [step for step in steps if f"serving/{step}.py" not in text]
    assert not missing, f"docs/architecture.md does not mention: {missing}"


def test_the_training_layer_section_names_every_module_of_the_layer():
    """architecture.md's training section and training.md name each versions/ module and the doors to Celery."""
    architecture = (ROOT / "docs" / "architecture.md").read_text()
    section = architecture.split("<!-- training:start -->")[1].split("<!-- training:end -->")[0]
    training = (ROOT / "docs" / "training.md").read_text()
    modules = sorted(path.name for path in (ROOT / "recommender" / "versions").glob("*.py") if path.stem != "__init__")
    assert len(modules) >= 5
    for name, text in (("architecture.md", section), ("training.md", training)):
        missing = [module for module in [*modules, "jobs.py", "tasks.py", "holdout.py"] if module not in text]
        assert not missing, f"docs/{name} does not name: {missing}"
