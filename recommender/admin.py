"""Admin screens: the event data, model versions with their actions, evaluation runs, and the
dashboard and preview pages (entries of the app index, drawn by ``admin_views``).

List pages of the data tables stay fast on millions of rows: ids instead of joins, a paginator
that counts at most ``CappedCountPaginator.cap`` rows, no full count, and filters whose choices
come from fixed choices or the newest rows only.
"""

import datetime
import json

from django.contrib import admin, messages
from django.contrib.humanize.templatetags.humanize import naturaltime
from django.core.paginator import Paginator
from django.utils import timezone
from django.utils.formats import date_format
from django.template.defaultfilters import filesizeformat
from django.urls import path, reverse
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from . import admin_privacy, admin_views, evaluation_runs, jobs, reports
from .models import Dashboard, EvaluationRun, Interaction, ModelVersion, NewArrivals, Preview, Rating, UserProfile
from .versions.run import run_summary


# --- big tables ----------------------------------------------------------------------------------
class CappedCountPaginator(Paginator):
    """Counts at most ``cap`` rows (``COUNT`` over a ``LIMIT`` subquery), so a list page never
    scans the whole table; beyond the cap the page links stop at the cap."""

    cap = 10_000

    @cached_property
    def count(self):
        return self.object_list[: self.cap].count()


class RecentValuesFilter(admin.SimpleListFilter):
    """Filter on a free-text column; the choices are the values seen in the newest rows only,
    because ``DISTINCT`` over the whole event log is a full scan."""

    sample_rows = 5000

    def lookups(self, request, model_admin):
        newest = model_admin.get_queryset(request).order_by("-timestamp").values_list(self.parameter_name, flat=True)
        values = sorted({value for value in newest[: self.sample_rows] if value})
        return [(value, value) for value in values]

    def queryset(self, request, queryset):
        return queryset.filter(**{self.parameter_name: self.value()}) if self.value() else queryset


class PlacementFilter(RecentValuesFilter):
    title, parameter_name = _("placement"), "placement"


class StrategyFilter(RecentValuesFilter):
    title, parameter_name = _("strategy"), "strategy"


class ArmFilter(RecentValuesFilter):
    title, parameter_name = _("A/B arm"), "arm"


class BigTableAdmin(admin.ModelAdmin):
    paginator = CappedCountPaginator
    show_full_result_count = False
    list_per_page = 50
    list_select_related = False
    show_facets = admin.ShowFacets.NEVER  # per-choice COUNTs over the whole table


@admin.register(UserProfile)
class UserProfileAdmin(BigTableAdmin):
    list_display = ("id", "user_id", "visitor_key", "gender", "birth_year", "country", "region", "city",
                    "language", "personalization_consent", "created_at")
    list_filter = ("gender", "personalization_consent", "created_at")
    search_fields = ("=visitor_key", "=user__username", "=country", "=city")
    date_hierarchy = "created_at"
    raw_id_fields = ("user",)
    ordering = ("-created_at",)
    actions = (admin_privacy.export_people_data, admin_privacy.erase_people_data)


@admin.register(Rating)
class RatingAdmin(BigTableAdmin):
    list_display = ("id", "user_id", "product_id", "score", "created_at", "updated_at")
    list_filter = ("created_at",)
    search_fields = ("=user__username",)
    date_hierarchy = "created_at"
    raw_id_fields = ("user", "product")
    ordering = ("-created_at",)


@admin.register(Interaction)
class InteractionAdmin(BigTableAdmin):
    list_display = ("id", "timestamp", "event", "product_id", "user_id", "visitor_key", "placement", "strategy",
                    "arm", "value", "dwell_seconds")
    list_filter = ("event", PlacementFilter, StrategyFilter, ArmFilter, "timestamp")
    search_fields = ("=visitor_key", "=user__username", "=dedupe_key")
    date_hierarchy = "timestamp"
    raw_id_fields = ("user", "product")
    ordering = ("-timestamp",)


# --- model versions --------------------------------------------------------------------------------
def pretty_json(value):
    return format_html("<pre style='margin:0;white-space:pre-wrap'>{}</pre>",
                       json.dumps(value, indent=2, sort_keys=True, default=str))


def plain(value):
    """A value in a table cell: numbers rounded, lists and dicts as compact JSON, None as a dash."""
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def html_table(header, rows, titles=None):
    """A small table; ``titles`` gives a column header its explanation (shown on hover)."""
    titles = titles or {}
    head = format_html_join("", '<th title="{}">{}</th>', ((titles.get(name, ""), name) for name in header))
    body = format_html_join("", "<tr>{}</tr>", (
        (format_html_join("", "<td>{}</td>", ((plain(cell),) for cell in row)),) for row in rows))
    return format_html("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", head, body)


def key_value_table(mapping):
    if not mapping:
        return "—"
    return html_table(("name", "value"), sorted(mapping.items()))


def metrics_table(per_reveal):
    """{reveal: {metric: value}} as one row per number of revealed events."""
    if not per_reveal:
        return "—"
    columns = ("ndcg", "recall", "precision", "hr", "mrr", "coverage", "users")
    rows = [(reveal, *(results.get(name) for name in columns))
            for reveal, results in sorted(per_reveal.items(), key=lambda item: int(item[0]) if str(item[0]).isdigit() else 0)]
    titles = {name: reports.METRIC_EXPLANATIONS.get(name, "") for name in columns}
    titles["events revealed"] = reports.METRIC_EXPLANATIONS["reveal"]
    return html_table(("events revealed", *columns), rows, titles)


def queue(model_admin, request, start_job, args, what):
    """Start a job of ``recommender.jobs`` and report: its outcome where it already ran (eager
    Celery), else that it is queued."""
    try:
        result = start_job(*args)
    except Exception as exc:  # a refusal, or eager Celery re-raising the task's own error
        model_admin.message_user(request, f"{what}: {exc}", messages.ERROR)
        return
    if isinstance(result, ModelVersion):  # a training: the row exists from the start
        result.refresh_from_db()
        if result.status == ModelVersion.Status.TRAINING:
            model_admin.message_user(request, f"{what}: queued (version {result.pk}).", messages.SUCCESS)
        else:
            summary = run_summary(result)
            model_admin.message_user(request, f"{what}: done ({admin_views.describe_result(summary)}).",
                                     messages.ERROR if result.status == ModelVersion.Status.FAILED else messages.SUCCESS)
        return
    if not result.ready():
        model_admin.message_user(request, f"{what}: queued (task {result.id}).", messages.SUCCESS)
    elif result.successful():
        model_admin.message_user(request, f"{what}: done ({admin_views.describe_result(result.result)}).",
                                 messages.SUCCESS)
    else:
        model_admin.message_user(request, f"{what}: {result.result}", messages.ERROR)


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("id", "strategy", "status", "stage_progress", "key_metric", "artifact_size", "created_at",
                    "activated_at")
    list_filter = ("status", "strategy")
    list_per_page = 50
    actions = ("retrain_strategy", "activate_version", "retire_versions")
    change_form_template = "admin/recommender/modelversion/change_form.html"
    VERSION_BUTTONS = (("retrain_strategy", _("Retrain this strategy")),
                       ("activate_version", _("Activate (roll back to) this version")),
                       ("retire_versions", _("Retire")))
    fieldsets = (
        (None, {"fields": ("strategy", "serving_status", "stage", "progress_percent", "heartbeat", "task_id")}),
        (_("Offline metrics (customers held out of training, treated as new)"),
         {"fields": ("key_metric", "new_user_table", "guardrail", "holdout_table", "live_table")}),
        (_("Data counts"), {"fields": ("data_counts_table",)}),
        (_("Parameters"), {"fields": ("params_table",)}),
        (_("Timings"), {"fields": ("created_at", "finished_at", "activated_at", "timings_table")}),
        (_("Artifact"), {"fields": ("artifact_path", "checksum", "artifact_size")}),
        (_("Error"), {"fields": ("error_text",)}),
        (_("Raw metrics (JSON)"), {"fields": ("metrics_json",), "classes": ("collapse",)}),
    )
    readonly_fields = ("strategy", "serving_status", "stage", "progress_percent", "heartbeat", "task_id", "key_metric",
                       "new_user_table", "guardrail", "holdout_table", "live_table", "data_counts_table",
                       "params_table", "artifact_path", "checksum", "artifact_size", "created_at", "finished_at",
                       "activated_at", "timings_table", "error_text", "metrics_json")

    def has_add_permission(self, request):
        return False  # versions are made by training, never by hand

    def has_delete_permission(self, request, obj=None):
        return False  # "retire" deletes the files and keeps the record

    def change_view(self, request, object_id, form_url="", extra_context=None):
        version = self.get_object(request, object_id)
        extra_context = {**(extra_context or {}), "version_actions": self.VERSION_BUTTONS, "show_save": False,
                         "show_save_and_continue": False, "show_save_and_add_another": False, "show_delete": False}
        if version is not None:
            extra_context["title"] = f"Model version v{version.pk}: {version.strategy} ({version.get_status_display().lower()})"
            extra_context["version_is_active"] = version.status == ModelVersion.Status.ACTIVE
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.display(description=_("status"))
    def serving_status(self, version):
        if version.status == ModelVersion.Status.ACTIVE:
            since = date_format(timezone.localtime(version.activated_at), "DATETIME_FORMAT") if version.activated_at else "—"
            return format_html("<strong>{}</strong>: serving shoppers now (since {})", version.get_status_display(), since)
        return version.get_status_display()

    @admin.display(description=_("last heartbeat"))
    def heartbeat(self, version):
        """The training process writes its heartbeat (epoch seconds) while it runs."""
        beat = (version.timings or {}).get("heartbeat")
        if not isinstance(beat, (int, float)):
            return "—"
        moment = datetime.datetime.fromtimestamp(beat, tz=datetime.timezone.utc)
        return f"{date_format(timezone.localtime(moment), 'DATETIME_FORMAT')} ({naturaltime(moment)})"

    @admin.display(description=_("new users, by events revealed"))
    def new_user_table(self, version):
        return metrics_table((version.metrics or {}).get("new_user") or {})

    @admin.display(description=_("on live data since training"))
    def live_table(self, version):
        live = (version.metrics or {}).get("live") or {}
        return metrics_table(live.get("new_user") or {}) if live else "—"

    @admin.display(description=_("activation check"))
    def guardrail(self, version):
        guardrail = (version.metrics or {}).get("guardrail") or {}
        if not guardrail:
            return "—"
        verdict = "activated" if guardrail.get("activated") else "not activated"
        return f"{verdict}: {guardrail.get('reason', '')}"

    @admin.display(description=_("held-out users"))
    def holdout_table(self, version):
        return key_value_table((version.metrics or {}).get("holdout") or {})

    @admin.display(description=_("data counts"))
    def data_counts_table(self, version):
        return key_value_table(version.data_counts)

    @admin.display(description=_("params"))
    def params_table(self, version):
        return key_value_table(version.params)

    @admin.display(description=_("timings (seconds)"))
    def timings_table(self, version):
        return key_value_table({name: value for name, value in (version.timings or {}).items() if name != "heartbeat"})

    @admin.display(description=_("progress"))
    def progress_percent(self, version):
        return f"{version.progress:.0%}"

    @admin.display(description=_("stage"))
    def stage_progress(self, version):
        return version.stage if version.status != ModelVersion.Status.TRAINING else f"{version.stage} ({version.progress:.0%})"

    @admin.display(description=_("NDCG@10 (new users)"))
    def key_metric(self, version):
        value = (version.metrics or {}).get("key_value")
        return "—" if value is None else f"{value:.4f}"

    @admin.display(description=_("artifact size"))
    def artifact_size(self, version):
        return "—" if version.artifact_bytes is None else filesizeformat(version.artifact_bytes)

    @admin.display(description=_("metrics"))
    def metrics_json(self, version):  # everything, for whoever needs a figure the tables leave out
        return pretty_json(version.metrics)

    @admin.display(description=_("error"))
    def error_text(self, version):
        return format_html("<pre style='margin:0;white-space:pre-wrap'>{}</pre>", version.error) if version.error else "—"

    @admin.action(description=_("Retrain the strategies of the selected versions"), permissions=["change"])
    def retrain_strategy(self, request, queryset):
        for key in sorted(set(queryset.values_list("strategy", flat=True))):
            queue(self, request, jobs.train, (key,), f"Retraining {key}")

    @admin.action(description=_("Activate the selected version (roll back to it)"), permissions=["change"])
    def activate_version(self, request, queryset):
        chosen = list(queryset.order_by("strategy", "-created_at"))
        strategies = [version.strategy for version in chosen]
        if len(set(strategies)) != len(strategies):
            self.message_user(request, "Select at most one version per strategy to activate.", messages.ERROR)
            return
        confirmation = admin_views.confirm_on_active_versions(self, request, queryset, "activate_version")
        if confirmation is not None:
            return confirmation
        for version in chosen:
            queue(self, request, jobs.activate, (version.pk,), f"Activating {version.strategy} v{version.pk}")

    @admin.action(description=_("Retire the selected versions (delete their files)"), permissions=["change"])
    def retire_versions(self, request, queryset):
        confirmation = admin_views.confirm_on_active_versions(self, request, queryset, "retire_versions")
        if confirmation is not None:
            return confirmation
        for version in queryset.order_by("pk"):
            queue(self, request, jobs.retire, (version.pk,), f"Retiring {version.strategy} v{version.pk}")


# --- evaluation runs -------------------------------------------------------------------------------
@admin.register(EvaluationRun)
class EvaluationRunAdmin(admin.ModelAdmin):
    list_display = ("id", "status", "strategies", "folds", "created_at", "finished_at")
    list_filter = ("status",)
    list_per_page = 50
    fields = ("status", "params_json", "data_counts_json", "created_at", "started_at", "finished_at",
              "results_table", "results_chart", "error_text")
    readonly_fields = fields

    def has_change_permission(self, request, obj=None):
        return False  # a run is a record; its detail page is read-only

    def add_view(self, request, form_url="", extra_context=None):
        return admin_views.start_evaluation(self, request)

    def get_urls(self):
        chart = path("<int:run_id>/chart.png", self.admin_site.admin_view(self.chart_view),
                     name="recommender_evaluationrun_chart")
        return [chart, *super().get_urls()]

    def chart_view(self, request, run_id):
        return admin_views.evaluation_chart(self, request, run_id)

    @admin.display(description=_("strategies"))
    def strategies(self, run):
        return ", ".join(run.params.get("strategies", []))

    @admin.display(description=_("folds"))
    def folds(self, run):
        return run.params.get("folds")

    @admin.display(description=_("params"))
    def params_json(self, run):
        return pretty_json(run.params)

    @admin.display(description=_("data counts"))
    def data_counts_json(self, run):
        return pretty_json(run.data_counts)

    @admin.display(description=_("error"))
    def error_text(self, run):
        return format_html("<pre style='margin:0;white-space:pre-wrap'>{}</pre>", run.error) if run.error else "—"

    @admin.display(description=_("results (all users)"))
    def results_table(self, run):
        rows = evaluation_runs.headline(run)
        if not rows:
            return "—"
        columns = ("strategy", "reveal", "ndcg", "recall", "precision", "hr", "mrr", "coverage", "users",
                   "fit_seconds")
        header = format_html_join("", "<th>{}</th>", ((name,) for name in columns))
        body = format_html_join("", "<tr>{}</tr>", (
            (format_html_join("", "<td>{}</td>", ((admin_views.cell(row.get(name)),) for name in columns)),)
            for row in rows
        ))
        return format_html("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", header, body)

    @admin.display(description=_("chart"))
    def results_chart(self, run):
        if run.status != EvaluationRun.Status.DONE:
            return "—"
        url = reverse(f"{self.admin_site.name}:recommender_evaluationrun_chart", args=[run.pk])
        return format_html('<img src="{}" alt="NDCG@10 per strategy and reveal" style="max-width:100%">', url)


# --- dashboard and preview (app index entries) -----------------------------------------------------
class PageAdmin(admin.ModelAdmin):
    """A page of its own under the app index: no add, change or delete, staff who may view versions."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_staff and request.user.has_perm(
            "recommender.view_modelversion")


@admin.register(Dashboard)
class DashboardAdmin(PageAdmin):
    def changelist_view(self, request, extra_context=None):
        return admin_views.dashboard(self, request)

    def get_urls(self):
        chart = path("chart/<slug:name>.png", self.admin_site.admin_view(self.chart_view),
                     name="recommender_dashboard_chart")
        return [chart, *super().get_urls()]

    def chart_view(self, request, name):
        return admin_views.dashboard_chart(self, request, name)


@admin.register(NewArrivals)
class NewArrivalsAdmin(PageAdmin):
    def changelist_view(self, request, extra_context=None):
        return admin_views.new_arrivals(self, request)


@admin.register(Preview)
class PreviewAdmin(PageAdmin):
    def changelist_view(self, request, extra_context=None):
        return admin_views.preview(self, request)
