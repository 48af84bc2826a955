"""What the admin dashboard shows: offline metrics per version, data volume, training freshness
and online click-through with confidence intervals.

Every query aggregates in the database (GROUP BY) over a bounded window, so the dashboard costs
a handful of queries whatever the size of the event log.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import numpy as np
from django.db.models import CharField, Count, Max, Min, Value
from django.db.models.functions import Cast, Concat, TruncDate
from django.utils import timezone

from .conf import settings
from .models import EventType, Interaction, ModelVersion
from .catalog import get_adapter
from .serving import exploration
from .serving.candidates import DATABASE_POPULARITY
from .serving.placements import get_placement, placement_names
from .strategies import registry

WINDOW_DAYS = 30
VERSIONS_PER_STRATEGY = 20
# z of a two-sided 95% interval.
Z_95 = 1.959963984540054
# The offline figures charted per version: (label, new-user reveal, metric name).
OFFLINE_SERIES = (("NDCG@10, 0 events", "0", "ndcg"), ("NDCG@10, 3 events", "3", "ndcg"))
# Below this many impressions a group's click-through is noise: it goes into "other" and
# is not charted on its own.
MIN_IMPRESSIONS = 30
# Groups charted and tabled before the rest are folded into one "other" row.
TOP_GROUPS = 10

# One sentence per figure the owner screens show, in the words a shop owner uses.
METRIC_EXPLANATIONS = {
    "ndcg": "NDCG@10: how high up the first 10 recommendations the products a new customer later bought or "
            "liked appear (1 = all of them at the very top, 0 = none in the 10).",
    "recall": "Recall@10: the share of a new customer's later purchases and likes that were among the 10 "
              "recommended products.",
    "precision": "Precision@10: the share of the 10 recommended products that the new customer later bought "
                 "or liked.",
    "hr": "Hit rate@10: the share of new customers for whom at least one of the 10 recommendations was right.",
    "mrr": "MRR@10: how soon the first right recommendation comes (1 = first place, 0.5 = second, ...).",
    "coverage": "Coverage: the share of the catalogue that appears in anyone's 10 recommendations "
                "(low: everybody sees the same few products).",
    "users": "Users: how many held-out customers the figures were measured on (few users: rough figures).",
    "reveal": "Events revealed: how many of a held-out customer's first actions the model was shown "
              "(0 = a brand-new visitor it knows nothing about).",
    "ctr": "Click-through: clicks on recommended products divided by how many were shown, counting each "
           "product of each served list once.",
    "interval": "95% interval: the range the true click-through lies in with 95% confidence (Wilson); two "
                "arms whose ranges overlap are not yet distinguishable.",
    "impressions": "Impressions: recommended products that were on the shopper's screen (at least half visible).",
}


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

    name: str = ""  # set for a folded row ("other")

    @property
    def label(self) -> str:
        return self.name or " / ".join(part for part in (self.strategy, self.placement, self.arm) if part) or "(none)"


def _rows(groups, impressions, clicks, by, names=None) -> list[ClickThrough]:
    impressions, clicks = np.asarray(impressions, dtype=float), np.asarray(clicks, dtype=float)
    low, high = wilson_interval(clicks, impressions)
    ctr = np.divide(clicks, impressions, out=np.zeros_like(clicks), where=impressions > 0)
    return [
        ClickThrough(**dict(zip(by, group)), **{name: "" for name in ("strategy", "placement", "arm") if name not in by},
                     impressions=int(impressions[i]), clicks=int(clicks[i]), ctr=float(ctr[i]),
                     low=float(low[i]), high=float(high[i]), name=(names or {}).get(i, ""))
        for i, group in enumerate(groups)
    ]


def top_with_other(rows: list[ClickThrough], top: int = TOP_GROUPS,
                   min_impressions: int = MIN_IMPRESSIONS) -> list[ClickThrough]:
    """The ``top`` groups with at least ``min_impressions``, then one "other" row for the rest.

    Thousands of groups (any label a shop ever used) stay one table and one chart of a dozen
    bars; groups too small to say anything are counted in "other" instead of shown as noise.
    """
    kept = [row for row in rows if row.impressions >= min_impressions][:top]
    kept_ids = {id(row) for row in kept}
    rest = [row for row in rows if id(row) not in kept_ids]
    if not rest or not any(row.impressions for row in rest):
        return kept
    by = ("strategy", "placement", "arm")
    other = _rows([("", "", "")], [sum(row.impressions for row in rest)], [sum(row.clicks for row in rest)], by,
                  names={0: f"other ({len(rest)} groups)"})
    return kept + other


def click_through(days: int = WINDOW_DAYS, now=None, by=("strategy", "placement", "arm")) -> list[ClickThrough]:
    """Click-through of the last ``days`` grouped by ``by`` (any of strategy, placement, arm).

    Only attributed events count: impressions and clicks whose signed token named the served
    list they came from (``Interaction.served_list``, see ``recommender.attribution``); the
    group is what the token said, never what a client wrote. Each product of each served list
    counts once: shown if it had an impression or a click, clicked if it had a click. So clicks
    are a subset of what was shown, and click-through is at most 1 however often an event is
    replayed. Two GROUP BY queries; sorted by impressions, most first.
    """
    attributed = Interaction.objects.filter(timestamp__gte=window_start(days, now)).exclude(served_list="")
    shown_item = Concat("served_list", Value(":"), Cast("product_id", CharField()), output_field=CharField())
    shown = dict(_grouped(attributed.filter(event__in=[EventType.IMPRESSION, EventType.CLICK]), by, shown_item))
    clicked = dict(_grouped(attributed.filter(event=EventType.CLICK), by, shown_item))
    totals = {group: (count, clicked.get(group, 0)) for group, count in shown.items()}
    groups = sorted(totals, key=lambda group: (-totals[group][0], group))
    return _rows(groups, [totals[group][0] for group in groups], [totals[group][1] for group in groups], by)


def _grouped(events, by, distinct_expression):
    counted = events.values(*by).annotate(n=Count(distinct_expression, distinct=True)).order_by()
    return ((tuple(row[name] for name in by), row["n"]) for row in counted)


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


# --- what serves shoppers now ---------------------------------------------------------------------
@dataclass(frozen=True)
class PlacementServing:
    """Which strategy and version answer one placement now (for a visitor with consent)."""

    placement: str
    title: str
    arm: str  # the A/B arm, "" without a test
    strategy: str
    version: int | None
    note: str


def serving_now() -> list[PlacementServing]:
    """One row per placement (and A/B arm): the first strategy of its chain with an active version.

    The same chain serving walks (``Placement.strategy_chain``, see docs/architecture.md): the
    placement's own strategies, the arm's or default strategy, then the fallbacks, for a visitor
    without session events (a strategy that needs events is passed over). Without any active
    version the database popularity list serves.
    """
    active = dict(ModelVersion.objects.filter(status=ModelVersion.Status.ACTIVE).values_list("strategy", "pk"))
    test = settings.AB_TEST or {}
    arms = sorted((test.get("arms") or {}).items()) or [("", None)]
    rows = []
    for placement in placement_names():
        spot = get_placement(placement)
        for arm, share in arms:
            chain = [key for key in spot.strategy_chain(arm or settings.DEFAULT_STRATEGY, settings.FALLBACK_STRATEGIES)
                     if not _needs_events(key)]
            serving = next((key for key in chain if key in active), None)
            if serving is None:
                note = "no trained model yet: the products most visitors interacted with, counted in the database"
            elif serving == chain[0]:
                note = "as configured"
            else:
                skipped = ", ".join(chain[: chain.index(serving)])
                note = f"fallback: {skipped} has no active version"
            if arm:
                note = f"A/B test {test.get('name', '')!s}, arm {arm} ({float(share):.0%} of visitors); {note}"
            rows.append(PlacementServing(placement=placement, title=spot.title, arm=arm,
                                         strategy=serving or DATABASE_POPULARITY,
                                         version=active.get(serving), note=note))
    return rows


def _needs_events(key: str) -> bool:
    try:
        return registry.get_strategy_class(key, settings.STRATEGIES).needs_events
    except Exception:  # an unimportable strategy: the system checks report it
        return False


# --- new arrivals (the exploration pool) ------------------------------------------------------------
NEW_ARRIVALS_SHOWN = 200


@dataclass(frozen=True)
class NewArrival:
    """One product without training events: its attributed impressions and clicks, age and state."""

    item_id: str
    title: str
    category: str
    impressions: int
    clicks: int
    ctr: float
    low: float
    high: float
    days_since_added: int | None
    warmed_up: bool

    @property
    def state(self) -> str:
        return "warmed up" if self.warmed_up else "exploring"


def new_arrivals(now=None, limit: int = NEW_ARRIVALS_SHOWN) -> list[NewArrival] | None:
    """The exploration strategy's products without training events, newest first; None without its model.

    Counts are lifetime attributed impressions and clicks (each served list once, one GROUP BY);
    a product is warmed up from ``EXPLORATION_MIN_IMPRESSIONS`` on. Three queries in all.
    """
    model = exploration.exploration_model()
    if model is None:
        return None
    now = now or timezone.now()
    adapter = get_adapter()
    untrained = list(model.untrained_item_ids() or ())
    known = set(str(item_id) for item_id in model.item_ids)
    unknown = [str(pk) for pk in adapter.queryset().values_list("pk", flat=True) if str(pk) not in known]
    candidates = [*unknown, *untrained]
    products = adapter.queryset().filter(pk__in=[adapter.pk_from_string(item) for item in candidates])
    related = adapter.related_paths()
    products = {str(product.pk): product for product in (products.select_related(*related) if related else products)}
    added = _added_times(products, adapter)
    order = sorted(products, key=lambda item: (added.get(item) is None, -(added[item].timestamp() if added.get(item)
                                                                           else 0), item))[:limit]
    impressions, clicks = exploration.attributed_counts(order)
    shown = np.asarray([impressions.get(item, 0) for item in order], dtype=float)
    clicked = np.minimum(np.asarray([clicks.get(item, 0) for item in order], dtype=float), shown)
    low, high = wilson_interval(clicked, shown)
    threshold = int(settings.EXPLORATION_MIN_IMPRESSIONS)
    return [NewArrival(item_id=item, title=adapter.title_of(products[item]),
                       category=adapter.category_of(products[item]), impressions=int(shown[i]), clicks=int(clicked[i]),
                       ctr=float(clicked[i] / shown[i]) if shown[i] else 0.0, low=float(low[i]), high=float(high[i]),
                       days_since_added=None if added.get(item) is None else max(0, (now - added[item]).days),
                       warmed_up=shown[i] >= threshold)
            for i, item in enumerate(order)]


def _added_times(products: dict, adapter) -> dict:
    """{item id: when it was added}: the ``EXPLORATION_ADDED_FIELD``, else its first event (one query)."""
    field = settings.EXPLORATION_ADDED_FIELD
    names = {model_field.name for model_field in adapter.model._meta.get_fields()}
    if field and field in names:
        return {item: getattr(product, field) for item, product in products.items() if getattr(product, field)}
    first = (Interaction.objects.filter(product_id__in=[product.pk for product in products.values()])
             .values("product_id").annotate(first=Min("timestamp")).order_by())
    return {str(row["product_id"]): row["first"] for row in first}
