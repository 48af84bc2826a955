"""recommender.attribution: served lists carry a signed token; only it attributes impressions and clicks.

The attack it defeats: any client could post clicks with any strategy, arm or placement, and
clicks outnumbering impressions made click-through NaN."""

import pytest
from django.conf import settings as django_settings
from django.core import signing
from django.test import override_settings
from django.urls import reverse
from rest_framework.test import APIClient

from recommender import attribution, events, reports
from recommender.conf import settings
from recommender.models import Interaction
from recommender.testing.factories import make_product

pytestmark = pytest.mark.django_db
EVENTS = "/api/events/"


@pytest.fixture
def products():
    return [make_product(title=f"Lamp {number}") for number in range(4)]


def token_for(visitor_key, item_ids, placement="home", strategy="hybrid", arm="b"):
    return attribution.issue(identity=f"visitor:{visitor_key}", placement=placement, strategy=strategy, arm=arm,
                             item_ids=[str(item) for item in item_ids])


def test_a_token_round_trips_for_its_visitor_only(products):
    """verify gives back placement, strategy, arm and items for the visitor it was issued to; None for anyone else."""
    token = token_for("v1", [products[0].pk, products[1].pk])
    served = attribution.verify(token, ["visitor:v1"])
    assert (served.placement, served.strategy, served.arm) == ("home", "hybrid", "b")
    assert served.covers(products[1].pk) and not served.covers(products[2].pk)
    assert len(served.served_id) == 12
    assert attribution.verify(token, ["visitor:v2"]) is None
    assert attribution.verify(token, ["user:1", "visitor:v1"]) is not None  # signed in since: the browser's key
    assert token_for("v1", [products[0].pk]) != token_for("v1", [products[0].pk]), "each list has its own id"


@pytest.mark.parametrize("forge", [
    lambda token: token[:-2] + ("AA" if not token.endswith("AA") else "BB"),  # a changed signature
    lambda token: signing.TimestampSigner(salt="other").sign_object(
        {"i": "x", "p": "home", "s": "forged", "a": "b", "it": ["1"], "v": attribution.visitor_digest("visitor:v1")}),
    lambda token: signing.dumps({"p": "home", "s": "forged"}),
    lambda token: "not-a-token",
    lambda token: "",
])
def test_forged_tokens_verify_to_nothing(products, forge):
    """Altered, other-salt, unsigned or made-up tokens are not an attribution."""
    assert attribution.verify(forge(token_for("v1", [products[0].pk])), ["visitor:v1"]) is None


def test_an_expired_token_verifies_to_nothing(products, monkeypatch):
    """A token older than ATTRIBUTION_MAX_AGE attributes nothing."""
    import time

    token = token_for("v1", [products[0].pk])
    later = time.time() + settings.ATTRIBUTION_MAX_AGE + 5
    monkeypatch.setattr(signing.time, "time", lambda: later)
    assert attribution.verify(token, ["visitor:v1"]) is None


def test_a_valid_token_attributes_a_client_impression_and_click(products):
    """Placement, strategy, arm and the served list come from the token."""
    token = token_for("v1", [products[0].pk, products[1].pk], strategy="segment_popularity", arm="a")
    stored = events.record([{"product": products[0].pk, "event": "impression", "token": token},
                            {"product": products[0].pk, "event": "click", "token": token}],
                           visitor_key="v1", trust=events.CLIENT)
    assert {(row.placement, row.strategy, row.arm) for row in stored} == {("home", "segment_popularity", "a")}
    assert len({row.served_list for row in stored}) == 1 and stored[0].served_list


def test_what_a_token_cannot_vouch_for_is_stored_unattributed(products):
    """A product the list did not hold, another visitor's token or a forged one: stored, with no attribution."""
    token = token_for("v1", [products[0].pk])
    stored = events.record([{"product": products[3].pk, "event": "click", "token": token},
                            {"product": products[0].pk, "event": "click", "token": token_for("v2", [products[0].pk])},
                            {"product": products[0].pk, "event": "click", "token": token[:-3] + "xyz"}],
                           visitor_key="v1", trust=events.CLIENT)
    assert [(row.strategy, row.placement, row.arm, row.served_list) for row in stored] == [("", "", "", "")] * 3
    assert Interaction.objects.filter(event="click").count() == 3


@pytest.mark.parametrize("field", ["placement", "strategy", "arm"])
def test_a_client_may_not_name_placement_strategy_or_arm(products, field):
    """The attack: a click posted with any strategy, arm or placement. Now a 400 naming the field."""
    response = APIClient().post(EVENTS, {"events": [{"product": str(products[0].pk), "event": "click",
                                                     field: "hybrid"}]}, format="json")
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["field"] == field and "signed token" in error["message"]
    assert not Interaction.objects.exists()


def test_server_code_still_labels_its_own_events(products):
    """Host code is trusted: events.record with trust SERVER keeps the labels it gives."""
    [stored] = events.record([{"product": products[0].pk, "event": "click", "placement": "email", "strategy": "promo"}],
                             visitor_key="v1")
    assert (stored.placement, stored.strategy, stored.served_list) == ("email", "promo", "")


def test_a_token_goes_only_with_impressions_and_clicks(products):
    """A token on a view or a rating is refused (only impressions and clicks are attributed)."""
    with pytest.raises(events.EventValidationError) as caught:
        events.record([{"product": products[0].pk, "event": "view", "token": token_for("v1", [products[0].pk])}],
                      visitor_key="v1", trust=events.CLIENT)
    assert caught.value.errors[0]["field"] == "token"


def test_the_api_hands_out_a_token_that_attributes_the_visitors_clicks(products):
    """GET /api/recommendations/ carries the token; posting it with an impression and a click attributes both."""
    client = APIClient()
    served = client.get(reverse("recommender:api:recommendations"), {"k": 3}).json()
    assert served["token"] and served["items"]
    item = served["items"][0]["id"]
    response = client.post(EVENTS, {"events": [{"product": item, "event": "impression", "token": served["token"]},
                                               {"product": item, "event": "click", "token": served["token"]}]},
                           format="json")
    assert response.status_code == 201
    assert {(row.placement, row.strategy) for row in Interaction.objects.all()} == {("home", served["strategy"])}
    # Replaying it adds events but no click-through: the list's product counts once.
    client.post(EVENTS, {"events": [{"product": item, "event": "click", "token": served["token"]}] * 5}, format="json")
    [row] = reports.click_through()
    assert (row.impressions, row.clicks) == (1, 1)


def test_a_token_issued_to_a_session_is_not_valid_for_another(products):
    """A list served to one browser session attributes nothing when another browser sends its token."""
    client = APIClient()
    client.post(EVENTS, {"events": []}, format="json")  # the session now has a visitor key
    served = client.get(reverse("recommender:api:recommendations"), {"k": 3}).json()
    item = served["items"][0]["id"]
    APIClient().post(EVENTS, {"events": [{"product": item, "event": "click", "token": served["token"]}]},
                     format="json")
    assert Interaction.objects.get(event="click").served_list == ""
    client.post(EVENTS, {"events": [{"product": item, "event": "click", "token": served["token"]}]}, format="json")
    assert Interaction.objects.filter(event="click").exclude(served_list="").count() == 1


def test_replayed_clicks_count_once_and_click_through_stays_at_most_one(products):
    """200 clicks replayed with one token, no impression at all: one shown, one clicked; unattributed clicks count nowhere."""
    token = token_for("v1", [products[0].pk, products[1].pk], strategy="hybrid", arm="b")
    with override_settings(RECOMMENDER={**django_settings.RECOMMENDER, "EVENTS_THROTTLE_RATE": None}):
        events.record([{"product": products[0].pk, "event": "click", "token": token}] * 200, visitor_key="v1",
                      trust=events.CLIENT)
        events.record([{"product": products[1].pk, "event": "impression", "token": token}] * 3, visitor_key="v1",
                      trust=events.CLIENT)
        events.record([{"product": products[2].pk, "event": "click"}] * 50, visitor_key="v1", trust=events.CLIENT)
    [row] = reports.click_through(by=("strategy", "arm"))
    assert (row.strategy, row.arm, row.impressions, row.clicks) == ("hybrid", "b", 2, 1)
    assert row.ctr == 0.5 and 0 <= row.low <= row.ctr <= row.high <= 1


def test_server_labelled_events_without_a_token_are_not_ab_figures(products):
    """The dashboard reads attributed events only: labels without a served list do not make an arm."""
    events.record([{"product": products[0].pk, "event": "click", "strategy": "hybrid", "arm": "b"}] * 5,
                  visitor_key="v1")
    assert reports.click_through() == []
