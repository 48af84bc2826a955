"""The request path's queries: at most three on a cache miss, each one using an index (query plans
read on SQLite with EXPLAIN QUERY PLAN and on PostgreSQL with EXPLAIN, sequential scans off)."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from recommender import events, service
from recommender.models import UserProfile
from recommender.serving import loaded_models
from recommender.strategies.registry import create_strategy

from .serving_support import catalog_dataset, fit_strategies, make_catalog, serve

pytestmark = pytest.mark.django_db

# Tables whose rows grow with the shop: a full scan of one of them is what made product pages slow.
SCANNED_TABLE = re.compile(r"\bSCAN (\w+)")


@pytest.fixture
def shop(monkeypatch):
    products = make_catalog(per_category=6)
    dataset = catalog_dataset(products)
    serve(monkeypatch, {**fit_strategies(dataset), "item_knn": create_strategy("item_knn").fit(dataset)})
    user = get_user_model().objects.create_user("planner", password="pw-123456")
    UserProfile.objects.create(user=user, gender="f", birth_year=1990)
    for owner in ({"user": user}, {"visitor_key": "anonymous-planner"}):
        events.record([{"product": products[0].pk, "event": "view"}, {"product": products[1].pk, "event": "purchase"},
                       {"product": products[2].pk, "event": "impression"}], **owner)
    return products, user


def served_page_queries(products, **visitor):
    """The SQL of three shelves served on cache misses (home, a product page's two widgets)."""
    # The registry's view of the active versions is read once per stamp change, not per request.
    loaded_models.active_version_ids()
    with CaptureQueriesContext(connection) as captured:
        service.recommend(placement="home", k=8, **visitor)
        service.recommend(placement="also_bought", product=products[3], k=6, **visitor)
        service.recommend(placement="similar", product=products[3], k=6, **visitor)
    return [query["sql"] for query in captured.captured_queries]


def plan_of(sql: str) -> str:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Tiny test tables make a sequential scan the cheapest plan; with it off, PostgreSQL
            # still scans when no index can answer the query, which is what this test looks for.
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("EXPLAIN " + sql)
        else:
            cursor.execute("EXPLAIN QUERY PLAN " + sql)
        return "\n".join(str(row[-1]) for row in cursor.fetchall())


@pytest.mark.parametrize("who", ["user", "visitor_key"])
def test_a_cache_miss_costs_at_most_three_queries(shop, who, django_assert_max_num_queries):
    """Each shelf on a cache miss: profile, recent events, sellable product rows (no more)."""
    products, user = shop
    visitor = {"user": user} if who == "user" else {"visitor_key": "anonymous-planner"}
    service.recommend(placement="home", k=2, **visitor)  # the models' stamp is read once per process
    for placement, product in (("home", None), ("also_bought", products[4]), ("cart", None)):
        with django_assert_max_num_queries(3):
            served = service.recommend(placement=placement, product=product, k=5, **visitor)
        assert not served.cached and len(served) == 5
        assert str(products[1].pk) not in {item.item_id for item in served}  # bought: never shown


@pytest.mark.parametrize("who", ["user", "visitor_key"])
def test_every_query_of_a_served_page_uses_an_index(shop, who):
    """No query of the request path scans a table: each plan searches an index (or the primary key)."""
    products, user = shop
    visitor = {"user": user} if who == "user" else {"visitor_key": "anonymous-planner"}
    queries = served_page_queries(products, **visitor)
    assert any("recommender_interaction" in sql and "purchase" in sql for sql in queries)
    for sql in queries:
        plan = plan_of(sql)
        if connection.vendor == "postgresql":
            assert "Seq Scan" not in plan, f"{sql}\n{plan}"
        else:
            assert not SCANNED_TABLE.search(plan), f"{sql}\n{plan}"
            assert "SEARCH" in plan, f"{sql}\n{plan}"


def test_the_purchase_check_uses_the_purchase_index(shop):
    """The "never bought" rule reads the visitor's purchases through rec_inter_visitor_bought."""
    products, _ = shop
    queries = served_page_queries(products, visitor_key="anonymous-planner")
    purchase_checks = [sql for sql in queries if "EXISTS" in sql]
    assert purchase_checks
    for sql in purchase_checks:
        assert "rec_inter_visitor_bought" in plan_of(sql), plan_of(sql)
