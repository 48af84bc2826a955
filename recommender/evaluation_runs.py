"""Offline evaluations of the shop's own data, started from the admin and stored as rows.

``start`` validates the request and writes a queued ``EvaluationRun`` (``jobs.evaluate`` then
queues ``run_evaluation_task``); ``execute`` (the task's body) snapshots the database, runs the
new-user protocol and stores the result rows. A run is executed at most once: the task claims
it with a conditional update, so a redelivered task does nothing.
"""

from __future__ import annotations

import math
import traceback

from django.utils import timezone

from .conf import settings
from .data.snapshot import build_dataset_from_db
from .evaluation.runner import evaluate
from .models import EvaluationRun
from .strategies import registry

DEFAULT_STRATEGIES = ("popularity", "segment_popularity", "item_knn")
DEFAULT_REVEALS = (0, 3)
FOLD_CHOICES = (2, 3)
K = 10
Status = EvaluationRun.Status


def start(strategies, folds: int = 3, reveals=DEFAULT_REVEALS, k: int = K) -> EvaluationRun:
    """Create a queued run (``jobs.evaluate`` queues its task); return the row."""
    strategies = list(dict.fromkeys(strategies))
    if not strategies:
        raise ValueError("Choose at least one strategy to evaluate.")
    known = registry.available_keys(settings.STRATEGIES)
    unknown = sorted(set(strategies) - set(known))
    if unknown:
        raise ValueError(f"Unknown strategies {unknown}; known: {known}")
    if int(folds) not in FOLD_CHOICES:
        raise ValueError(f"folds must be one of {FOLD_CHOICES}, got {folds}")
    run = EvaluationRun.objects.create(params={
        "strategies": strategies, "folds": int(folds), "reveal": [int(n) for n in reveals], "k": int(k),
        "protocol": "new-user", "positive_threshold": settings.TRAINING_POSITIVE_THRESHOLD,
        "seed": settings.RANDOM_SEED,
    })
    return run


def record_task_id(run_id: int, task_id: str) -> None:
    """Record the id of the task queued for a run (once)."""
    EvaluationRun.objects.filter(pk=run_id, task_id="").update(task_id=task_id)


def execute(run_id: int) -> EvaluationRun | None:
    """Run a queued evaluation and store its rows; None when another worker already took it."""
    claimed = EvaluationRun.objects.filter(pk=run_id, status=Status.QUEUED).update(
        status=Status.RUNNING, started_at=timezone.now())
    if not claimed:
        return None
    run = EvaluationRun.objects.get(pk=run_id)
    params = run.params
    try:
        dataset = build_dataset_from_db()
        rows = evaluate(dataset, params["strategies"], protocol="new-user", reveal=params["reveal"],
                        folds=params["folds"], k=params["k"], positive_threshold=params["positive_threshold"],
                        seed=params["seed"], progress=False, host_strategies=settings.STRATEGIES)
    except Exception as exc:
        run.status, run.error = Status.FAILED, f"{exc}\n\n{traceback.format_exc()}"
    else:
        counts = dataset.meta.get("counts", {})
        run.status, run.results = Status.DONE, [_json_safe(row) for row in rows]
        run.data_counts = {key: value for key, value in counts.items() if key != "snapshot_at"}
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "results", "data_counts", "error", "finished_at"])
    return run


def _json_safe(row: dict) -> dict:
    return {key: None if isinstance(value, float) and not math.isfinite(value) else value
            for key, value in row.items()}


def headline(run: EvaluationRun) -> list[dict]:
    """The rows over all users (``regime == "all"``), by strategy then reveal."""
    rows = [row for row in run.results or [] if row.get("regime") == "all"]
    return sorted(rows, key=lambda row: (row["strategy"], row["reveal"] if row["reveal"] is not None else -1))
