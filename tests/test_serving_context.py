"""recommender.serving.visitor and .context: the visitor resolved once, its context read in one query."""

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.db import SessionStore
from django.test import RequestFactory, override_settings

from recommender import events
from recommender.models import UserProfile
from recommender.serving.context import known_events, visitor_context
from recommender.serving.visitor import Visitor, visitor_from

from .serving_support import make_catalog

pytestmark = pytest.mark.django_db


@pytest.fixture
def products():
    return make_catalog(per_category=3)


def test_known_events_leave_out_impressions_and_keep_the_newest(products, django_assert_num_queries):
    """One query: the newest SESSION_HISTORY_LENGTH counting events, oldest first; the stamp is the newest id."""
    events.record([
        {"product": products[number].pk, "event": event, "timestamp": 1_700_000_000 + number}
        for number, event in enumerate(["view", "impression", "click", "cart", "impression"])
    ], visitor_key="v1")
    visitor = Visitor(visitor_key="v1")
    visitor.profile()  # read apart: this test counts the events query
    with override_settings(RECOMMENDER={**settings.RECOMMENDER, "SESSION_HISTORY_LENGTH": 2}):
        with django_assert_num_queries(1):
            known = known_events(visitor)
    assert [event.item_id for event in known.events] == [str(products[2].pk), str(products[3].pk)]
    newest = visitor.interactions().exclude(event="impression").order_by("-timestamp").first()
    assert known.stamp == str(newest.pk)


def test_an_unknown_visitor_or_one_without_consent_has_no_events(products, django_assert_max_num_queries):
    """Nobody-yet reads nothing; without consent the events are not read and the context is bare."""
    with django_assert_max_num_queries(0):
        assert known_events(Visitor()).stamp == "-"
    user = get_user_model().objects.create_user("no-consent", password="pw-123456")
    UserProfile.objects.create(user=user, gender="f", personalization_consent=False)
    events.record([{"product": products[0].pk, "event": "view"}], user=user)
    visitor = Visitor(user=user)
    assert known_events(visitor).events == ()
    context = visitor_context(visitor, product_id=str(products[1].pk))
    assert context.profile == {} and context.events == () and context.product_id == str(products[1].pk)


def test_context_carries_profile_events_and_product(products):
    """With consent: the profile's features, the events and the product in view."""
    user = get_user_model().objects.create_user("ann", password="pw-123456")
    UserProfile.objects.create(user=user, gender="f", country="de")
    events.record([{"product": products[0].pk, "event": "view"}], user=user)
    context = visitor_context(Visitor(user=user), product_id=str(products[2].pk))
    assert context.profile["gender"] == "f" and context.profile["country"] == "de"
    assert context.event_item_ids == [str(products[0].pk)] and context.user_id == str(user.pk)


def anonymous_request():
    request = RequestFactory().get("/")
    request.session = SessionStore()
    request.user = AnonymousUser()
    return request


def test_the_visitor_is_resolved_once_per_request(products, django_assert_num_queries):
    """A second resolution on the same request reuses the visitor and its profile: no query."""
    request = anonymous_request()
    first = visitor_from(request=request)
    UserProfile.objects.create(visitor_key=first.visitor_key, gender="m")
    assert first.profile().gender == "m"
    with django_assert_num_queries(0):
        again = visitor_from(request=request)
        assert again is first and again.profile().gender == "m"


def test_a_login_or_a_new_key_during_the_request_resolves_again(products):
    """The visitor kept on a request is dropped when the session gets a key or the user signs in."""
    request = anonymous_request()
    nobody = visitor_from(request=request, create=False)
    assert not nobody.known
    key = events.visitor_key_for(request, create=True)
    assert visitor_from(request=request, create=False).visitor_key == key
    request.user = get_user_model().objects.create_user("bob", password="pw-123456")
    assert visitor_from(request=request).user == request.user
