"""Tests of the serving API: recommendations, similar products, profile, staff model endpoints, schema."""

import datetime

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse
from rest_framework.test import APIClient

from recommender import events
from recommender.models import ModelVersion, UserProfile

from .serving_support import served_catalog

pytestmark = pytest.mark.django_db


@pytest.fixture
def products(monkeypatch):
    return served_catalog(monkeypatch)


@pytest.fixture
def client():
    return APIClient()


def signed_in(username, staff=False):
    """A signed-in client; ``staff``: a staff account holding the model-version permissions the staff API asks."""
    from django.contrib.auth.models import Permission

    user = get_user_model().objects.create_user(username, password="pw-123456", is_staff=staff)
    if staff:
        user.user_permissions.add(*Permission.objects.filter(codename__in=["view_modelversion", "change_modelversion"]))
    api = APIClient()
    api.force_login(user)
    return user, api


def url(name, **kwargs):
    return reverse(f"recommender:api:{name}", kwargs=kwargs or None)


def test_recommendations_for_an_anonymous_visitor(products, client):
    """An anonymous request gets k products with id, title, price, score and reason."""
    response = client.get(url("recommendations"), {"k": 3})
    assert response.status_code == 200
    body = response.json()
    assert body["placement"] == "home" and body["title"] == "Picked for you"
    assert len(body["items"]) == 3
    assert {"id", "title", "price", "url", "score", "reason"} <= set(body["items"][0])
    assert body["strategy"] in {"segment_popularity", "popularity"}


def test_recommendations_follow_the_signed_in_users_events(products):
    """A signed-in user's purchase is excluded from their list, not from another user's."""
    user, api = signed_in("ann")
    other, other_api = signed_in("bob")
    first = api.get(url("recommendations"), {"k": 1}).json()["items"][0]["id"]
    events.record([{"product": first, "event": "purchase"}], user=user)
    mine = [item["id"] for item in api.get(url("recommendations"), {"k": 5}).json()["items"]]
    theirs = [item["id"] for item in other_api.get(url("recommendations"), {"k": 5}).json()["items"]]
    assert first not in mine
    assert first in theirs


def test_product_in_view_is_excluded(products, client):
    """The product parameter names the product in view, which is never recommended."""
    product = products[0]
    response = client.get(url("recommendations"), {"k": 20, "placement": "also_bought", "product": str(product.pk)})
    assert response.status_code == 200
    assert str(product.pk) not in {item["id"] for item in response.json()["items"]}


@pytest.mark.parametrize("params, bad", [
    ({"k": "0"}, "k"),
    ({"k": "many"}, "k"),
    ({"k": "1000"}, "k"),
    ({"placement": "Home Page!"}, "placement"),
    ({"product": "does-not-exist"}, "product"),
])
def test_bad_parameters_get_a_400_naming_them(products, client, params, bad):
    """Each bad query parameter gets a 400 whose body names that parameter."""
    response = client.get(url("recommendations"), params)
    assert response.status_code == 400
    assert list(response.json()) == [bad]


def test_similar_products(products, client):
    """/products/{id}/similar/ serves other products; unknown ids are 404, bad k is 400."""
    response = client.get(url("similar", product_id=str(products[0].pk)), {"k": 4})
    assert response.status_code == 200
    ids = [item["id"] for item in response.json()["items"]]
    assert len(ids) == 4 and str(products[0].pk) not in ids
    assert client.get(url("similar", product_id="nope")).status_code == 404
    assert list(client.get(url("similar", product_id=str(products[0].pk)), {"k": "-1"}).json()) == ["k"]


def test_profile_is_created_on_first_patch_and_read_back(client):
    """An anonymous visitor's PATCH creates their profile; GET returns it."""
    assert client.get(url("profile")).json()["gender"] == ""
    response = client.patch(url("profile"), {"gender": "f", "birth_year": 1990, "city": "Köln"}, format="json")
    assert response.status_code == 200
    assert UserProfile.objects.get().city == "Köln"
    assert client.get(url("profile")).json()["birth_year"] == 1990


def test_profile_is_ones_own(client):
    """Each user sees and changes only their own profile; an anonymous visitor sees none of them."""
    ann, ann_api = signed_in("ann")
    bob, bob_api = signed_in("bob")
    ann_api.patch(url("profile"), {"country": "de"}, format="json")
    bob_api.patch(url("profile"), {"country": "fr"}, format="json")
    assert ann_api.get(url("profile")).json()["country"] == "de"
    assert bob_api.get(url("profile")).json()["country"] == "fr"
    assert client.get(url("profile")).json()["country"] == ""
    assert UserProfile.objects.get(user=ann).country == "de"


@pytest.mark.parametrize("payload, bad", [
    ({"birth_year": 1850}, "birth_year"),
    ({"birth_year": datetime.date.today().year + 1}, "birth_year"),
    ({"gender": "q"}, "gender"),
    ({"city": "x" * 65}, "city"),
    ({"attributes": {"nested": {"no": 1}}}, "attributes"),
    ({"attributes": {f"k{i}": i for i in range(30)}}, "attributes"),
])
def test_profile_validation_names_the_field(client, payload, bad):
    """Out-of-range years, unknown genders, long strings and odd attributes are 400s naming the field."""
    response = client.patch(url("profile"), payload, format="json")
    assert response.status_code == 400
    assert list(response.json()) == [bad]
    assert not UserProfile.objects.exists()


def test_profile_consent_switches_personalisation_off(products):
    """A user who withdraws consent through the API gets plain popularity."""
    user, api = signed_in("ann")
    api.patch(url("profile"), {"gender": "f", "birth_year": 1994}, format="json")
    assert api.get(url("recommendations")).json()["strategy"] == "segment_popularity"
    api.patch(url("profile"), {"personalization_consent": False}, format="json")
    assert api.get(url("recommendations")).json()["strategy"] == "popularity"


def test_model_endpoints_are_staff_only(client):
    """Anonymous and ordinary users get 403 from the model endpoints; staff see the versions."""
    ModelVersion.objects.create(strategy="popularity", status="active")
    _, user_api = signed_in("ann")
    _, staff_api = signed_in("boss", staff=True)
    for api in (client, user_api):
        assert api.get(url("models")).status_code == 403
        assert api.post(url("train"), {"strategy": "popularity"}, format="json").status_code == 403
    response = staff_api.get(url("models"))
    assert response.status_code == 200
    assert [row["strategy"] for row in response.json()["results"]] == ["popularity"]


def test_train_refuses_unknown_strategies(client):
    """Staff asking to train an unknown key get a 400 that lists the known keys."""
    _, staff_api = signed_in("boss", staff=True)
    response = staff_api.post(url("train"), {"strategy": "magic"}, format="json")
    assert response.status_code == 400
    assert "popularity" in response.json()["strategy"][0]


def test_schema_is_valid_openapi_without_warnings(tmp_path):
    """The generated schema validates against the OpenAPI spec, with no generator warnings."""
    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target), skip_checks=True)
    text = target.read_text()
    for path in ("/api/recommendations/", "/api/products/{product_id}/similar/", "/api/profile/", "/api/models/",
                 "/api/models/train/", "/api/events/"):
        assert path in text


def test_schema_and_docs_pages_are_served(client):
    """/api/schema/ answers 200 and the docs page lists the endpoints without outside assets."""
    assert client.get(url("schema")).status_code == 200
    page = client.get(url("docs")).content.decode()
    assert "/api/recommendations/" in page
    assert "http://" not in page and "https://" not in page


def test_staff_can_queue_a_training(products):
    """Staff POST /models/train/ gets 202 with the task id, and a version row of that strategy exists."""
    _, staff_api = signed_in("boss", staff=True)
    response = staff_api.post(url("train"), {"strategy": "popularity"}, format="json")
    assert response.status_code == 202
    assert response.json()["strategy"] == "popularity" and response.json()["task_id"]
    assert ModelVersion.objects.filter(strategy="popularity").exists()
