"""Who may do what: anonymous visitors, signed-in users, another user, staff without permissions
and a superuser, across every API endpoint, the onboarding page and every admin page."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from recommender import events
from recommender.models import Interaction, UserProfile
from recommender.testing.factories import make_product

ROLES = ("anonymous", "user", "other_user", "staff", "superuser")
LOGIN = 302  # Django's admin sends whoever is not active staff to its login page


@pytest.fixture
def world(db):
    """A product, and the people of the matrix; "user" has a profile and events of her own."""
    User = get_user_model()
    people = {
        "user": User.objects.create_user("ursula", "ursula@example.com", "pw"),
        "other_user": User.objects.create_user("otto", "otto@example.com", "pw"),
        "staff": User.objects.create_user("stella", "stella@example.com", "pw", is_staff=True),
        "superuser": User.objects.create_superuser("sam", "sam@example.com", "pw"),
    }
    product = make_product(title="Watering can")
    UserProfile.objects.create(user=people["user"], city="Secretville", attributes={"hobby": "orchids"})
    events.record([{"product": product.pk, "event": "rating", "value": 5}], user=people["user"])
    return {"people": people, "product": product}


def client_for(world, role):
    client = Client()
    if role != "anonymous":
        client.force_login(world["people"][role])
    return client


def api(name, *args):
    return reverse(f"recommender:api:{name}", args=args)


def admin(name, *args):
    return reverse(f"admin:recommender_{name}", args=args)


# (method, url builder, body, {role: status}); None: the same status for every role.
EVERYONE = dict.fromkeys(ROLES, 200)
STAFF_API = {"anonymous": 403, "user": 403, "other_user": 403, "staff": 403, "superuser": 200}
ADMIN_PAGE = {"anonymous": LOGIN, "user": LOGIN, "other_user": LOGIN, "staff": 403, "superuser": 200}
MATRIX = [
    ("post", lambda w: api("events"), lambda w: {"events": [{"product": str(w["product"].pk), "event": "view"}]},
     dict.fromkeys(ROLES, 201)),
    ("get", lambda w: api("recommendations"), None, EVERYONE),
    ("get", lambda w: api("similar", str(w["product"].pk)), None, EVERYONE),
    ("get", lambda w: api("profile"), None, EVERYONE),
    ("patch", lambda w: api("profile"), lambda w: {"city": "Elsewhere"}, EVERYONE),
    ("get", lambda w: api("profile_export"), None, EVERYONE),
    ("post", lambda w: api("profile_erase"), None, EVERYONE),
    ("get", lambda w: api("schema"), None, EVERYONE),
    ("get", lambda w: api("docs"), None, EVERYONE),
    ("get", lambda w: reverse("recommender:onboarding"), None, EVERYONE),
    # Staff without model permissions get nothing, as in the admin.
    ("get", lambda w: api("models"), None, STAFF_API),
    # An unknown strategy: permitted callers get the validation error, so nothing is trained.
    ("post", lambda w: api("train"), lambda w: {"strategy": "no-such-strategy"}, {**STAFF_API, "superuser": 400}),
    ("get", lambda w: admin("userprofile_changelist"), None, ADMIN_PAGE),
    ("get", lambda w: admin("rating_changelist"), None, ADMIN_PAGE),
    ("get", lambda w: admin("interaction_changelist"), None, ADMIN_PAGE),
    ("get", lambda w: admin("modelversion_changelist"), None, ADMIN_PAGE),
    ("get", lambda w: admin("evaluationrun_changelist"), None, ADMIN_PAGE),
    ("get", lambda w: admin("evaluationrun_add"), None, ADMIN_PAGE),
    ("get", lambda w: admin("dashboard_changelist"), None, ADMIN_PAGE),
    ("get", lambda w: admin("dashboard_chart", "volume"), None, ADMIN_PAGE),
    ("get", lambda w: admin("preview_changelist"), None, ADMIN_PAGE),
    ("post", lambda w: admin("preview_changelist"), lambda w: {"k": 5}, ADMIN_PAGE),
]


@pytest.mark.parametrize("role", ROLES)
def test_permission_matrix(world, role):
    """Every endpoint and page answers each role with the status the matrix expects."""
    client = client_for(world, role)
    answers = {}
    for method, url_of, body_of, expected in MATRIX:
        url = url_of(world)
        body = body_of(world) if body_of else None
        if method in ("post", "patch") and url.startswith("/api/"):
            response = getattr(client, method)(url, body, content_type="application/json")
        else:
            response = getattr(client, method)(url, body or {})
        answers[f"{method.upper()} {url}"] = (response.status_code, expected[role])
    wrong = {where: got for where, got in answers.items() if got[0] != got[1]}
    assert not wrong, f"{role}: (got, expected) {wrong}"


def test_admin_login_redirects_go_to_the_admin_login(world):
    """A signed-in customer who opens an admin page is sent to the admin login, not shown it."""
    response = client_for(world, "user").get(admin("interaction_changelist"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))


@pytest.mark.parametrize("role", ("anonymous", "other_user", "staff", "superuser"))
def test_nobody_reads_another_users_profile_or_data(world, role):
    """Whatever the query string asks for, a caller sees their own profile and data, never Ursula's."""
    client = client_for(world, role)
    ursula = world["people"]["user"].pk
    profile = client.get(api("profile"), {"user": ursula, "user_id": ursula}).json()
    exported = client.get(api("profile_export"), {"user": ursula}).json()
    assert profile["city"] != "Secretville" and profile["attributes"] != {"hobby": "orchids"}
    assert exported["profile"] is None and exported["events"] == [] and exported["ratings"] == []
    assert b"Secretville" not in client.get(api("recommendations"), {"user": ursula}).content


def test_nobody_erases_another_users_data(world):
    """Another user's erase leaves Ursula's events and profile in place."""
    client_for(world, "other_user").post(api("profile_erase"), {"user": world["people"]["user"].pk})
    assert Interaction.objects.filter(user=world["people"]["user"]).count() == 1
    assert UserProfile.objects.filter(user=world["people"]["user"]).exists()


def test_recommendations_follow_the_caller_not_a_parameter(world, monkeypatch):
    """The API asks the service for the caller's own list, whatever user id the query names."""
    from recommender import service

    asked_for, real_recommend = [], service.recommend

    def recording_recommend(**kwargs):
        asked_for.append(kwargs["visitor"].user)
        return real_recommend(**kwargs)

    monkeypatch.setattr(service, "recommend", recording_recommend)
    ursula = world["people"]["user"].pk
    for role in ("other_user", "user"):
        assert client_for(world, role).get(api("recommendations"), {"user": ursula}).status_code == 200
    client_for(world, "anonymous").get(api("recommendations"), {"user": ursula})
    assert asked_for == [world["people"]["other_user"], world["people"]["user"], None]


def test_staff_users_with_view_permission_see_the_dashboard(world):
    """A staff member granted view permission on model versions reaches the dashboard and preview."""
    from django.contrib.auth.models import Permission

    staff = world["people"]["staff"]
    staff.user_permissions.add(Permission.objects.get(codename="view_modelversion"))
    client = client_for(world, "staff")
    assert client.get(admin("dashboard_changelist")).status_code == 200
    assert client.get(admin("preview_changelist")).status_code == 200
    assert client.get(admin("interaction_changelist")).status_code == 403


def test_the_staff_api_asks_for_the_admins_model_permissions(world):
    """is_staff alone opens nothing; view permission lists versions; change permission is needed to retrain."""
    from django.contrib.auth.models import Permission

    staff = world["people"]["staff"]
    client = client_for(world, "staff")
    assert client.get(api("models")).status_code == 403
    assert client.post(api("train"), {"strategy": "no-such-strategy"}, content_type="application/json").status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="view_modelversion"))
    assert client.get(api("models")).status_code == 200
    assert client.post(api("train"), {"strategy": "no-such-strategy"}, content_type="application/json").status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="change_modelversion"))
    client = client_for(world, "staff")  # permissions are cached per user object
    assert client.post(api("train"), {"strategy": "no-such-strategy"}, content_type="application/json").status_code == 400


@pytest.mark.parametrize("method, name, body", [
    ("post", "events", {"events": []}), ("patch", "profile", {"city": "X"}), ("post", "profile_erase", {})])
def test_session_authenticated_writes_need_the_csrf_token(world, method, name, body):
    """A signed-in browser session writing without the CSRF token is refused with 403."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(world["people"]["user"])
    response = getattr(client, method)(api(name), body, content_type="application/json")
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]
