"""Tests of recommender.service: strategy choice, consent, business rules, caching, A/B arms."""

from collections import Counter

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import override_settings

from recommender import events, service
from recommender.catalog import get_adapter
from recommender.models import UserProfile
from recommender.data.dataset import Dataset
from recommender.strategies.base import Strategy
from recommender.strategies.registry import create_strategy

from .serving_support import catalog_dataset, category_of, fit_strategies, make_catalog, serve

pytestmark = pytest.mark.django_db


@pytest.fixture
def products():
    return make_catalog()


@pytest.fixture
def models(products, monkeypatch):
    fitted = fit_strategies(catalog_dataset(products))
    serve(monkeypatch, fitted)
    return fitted


def woman(username="ann", consent=True):
    user = get_user_model().objects.create_user(username, password="pw-123456")
    UserProfile.objects.create(user=user, gender="f", birth_year=1994, personalization_consent=consent)
    return user


def test_fresh_install_serves_catalog_products_from_the_database(products, monkeypatch):
    """With no trained model and no events, catalog products are served, not an error."""
    serve(monkeypatch, {})
    served = service.recommend(visitor_key="v1", k=3)
    assert served.strategy == service.DATABASE_POPULARITY
    served_pks = [product.pk for product in served.products]
    assert len(set(served_pks)) == 3 and set(served_pks) <= {product.pk for product in products}
    assert served.reasons == ["Popular in the shop right now"] * 3


def test_fresh_install_counts_popularity_from_events(products, monkeypatch):
    """Without a model, the most-interacted product comes first."""
    serve(monkeypatch, {})
    favourite = products[5]
    events.record([{"product": favourite.pk, "event": "view"}] * 3, visitor_key="someone")
    served = service.recommend(visitor_key="v1", k=2)
    assert served.products[0].pk == favourite.pk


def test_default_strategy_falls_back_down_the_chain(models):
    """hybrid has no active version here, so segment popularity serves (with its reason)."""
    served = service.recommend(user=woman(), k=4)
    assert served.strategy == "segment_popularity"
    assert {category_of(product) for product in served.products[:2]} == {"Garden"}
    assert all(served.reasons)
    assert served.scores == sorted(served.scores, reverse=True)


def test_forced_strategy_and_placement_title(models):
    """A forced strategy key is served, and the placement sets the widget title."""
    served = service.recommend(visitor_key="v1", strategy="popularity", placement="cart", k=3)
    assert served.strategy == "popularity"
    assert served.title == "You may also like" == service.get_placement("cart").title


def test_no_consent_means_popularity_without_profile_or_events(models, products):
    """Without consent the profile and the events are not read: plain popularity is served."""
    user = woman(consent=False)
    events.record([{"product": products[4].pk, "event": "cart"}], user=user)
    served = service.recommend(user=user, k=4)
    assert served.strategy == "popularity"
    assert served.arm == ""
    assert served.context.profile == {} and served.context.events == ()


def test_recent_events_reach_the_context_oldest_first(models, products):
    """The visitor's recent events (not impressions) are in the context, oldest first."""
    events.record([
        {"product": products[0].pk, "event": "view", "timestamp": 1_700_000_000},
        {"product": products[1].pk, "event": "impression", "timestamp": 1_700_000_100},
        {"product": products[2].pk, "event": "click", "timestamp": 1_700_000_200},
    ], visitor_key="v1")
    served = service.recommend(visitor_key="v1", k=2)
    assert served.context.event_item_ids == [str(products[0].pk), str(products[2].pk)]


def test_bought_in_view_and_sold_out_products_are_excluded(models, products):
    """Already-bought products, the product in view and sold-out products are never served."""
    user = woman()
    garden = [product for product in products if category_of(product) == "Garden"]
    events.record([{"product": garden[0].pk, "event": "purchase"}], user=user)
    sold_out = garden[1]
    stock_field = get_adapter().field_paths["in_stock"]
    setattr(sold_out, stock_field, False)
    sold_out.save()
    served = service.recommend(user=user, product=garden[2], placement="also_bought", k=len(products))
    served_pks = {product.pk for product in served.products}
    assert garden[0].pk not in served_pks
    assert sold_out.pk not in served_pks
    assert garden[2].pk not in served_pks
    assert len(served) == len(products) - 3


def test_results_are_cached_until_the_visitor_acts(models, products, django_assert_max_num_queries):
    """A repeat call is served from the cache; a click (not an impression) recomputes."""
    first = service.recommend(visitor_key="v1", k=3)
    assert not first.cached
    again = service.recommend(visitor_key="v1", k=3)
    assert again.cached and again.products == first.products
    events.record([{"product": products[0].pk, "event": "impression"}], visitor_key="v1")
    assert service.recommend(visitor_key="v1", k=3).cached
    events.record([{"product": products[0].pk, "event": "click"}], visitor_key="v1")
    assert not service.recommend(visitor_key="v1", k=3).cached
    with django_assert_max_num_queries(3):
        service.recommend(visitor_key="v1", k=3)


def test_a_cache_miss_costs_three_queries(models, products, django_assert_num_queries):
    """Profile, recent events (whose newest id stamps the cache key), and the ranked candidates'
    product rows that are in stock and not bought by the visitor: three queries, however long the list."""
    user = woman()
    events.record([{"product": products[0].pk, "event": "click"}, {"product": products[1].pk, "event": "purchase"}],
                  user=user)
    service.recommend(user=user, k=3)  # loads the models' version stamp once
    events.record([{"product": products[2].pk, "event": "click"}], user=user)
    with django_assert_num_queries(3):
        served = service.recommend(user=user, k=6)
    assert not served.cached and len(served) == 6
    assert str(products[1].pk) not in {item.item_id for item in served}


def test_cached_results_differ_per_visitor_placement_and_k(models):
    """The cache key separates visitors, placements and k."""
    service.recommend(visitor_key="v1", k=3)
    assert not service.recommend(visitor_key="v2", k=3).cached
    assert not service.recommend(visitor_key="v1", k=4).cached
    assert not service.recommend(visitor_key="v1", k=3, placement="cart").cached


def test_products_keep_the_ranked_order(models):
    """Without a category cap, products come back in the strategy's order with their own scores."""
    ranked = models["popularity"].recommend(k=5)
    with override_settings(RECOMMENDER={**settings.RECOMMENDER, "MAX_CATEGORY_SHARE": 1.0}):
        served = service.recommend(visitor_key="v1", strategy="popularity", k=5)
    assert [str(product.pk) for product in served.products] == ranked.item_ids
    assert served.scores == pytest.approx(ranked.scores.tolist())


def test_the_category_cap_holds_for_every_strategy(models):
    """A fallback strategy's list obeys the category cap too (it used to be the hybrid's rule alone),
    and the capped list stays in score order."""
    ranked = models["popularity"].recommend(k=6)
    assert max(Counter(category_of(get_adapter().queryset().get(pk=pk)) for pk in ranked.item_ids).values()) > 2
    for key in ("popularity", "segment_popularity"):
        served = service.recommend(user=woman(f"cap-{key}"), strategy=key, k=6)
        assert served.strategy == key and len(served) == 6
        assert max(Counter(category_of(product) for product in served.products).values()) <= 3
        assert served.scores == sorted(served.scores, reverse=True)
    with override_settings(RECOMMENDER={**settings.RECOMMENDER, "MAX_CATEGORY_SHARE": 0.34}):
        served = service.recommend(visitor_key="v-cap", strategy="popularity", k=6)
    assert sorted(Counter(category_of(product) for product in served.products).values()) == [2, 2, 2]


def test_stock_is_read_live_not_frozen_at_training(products, monkeypatch):
    """The hybrid trained while a product was sold out serves it once restocked (no retraining),
    and stops serving a product that sells out after training."""
    dataset = catalog_dataset(products)
    favourite = dataset.interactions["item_id"].value_counts().index[0]
    items = dataset.items.copy()
    items.loc[favourite, "in_stock"] = False  # sold out when the snapshot was taken
    dataset = Dataset(users=dataset.users, items=items, interactions=dataset.interactions)
    hybrid = create_strategy("hybrid", components=["segment_popularity", "popularity"], learn_weights=False).fit(dataset)
    serve(monkeypatch, {"hybrid": hybrid})
    served = service.recommend(visitor_key="v-stock", k=4)
    assert served.strategy == "hybrid" and served.items[0].item_id == favourite
    product = get_adapter().queryset().get(pk=favourite)
    setattr(product, get_adapter().field_paths["in_stock"], False)
    product.save()
    caches_clear()  # a served list may be reused for CACHE_TIMEOUT
    assert favourite not in {item.item_id for item in service.recommend(visitor_key="v-stock", k=4)}


def test_a_profile_change_shows_on_the_next_page(models):
    """The served-list cache key holds the profile's version: a saved profile change is served at once."""
    user = woman("flip")
    first = service.recommend(user=user, k=4)
    assert service.recommend(user=user, k=4).cached
    profile = UserProfile.objects.get(user=user)
    profile.gender = "m"
    profile.save()
    changed = service.recommend(user=user, k=4)
    assert not changed.cached and changed.context.profile["gender"] == "m"
    assert {category_of(product) for product in changed.products[:2]} == {"Sports"}
    assert {category_of(product) for product in first.products[:2]} == {"Garden"}


def caches_clear():
    from django.core.cache import caches

    caches["default"].clear()


def test_failing_strategy_falls_back(models, monkeypatch):
    """A strategy that raises is logged and the next in the chain serves."""

    class Broken(Strategy):
        key = "hybrid"

        def recommend(self, context=None, k=10, exclude=()):
            raise RuntimeError("boom")

    serve(monkeypatch, {**models, "hybrid": Broken()})
    assert service.recommend(visitor_key="v1", k=3).strategy == "segment_popularity"


AB_TEST = {"name": "hybrid-vs-segment", "arms": {"popularity": 0.5, "segment_popularity": 0.5}}


def with_ab_test(test):
    return override_settings(RECOMMENDER={**settings.RECOMMENDER, "AB_TEST": test})


def test_ab_arms_are_sticky_and_split_traffic(models):
    """A visitor keeps their arm; the arm's strategy serves; traffic splits about evenly."""
    with with_ab_test(AB_TEST):
        check_sticky_arms()


def check_sticky_arms():
    arms = {visitor: service.recommend(visitor_key=f"v{visitor}", k=2).arm for visitor in range(6)}
    assert arms == {visitor: service.recommend(visitor_key=f"v{visitor}", k=2).arm for visitor in range(6)}
    served = service.recommend(visitor_key="v0", k=2)
    assert served.strategy == served.arm
    shares = Counter(service.assign_arm(f"visitor:{number}") for number in range(2000))
    assert set(shares) == {"popularity", "segment_popularity"}
    assert 900 < shares["popularity"] < 1100


def test_ab_arm_depends_on_the_test_name(models):
    """Renaming the test reshuffles visitors (a hash of id and test name)."""
    renamed = {**AB_TEST, "name": "another-test"}
    with with_ab_test(AB_TEST):
        before = [service.assign_arm(f"visitor:{number}") for number in range(200)]
    with with_ab_test(renamed):
        after = [service.assign_arm(f"visitor:{number}") for number in range(200)]
    assert before != after


def test_onboarding_covers_distinct_categories(models, products):
    """Onboarding shows one product per category first, not just the bestsellers."""
    picks = service.onboarding_items(3)
    assert len(picks) == 3
    assert {category_of(product) for product in picks} == {"Garden", "Sports", "Kitchen"}


def test_similar_falls_back_without_a_content_model(models, products):
    """Without a content model, "similar" is still served and excludes the product itself."""
    served = service.similar(products[0], k=3)
    assert served.title == "Similar products"
    assert products[0].pk not in {product.pk for product in served.products}
    assert len(served) == 3


def test_k_must_be_positive():
    """k <= 0 is refused with a message naming k."""
    with pytest.raises(ValueError, match="k must be"):
        service.recommend(visitor_key="v1", k=0)
