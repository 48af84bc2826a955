"""recommender.receivers: merging on login and sign-up, cart and order signals."""

import datetime
import logging

import pytest
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.middleware import SessionMiddleware
from django.test import Client, RequestFactory, override_settings
from django.urls import reverse

from recommender.conf import settings
from recommender.events import BATCH_KEY_MAX_LENGTH
from recommender.models import Interaction, Rating, UserProfile
from recommender.receivers import order_batch_key
from recommender.signals import cart_changed, order_placed
from recommender.tasks import record_events_task
from recommender.testing.factories import make_product

pytestmark = pytest.mark.django_db


@pytest.fixture
def products():
    return [make_product() for _ in range(3)]


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("grace", password="pw-12345678")


def post_events(client, batch):
    response = client.post(reverse("recommender:api:events"), {"events": batch}, content_type="application/json")
    assert response.status_code == 201, response.content
    return response


def test_login_merges_the_sessions_events_nothing_lost_nothing_twice(products, user):
    """Events posted anonymously belong to the account after a real login; a second login adds nothing."""
    client = Client()
    post_events(client, [{"product": products[0].pk, "event": "view"},
                         {"product": products[1].pk, "event": "click"}])
    visitor_key = client.session[settings.VISITOR_SESSION_KEY]
    old_session_key = client.session.session_key

    assert client.login(username="grace", password="pw-12345678")
    assert client.session.session_key != old_session_key, "login cycles the session key"
    assert Interaction.objects.count() == 2
    assert set(Interaction.objects.values_list("user_id", flat=True)) == {user.pk}

    post_events(client, [{"product": products[2].pk, "event": "click"}])
    client.login(username="grace", password="pw-12345678")
    assert Interaction.objects.filter(user=user).count() == 3
    assert Interaction.objects.filter(visitor_key=visitor_key).count() == 3


def test_sign_up_then_login_moves_profile_and_history(products, django_user_model):
    """A visitor who builds a profile, then signs up (account created, then login), keeps both."""
    client = Client()
    post_events(client, [{"product": products[0].pk, "event": "click"}])
    visitor_key = client.session[settings.VISITOR_SESSION_KEY]
    UserProfile.objects.create(visitor_key=visitor_key, country="jp", birth_year=1985)

    new_user = django_user_model.objects.create_user("newbie", password="pw-12345678")
    client.force_login(new_user)

    profile = UserProfile.objects.get()
    assert (profile.user_id, profile.visitor_key, profile.country) == (new_user.pk, None, "jp")
    assert Interaction.objects.get().user_id == new_user.pk


def test_after_logout_events_are_not_the_accounts(products, user):
    """Logging out starts a new visitor: what follows is not merged into the previous account."""
    client = Client()
    client.force_login(user)
    client.logout()
    post_events(client, [{"product": products[0].pk, "event": "view"}])
    assert Interaction.objects.get().user_id is None


def anonymous_request():
    request = RequestFactory().post("/cart/")
    SessionMiddleware(lambda request: None).process_request(request)
    request.user = AnonymousUser()
    return request


def test_cart_changed_records_additions_only(products):
    """A positive quantity is a cart event valued at the quantity; a removal records nothing."""
    request = anonymous_request()
    cart_changed.send(sender=None, request=request, product=products[0], quantity=2)
    cart_changed.send(sender=None, request=request, product=products[1], quantity=-1)
    cart_changed.send(sender=None, request=request, product=products[1], quantity=0)
    event = Interaction.objects.get()
    assert (event.product_id, event.event, event.value) == (products[0].pk, "cart", 2)
    assert event.visitor_key == request.session[settings.VISITOR_SESSION_KEY]


def test_order_placed_records_purchases_for_the_user(products, user):
    """Every ordered line becomes a purchase event of the user, valued at its quantity."""
    request = anonymous_request()
    request.user = user
    order_placed.send(sender=None, request=request, user=user, items=[(products[0], 1), (products[1], 3)])
    rows = Interaction.objects.order_by("pk").values_list("user_id", "product_id", "event", "value")
    assert list(rows) == [(user.pk, products[0].pk, "purchase", 1), (user.pk, products[1].pk, "purchase", 3)]


def test_an_order_sent_twice_with_its_order_id_is_stored_once(products, user):
    """order_id makes the order idempotent (a retried signal, a history import); placed_at dates it."""
    placed_at = datetime.datetime(2025, 3, 1, 12, 30, tzinfo=datetime.timezone.utc)
    for _ in range(2):
        order_placed.send(sender=None, user=user, items=[(products[0], 2)], order_id="100042", placed_at=placed_at)
    event = Interaction.objects.get()
    assert (event.product_id, event.value, event.timestamp) == (products[0].pk, 2, placed_at)
    assert event.context == {"order": "100042"}, "the purchase names its order"
    order_placed.send(sender=None, user=user, items=[(products[1], 1)], order_id="100043")
    assert Interaction.objects.count() == 2, "another order is another batch"


def test_order_batch_keys_fit_the_batch_key_column():
    """A very long order number still gives a key of at most BATCH_KEY_MAX_LENGTH, distinct per order."""
    long_a, long_b = "A" * 200, "A" * 199 + "B"
    assert order_batch_key("100042") == "order-100042"
    assert len(order_batch_key(long_a)) <= BATCH_KEY_MAX_LENGTH
    assert order_batch_key(long_a) != order_batch_key(long_b)


def test_order_without_request_or_user_is_skipped_with_a_warning(products, caplog):
    """With nobody to own them, order events are not stored and the log says why."""
    with caplog.at_level(logging.WARNING, logger="recommender.receivers"):
        order_placed.send(sender=None, items=[(products[0], 1)])
    assert not Interaction.objects.exists()
    assert "without a user" in caplog.text


def test_a_refused_order_event_is_logged_not_raised(products, user, caplog):
    """A checkout never fails because of the recommender: a bad line is logged as an error."""
    with caplog.at_level(logging.ERROR, logger="recommender.receivers"):
        order_placed.send(sender=None, user=user, items=[(products[0], 1), ("no-such-product", 1)])
    assert not Interaction.objects.exists()
    assert "events refused" in caplog.text and "event 1 product" in caplog.text


@override_settings(RECOMMENDER={"RECORD_ORDERS_ASYNC": True})
def test_async_orders_are_recorded_by_the_task_after_commit(products, user, django_capture_on_commit_callbacks):
    """With RECORD_ORDERS_ASYNC the order is recorded by the Celery task once the transaction commits."""
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        order_placed.send(sender=None, user=user, items=[(products[2], 2)])
    assert not Interaction.objects.exists(), "nothing is recorded before the order commits"
    assert len(callbacks) == 1
    # Eager, whatever the broker settings of this run: the task body runs in-process.
    conf = record_events_task.app.conf
    was_eager, conf.task_always_eager = conf.task_always_eager, True
    try:
        callbacks[0]()
        callbacks[0]()  # a redelivered task stores the order once
    finally:
        conf.task_always_eager = was_eager
    event = Interaction.objects.get()
    assert (event.user_id, event.product_id, event.event, event.value) == (user.pk, products[2].pk, "purchase", 2)
    assert event.dedupe_key.startswith(f"user:{user.pk}:order-")


@override_settings(RECOMMENDER={"RECORD_ORDERS_ASYNC": True})
def test_async_orders_keep_order_id_and_placed_at(products, user, django_capture_on_commit_callbacks):
    """The queued task stores the order under its order_id's key, dated placed_at."""
    placed_at = datetime.datetime(2025, 3, 1, 12, 30, tzinfo=datetime.timezone.utc)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        order_placed.send(sender=None, user=user, items=[(products[0], 1)], order_id="7", placed_at=placed_at)
        order_placed.send(sender=None, user=user, items=[(products[0], 1)], order_id="7", placed_at=placed_at)
    conf = record_events_task.app.conf
    was_eager, conf.task_always_eager = conf.task_always_eager, True
    try:
        for callback in callbacks:
            callback()
    finally:
        conf.task_always_eager = was_eager
    event = Interaction.objects.get()
    assert (event.context, event.timestamp) == ({"order": "7"}, placed_at)
    assert event.dedupe_key == f"user:{user.pk}:{order_batch_key('7')}:0"
