"""How the active versions do on live data: users who arrived after a version was trained.

Those users are truly new to the model, so this is the new-user protocol on the shop's own
recent traffic, with no refit. Products added since are made known through ``add_items``.
"""

from __future__ import annotations

import datetime

from django.utils import timezone

from .. import artifacts
from ..data.dataset import Dataset
from ..data.snapshot import build_dataset_from_db
from ..evaluation import holdout
from ..evaluation.protocols import relevant_mask, reveal_rank
from ..models import ModelVersion
from . import specs

Status = ModelVersion.Status


def evaluate_active(dataset: Dataset | None = None, *, k: int = holdout.KEY_K) -> dict:
    """Score each active version on users who arrived after its training data was taken.

    Records ``metrics["live"]`` on each version; returns ``{strategy: live metrics}``.
    """
    dataset = dataset if dataset is not None else build_dataset_from_db()
    first_seen = dataset.interactions.groupby("user_id", sort=False)["timestamp"].transform("min").to_numpy()
    rank = reveal_rank(dataset)
    relevant = relevant_mask(dataset, specs.holdout_plan().positive_threshold)
    results = {}
    for version in ModelVersion.objects.filter(status=Status.ACTIVE).order_by("strategy"):
        snapshot_at = (version.data_counts or {}).get("snapshot_at")
        if not snapshot_at:
            continue
        cold_rows = first_seen > datetime.datetime.fromisoformat(snapshot_at).timestamp()
        strategy = artifacts.load_artifact(version)
        strategy.add_items(dataset.items[~dataset.items.index.isin(strategy.item_ids)])
        live = {
            "since": snapshot_at,
            "evaluated_at": timezone.now().isoformat(),
            "new_user": {str(reveal): holdout.score_new_users(strategy, dataset, cold_rows, rank, relevant, reveal, k)
                         for reveal in holdout.REVEALS},
        }
        ModelVersion.objects.filter(pk=version.pk).update(metrics={**(version.metrics or {}), "live": live})
        results[version.strategy] = live
    return results
