"""What the admin dashboard shows: offline metrics per version, data volume, training freshness
and online click-through with confidence intervals.

Every query aggregates in the database (GROUP BY) over a bounded window, so the dashboard costs
a handful of queries whatever the size of the event log.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import numpy as np
from django.db.models import Count, Max
from django.db.models.functions import TruncDate
from django.utils import timezone

from .models import EventType, Interaction, ModelVersion

WINDOW_DAYS = 30
VERSIONS_PER_STRATEGY = 20
# z of a two-sided 95% interval.
Z_95 = 1.959963984540054
# The offline figures charted per version: (label, new-user reveal, metric name).
OFFLINE_SERIES = (("NDCG@10, 0 events", "0", "ndcg"), ("NDCG@10, 3 events", "3", "ndcg"))


def wilson_interval(successes, trials, z: float = Z_95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial proportion, element-wise; (0, 0) where trials is 0.

    Unlike the normal approximation it stays inside [0, 1] and is sensible for rare clicks.
    """
    successes = np.asarray(successes, dtype=float)
    trials = np.asarray(trials, dtype=float)
    safe_trials = np.where(trials > 0, trials, 1.0)
    share = successes / safe_trials
    denominator = 1.0 + z**2 / safe_trials
    centre = (share + z**2 / (2 * safe_trials)) / denominator
    half_width = z * np.sqrt(share * (1 - share) / safe_trials + z**2 / (4 * safe_trials**2)) / denominator
    empty = trials <= 0
    return np.where(empty, 0.0, centre - half_width), np.where(empty, 0.0, centre + half_width)


def window_start(days: int = WINDOW_DAYS, now: datetime.datetime | None = None) -> datetime.datetime:
    return (now or timezone.now()) - datetime.timedelta(days=days)


# --- online ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClickThrough:
    """Impressions and clicks of one group (strategy, placement, arm, or a combination)."""

    strategy: str
    placement: str
    arm: str
    impressions: int
    clicks: int
    ctr: float
    low: float
    high: float

    @property
    def label(self) -> str:
        return " / ".join(part for part in (self.strategy, self.placement, self.arm) if part) or "(none)"


def click_through(days: int = WINDOW_DAYS, now=None, by=("strategy", "placement", "arm")) -> list[ClickThrough]:
    """Click-through of the last ``days`` grouped by ``by`` (any of strategy, placement, arm).

    A click counts for the group it was recorded with (the beacon copies strategy, placement
    and arm from the impression). Sorted by impressions, most first.
    """
    counted = (
        Interaction.objects.filter(timestamp__gte=window_start(days, now),
                                   event__in=[EventType.IMPRESSION, EventType.CLICK])
        .values(*by, "event")
        .annotate(n=Count("id"))
        .order_by()
    )
    totals: dict[tuple, list[int]] = {}
    for row in counted:
        group = tuple(row[name] for name in by)
        totals.setdefault(group, [0, 0])[row["event"] == EventType.CLICK] += row["n"]
    # Clicks without impressions (e.g. on pages outside any placement) have no click-through.
    groups = sorted((group for group in totals if totals[group][0]), key=lambda group: (-totals[group][0], group))
    impressions = np.array([totals[group][0] for group in groups], dtype=float)
    clicks = np.array([totals[group][1] for group in groups], dtype=float)
    low, high = wilson_interval(clicks, impressions)
    ctr = np.divide(clicks, impressions, out=np.zeros_like(clicks), where=impressions > 0)
    return [
        ClickThrough(**dict(zip(by, group)), **{name: "" for name in ("strategy", "placement", "arm") if name not in by},
                     impressions=int(impressions[i]), clicks=int(clicks[i]), ctr=float(ctr[i]),
                     low=float(low[i]), high=float(high[i]))
        for i, group in enumerate(groups)
    ]


# --- data volume --------------------------------------------------------------------------------
def events_per_day(days: int = WINDOW_DAYS, now=None) -> dict[str, dict[datetime.date, int]]:
    """{event type: {day: count}} over the last ``days``, counted in the database."""
    counted = (
        Interaction.objects.filter(timestamp__gte=window_start(days, now))
        .annotate(day=TruncDate("timestamp"))
        .values("day", "event")
        .annotate(n=Count("id"))
        .order_by("day")
    )
    per_event: dict[str, dict[datetime.date, int]] = {}
    for row in counted:
        per_event.setdefault(row["event"], {})[row["day"]] = row["n"]
    return per_event


# --- training -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class StrategyStatus:
    """Where one strategy stands: its active version, last successful training and failures."""

    strategy: str
    active_version: int | None
    active_key_value: float | None
    last_trained_at: datetime.datetime | None
    last_failed_at: datetime.datetime | None
    versions: int

    def age(self, now=None) -> datetime.timedelta | None:
        return None if self.last_trained_at is None else (now or timezone.now()) - self.last_trained_at


def strategy_statuses() -> list[StrategyStatus]:
    """One row per strategy that has any version (three small GROUP BY queries)."""
    Status = ModelVersion.Status
    succeeded = dict(
        ModelVersion.objects.filter(status__in=[Status.READY, Status.ACTIVE, Status.RETIRED])
        .values_list("strategy").annotate(last=Max("finished_at")).order_by()
    )
    failed = dict(
        ModelVersion.objects.filter(status=Status.FAILED)
        .values_list("strategy").annotate(last=Max("finished_at")).order_by()
    )
    counts = dict(ModelVersion.objects.values_list("strategy").annotate(n=Count("id")).order_by())
    active = {key: (pk, metrics) for key, pk, metrics in
              ModelVersion.objects.filter(status=Status.ACTIVE).values_list("strategy", "pk", "metrics")}
    return [
        StrategyStatus(strategy=key, active_version=active.get(key, (None, None))[0],
                       active_key_value=(active.get(key, (None, None))[1] or {}).get("key_value"),
                       last_trained_at=succeeded.get(key), last_failed_at=failed.get(key), versions=counts[key])
        for key in sorted(counts)
    ]


def offline_metrics(per_strategy: int = VERSIONS_PER_STRATEGY) -> dict[str, list[dict]]:
    """{strategy: [{version, created_at, status, <series label>: value}]} oldest first.

    The newest ``per_strategy`` evaluated versions of each strategy.
    """
    rows = (
        ModelVersion.objects.exclude(status=ModelVersion.Status.TRAINING)
        .order_by("strategy", "-created_at")
        .values_list("strategy", "pk", "created_at", "status", "metrics")
    )
    per_key: dict[str, list[dict]] = {}
    for key, pk, created_at, status, metrics in rows.iterator(chunk_size=500):
        new_user = (metrics or {}).get("new_user") or {}
        if not new_user or len(per_key.get(key, ())) >= per_strategy:
            continue
        point = {"version": pk, "created_at": created_at, "status": status}
        for label, reveal, metric in OFFLINE_SERIES:
            point[label] = (new_user.get(reveal) or {}).get(metric)
        per_key.setdefault(key, []).append(point)
    return {key: points[::-1] for key, points in per_key.items()}
