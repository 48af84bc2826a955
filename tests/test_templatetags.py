"""Tests of the recommender_tags template tags, the widget templates and the onboarding view."""

import pytest
from django.template import Context, Template
from django.contrib.auth.models import AnonymousUser
from django.test import RequestFactory
from django.urls import reverse

from recommender import events, service
from recommender.models import Interaction

from .serving_support import served_catalog

pytestmark = pytest.mark.django_db


@pytest.fixture
def products(monkeypatch):
    return served_catalog(monkeypatch)


@pytest.fixture
def request_with_session(client):
    """A request carrying a real session (the visitor key lives there)."""
    request = RequestFactory().get("/")
    request.session = client.session
    request.user = AnonymousUser()
    return request


def render(source, request, **context):
    return Template("{% load recommender_tags %}" + source).render(Context({"request": request, **context}))


def test_assignment_tag_returns_served_recommendations(products, request_with_session):
    """{% recommendations ... as recs %} gives the served list to the template."""
    html = render('{% recommendations "home" limit=3 as recs %}{{ recs.strategy }}|{{ recs|length }}',
                  request_with_session)
    assert html == f"{service.recommend(request=request_with_session, k=3).strategy}|3"


@pytest.fixture
def app_templates_only(settings):
    """The app's own templates, without the host project's overrides."""
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": []}]


def test_widget_renders_items_with_reasons_and_beacon_attributes(products, request_with_session, app_templates_only):
    """The widget shows title, names, prices and reasons, with the data-rec-* attributes the beacon reads."""
    html = render('{% recommendation_widget "home" limit=4 %}', request_with_session)
    served = service.recommend(request=request_with_session, placement="home", k=4)
    assert "Picked for you" in html
    assert 'data-rec-placement="home"' in html
    assert f'data-rec-strategy="{served.strategy}"' in html
    assert 'data-rec-arm=""' in html
    assert html.count("data-rec-item=") == 4
    for item in served:
        assert item.title in html and item.reason in html
        assert f'data-rec-item="{item.item_id}"' in html
    assert "rec-widget__price" in html


def test_widget_titles_follow_the_placement(products, request_with_session):
    """Each placement has its own title."""
    product = products[0]
    assert "Similar products" in render('{% recommendation_widget "similar" product=product %}',
                                        request_with_session, product=product)
    assert "Often chosen together" in render('{% recommendation_widget "also_bought" product=product %}',
                                             request_with_session, product=product)
    assert "You may also like" in render('{% recommendation_widget "cart" %}', request_with_session)


def test_later_shelves_of_a_page_leave_out_what_earlier_ones_show(products, request_with_session):
    """Two shelves on one page never repeat a product: the second leaves out the first one's items."""
    first = service.recommend(request=request_with_session, placement="home", k=4)
    html = render('{% recommendations "home" limit=4 as home %}{% recommendations "cart" limit=4 as cart %}'
                  '{{ home.item_ids|join:"," }}|{{ cart.item_ids|join:"," }}', request_with_session)
    home_ids, cart_ids = (part.split(",") for part in html.split("|"))
    assert home_ids == first.item_ids and len(cart_ids) == 4
    assert not set(home_ids) & set(cart_ids)
    # On its own (another page), the second shelf would have repeated the first's products.
    alone = service.recommend(request=request_with_session, placement="cart", k=4)
    assert set(alone.item_ids) & set(home_ids)


def test_placement_template_overrides_the_generic_one(products, request_with_session, tmp_path, settings):
    """recommender/widget_<placement>.html wins over recommender/widget.html."""
    (tmp_path / "recommender").mkdir()
    (tmp_path / "recommender" / "widget_home.html").write_text("CUSTOM {{ recs|length }}")
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [tmp_path]}]
    assert render('{% recommendation_widget "home" limit=2 %}', request_with_session) == "CUSTOM 2"
    assert "rec-widget" in render('{% recommendation_widget "cart" limit=2 %}', request_with_session)


def test_widget_renders_nothing_when_serving_fails(products, request_with_session, monkeypatch):
    """A failing service leaves an empty slot instead of breaking the page."""
    def broken(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(service, "recommend", broken)
    assert render('{% recommendation_widget "home" %}', request_with_session).strip() == ""


def test_onboarding_strip_only_for_new_visitors(products, request_with_session, app_templates_only):
    """A visitor with no events sees the picks strip; after an event it is gone."""
    html = render("{% onboarding_strip limit=3 %}", request_with_session)
    assert "Tell us what you like" in html and html.count('name="product"') == 3
    Interaction.objects.create(visitor_key=events.visitor_key_for(request_with_session),
                               product=products[0], event="view")
    assert render("{% onboarding_strip %}", request_with_session) == ""


def test_onboarding_picks_are_recorded_and_change_the_next_page(products, client):
    """Posting picks stores click events and the visitor's next recommendations reflect them."""
    page = client.get(reverse("recommender:onboarding"))
    assert page.status_code == 200
    picks = [item["item_id"] for item in page.context["items"][:2]]
    response = client.post(reverse("recommender:onboarding"), {"product": picks, "next": "/somewhere/"})
    assert response.status_code == 302 and response.url == "/somewhere/"
    stored = Interaction.objects.filter(event="click", placement="onboarding")
    assert sorted(str(pk) for pk in stored.values_list("product_id", flat=True)) == sorted(picks)
    visitor_key = client.session["recommender_visitor"]
    served = service.recommend(visitor_key=visitor_key, k=3)
    assert served.context.event_item_ids and set(served.context.event_item_ids) == set(picks)


def test_onboarding_refuses_unknown_picks_and_outside_redirects(products, client):
    """A pick outside the offered set is a 400; a next URL to another host goes home instead."""
    assert client.post(reverse("recommender:onboarding"), {"product": ["nope"]}).status_code == 400
    assert not Interaction.objects.exists()
    page = client.get(reverse("recommender:onboarding"))
    pick = page.context["items"][0]["item_id"]
    response = client.post(reverse("recommender:onboarding"), {"product": [pick], "next": "https://evil.example/"})
    assert response.url == "/"


def test_widget_carries_the_arm(products, request_with_session, settings):
    """Under an A/B test the widget container names the visitor's arm."""
    settings.RECOMMENDER = {**settings.RECOMMENDER, "AB_TEST": {"name": "t", "arms": {"popularity": 1.0}}}
    assert 'data-rec-arm="popularity"' in render('{% recommendation_widget "home" %}', request_with_session)


def test_a_page_of_widgets_resolves_the_visitor_once(products, request_with_session):
    """The onboarding strip and two widgets on one page read the visitor's profile and events once."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    visitor_key = events.visitor_key_for(request_with_session)
    Interaction.objects.create(visitor_key=visitor_key, product=products[0], event="view")
    page = ('{% onboarding_strip %}{% recommendation_widget "similar" product=product limit=3 %}'
            '{% recommendation_widget "also_bought" product=product limit=3 %}')
    with CaptureQueriesContext(connection) as captured:
        html = render(page, request_with_session, product=products[1])
    assert html.count("data-rec-item=") == 6
    sql = [query["sql"] for query in captured.captured_queries]
    assert sum("recommender_userprofile" in query for query in sql) == 1
    assert sum("recommender_interaction" in query and "ORDER BY" in query for query in sql) == 1


def test_the_api_resolves_the_visitor_once(products, client):
    """GET /api/recommendations/ on a cache miss reads the signed-in visitor's profile and events once."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    user = get_user_model().objects.create_user("api-once", password="pw-123456")
    events.record([{"product": products[0].pk, "event": "view"}], user=user)
    client.force_login(user)
    with CaptureQueriesContext(connection) as captured:
        response = client.get(reverse("recommender:api:recommendations"), {"k": 3, "placement": "cart"})
    assert response.status_code == 200 and len(response.json()["items"]) == 3
    sql = [query["sql"] for query in captured.captured_queries]
    assert sum("recommender_userprofile" in query for query in sql) == 1
    assert sum("recommender_interaction" in query and "ORDER BY" in query for query in sql) == 1


@pytest.mark.parametrize("templates", ["app", "demo"])
def test_widget_carries_a_token_that_attributes_its_items(products, request_with_session, settings, templates):
    """Both widget templates carry data-rec-token; it attributes the request's visitor's clicks on its items only."""
    import re

    from html import unescape

    from recommender import attribution

    if templates == "app":
        settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": []}]
    html = render('{% recommendation_widget "home" limit=4 %}', request_with_session)
    [token] = re.findall(r'data-rec-token="([^"]+)"', html)
    identity = f"visitor:{events.visitor_key_for(request_with_session, create=False)}"
    served = attribution.verify(unescape(token), [identity])
    assert served is not None and served.placement == "home"
    shown = re.findall(r'data-rec-item="([^"]+)"', html)
    assert list(served.item_ids) == shown
