"""Export and erase one person's data (``recommender.privacy``): service, API, admin action,
and trained models that keep serving after an erase and hold no personal data."""

import json
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from recommender import events, privacy, service
from recommender.versions import run
from recommender.artifacts import get_storage
from recommender.models import Interaction, Rating, UserProfile
from recommender.serving import loaded_models
from recommender.testing.factories import make_product

from .training_support import fresh_training_state, seed_shop


@pytest.fixture(autouse=True)
def fresh_serving_state():
    with fresh_training_state():
        yield


def person_with_data(username="alice", email="alice@example.com"):
    """A user with a profile, two events, a rating; plus an anonymous visitor's event."""
    user = get_user_model().objects.create(username=username, email=email)
    first, second = make_product(title="Lamp"), make_product(title="Desk")
    UserProfile.objects.create(user=user, gender="f", birth_year=1990, city="Köln", attributes={"job": "nurse"})
    events.record([{"product": first.pk, "event": "view"}, {"product": second.pk, "event": "rating", "value": 4}],
                  user=user, visitor_key="alice-browser")
    return user, first, second


@pytest.mark.django_db
def test_export_holds_profile_ratings_and_events():
    """The export has the user's profile fields, their rating and both events, as JSON-ready data."""
    user, first, second = person_with_data()
    exported = privacy.export_user_data(user)
    json.dumps(exported)  # JSON-ready: no datetimes, UUIDs or Decimals left
    assert exported["user"] == {"id": user.pk, "username": "alice"}
    assert exported["profile"]["city"] == "Köln" and exported["profile"]["attributes"] == {"job": "nurse"}
    assert [(row["product_id"], row["score"]) for row in exported["ratings"]] == [(str(second.pk), 4.0)]
    assert [(row["product_id"], row["event"]) for row in exported["events"]] == [
        (str(first.pk), "view"), (str(second.pk), "rating")]


@pytest.mark.django_db
def test_erase_removes_one_person_only():
    """Erasing Alice deletes her profile, ratings and events; Bob's stay and the account stays."""
    alice, product, _ = person_with_data()
    bob = get_user_model().objects.create(username="bob")
    UserProfile.objects.create(user=bob, gender="m")
    events.record([{"product": product.pk, "event": "rating", "value": 2}], user=bob)
    counts = privacy.erase_user_data(alice)
    assert counts == {"events": 2, "ratings": 1, "profiles": 1}
    assert not Interaction.objects.filter(user=alice).exists() and not Rating.objects.filter(user=alice).exists()
    assert not UserProfile.objects.filter(user=alice).exists()
    assert get_user_model().objects.filter(pk=alice.pk).exists()
    assert Interaction.objects.filter(user=bob).count() == 1 and Rating.objects.filter(user=bob).count() == 1
    assert privacy.export_user_data(alice)["events"] == []


@pytest.mark.django_db
def test_anonymous_visitor_data_is_erased_by_key():
    """An anonymous visitor's profile and events go; a signed-in user's rows with that key stay."""
    product = make_product()
    UserProfile.objects.create(visitor_key="anon-1", gender="x")
    events.record([{"product": product.pk, "event": "view"}], visitor_key="anon-1")
    other = get_user_model().objects.create(username="carol")
    events.record([{"product": product.pk, "event": "view"}], user=other, visitor_key="anon-1")
    assert privacy.erase_user_data(visitor_key="anon-1") == {"events": 1, "ratings": 0, "profiles": 1}
    assert Interaction.objects.filter(user=other).count() == 1


def test_an_owner_is_required():
    """Without a user or a visitor key the call is refused, rather than matching everybody."""
    with pytest.raises(ValueError, match="signed-in user or an anonymous visitor"):
        privacy.export_user_data(None, "")


# --- API -------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_api_export_and_erase_reach_only_your_own_data():
    """A signed-in user exports and erases their own data; another user's is untouched."""
    alice, product, _ = person_with_data()
    bob = get_user_model().objects.create(username="bob")
    events.record([{"product": product.pk, "event": "view"}], user=bob)
    client = APIClient()
    client.force_authenticate(alice)
    exported = client.get(reverse("recommender:api:profile_export"))
    assert exported.status_code == 200 and "attachment" in exported["Content-Disposition"]
    assert exported.json()["user"]["username"] == "alice" and len(exported.json()["events"]) == 2
    erased = client.post(reverse("recommender:api:profile_erase"))
    assert erased.status_code == 200 and erased.json() == {"events": 2, "ratings": 1, "profiles": 1}
    assert Interaction.objects.filter(user=bob).count() == 1


@pytest.mark.django_db
def test_api_anonymous_visitor_exports_and_erases_their_session_data():
    """An anonymous session's events are exported and erased; a fresh session has nothing."""
    product = make_product()
    client = APIClient()
    client.post(reverse("recommender:api:events"), {"events": [{"product": str(product.pk), "event": "view"}]},
                format="json")
    assert len(client.get(reverse("recommender:api:profile_export")).json()["events"]) == 1
    assert APIClient().get(reverse("recommender:api:profile_export")).json()["events"] == []
    assert APIClient().post(reverse("recommender:api:profile_erase")).json()["events"] == 0
    assert client.post(reverse("recommender:api:profile_erase")).json()["events"] == 1
    assert not Interaction.objects.exists()


@pytest.mark.django_db
def test_api_erase_needs_the_csrf_token():
    """Erase is a session-authenticated write: without the CSRF token it is refused (403)."""
    alice, _, _ = person_with_data()
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    refused = client.post(reverse("recommender:api:profile_erase"))
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    assert Interaction.objects.filter(user=alice).count() == 2


# --- admin -----------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_admin_actions_export_and_erase_the_selected_people(admin_client):
    """The profile admin's actions download the selected people's data, then erase it."""
    alice, _, _ = person_with_data()
    profile = UserProfile.objects.get(user=alice)
    url = reverse("admin:recommender_userprofile_changelist")
    exported = admin_client.post(url, {"action": "export_people_data", "_selected_action": [profile.pk]})
    assert exported.status_code == 200
    assert [person["user"]["username"] for person in json.loads(exported.content)] == ["alice"]
    erased = admin_client.post(url, {"action": "erase_people_data", "_selected_action": [profile.pk]}, follow=True)
    assert "Erased the data of 1 people: 1 profiles, 1 ratings, 2 events." in erased.content.decode()
    assert not Interaction.objects.filter(user=alice).exists()


# --- trained models --------------------------------------------------------------------------------
def test_models_keep_serving_after_an_erase_and_hold_no_personal_data(transactional_db):
    """Popularity trained on the shop serves others and the erased user (as new) after an erase;
    its artifact holds neither the user's name nor e-mail address."""
    _, users = seed_shop(n_users=30)
    user = users[0]
    user.email = "shopper-unique-7f3e@example.org"
    user.save()
    version = run.train_strategy("popularity")
    assert version.status == "active"
    directory = Path(get_storage().path(version.artifact_path))
    stored = b"".join(path.read_bytes() for path in directory.rglob("*") if path.is_file())
    assert stored, "the artifact directory is empty"
    assert user.username.encode() not in stored and user.email.encode() not in stored
    assert privacy.erase_user_data(user)["events"] == 6
    loaded_models.forget_loaded_models()  # as a fresh process would: load the artifact again
    for someone in (users[1], user):
        served = service.recommend(user=someone, k=4)
        assert served.strategy == "popularity" and len(served) == 4
    assert service.recommend(user=user, k=4).context.events == ()
