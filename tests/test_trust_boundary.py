"""The trust boundary, end to end: the forged-purchase attack replayed against the shelves and the
models it used to steer. Before: one anonymous POST of 500 purchases put an obscure product at #1
of the home Bestsellers shelf for every visitor, and into popularity at the next retrain."""

import datetime

import numpy as np
import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.test import override_settings
from rest_framework.test import APIClient

from recommender import events, service
from recommender.data.snapshot import build_dataset_from_db
from recommender.models import Interaction
from recommender.serving import cache as serving_cache
from recommender.strategies.base import Context
from recommender.strategies.popularity import PopularityStrategy
from recommender.testing.factories import make_product

pytestmark = pytest.mark.django_db
SHELF = 8
FLOOD = 500


@pytest.fixture
def shop():
    """12 products bought by 2 to 13 genuine shoppers over the last days, and one obscure product."""
    products = [make_product(title=f"Genuine {number}") for number in range(12)]
    obscure = make_product(title="Obscure gadget")
    day = datetime.timedelta(days=1)
    start = datetime.datetime.now(datetime.timezone.utc) - 20 * day
    for number, product in enumerate(products):
        for shopper in range(2 + number):
            user = get_user_model().objects.get_or_create(username=f"shopper-{shopper}")[0]
            events.record([{"product": product, "event": "purchase", "timestamp": start + shopper * day},
                           {"product": product, "event": "view", "timestamp": start + shopper * day}], user=user)
    return products, obscure


def shelves():
    """What every visitor sees: the Bestsellers shelf, the fallback list and a freshly trained popularity model."""
    from shop_demo.catalog import queries

    queries.cache.clear()
    serving_cache.put(serving_cache.key_of("database-popularity"), None)
    dataset = build_dataset_from_db()
    trained = {weighting: PopularityStrategy(weighting=weighting, auto_tune=False).fit(dataset)
               for weighting in ("events", "positive", "count")}
    return {
        "bestsellers": [product.pk for product in queries.bestsellers(limit=SHELF)],
        "database popularity": [int(item_id) for item_id in service.database_popularity().item_ids[:SHELF]],
        **{f"popularity ({weighting})": [int(item_id) for item_id in model.recommend(Context(), k=SHELF).item_ids]
           for weighting, model in trained.items()},
    }


def flood_by_one_visitor(obscure, **owner):
    """500 purchases of the obscure product recorded for one visitor (as a host opting in would let through)."""
    events.record([{"product": obscure, "event": "purchase"}] * FLOOD, **owner, trust=events.CLIENT)


@pytest.mark.shop
def test_the_forged_purchase_post_is_refused_and_moves_nothing(shop):
    """The attack as sent: one anonymous POST of 500 purchases. A 400, nothing stored, every shelf unchanged."""
    _, obscure = shop
    before = shelves()
    response = APIClient().post("/api/events/", {"events": [{"product": str(obscure.pk), "event": "purchase"}] * FLOOD},
                                format="json")
    assert response.status_code == 400
    assert not Interaction.objects.filter(product=obscure).exists()
    assert shelves() == before


@pytest.mark.shop
@override_settings(RECOMMENDER={**django_settings.RECOMMENDER, "ACCEPT_CLIENT_CART_AND_PURCHASE": True})
def test_a_flood_that_gets_stored_still_counts_as_one_visitor(shop):
    """Even stored (a host that accepts browser purchases), one visitor's 500 purchases count once:
    bestsellers, the database popularity list and retrained popularity models keep their top 8."""
    _, obscure = shop
    before = shelves()
    flood_by_one_visitor(obscure, visitor_key="attacker")
    assert Interaction.objects.filter(product=obscure).count() == FLOOD
    # Counted raw, the flood would top every list by far: the test would catch a missing cap.
    raw = np.bincount(build_dataset_from_db().item_codes, minlength=20)
    assert raw.argmax() == list(build_dataset_from_db().item_ids).index(str(obscure.pk))
    after = shelves()
    assert after == before
    assert all(obscure.pk not in shelf for shelf in after.values())


@pytest.mark.shop
def test_a_flood_of_views_from_the_browser_moves_nothing(shop):
    """Views are client events and are stored, but one visitor's 500 views weigh one view."""
    _, obscure = shop
    before = shelves()
    client = APIClient()
    with override_settings(RECOMMENDER={**django_settings.RECOMMENDER, "EVENTS_THROTTLE_RATE": None}):
        response = client.post("/api/events/", {"events": [{"product": str(obscure.pk), "event": "view"}] * FLOOD},
                               format="json")
    assert response.status_code == 201
    assert shelves() == before
