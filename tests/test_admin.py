"""Admin screens: data lists, model versions and their actions, dashboard, charts, preview and
evaluation runs, as a staff user through the test client; a non-staff user gets none of them."""

import datetime

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from recommender import reports
from recommender.versions import guardrail, run
from recommender.models import EvaluationRun, Interaction, ModelVersion, Rating
from recommender.testing.factories import make_product

from .training_support import eager_celery, fresh_training_state, seed_shop

Status = ModelVersion.Status
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def fresh_serving_state():
    """Each test starts with no loaded models and no training locks in this process."""
    with fresh_training_state(locked_keys=("popularity", "segment_popularity")):
        yield


@pytest.fixture
def eager_tasks():
    """Tasks run in this process even where a broker is configured (failures recorded, not raised)."""
    with eager_celery(propagate=False):
        yield


@pytest.fixture
def shop(transactional_db):
    """A seeded shop with an active popularity model, plus impressions and clicks with arms."""
    products, users = seed_shop()
    version = run.train_strategy("popularity")
    now = timezone.now()
    online = []
    for arm, shown, clicked in (("hybrid", 40, 10), ("segment_popularity", 40, 2)):
        for number in range(shown):
            online.append(Interaction(user=users[number], product=products[number % len(products)], event="impression",
                                      placement="home", strategy=arm, arm=arm, timestamp=now,
                                      served_list=f"{arm[:6]}-{number}"))
        for number in range(clicked):
            online.append(Interaction(user=users[number], product=products[number % len(products)], event="click",
                                      placement="home", strategy=arm, arm=arm, timestamp=now,
                                      served_list=f"{arm[:6]}-{number}"))
    Interaction.objects.bulk_create(online)
    Rating.objects.create(user=users[0], product=products[0], score=5)
    return {"products": products, "users": users, "version": version}


@pytest.fixture
def staff_client(client, transactional_db):
    staff = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw")
    client.force_login(staff)
    return client


def admin_urls(shop):
    version, user = shop["version"], shop["users"][0]
    run = EvaluationRun.objects.create(params={"strategies": ["popularity"], "k": 10}, status="done")
    interaction = Interaction.objects.first()
    return [
        reverse("admin:index"),
        reverse("admin:app_list", args=["recommender"]),
        reverse("admin:recommender_userprofile_changelist"),
        reverse("admin:recommender_userprofile_change", args=[user.recommender_profile.pk]),
        reverse("admin:recommender_rating_changelist"),
        reverse("admin:recommender_rating_change", args=[Rating.objects.get().pk]),
        reverse("admin:recommender_interaction_changelist"),
        reverse("admin:recommender_interaction_change", args=[interaction.pk]),
        reverse("admin:recommender_modelversion_changelist"),
        reverse("admin:recommender_modelversion_change", args=[version.pk]),
        reverse("admin:recommender_evaluationrun_changelist"),
        reverse("admin:recommender_evaluationrun_add"),
        reverse("admin:recommender_evaluationrun_change", args=[run.pk]),
        reverse("admin:recommender_evaluationrun_chart", args=[run.pk]),
        reverse("admin:recommender_dashboard_changelist"),
        reverse("admin:recommender_dashboard_chart", args=["offline"]),
        reverse("admin:recommender_preview_changelist"),
        reverse("admin:recommender_newarrivals_changelist"),
    ]


def test_every_screen_opens_for_staff(shop, staff_client):
    """Each list, detail, dashboard, chart and preview page answers 200 to a staff user."""
    for url in admin_urls(shop):
        assert staff_client.get(url).status_code == 200, url


def test_no_screen_opens_for_a_non_staff_user(shop, client):
    """A signed-in customer is sent to the login page (or refused) on every admin URL and action."""
    client.force_login(shop["users"][1])
    for url in admin_urls(shop):
        response = client.get(url)
        assert response.status_code in (302, 403), url
        if response.status_code == 302:
            assert "/login/" in response["Location"], url
    response = client.post(reverse("admin:recommender_modelversion_changelist"),
                           {"action": "retire_versions", "_selected_action": [shop["version"].pk], "index": 0})
    assert response.status_code in (302, 403)
    assert ModelVersion.objects.get(pk=shop["version"].pk).status == Status.ACTIVE


def test_app_index_links_the_dashboard_and_preview(shop, staff_client):
    """The app index lists the dashboard and the preview pages."""
    page = staff_client.get(reverse("admin:app_list", args=["recommender"])).content.decode()
    assert reverse("admin:recommender_dashboard_changelist") in page
    assert reverse("admin:recommender_preview_changelist") in page


def test_interaction_list_filters_and_never_counts_the_whole_table(shop, staff_client, django_assert_max_num_queries):
    """Filtering by event and arm narrows the list; no query counts the table without a limit."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    url = reverse("admin:recommender_interaction_changelist")
    with CaptureQueriesContext(connection) as queries:
        response = staff_client.get(url, {"event__exact": "click", "arm": "hybrid"})
    listed = response.context["cl"].result_list
    assert len(listed) == 10 and {row.arm for row in listed} == {"hybrid"}
    counts = [query["sql"] for query in queries if "COUNT(" in query["sql"].upper()]
    assert counts and all("LIMIT" in sql.upper() for sql in counts), counts
    assert response.context["cl"].show_full_result_count is False
    assert "hybrid" in response.content.decode()  # the arm filter offers the recent values


def test_capped_paginator_stops_counting_at_the_cap(shop):
    """The paginator counts at most ``cap`` rows."""
    from recommender.admin import CappedCountPaginator

    paginator = CappedCountPaginator(Interaction.objects.order_by("pk"), 50)
    paginator.cap = 100
    assert Interaction.objects.count() > 100
    assert paginator.count == 100 and paginator.num_pages == 2


def test_version_detail_is_a_readable_page(shop, staff_client):
    """Title naming the version, metrics per reveal as a table, timings, counts, params, heartbeat as a time; no save."""
    version = ModelVersion.objects.get(pk=shop["version"].pk)
    version.timings = {**version.timings, "heartbeat": datetime.datetime(2026, 5, 4, 3, 2, 1,
                                                                         tzinfo=datetime.timezone.utc).timestamp()}
    version.save(update_fields=["timings"])
    response = staff_client.get(reverse("admin:recommender_modelversion_change", args=[version.pk]))
    page = response.content.decode()
    assert f"Model version v{version.pk}: popularity (active)" in page and "Change model version" not in page
    assert "serving shoppers now" in page
    assert "<th title=\"NDCG@10: how high up" in page and "events revealed" in page
    ndcg_at_0 = version.metrics["new_user"]["0"]["ndcg"]
    assert f"<td>{ndcg_at_0:.4f}</td>" in page
    assert "fit_seconds" in page or "_seconds" in page  # the timings table
    assert "May 4, 2026" in page  # the heartbeat as a date, not epoch seconds
    assert f"{version.data_counts['interactions']:,}" in page
    assert 'name="_save"' not in page
    assert 'value="retrain_strategy"' in page and 'value="activate_version"' in page


def post_action(client, action, *pks):
    return client.post(reverse("admin:recommender_modelversion_changelist"),
                       {"action": action, "_selected_action": list(pks), "index": 0}, follow=True)


def test_retrain_action_queues_a_training(shop, staff_client, eager_tasks):
    """Retrain makes a new version of the strategy and says what happened."""
    before = ModelVersion.objects.filter(strategy="popularity").count()
    response = post_action(staff_client, "retrain_strategy", shop["version"].pk)
    assert ModelVersion.objects.filter(strategy="popularity").count() == before + 1
    assert "Retraining popularity: done" in [str(message) for message in response.context["messages"]][0]


def test_activate_action_rolls_back_and_retire_retires(shop, staff_client, eager_tasks):
    """Activating the older version makes it active again; retiring the newer one deletes its files."""
    first = shop["version"]
    second = run.train_strategy("popularity", activate_if_better=False)
    guardrail.activate(second)
    response = post_action(staff_client, "activate_version", first.pk)
    assert ModelVersion.objects.get(pk=first.pk).status == Status.ACTIVE
    assert ModelVersion.objects.get(pk=second.pk).status == Status.READY
    assert "done" in str(list(response.context["messages"])[0])
    post_action(staff_client, "retire_versions", second.pk)
    retired = ModelVersion.objects.get(pk=second.pk)
    assert retired.status == Status.RETIRED and retired.artifact_path == ""


@pytest.mark.parametrize("action, warning", [("activate_version", "already active"),
                                             ("retire_versions", "is serving shoppers now")])
def test_actions_on_the_active_version_ask_first(shop, staff_client, eager_tasks, action, warning):
    """Activate and Retire on the active version show a confirmation page and do nothing until confirmed."""
    before = ModelVersion.objects.get(pk=shop["version"].pk)
    response = post_action(staff_client, action, shop["version"].pk)
    page = response.content.decode()
    assert warning in page and 'name="confirmed" value="yes"' in page
    after = ModelVersion.objects.get(pk=shop["version"].pk)
    assert (after.status, after.activated_at) == (before.status, before.activated_at)
    assert not list(response.context["messages"])


def test_actions_on_other_versions_do_not_ask(shop, staff_client, eager_tasks):
    """A version that is not active is activated at once (no confirmation page)."""
    second = run.train_strategy("popularity", activate_if_better=False)
    response = post_action(staff_client, "activate_version", second.pk)
    assert "done" in str(list(response.context["messages"])[0])
    assert ModelVersion.objects.get(pk=second.pk).status == Status.ACTIVE


def test_retiring_the_active_version_is_refused_with_a_message(shop, staff_client, eager_tasks):
    """Confirmed, the active version still stays active and the message says what to do instead."""
    response = staff_client.post(reverse("admin:recommender_modelversion_changelist"),
                                 {"action": "retire_versions", "_selected_action": [shop["version"].pk], "index": 0,
                                  "confirmed": "yes"}, follow=True)
    assert ModelVersion.objects.get(pk=shop["version"].pk).status == Status.ACTIVE
    message = str(list(response.context["messages"])[0])
    assert "roll back" in message


def test_activating_two_versions_of_one_strategy_is_refused(shop, staff_client, eager_tasks):
    """One version per strategy can be activated at a time."""
    second = run.train_strategy("popularity", activate_if_better=False)
    response = post_action(staff_client, "activate_version", shop["version"].pk, second.pk)
    assert "at most one version per strategy" in str(list(response.context["messages"])[0])
    assert ModelVersion.objects.get(pk=second.pk).status == Status.READY


def test_dashboard_shows_freshness_and_click_through_per_arm(shop, staff_client):
    """The dashboard lists the active version and each arm's click-through with its interval."""
    response = staff_client.get(reverse("admin:recommender_dashboard_changelist"))
    statuses = {status.strategy: (status, age) for status, age in response.context["statuses"]}
    assert statuses["popularity"][0].active_version == shop["version"].pk
    assert statuses["popularity"][1].total_seconds() < 600
    assert f">v{shop['version'].pk}<" in response.content.decode()
    by_arm = {row.arm: row for row in response.context["ctr_by_arm"]}
    assert by_arm["hybrid"].impressions == 40 and by_arm["hybrid"].clicks == 10
    assert by_arm["hybrid"].low < 0.25 < by_arm["hybrid"].high
    assert by_arm["segment_popularity"].ctr == pytest.approx(0.05)


def test_dashboard_says_what_serves_each_placement_and_explains_its_metrics(shop, staff_client):
    """Each placement names its strategy and version (popularity v1 as the fallback here); metrics get a sentence."""
    response = staff_client.get(reverse("admin:recommender_dashboard_changelist"))
    serving = {row.placement: row for row in response.context["serving"]}
    assert set(serving) >= {"home", "similar"}
    assert serving["home"].strategy == "popularity" and serving["home"].version == shop["version"].pk
    assert "fallback: hybrid" in serving["home"].note
    page = response.content.decode()
    assert "Serving shoppers now" in page
    for sentence in ("NDCG@10: how high up", "Click-through: clicks on recommended products", "95% interval: the range"):
        assert sentence in page


def test_small_groups_fold_into_other_on_the_dashboard(shop, staff_client):
    """Groups under MIN_IMPRESSIONS are added up in one "other" row instead of being shown as noise."""
    Interaction.objects.bulk_create([
        Interaction(user=shop["users"][0], product=shop["products"][0], event="impression", placement="home",
                    strategy=f"tiny-{number}", arm=f"tiny-{number}", served_list=f"tiny-{number}") for number in range(5)])
    response = staff_client.get(reverse("admin:recommender_dashboard_changelist"))
    labels = [row.label for row in response.context["ctr_by_arm"]]
    assert labels[-1] == "other (5 groups)" and not any(label.startswith("tiny") for label in labels)


@pytest.mark.parametrize("name", ["offline", "volume", "ctr-strategy", "ctr-arm", "ctr-placement"])
def test_dashboard_charts_are_png_images(shop, staff_client, name):
    """Each chart is a PNG drawn on the server."""
    response = staff_client.get(reverse("admin:recommender_dashboard_chart", args=[name]))
    assert response["Content-Type"] == "image/png" and response.content.startswith(PNG_MAGIC)


@pytest.mark.parametrize("name", ["offline", "volume", "ctr-strategy", "ctr-arm", "ctr-placement"])
def test_dashboard_charts_draw_on_ordinary_data(shop, staff_client, name):
    """0 clicks, a label mathtext cannot parse and 300 distinct placements: every chart is still a PNG (was a 500)."""
    user, product = shop["users"][0], shop["products"][0]
    rows = [Interaction(user=user, product=product, event="impression", placement="$\\notacommand{$",
                        strategy="$\\notacommand{$", arm="b", served_list=f"math-{number}")
            for number in range(reports.MIN_IMPRESSIONS)]
    rows += [Interaction(user=user, product=product, event="impression", placement=f"shelf-{number}",
                         strategy="never-clicked", arm="c", served_list=f"shelf-{number}") for number in range(300)]
    Interaction.objects.bulk_create(rows)
    response = staff_client.get(reverse("admin:recommender_dashboard_chart", args=[name]))
    assert response.status_code == 200 and response.content.startswith(PNG_MAGIC)


def test_unknown_chart_is_404(shop, staff_client):
    """A chart name that does not exist is a 404."""
    assert staff_client.get(reverse("admin:recommender_dashboard_chart", args=["nope"])).status_code == 404


def test_wilson_interval_matches_the_formula():
    """10 clicks of 40 impressions: the Wilson 95% interval is (0.1419, 0.4019); 0 trials gives (0, 0)."""
    low, high = reports.wilson_interval(np.array([10, 0]), np.array([40, 0]))
    assert low[0] == pytest.approx(0.14187, abs=1e-4) and high[0] == pytest.approx(0.40194, abs=1e-4)
    assert low[1] == high[1] == 0.0


def test_events_per_day_counts_in_the_window(shop):
    """Events of today are counted per type; events older than the window are not."""
    old = Interaction.objects.first()
    Interaction.objects.create(user=old.user, product=old.product, event="view",
                               timestamp=timezone.now() - datetime.timedelta(days=90))
    per_event = reports.events_per_day()
    assert sum(per_event["impression"].values()) == 80
    assert sum(per_event["view"].values()) == Interaction.objects.filter(
        event="view", timestamp__gte=reports.window_start()).count()


def test_preview_for_a_made_up_visitor(shop, staff_client):
    """A typed profile and products show each strategy's list; untrained ones say so."""
    product = shop["products"][0]
    response = staff_client.post(reverse("admin:recommender_preview_changelist"), {
        "age": 30, "gender": "f", "country": "de", "city": "berlin", "product_ids": str(product.pk), "k": 5})
    result = response.context["result"]
    columns = {column.key: column for column in result.columns}
    assert len(columns["popularity"].rows) == 5
    assert str(product.pk) not in [row.item_id for row in columns["popularity"].rows]
    assert columns["hybrid"].problem == "not trained"
    assert result.served_by == "popularity"
    assert result.context.profile == {"age": 30, "gender": "f", "country": "de", "city": "berlin"}
    assert "not trained" in response.content.decode()


def test_preview_for_a_user_and_bad_input(shop, staff_client):
    """A user id previews that user's context; an unknown product id is a form error."""
    user = shop["users"][0]
    response = staff_client.post(reverse("admin:recommender_preview_changelist"), {"user_id": user.pk, "k": 3})
    assert response.context["result"].context.user_id == str(user.pk)
    assert response.context["result"].context.events
    bad = make_product(title="Gone")
    bad_pk = bad.pk
    bad.delete()
    response = staff_client.post(reverse("admin:recommender_preview_changelist"), {"product_ids": str(bad_pk), "k": 3})
    assert response.context["result"] is None
    assert f"No product with id {bad_pk}" in response.content.decode()


def test_preview_explains_the_hybrid(shop, staff_client):
    """With an active hybrid, its picks come with per-component contributions summing to the score."""
    from django.test import override_settings

    from recommender.conf import settings

    params = {"hybrid": {"components": ["popularity", "segment_popularity"]}}
    with override_settings(RECOMMENDER={**settings.user_settings, "TRAINING_PARAMS": params}):
        hybrid = run.train_strategy("hybrid")
    if hybrid.status != Status.ACTIVE:
        pytest.skip(f"hybrid did not train here: {hybrid.error[:200]}")
    response = staff_client.post(reverse("admin:recommender_preview_changelist"), {"age": 30, "gender": "m", "k": 4})
    result = response.context["result"]
    assert result.served_by == "hybrid" and result.hybrid_components
    first = result.hybrid.rows[0]
    assert set(first.contributions) == set(result.hybrid_components)


def test_evaluation_run_starts_runs_and_shows_results(shop, staff_client, eager_tasks, django_capture_on_commit_callbacks):
    """Starting an evaluation from the admin stores per-strategy results, shown as a table and a chart."""
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(reverse("admin:recommender_evaluationrun_add"),
                                     {"strategies": ["popularity", "segment_popularity"], "folds": 2}, follow=True)
    run = EvaluationRun.objects.get()
    assert run.status == EvaluationRun.Status.DONE, run.error
    assert {row["strategy"] for row in run.results} == {"popularity", "segment_popularity"}
    assert run.params["folds"] == 2 and run.data_counts["interactions"] > 0
    page = response.content.decode()
    assert "segment_popularity" in page and "<table>" in page and "chart.png" in page
    chart = staff_client.get(reverse("admin:recommender_evaluationrun_chart", args=[run.pk]))
    assert chart.content.startswith(PNG_MAGIC)


def test_evaluation_run_refuses_an_empty_choice(shop, staff_client):
    """Starting with no strategy is a form error and stores nothing."""
    response = staff_client.post(reverse("admin:recommender_evaluationrun_add"), {"folds": 2})
    assert response.status_code == 200 and "strategies" in response.context["form"].errors
    assert not EvaluationRun.objects.exists()
