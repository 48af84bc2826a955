"""Hostile input to the API: oversize bodies, unknown products, wrong types, far-future
timestamps, NUL characters, unicode and huge strings all get a clear 4xx, and nothing is stored."""

import json

import pytest
from django.conf import settings as django_settings
from django.test import override_settings
from django.urls import reverse
from rest_framework.test import APIClient

from recommender.models import Interaction, UserProfile
from recommender.testing.factories import make_product

pytestmark = pytest.mark.django_db

EVENTS = "recommender:api:events"
PROFILE = "recommender:api:profile"


@pytest.fixture
def client():
    return APIClient()


@pytest.fixture
def product():
    return make_product(title="Hostile lamp")


def post_events(client, events, **extra):
    return client.post(reverse(EVENTS), {"events": events, **extra}, format="json")


def messages_of(response):
    return " | ".join(error["message"] for error in response.json()["errors"])


def test_oversize_event_body_is_413_with_a_hint(client, product):
    """A body above DATA_UPLOAD_MAX_MEMORY_SIZE is refused with 413 saying to send fewer events."""
    padding = "x" * (3 * 1024 * 1024)
    response = client.post(reverse(EVENTS), json.dumps({"events": [], "batch_id": padding}),
                           content_type="application/json")
    assert response.status_code == 413 and "fewer events" in messages_of(response)
    assert not Interaction.objects.exists()


def test_oversize_profile_body_is_a_4xx(client):
    """A 3 MB profile PATCH is refused with a 4xx, not a server error."""
    response = client.patch(reverse(PROFILE), json.dumps({"city": "x" * (3 * 1024 * 1024)}),
                            content_type="application/json")
    assert 400 <= response.status_code < 500
    assert not UserProfile.objects.exists()


def test_unknown_product_is_named(client):
    """An event for a product that does not exist (any more) is refused and the id is quoted back."""
    gone = make_product(title="Discontinued")
    gone_id = str(gone.pk)
    gone.delete()
    response = post_events(client, [{"product": gone_id, "event": "view"}])
    assert response.status_code == 400 and f"unknown product '{gone_id[:40]}'" in messages_of(response)


@pytest.mark.parametrize("event, field", [
    ({"product": [1], "event": "view"}, "product"),
    ({"product": "1", "event": 7}, "event"),
    ({"product": "1", "event": "rating", "value": "five"}, "value"),
    ({"product": "1", "event": "view", "dwell_seconds": True}, "dwell_seconds"),
    ({"product": "1", "event": "view", "timestamp": {"at": "noon"}}, "timestamp"),
    ({"product": "1", "event": "view", "placement": 12}, "placement"),
    ({"product": "1", "event": "view", "context": ["not", "an", "object"]}, "context"),
    ({"product": "1", "event": "view", "dwell_only": "yes"}, "dwell_only"),
])
def test_wrong_types_name_the_field(client, product, event, field):
    """A value of the wrong type is a 400 naming the field; the batch stores nothing."""
    event = {**event, "product": str(product.pk)} if event["product"] == "1" else event
    response = post_events(client, [event])
    assert response.status_code == 400
    assert field in [error["field"] for error in response.json()["errors"]]
    assert not Interaction.objects.exists()


@pytest.mark.parametrize("body", [{"events": {"product": "1"}}, {"events": "view"}, [1, 2], "null"])
def test_wrong_envelopes_are_400(client, body):
    """An envelope that is not {"events": [...]} is a 400 with a message, not a crash."""
    response = client.post(reverse(EVENTS), json.dumps(body), content_type="application/json")
    assert response.status_code == 400 and response.json()["errors"][0]["message"]


def test_malformed_json_is_400(client):
    """A body that is not JSON at all is a 400 saying so."""
    response = client.post(reverse(EVENTS), "{not json", content_type="application/json")
    assert response.status_code == 400 and "JSON" in messages_of(response)


@pytest.mark.parametrize("timestamp", ["2999-01-01T00:00:00Z", 32503680000, "9999-12-31T23:59:59+14:00"])
def test_far_future_timestamps_are_refused(client, product, timestamp):
    """Events stamped years ahead are refused with a hint to check the client's clock."""
    response = post_events(client, [{"product": str(product.pk), "event": "view", "timestamp": timestamp}])
    assert response.status_code == 400 and "check the client's clock" in messages_of(response)


@pytest.mark.parametrize("timestamp", [1e300, -1e300, "10000-01-01T00:00:00Z", float("nan")])
def test_out_of_range_timestamps_are_refused(client, product, timestamp):
    """Timestamps no calendar can hold are a 400, not an overflow."""
    body = json.dumps({"events": [{"product": str(product.pk), "event": "view", "timestamp": timestamp}]})
    response = client.post(reverse(EVENTS), body, content_type="application/json")
    assert response.status_code == 400


@pytest.mark.parametrize("field, value", [("placement", "home\x00"), ("context", {"note": "a\x00b"}),
                                          ("context", {"a\x00": 1})])
def test_nul_characters_in_events_are_refused(client, product, field, value):
    """NUL characters (PostgreSQL's text and jsonb refuse them) are a 400, on every database."""
    response = post_events(client, [{"product": str(product.pk), "event": "view", field: value}])
    assert response.status_code == 400 and "NUL" in messages_of(response)


@override_settings(RECOMMENDER={**django_settings.RECOMMENDER, "PROFILE_ATTRIBUTES": ["職業"]})
def test_unicode_profile_fields_are_kept(client):
    """Non-Latin and emoji text in profile fields is stored and returned unchanged."""
    body = {"city": "北京 🚲", "region": "Ζάκυνθος", "country": "İstanbul", "attributes": {"職業": "看護師 👩‍⚕️"}}
    response = client.patch(reverse(PROFILE), body, format="json")
    assert response.status_code == 200
    assert client.get(reverse(PROFILE)).json()["attributes"] == {"職業": "看護師 👩‍⚕️"}
    assert UserProfile.objects.get().city == "北京 🚲"


@pytest.mark.parametrize("body, field", [
    ({"city": "x" * 10_000}, "city"),
    ({"country": "y" * 65}, "country"),
    ({"language": "z" * 17}, "language"),
    ({"attributes": {"bio": "w" * 5000}}, "attributes"),
    ({"attributes": {f"k{number}": number for number in range(21)}}, "attributes"),
    ({"attributes": {"nested": {"deep": 1}}}, "attributes"),
    ({"attributes": ["not", "a", "dict"]}, "attributes"),
    ({"attributes": {"note": "a\x00b"}}, "attributes"),
    ({"city": "a\x00b"}, "city"),
    ({"birth_year": "nineteen-ninety"}, "birth_year"),
    ({"birth_year": 3000}, "birth_year"),
    ({"gender": "robot"}, "gender"),
    ({"personalization_consent": "maybe"}, "personalization_consent"),
])
@override_settings(RECOMMENDER={**django_settings.RECOMMENDER, "PROFILE_ATTRIBUTES": [
    "bio", "nested", "note", *(f"k{number}" for number in range(21))]})
def test_bad_profile_fields_are_400_naming_the_field(client, body, field):
    """Huge strings, too many or nested attributes, NULs and wrong types are a 400 on that field."""
    response = client.patch(reverse(PROFILE), body, format="json")
    assert response.status_code == 400 and field in response.json()
    assert not UserProfile.objects.exists()


@pytest.mark.parametrize("query", [{"k": "many"}, {"k": 0}, {"k": 10_000}, {"placement": "<script>"},
                                   {"placement": "x" * 100}, {"product": "no-such-product"},
                                   {"product": "9" * 40}])
def test_bad_recommendation_queries_are_400(client, query):
    """A wrong k, placement or product id is a 400 naming the parameter."""
    response = client.get(reverse("recommender:api:recommendations"), query)
    assert response.status_code == 400 and set(query) <= set(response.json())


def test_huge_and_strange_product_ids_in_paths_are_404(client):
    """Similar products of a huge or non-ASCII id answers 404, not a server error."""
    for product_id in ("9" * 40, "北京", "%00", "-1"):
        assert client.get(reverse("recommender:api:similar", args=[product_id])).status_code == 404


def test_undeclared_profile_attributes_are_a_400_naming_them(client):
    """The column-explosion attack: 20 made-up attribute keys. Refused, naming the keys and what the shop accepts."""
    with override_settings(RECOMMENDER={**django_settings.RECOMMENDER, "PROFILE_ATTRIBUTES": ["occupation"]}):
        response = client.patch(reverse(PROFILE), {"attributes": {f"col_{n:02d}": "x" for n in range(20)}},
                                format="json")
        assert response.status_code == 400
        [message] = response.json()["attributes"]
        assert "'col_00'" in message and "this shop accepts: occupation" in message
        assert not UserProfile.objects.exists()
        assert client.patch(reverse(PROFILE), {"attributes": {"occupation": "nurse"}}, format="json").status_code == 200


def test_declared_attribute_choices_are_enforced(client):
    """A declared attribute with a list of values accepts only those."""
    with override_settings(RECOMMENDER={**django_settings.RECOMMENDER,
                                        "PROFILE_ATTRIBUTES": {"customer_type": ["retail", "trade"]}}):
        refused = client.patch(reverse(PROFILE), {"attributes": {"customer_type": "pirate"}}, format="json")
        accepted = client.patch(reverse(PROFILE), {"attributes": {"customer_type": "trade"}}, format="json")
    assert refused.status_code == 400 and "one of retail, trade" in refused.json()["attributes"][0]
    assert accepted.status_code == 200 and accepted.json()["attributes"] == {"customer_type": "trade"}
