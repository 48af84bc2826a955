"""The request path's queries: at most three on a cache miss, each one using an index (query plans
read on SQLite with EXPLAIN QUERY PLAN and on PostgreSQL with EXPLAIN, sequential scans off)."""

import datetime
import re

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from recommender import events, service
from recommender.models import Interaction, UserProfile
from recommender.serving import loaded_models
from recommender.strategies.registry import create_strategy

from .serving_support import catalog_dataset, fit_strategies, make_catalog, serve

pytestmark = pytest.mark.django_db

# Tables whose rows grow with the shop: a full scan of one of them is what made product pages slow.
SCANNED_TABLE = re.compile(r"\bSCAN (\w+)")


@pytest.fixture
def shop(monkeypatch):
    products = make_catalog(per_category=40)  # more products than a shelf's candidates
    dataset = catalog_dataset(products)
    serve(monkeypatch, {**fit_strategies(dataset), "item_knn": create_strategy("item_knn").fit(dataset)})
    user = get_user_model().objects.create_user("planner", password="pw-123456")
    UserProfile.objects.create(user=user, gender="f", birth_year=1990)
    for owner in ({"user": user}, {"visitor_key": "anonymous-planner"}):
        events.record([{"product": products[0].pk, "event": "view"}, {"product": products[1].pk, "event": "purchase"},
                       {"product": products[2].pk, "event": "impression"}], **owner)
    shop_history(products)
    return products, user


def shop_history(products, n_events=3000):
    """A shop's log as the seeded demo has it: most rows belong to accounts (visitor_key ""), then
    the planner's statistics refreshed (ANALYZE). With such statistics SQLite once took the time
    index for "this visitor's newest events" and scanned the whole log."""
    accounts = [get_user_model().objects.create_user(f"history-{number}") for number in range(20)]
    start = timezone.now() - datetime.timedelta(days=30)
    Interaction.objects.bulk_create([
        Interaction(user=accounts[number % len(accounts)], product=products[number % len(products)],
                    event=("view", "click", "cart", "purchase")[number % 4],
                    timestamp=start + datetime.timedelta(minutes=number))
        for number in range(n_events)
    ])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


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


@pytest.mark.parametrize(("who", "visitor_column"), [("user", "user_id"), ("visitor_key", "visitor_key")])
def test_the_visitor_queries_use_the_request_path_indexes(shop, who, visitor_column):
    """The newest-events query and the "never bought" rule search an index by the visitor (the account's
    or the anonymous key's), never the time index, even with statistics dominated by accounts' rows."""
    products, user = shop
    visitor = {"user": user} if who == "user" else {"visitor_key": "anonymous-planner"}
    queries = served_page_queries(products, **visitor)
    newest_events = [sql for sql in queries if "recommender_interaction" in sql and "ORDER BY" in sql]
    purchase_checks = [sql for sql in queries if "EXISTS" in sql]
    assert newest_events and purchase_checks
    for sql in newest_events + purchase_checks:
        # Which of the visitor's indexes the planner takes (the newest-events one, the purchase one,
        # or the foreign key's own on user_id) depends on the table's statistics; each is searched by
        # the visitor, which is what keeps the request path off a scan of everyone's events.
        plan = plan_of(sql)
        assert searches_by(plan, visitor_column) and "rec_inter_time" not in plan, plan


def searches_by(plan: str, column: str) -> bool:
    """Whether an index search in the plan is keyed on the column."""
    if connection.vendor == "postgresql":
        # e.g. "Index Cond: (user_id = 7)" or "Index Cond: ((visitor_key)::text = 'k'::text)"
        return re.search(rf"(Index Cond|Recheck Cond): \(+(recommender_interaction\.)?{column}\)?(::\w+)? =",
                         plan) is not None
    return re.search(rf"SEARCH \S+ USING (COVERING )?INDEX \S+ \({column}=", plan) is not None
