"""recommender.serving.candidates and .rules: precomputed lists read when fresh, the configured
chain, the same business rules for every source."""

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import override_settings

from recommender import events, precompute, service
from recommender.models import ModelVersion, UserProfile
from recommender.serving.rules import diversified
from recommender.strategies.base import Strategy
from recommender.strategies.registry import create_strategy

from .serving_support import catalog_dataset, category_of, fit_strategies, make_catalog, serve

pytestmark = pytest.mark.django_db


@pytest.fixture
def products():
    return make_catalog()


@pytest.fixture
def fitted(products):
    dataset = catalog_dataset(products)
    return {**fit_strategies(dataset), "item_knn": create_strategy("item_knn").fit(dataset)}


def shopper(name="warm"):
    user = get_user_model().objects.create_user(name, password="pw-123456")
    UserProfile.objects.create(user=user, gender="f", birth_year=1990)
    return user


def precompute_for(user, strategy, key="hybrid"):
    """Store ``user``'s precomputed list of ``strategy`` as the active version of ``key``."""
    version = ModelVersion.objects.create(strategy=key, status="active", checksum="x")
    strategy.version_id = version.pk
    assert precompute.precompute_for_users(key, version.pk, [user.pk]) == 1


def test_a_fresh_precomputed_list_is_served_without_scoring(products, fitted, monkeypatch):
    """A warm user's precomputed list is read (no strategy is asked); the rules still apply to it."""
    user = shopper()
    events.record([{"product": products[0].pk, "event": "purchase"}, {"product": products[1].pk, "event": "view"}],
                  user=user)
    precomputed_by = fitted["segment_popularity"]
    serve(monkeypatch, {"hybrid": precomputed_by})
    precompute_for(user, precomputed_by)

    class Unused(Strategy):
        key = "hybrid"

        def recommend(self, context=None, k=10, exclude=(), allowed=None):
            raise AssertionError("a fresh precomputed list must be served without scoring")

    serve(monkeypatch, {"hybrid": Unused()})
    served = service.recommend(user=user, k=4)
    assert served.source == "precomputed" and served.strategy == "hybrid" and len(served) == 4
    assert str(products[0].pk) not in {item.item_id for item in served}
    assert all(served.reasons)


@pytest.mark.parametrize("change", ["event", "profile"])
def test_a_stale_precomputed_list_is_not_served(products, fitted, monkeypatch, change):
    """A new event, or a profile saved since, makes the precomputed list stale: the chain scores live."""
    user = shopper()
    events.record([{"product": products[1].pk, "event": "view"}], user=user)
    serve(monkeypatch, {"hybrid": fitted["segment_popularity"]})
    precompute_for(user, fitted["segment_popularity"])
    assert service.recommend(user=user, k=3).source == "precomputed"
    if change == "event":
        events.record([{"product": products[2].pk, "event": "click"}], user=user)
    else:
        profile = UserProfile.objects.get(user=user)
        profile.gender = "m"
        profile.save()
    served = service.recommend(user=user, k=3)
    assert served.source == "live" and served.strategy == "hybrid"


def test_the_chain_follows_the_placement_configuration(products, fitted, monkeypatch):
    """A placement's strategies come first; item_knn is skipped for a visitor without events;
    an unconfigured fallback is never asked."""
    serve(monkeypatch, fitted)
    placements = {"deals": {"strategies": ["popularity"]}}
    with override_settings(RECOMMENDER={**settings.RECOMMENDER, "PLACEMENTS": placements,
                                        "FALLBACK_STRATEGIES": ["item_knn", "segment_popularity"]}):
        assert service.recommend(visitor_key="new", placement="deals", k=3).strategy == "popularity"
        assert service.recommend(visitor_key="new", placement="home", k=3).strategy == "segment_popularity"
        events.record([{"product": products[0].pk, "event": "view"}], visitor_key="busy")
        assert service.recommend(visitor_key="busy", placement="home", k=3).strategy == "item_knn"
    with override_settings(RECOMMENDER={**settings.RECOMMENDER, "FALLBACK_STRATEGIES": []}):
        assert service.recommend(visitor_key="new", k=3).strategy == service.DATABASE_POPULARITY


def test_similar_placements_ask_every_strategy_for_similar_items(products, fitted, monkeypatch):
    """On a similar_to_product placement each strategy of the chain answers similar_items (no key
    is special-cased), and a strategy that does not know the product passes to the next one."""
    asked = []

    class Recording(type(fitted["popularity"])):
        def similar_items(self, item_id, k=10, exclude=(), allowed=None):
            asked.append(item_id)
            return super().similar_items(item_id, k=k, exclude=exclude, allowed=allowed)

    recording = fitted["popularity"]
    recording.__class__ = Recording
    serve(monkeypatch, {"popularity": recording})
    served = service.similar(products[3], k=4)
    assert asked == [str(products[3].pk)] and served.strategy == "popularity"
    assert str(products[3].pk) not in {item.item_id for item in served}
    unknown = make_catalog(per_category=1, categories=("Toys",))[0]  # added after training
    assert service.similar(unknown, k=3).strategy == service.DATABASE_POPULARITY


def test_the_cart_placement_hides_what_is_in_the_cart(products, fitted, monkeypatch):
    """exclude_events: products the visitor carted are not offered on the cart placement (they are on home)."""
    serve(monkeypatch, fitted)
    favourite = fitted["popularity"].recommend(k=1).item_ids[0]
    events.record([{"product": favourite, "event": "cart"}], visitor_key="carting")
    with override_settings(RECOMMENDER={**settings.RECOMMENDER, "MAX_CATEGORY_SHARE": 1.0}):
        assert favourite not in {item.item_id for item in service.recommend(visitor_key="carting", placement="cart",
                                                                            strategy="popularity", k=5)}
        assert favourite in {item.item_id for item in service.recommend(visitor_key="carting", placement="home",
                                                                        strategy="popularity", k=5)}


def test_reasons_are_explained_for_the_kept_items_only(products, fitted, monkeypatch):
    """The strategy explains the k items the rules kept, not its whole over-fetched list."""
    explained = []
    strategy = fitted["segment_popularity"]
    original = strategy._explain

    def counting(context, positions):
        explained.append(len(positions))
        return original(context, positions)

    monkeypatch.setattr(strategy, "_explain", counting)
    serve(monkeypatch, {"hybrid": strategy})
    served = service.recommend(visitor_key="v", k=3)
    assert len(served) == 3 and explained == [3]


@pytest.mark.parametrize(("categories", "k", "share", "expected"), [
    (["a", "a", "a", "b", "b", "c"], 4, 0.5, [0, 1, 3, 4]),
    (["a", "a", "a", "a"], 3, 0.34, [0, 1, 2]),  # the catalogue cannot fill k within the cap
    (["a", "", "", "", "a"], 4, 0.25, [0, 1, 2, 3]),  # no category: not capped
    (["a", "b"], 5, 0.5, [0, 1]),
])
def test_diversified_keeps_the_best_within_the_cap(categories, k, share, expected):
    """At most floor(share × k) per category, best first; capped items fill what is left; order kept."""
    assert diversified(categories, k, share) == expected


def test_rules_count_live_categories(products, fitted, monkeypatch):
    """The category cap counts the categories the catalogue has now, not those at training time."""
    serve(monkeypatch, fitted)
    with override_settings(RECOMMENDER={**settings.RECOMMENDER, "MAX_CATEGORY_SHARE": 0.25}):
        served = service.recommend(visitor_key="v", strategy="popularity", k=4)
    assert len({category_of(product) for product in served.products}) >= 3
