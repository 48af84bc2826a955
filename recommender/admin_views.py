"""The admin's own pages: dashboard (+ its charts), new arrivals, preview, starting an evaluation run (+ its chart).

Thin views: the figures come from ``reports``, ``preview`` and ``evaluation_runs``, the images
from ``charts``. Each is called by a ``ModelAdmin`` of ``admin.py`` (inside ``admin_view``,
so staff login is checked there; the per-page permission is checked here).
"""

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from . import charts, evaluation_runs, jobs, preview as previews, reports
from .conf import settings
from .models import EvaluationRun, Gender
from .strategies import registry

CHART_NAMES = ("offline", "volume", "ctr-strategy", "ctr-arm", "ctr-placement")
CTR_GROUPS = {"ctr-strategy": ("strategy",), "ctr-arm": ("strategy", "arm"), "ctr-placement": ("placement",)}


def _context(model_admin, request, title, **extra):
    return {**model_admin.admin_site.each_context(request), "opts": model_admin.model._meta, "title": title,
            "app_label": model_admin.model._meta.app_label, **extra}


def _require_view(model_admin, request, obj=None):
    if not model_admin.has_view_permission(request, obj):
        raise PermissionDenied


def cell(value):
    """A table cell: floats to four decimals, None as a dash."""
    if value is None:
        return "—"
    return f"{value:.4f}" if isinstance(value, float) else value


def describe_result(result):
    """A task's return value in a message: a training summary's outcome, else the value."""
    if isinstance(result, dict) and "outcome" in result:
        return f"v{result.get('version')}: {result['outcome']}"
    return f"version {result}" if isinstance(result, int) else str(result)


def _png(data: bytes) -> HttpResponse:
    response = HttpResponse(data, content_type="image/png")
    response["Cache-Control"] = "private, max-age=60"
    return response


# --- dashboard -------------------------------------------------------------------------------------
def dashboard(model_admin, request):
    _require_view(model_admin, request)
    now = timezone.now()
    statuses = [(status, status.age(now)) for status in reports.strategy_statuses()]
    return TemplateResponse(request, "admin/recommender/dashboard.html", _context(
        model_admin, request, "Recommendations dashboard",
        statuses=statuses, window_days=reports.WINDOW_DAYS,
        ctr_rows=reports.top_with_other(reports.click_through(now=now)),
        ctr_by_arm=reports.top_with_other(reports.click_through(now=now, by=("strategy", "arm"))),
        min_impressions=reports.MIN_IMPRESSIONS, explanations=reports.METRIC_EXPLANATIONS,
        serving=reports.serving_now(),
        chart_names=CHART_NAMES,
    ))


def dashboard_chart(model_admin, request, name):
    _require_view(model_admin, request)
    if name == "offline":
        history = {key: {label: [point[label] for point in points] for label, _, _ in reports.OFFLINE_SERIES}
                   for key, points in reports.offline_metrics().items()}
        return _png(charts.metric_history(history, "Offline NDCG@10 of new users, per version", "NDCG@10"))
    if name == "volume":
        per_event = reports.events_per_day()
        series = {event: (list(days), list(days.values())) for event, days in sorted(per_event.items())}
        return _png(charts.lines(series, f"Events per day, last {reports.WINDOW_DAYS} days", "events",
                                 markers=False, dates=True))
    if name in CTR_GROUPS:
        rows = reports.top_with_other(reports.click_through(by=CTR_GROUPS[name]))
        return _png(charts.intervals(
            [row.label for row in rows], [row.ctr for row in rows], [row.low for row in rows],
            [row.high for row in rows], f"Click-through by {' and '.join(CTR_GROUPS[name])}, 95% Wilson interval",
            "clicks / impressions",
            empty_message=f"Not enough data yet: no group has {reports.MIN_IMPRESSIONS} impressions in the last "
                          f"{reports.WINDOW_DAYS} days"))
    raise Http404(f"No chart named {name!r}")


# --- new arrivals ----------------------------------------------------------------------------------
def new_arrivals(model_admin, request):
    _require_view(model_admin, request)
    return TemplateResponse(request, "admin/recommender/new_arrivals.html", _context(
        model_admin, request, "New arrivals", rows=reports.new_arrivals(),
        threshold=settings.EXPLORATION_MIN_IMPRESSIONS, strategy=settings.EXPLORATION_STRATEGY,
        slots=settings.EXPLORATION_SLOTS, explanations=reports.METRIC_EXPLANATIONS,
    ))


# --- confirmations -----------------------------------------------------------------------------------
ACTIVE_VERSION_WARNINGS = {
    "activate_version": ("Activate", "is already active and serving shoppers. Activating it again makes every "
                                     "server reload it from storage; shoppers see no change."),
    "retire_versions": ("Retire", "is serving shoppers now. An active version is never retired: activate "
                                  "another version of {strategy} first. Continuing leaves it active."),
}


def confirm_on_active_versions(model_admin, request, queryset, action):
    """A confirmation page when ``action`` would touch an active version, until the form says "confirmed".

    Returns the page (the admin action returns it in place of running), or None to go ahead.
    """
    from .models import ModelVersion

    if request.POST.get("confirmed") == "yes":
        return None
    versions = list(queryset.order_by("strategy", "pk"))
    active = [version for version in versions if version.status == ModelVersion.Status.ACTIVE]
    if not active:
        return None
    verb, warning = ACTIVE_VERSION_WARNINGS[action]
    return TemplateResponse(request, "admin/recommender/modelversion/confirm_action.html", _context(
        model_admin, request, f"{verb} an active version?", action=action, verb=verb, versions=versions,
        warnings=[(version, warning.format(strategy=version.strategy)) for version in active],
        others=[version for version in versions if version not in active]))


# --- preview ---------------------------------------------------------------------------------------
class PreviewForm(forms.Form):
    user_id = forms.CharField(required=False, label="User id",
                              help_text="A customer's account id; leave empty to describe a new visitor below.")
    age = forms.IntegerField(required=False, min_value=0, max_value=120)
    gender = forms.ChoiceField(required=False, choices=Gender.choices)
    country = forms.CharField(required=False, max_length=64)
    city = forms.CharField(required=False, max_length=64)
    product_ids = forms.CharField(required=False, label="Recent products",
                                  help_text="Product ids the visitor viewed, oldest first, separated by commas.")
    k = forms.IntegerField(initial=10, min_value=1, max_value=50, label="Top k")

    def product_id_list(self):
        return [part.strip() for part in self.cleaned_data["product_ids"].split(",") if part.strip()]


def preview(model_admin, request):
    _require_view(model_admin, request)
    form = PreviewForm(request.POST or None, initial={"k": 10})
    result = None
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            if data["user_id"]:
                context = previews.context_for_user(data["user_id"])
            else:
                context = previews.context_for_visitor(
                    {"age": data["age"], "gender": data["gender"], "country": data["country"], "city": data["city"]},
                    form.product_id_list())
        except previews.PreviewError as exc:
            form.add_error(None, str(exc))
        else:
            result = previews.build_preview(context, k=data["k"])
    return TemplateResponse(request, "admin/recommender/preview.html", _context(
        model_admin, request, "Recommendation preview", form=form, result=result))


# --- evaluation runs -------------------------------------------------------------------------------
class EvaluationRunForm(forms.Form):
    strategies = forms.MultipleChoiceField(widget=forms.CheckboxSelectMultiple)
    folds = forms.TypedChoiceField(coerce=int, choices=[(n, n) for n in evaluation_runs.FOLD_CHOICES], initial=3)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        keys = registry.available_keys(settings.STRATEGIES)
        self.fields["strategies"].choices = [(key, key) for key in keys]
        self.fields["strategies"].initial = [key for key in evaluation_runs.DEFAULT_STRATEGIES if key in keys]


def start_evaluation(model_admin, request):
    if not model_admin.has_add_permission(request):
        raise PermissionDenied
    form = EvaluationRunForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            run = jobs.evaluate(form.cleaned_data["strategies"], folds=form.cleaned_data["folds"])
        except ValueError as exc:
            form.add_error(None, str(exc))
        else:
            run.refresh_from_db()
            model_admin.message_user(request, f"Evaluation run {run.pk}: {run.get_status_display().lower()}.",
                                     messages.ERROR if run.status == EvaluationRun.Status.FAILED else messages.SUCCESS)
            return HttpResponseRedirect(reverse(f"{model_admin.admin_site.name}:recommender_evaluationrun_change",
                                                args=[run.pk]))
    return TemplateResponse(request, "admin/recommender/evaluationrun/start.html", _context(
        model_admin, request, "Start an offline evaluation", form=form,
        reveals=evaluation_runs.DEFAULT_REVEALS, k=evaluation_runs.K))


def evaluation_chart(model_admin, request, run_id):
    run = EvaluationRun.objects.filter(pk=run_id).first()
    if run is None:
        raise Http404(f"No evaluation run {run_id}")
    _require_view(model_admin, request, run)
    rows = evaluation_runs.headline(run)
    strategies = list(dict.fromkeys(row["strategy"] for row in rows))
    reveals = list(dict.fromkeys(row["reveal"] for row in rows))
    value = {(row["strategy"], row["reveal"]): row["ndcg"] for row in rows}
    series = {f"{reveal} events revealed": [value.get((key, reveal)) for key in strategies] for reveal in reveals}
    return _png(charts.grouped_bars(strategies, series, f"Evaluation run {run.pk}: NDCG@{run.params.get('k')} of new users",
                                    "NDCG", empty_message="No results (yet)"))
