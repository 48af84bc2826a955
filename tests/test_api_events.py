"""POST /api/events/: validation errors, whole-batch refusal, sessions, CSRF, idempotent retries, schema."""

import string
import uuid

import pytest
from django.conf import settings as django_settings
from django.test import override_settings
from django.urls import reverse
from django.utils.crypto import get_random_string
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from recommender.conf import settings
from recommender.models import Interaction
from recommender.testing.factories import make_product

pytestmark = pytest.mark.django_db
URL = "/api/events/"


@pytest.fixture
def products():
    return [make_product() for _ in range(3)]


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("linus", password="pw-12345678")


def views_of(products):
    return [{"product": str(product.pk), "event": "view"} for product in products]


def test_route_is_namespaced():
    """The endpoint reverses as recommender:api:events."""
    assert reverse("recommender:api:events") == URL


def test_anonymous_batch_is_stored_for_the_sessions_visitor(products):
    """An anonymous batch gets 201 with the count, owned by the visitor id kept in the session."""
    client = APIClient()
    response = client.post(URL, {"events": views_of(products)}, format="json")
    assert response.status_code == 201
    assert response.json() == {"stored": 3}
    visitor_key = client.session[settings.VISITOR_SESSION_KEY]
    client.post(URL, {"events": views_of(products[:1])}, format="json")
    assert Interaction.objects.filter(visitor_key=visitor_key, user=None).count() == 4
    other = APIClient()
    other.post(URL, {"events": views_of(products[:1])}, format="json")
    assert other.session[settings.VISITOR_SESSION_KEY] != visitor_key


def test_bad_event_is_a_400_naming_index_and_field(products):
    """An unknown product at index 3 comes back as index 3, field product, and nothing is stored."""
    missing = str(uuid.uuid4()) if isinstance(products[0].pk, uuid.UUID) else "999"
    batch = views_of(products) + [{"product": missing, "event": "view"}, {"product": str(products[0].pk), "event": "x"}]
    response = APIClient().post(URL, {"events": batch}, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "errors": [
            {"index": 3, "field": "product", "message": f"unknown product '{missing}'"},
            {"index": 4, "field": "event", "message": response.json()["errors"][1]["message"]},
        ]
    }
    assert "unknown event 'x'" in response.json()["errors"][1]["message"]
    assert not Interaction.objects.exists()


@override_settings(RECOMMENDER={"MAX_EVENTS_PER_BATCH": 10})
def test_oversized_batch_is_refused_whole(products):
    """One event over the limit refuses the whole batch with a 400 and stores nothing."""
    batch = views_of(products) * 4  # 12 events, all of them valid
    response = APIClient().post(URL, {"events": batch}, format="json")
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert (error["index"], error["field"]) == (None, "events")
    assert "at most 10 events, not 12" in error["message"]
    assert not Interaction.objects.exists()


@pytest.mark.parametrize(
    "body, field, fragment",
    [
        ({"events": {"product": "1"}}, "events", "Expected a list of events"),
        ({}, "events", "required"),
        ({"events": [], "batch_id": "b" * 101}, "batch_id", "no more than 100"),
        ([1, 2], None, "Invalid data"),
    ],
)
def test_a_bad_envelope_is_a_400_in_the_same_shape(body, field, fragment):
    """A body that is not {"events": [...]} gets the same {errors: [{index, field, message}]} answer."""
    response = APIClient().post(URL, body, format="json")
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert (error["index"], error["field"]) == (None, field)
    assert fragment in error["message"]


def test_malformed_json_is_a_400_in_the_same_shape():
    """A body that is not JSON gets the errors list too, not a bare 'detail'."""
    response = APIClient().post(URL, "{not json", content_type="application/json")
    assert response.status_code == 400
    assert "JSON parse error" in response.json()["errors"][0]["message"]


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=500)
def test_a_body_over_the_upload_limit_is_a_413_in_the_same_shape(products):
    """A body larger than Django's upload limit is refused with 413 and the errors list."""
    response = APIClient().post(URL, {"events": views_of(products) * 10}, format="json")
    assert response.status_code == 413
    assert "too large" in response.json()["errors"][0]["message"]
    assert not Interaction.objects.exists()


def test_retried_batch_id_is_stored_once(products):
    """A batch posted twice with the same batch_id is stored once and answered the same both times."""
    client = APIClient()
    body = {"batch_id": "client-batch-7", "events": views_of(products)}
    first = client.post(URL, body, format="json")
    again = client.post(URL, body, format="json")
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json() == {"stored": 3}
    assert Interaction.objects.count() == 3


def test_signed_in_user_needs_the_csrf_token(products, user):
    """A session-authenticated write without X-CSRFToken is refused; with the cookie's token it is stored for the user."""
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    refused = client.post(URL, {"events": views_of(products)}, format="json")
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]
    assert not Interaction.objects.exists()

    token = get_random_string(32, string.ascii_letters + string.digits)
    client.cookies["csrftoken"] = token
    accepted = client.post(URL, {"events": views_of(products)}, format="json", HTTP_X_CSRFTOKEN=token)
    assert accepted.status_code == 201
    assert Interaction.objects.filter(user=user).count() == 3


def test_anonymous_visitor_may_post_without_a_csrf_token(products):
    """Anonymous beacons work before any form set a CSRF cookie (there is no account to act for)."""
    response = APIClient(enforce_csrf_checks=True).post(URL, {"events": views_of(products)}, format="json")
    assert response.status_code == 201


def test_schema_describes_the_endpoint():
    """The OpenAPI schema documents the request (events and their fields) and both answers."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    operation = schema["paths"][URL]["post"]
    assert set(operation["responses"]) == {"201", "400", "413", "429"}
    components = schema["components"]["schemas"]
    batch_ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    batch = components[batch_ref.rsplit("/", 1)[1]]
    assert batch["required"] == ["events"]
    event = components[batch["properties"]["events"]["items"]["$ref"].rsplit("/", 1)[1]]
    assert {"product", "event", "value", "dwell_seconds", "timestamp", "placement", "context"} <= set(event["properties"])
    assert "rating" in components["EventEnum"]["enum"]


def test_a_forged_purchase_from_the_browser_is_a_400_and_stores_nothing(products):
    """The attack: 500 anonymous purchase events in one POST. Refused whole with a message saying why."""
    batch = [{"product": str(products[0].pk), "event": "purchase"}] * 500
    response = APIClient().post(URL, {"events": batch}, format="json")
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert len(errors) == 500 and {error["field"] for error in errors} == {"event"}
    assert "shop's own server code" in errors[0]["message"]
    assert not Interaction.objects.exists()


def test_an_anonymous_rating_is_a_400_and_a_signed_in_one_is_stored(products, user):
    """Ratings come from signed-in users only."""
    rating = [{"product": str(products[0].pk), "event": "rating", "value": 4}]
    refused = APIClient().post(URL, {"events": rating}, format="json")
    assert refused.status_code == 400 and "signed-in user" in refused.json()["errors"][0]["message"]
    client = APIClient()
    client.force_authenticate(user)
    assert client.post(URL, {"events": rating}, format="json").status_code == 201


@pytest.mark.parametrize("depth", [9, 50, 3000])
def test_deeply_nested_json_is_a_400(products, depth):
    """JSON nested thousands deep used to raise RecursionError in the parser (a 500); now a 400 saying why."""
    body = '{"events": [{"product": "1", "event": "view", "context": ' + "[" * depth + "]" * depth + "}]}"
    response = APIClient().post(URL, body, content_type="application/json")
    assert response.status_code == 400
    assert "nested more than" in response.json()["errors"][0]["message"]


def test_two_visitors_reusing_a_batch_id_both_get_their_events_stored(products):
    """A second visitor who happens to send the same batch_id is stored too (it is scoped to its owner)."""
    body = {"batch_id": "beacon-batch-1", "events": views_of(products)}
    first, second = APIClient(), APIClient()
    assert first.post(URL, body, format="json").json() == {"stored": 3}
    assert second.post(URL, body, format="json").json() == {"stored": 3}
    assert Interaction.objects.count() == 6
    assert Interaction.objects.values("visitor_key").distinct().count() == 2


def test_the_daily_allowance_answers_429_with_retry_after(products):
    """Past MAX_CLIENT_EVENTS_PER_DAY the endpoint answers 429 in the errors shape, with Retry-After."""
    client = APIClient()
    with override_settings(RECOMMENDER={**django_settings.RECOMMENDER, "MAX_CLIENT_EVENTS_PER_DAY": 4}):
        assert client.post(URL, {"events": views_of(products)}, format="json").status_code == 201
        refused = client.post(URL, {"events": views_of(products)}, format="json")
    assert refused.status_code == 429
    assert "MAX_CLIENT_EVENTS_PER_DAY" in refused.json()["errors"][0]["message"]
    assert int(refused["Retry-After"]) >= 1
    assert Interaction.objects.count() == 3
