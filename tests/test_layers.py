"""Layers (docs/architecture.md): the numeric core runs without Django settings.

``strategies/``, ``evaluation/`` and ``data/`` (but the database-facing importer and snapshot)
take plain parameters; the settings reach them through ``recommender.versions.specs``. A
subprocess with no ``DJANGO_SETTINGS_MODULE`` imports every one of their modules, fits every
built-in strategy, saves and loads it, recommends, and runs the evaluation protocols and the
held-out check; ``recommender.conf`` must never even be imported there.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent("""
    import importlib, pkgutil, sys, tempfile

    import recommender.data, recommender.evaluation, recommender.strategies

    DATABASE_FACING = {"recommender.data.importer", "recommender.data.snapshot"}
    imported = []
    for package in (recommender.strategies, recommender.evaluation, recommender.data):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if module.name not in DATABASE_FACING:
                importlib.import_module(module.name)
                imported.append(module.name)

    from recommender.evaluation.holdout import HoldoutPlan, fit_and_evaluate
    from recommender.evaluation.runner import evaluate
    from recommender.strategies.base import Context, Event, Strategy
    from recommender.strategies.registry import BUILTIN_STRATEGIES, create_strategy
    from recommender.testing.factories import planted_dataset

    dataset = planted_dataset()
    garden = dataset.meta["category_items"]["garden"]
    tiny_torch = {"epochs": 2, "batch_size": 32, "threads": 1}
    params = {
        "generative": {**tiny_torch, "hidden_dim": 16, "latent_dim": 4},
        "behavior": {**tiny_torch, "model_dim": 16, "feedforward_dim": 32, "layers": 1, "content_dim": 8},
        "content": {"encoder": "tfidf"},
        "hybrid": {"components": ["segment_popularity", "item_knn", "content"],
                   "component_params": {"content": {"encoder": "tfidf"}}},
    }
    for key in BUILTIN_STRATEGIES:
        strategy = create_strategy(key, **params.get(key, {})).fit(dataset)
        with tempfile.TemporaryDirectory() as directory:
            loaded = Strategy.load(strategy.save(directory))
        listed = loaded.recommend(Context(events=(Event(garden[0], "view"),)), k=5)
        assert len(listed.item_ids) == 5, (key, listed)
        listed.reasons

    rows = evaluate(dataset, ["popularity", "item_knn"], folds=2, reveal=(0, 3), progress=False)
    assert rows and all(row["users"] > 0 for row in rows if row["regime"] == "all"), rows
    metrics, fitted = fit_and_evaluate(lambda: create_strategy("popularity"), dataset,
                                       HoldoutPlan(share=0.2, max_users=1000, seed=0, positive_threshold=None))
    assert metrics["key_value"] is not None and fitted is not None, metrics

    import django.conf

    assert not django.conf.settings.configured, "something configured Django settings"
    leaked = sorted(name for name in sys.modules if name in ("recommender.conf", "recommender.models"))
    assert not leaked, f"the numeric core imported {leaked}"
    print(f"ok: {len(imported)} modules, {len(BUILTIN_STRATEGIES)} strategies")
""")


@pytest.mark.slow
def test_strategies_evaluation_and_data_run_without_django_settings():
    """Every module of the numeric core imports, fits, evaluates and serves with no settings configured."""
    pytest.importorskip("torch")
    environment = {name: value for name, value in os.environ.items() if name != "DJANGO_SETTINGS_MODULE"}
    environment["HF_HUB_OFFLINE"] = "1"
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO_ROOT, env=environment,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.startswith("ok:"), done.stdout


# Modules that start work (the entry points, the jobs door) and the Celery module itself may import the tasks.
ENTRY_POINTS = ("admin", "admin_views", "jobs", "receivers", "tasks", "views", "api", "management", "templatetags")


def _imports(path: Path) -> list[tuple[str, int]]:
    """Every module an ``import`` in ``path`` names, resolved to a dotted name, with its line."""
    import ast

    module = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):  # relative imports resolved against the package
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            origin = ".".join(part for part in (base, node.module or "") if part)
            names += [(origin, node.lineno)] + [(f"{origin}.{alias.name}", node.lineno) for alias in node.names]
    return names


def test_nothing_below_the_entry_points_imports_the_tasks_module():
    """Services, the numeric core and storage never import recommender.tasks (entry points enqueue)."""
    offenders = []
    for path in sorted((REPO_ROOT / "recommender").rglob("*.py")):
        parts = path.relative_to(REPO_ROOT / "recommender").with_suffix("").parts
        if parts[0] in ENTRY_POINTS or parts[0] == "migrations":
            continue
        offenders += [f"{path.relative_to(REPO_ROOT)}:{line} imports {name}" for name, line in _imports(path)
                      if name == "recommender.tasks" or name.startswith("recommender.tasks.")]
    assert not offenders, offenders
