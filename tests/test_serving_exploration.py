"""Tests of recommender.serving.exploration: the exploration slot's budget, rules, consent,
reproducible Thompson draws, attribution of its slot and warm-up as impressions arrive."""

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.db import connection

from recommender import events, service
from recommender.catalog import get_adapter
from recommender.models import Interaction, UserProfile
from recommender.serving import exploration
from recommender.strategies.registry import create_strategy

from .serving_support import catalog_dataset, fit_strategies, make_catalog, serve

# The slot's tests stock and price products through the demo shop's adapter (SEEDED names it):
# the alternative-catalogue pass, whose product model has no such fields, leaves them out.
pytestmark = [pytest.mark.django_db, pytest.mark.shop]
SEEDED = {"EXPLORATION_SEED": 7, "CATALOG_ADAPTER": "shop_demo.catalog.adapter.ShopCatalogAdapter"}


def new_products(count=6, category="Garden"):
    """Products added after training: in the catalogue, without any event."""
    adapter = get_adapter()
    added = []
    for number in range(count):
        product = adapter.build_product({"external_id": f"new-{category[:3].lower()}-{number}",
                                         "title": f"Novelty {category.lower()} thing {number}",
                                         "description": f"A new {category.lower()} thing, number {number}.",
                                         "category": category, "brand": "NewCo", "price": 20, "in_stock": True})
        product.save()
        added.append(product)
    return added


@pytest.fixture
def shop(monkeypatch):
    """A catalogue with planted taste, new products the content model knows but saw no events of."""
    old = make_catalog(per_category=6)
    new = new_products(4, "Garden") + new_products(4, "Sports")
    dataset = catalog_dataset(old + new)  # the new products are in the catalogue, without events
    models = fit_strategies(dataset)
    models["content"] = create_strategy("content", encoder="tfidf", blend_weight=0.5).fit(dataset)
    serve(monkeypatch, models)
    return old, new, models


def ids(products):
    return {str(product.pk) for product in products}


def explored_items(served):
    return [served.items[position] for position in served.explored]


def test_the_pool_holds_only_products_without_training_events(shop):
    """Old products (with events) are not new arrivals; every new product is, with no counts yet."""
    old, new, models = shop
    pool = exploration.build_pool(models["content"])
    assert set(pool.item_ids) >= ids(new)
    trained = {item for item, known in zip(models["content"].item_ids, models["content"].trained_) if known}
    assert not set(pool.item_ids) & trained
    assert pool.impressions.sum() == 0 and pool.clicks.sum() == 0


@override_settings(RECOMMENDER=SEEDED)
def test_budget_is_never_exceeded(shop):
    """Home gives at most its one slot of 8 to exploration, two when configured; cart none."""
    old, new, _ = shop
    counts = []
    for number in range(30):
        served = service.recommend(visitor_key=f"budget-{number}", placement="home", k=8)
        assert len(served) == 8 and len(served.explored) <= 1
        assert {item.item_id for item in explored_items(served)} <= ids(new) | (set(exploration.build_pool(
            shop[2]["content"]).item_ids))
        counts.append(len(served.explored))
    assert sum(counts) >= 25  # a fresh visitor's home shelf nearly always has its new arrival
    cart = service.recommend(visitor_key="budget-cart", placement="cart", k=6)
    assert cart.explored == ()
    with override_settings(RECOMMENDER={**SEEDED, "EXPLORATION_SLOTS": {"home": 2}}):
        for number in range(10):
            served = service.recommend(visitor_key=f"budget-two-{number}", placement="home", k=8)
            assert len(served.explored) <= 2 and len(served) == 8
        assert len(served.explored) == 2
    with override_settings(RECOMMENDER={**SEEDED, "EXPLORATION_SLOTS": {"home": 0}}):
        assert service.recommend(visitor_key="budget-off", placement="home", k=8).explored == ()


@override_settings(RECOMMENDER=SEEDED)
def test_rules_hold_for_exploration_items(shop):
    """An out-of-stock new product is never explored, nor one the visitor bought."""
    old, new, _ = shop
    user = get_user_model().objects.create_user("buyer", password="pw-123456")
    sold_out, bought = new[0], new[1]
    type(sold_out).objects.filter(pk=sold_out.pk).update(in_stock=False)
    events.record([{"product": bought.pk, "event": "purchase"}], user=user)
    for number in range(40):
        served = service.recommend(user=user, placement="home", k=8)
        shown = {item.item_id for item in served}
        assert str(sold_out.pk) not in shown and str(bought.pk) not in shown
        events.record([{"product": old[number % len(old)].pk, "event": "view"}], user=user)  # a fresh list each time


@override_settings(RECOMMENDER=SEEDED)
def test_taste_names_the_interest_and_consent_withdrawn_gets_none(shop):
    """With garden views the slot goes to a garden novelty named by that interest; without consent,
    the same views are not read and the slot is a plain new arrival."""
    old, new, models = shop
    garden = [product for product in old if "Garden" in product.name]
    garden_new = ids(new[:4])
    garden_share = {}
    for who, consent in (("keen", True), ("private", False)):
        user = get_user_model().objects.create_user(who, password="pw-123456")
        UserProfile.objects.create(user=user, gender="m", personalization_consent=consent)
        events.record([{"product": product.pk, "event": "view"} for product in garden[:3]], user=user)
        reasons, explored = [], []
        for number in range(20):
            events.record([{"product": garden[3 + number % 3].pk, "event": "click"}], user=user)
            served = service.recommend(user=user, placement="home", k=8)
            for item in explored_items(served):
                reasons.append(item.reason)
                explored.append(item.item_id)
        assert explored
        garden_share[who] = sum(item in garden_new for item in explored) / len(explored)
        if consent:
            assert any(reason == "New arrival, matches your interest in Garden" for reason in reasons)
        else:
            assert set(reasons) == {"New arrival"}
    # Taste steers the draws toward garden novelties; without consent they are drawn on click-through alone.
    assert garden_share["keen"] >= 0.5 and garden_share["keen"] > garden_share["private"] + 0.2, garden_share
    context = service.visitor_context(service.visitor_from(user=user))
    assert not exploration.taste_fit(models["content"], context, sorted(garden_new), consent=False).any()


def test_thompson_draws_are_reproducible_under_a_seeded_generator():
    """The same seed gives the same draws; another seed other draws; more clicks, higher draws."""
    fit = np.ones(50)
    impressions = np.full(50, 100)
    clicks = np.arange(50)
    prior_a, prior_b = np.full(50, 0.5), np.full(50, 9.5)
    first = exploration.thompson_scores(fit, impressions, clicks, prior_a, prior_b, np.random.default_rng(3))
    again = exploration.thompson_scores(fit, impressions, clicks, prior_a, prior_b, np.random.default_rng(3))
    other = exploration.thompson_scores(fit, impressions, clicks, prior_a, prior_b, np.random.default_rng(4))
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    assert np.corrcoef(first, clicks)[0, 1] > 0.9


@override_settings(RECOMMENDER=SEEDED)
def test_a_seeded_shop_serves_the_same_slot_to_the_same_visitor(shop):
    """With EXPLORATION_SEED, a visitor in the same state gets the same explored product and position."""
    from django.core.cache import caches

    first = service.recommend(visitor_key="same", placement="home", k=8)
    caches["default"].clear()  # not the served-list cache: the draws themselves
    again = service.recommend(visitor_key="same", placement="home", k=8)
    assert first.explored == again.explored and [i.item_id for i in first] == [i.item_id for i in again]


@override_settings(RECOMMENDER=SEEDED)
def test_the_slot_is_attributed_to_exploration_with_its_position(shop):
    """Impressions and clicks of the explored product, sent with the list's token, count for the
    exploration strategy and record their slot; the list's other products keep the list's strategy."""
    served = service.recommend(visitor_key="attributed", placement="home", k=8)
    (position,) = served.explored
    explored, other = served.items[position], served.items[(position + 1) % len(served)]
    stored = events.record([{"product": item.item_id, "event": kind, "token": served.token}
                            for item in (explored, other) for kind in ("impression", "click")],
                           visitor_key="attributed", trust=events.CLIENT)
    by_product = {(row.product_id, row.event): row for row in stored}
    explored_row = by_product[(int(explored.item_id), "click")]
    assert explored_row.strategy == "exploration" and explored_row.context["slot"] == position
    other_row = by_product[(int(other.item_id), "impression")]
    assert other_row.strategy == served.strategy and other_row.context["slot"] == (position + 1) % len(served)


@override_settings(RECOMMENDER={**SEEDED, "EXPLORATION_MIN_IMPRESSIONS": 5})
def test_counts_update_as_impressions_arrive_and_a_product_leaves_the_pool(shop):
    """Attributed impressions and clicks change the counts without retraining; at the threshold the
    product leaves the pool (and the slot)."""
    old, new, models = shop
    target = str(new[0].pk)
    shown_lists, visitors = 0, 0
    while shown_lists < 5 and visitors < 400:
        visitors += 1
        key = f"warm-{visitors}"
        served = service.recommend(visitor_key=key, placement="home", k=8)
        if target not in {item.item_id for item in served}:
            continue
        clicked = [{"product": target, "event": "click", "token": served.token}] if shown_lists < 2 else []
        events.record([{"product": target, "event": "impression", "token": served.token}] + clicked,
                      visitor_key=key, trust=events.CLIENT)
        shown_lists += 1
        exploration.forget_counts()
        pool = exploration.current_pool(models["content"])
        if shown_lists < 5:
            index = pool.item_ids.index(target)
            assert pool.impressions[index] == shown_lists and pool.clicks[index] == min(shown_lists, 2)
    assert shown_lists == 5
    assert target not in exploration.current_pool(models["content"]).item_ids
    for number in range(20):
        served = service.recommend(visitor_key=f"after-{number}", placement="home", k=8)
        assert target not in {item.item_id for item in explored_items(served)}


def test_a_cache_miss_with_exploration_costs_at_most_three_queries(shop, django_assert_max_num_queries):
    """With the pool and priors cached (one refresh per EXPLORATION_COUNTS_TIMEOUT for the whole shop),
    an exploring home shelf costs what a shelf costs: profile, recent events, sellable rows."""
    user = get_user_model().objects.create_user("planner", password="pw-123456")
    UserProfile.objects.create(user=user, gender="f")
    service.recommend(user=user, placement="home", k=2)
    with CaptureQueriesContext(connection) as refresh:
        exploration.forget_counts()
        service.recommend(visitor_key="refresher", placement="home", k=8)
    for number in range(3):
        events.record([{"product": shop[0][number].pk, "event": "view"}], user=user)
        with django_assert_max_num_queries(3):
            served = service.recommend(user=user, placement="home", k=8)
        assert not served.cached and len(served.explored) == 1
    # The refresh: the catalogue's products and one aggregate of the pool's counts, on top.
    assert len(refresh.captured_queries) <= 5


@override_settings(RECOMMENDER={**SEEDED, "EXPLORATION_MIN_IMPRESSIONS": 3})
def test_the_new_arrivals_screen_shows_counts_interval_age_and_state(shop, client):
    """Staff see each new product's attributed impressions, clicks, click-through with its Wilson
    interval, days since added and whether it is still exploring."""
    import datetime

    from django.urls import reverse
    from django.utils import timezone

    old, new, _ = shop
    warm, fresh = new[0], new[1]
    type(warm).objects.filter(pk=warm.pk).update(created_at=timezone.now() - datetime.timedelta(days=9))
    Interaction.objects.bulk_create(
        [Interaction(visitor_key=f"v{number}", product=warm, event="impression", served_list=f"list-{number}")
         for number in range(4)]
        + [Interaction(visitor_key="v0", product=warm, event="click", served_list="list-0"),
           Interaction(visitor_key="v9", product=fresh, event="impression")])  # not attributed: not counted
    staff = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw")
    client.force_login(staff)
    page = client.get(reverse("admin:recommender_newarrivals_changelist"))
    assert page.status_code == 200
    rows = {row.item_id: row for row in page.context["rows"]}
    assert set(rows) >= ids(new) and not set(rows) & {str(product.pk) for product in old[:2]}
    warm_row, fresh_row = rows[str(warm.pk)], rows[str(fresh.pk)]
    assert (warm_row.impressions, warm_row.clicks, warm_row.state, warm_row.days_since_added) == (4, 1, "warmed up", 9)
    assert warm_row.low < 0.25 < warm_row.high and 0 <= warm_row.low
    assert (fresh_row.impressions, fresh_row.state, fresh_row.days_since_added) == (0, "exploring", 0)
    html = page.content.decode()
    assert "warmed up" in html and "exploring" in html and get_adapter().title_of(warm) in html


def test_fresh_visitors_home_shelves_on_a_seeded_shop(monkeypatch):
    """On the seeded synthetic shop (its newest products have no events), at least 30% of 40 fresh
    visitors' home shelves show a new arrival and none shows more than 2 (the issue's done-when,
    measured on a smaller shop than the demo's; the demo itself is checked in docs/benchmarks.md)."""
    from recommender.data.importer import import_dataset
    from recommender.data.snapshot import build_dataset_from_db
    from recommender.data.synthetic import make_shop_dataset

    world = make_shop_dataset(seed=0, n_users=300, n_items=400, n_categories=12, n_events=8000)
    import_dataset(world, progress=False)
    dataset = build_dataset_from_db()
    models = {"segment_popularity": create_strategy("segment_popularity", auto_tune=False).fit(dataset),
              "content": create_strategy("content", encoder="tfidf").fit(dataset)}
    serve(monkeypatch, models)
    new_skus = set(world.meta["new_items"])
    sku_of = dict(get_adapter().queryset().values_list("pk", "sku"))
    new_per_shelf = []
    for number in range(40):
        served = service.recommend(visitor_key=f"fresh-{number}", placement="home", k=8)
        assert len(served) == 8
        new_per_shelf.append(sum(sku_of[int(item.item_id)] in new_skus for item in served))
    share = sum(count > 0 for count in new_per_shelf) / len(new_per_shelf)
    assert share >= 0.3 and max(new_per_shelf) <= 2, (share, new_per_shelf)


def test_the_pool_and_prior_queries_search_indexes_of_the_event_log(shop):
    """The counts (the pool's products) and the priors (the last 30 days) never scan the event log:
    the counts search the product index, the priors a time index (plans read as tests/test_queries.py does)."""
    from .test_queries import plan_of, shop_history

    old, new, models = shop
    shop_history(old)
    with CaptureQueriesContext(connection) as captured:
        exploration.build_pool(models["content"])
        exploration.build_priors()
    on_events = [query["sql"] for query in captured.captured_queries if "recommender_interaction" in query["sql"]]
    assert len(on_events) == 2
    for sql in on_events:
        plan = plan_of(sql)
        if connection.vendor == "postgresql":
            assert "Seq Scan on recommender_interaction" not in plan, f"{sql}\n{plan}"
        else:
            assert "SCAN recommender_interaction" not in plan, f"{sql}\n{plan}"
