"""recommender.contrib.oscar.receivers: Oscar's own views and signals become the app's events."""

import time
import uuid

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.test import override_settings
from oscar.test.factories import UserFactory

from recommender.conf import settings
from recommender.models import Interaction, UserProfile

from .shop import PASSWORD, Shopper

pytestmark = [pytest.mark.oscar, pytest.mark.django_db]


def rows(**filters):
    return list(Interaction.objects.filter(**filters).order_by("pk").values_list("product_id", "event", "value"))


def test_product_page_records_a_view_of_the_visitor(catalogue, shopper):
    """Oscar's product page records one view of that product for the anonymous visitor."""
    trowel = catalogue["G-TROWEL"]
    shopper.view(trowel)
    visitor_key = shopper.client.session[settings.VISITOR_SESSION_KEY]
    assert rows(visitor_key=visitor_key, user__isnull=True) == [(trowel.pk, "view", None)]


def test_a_variant_page_counts_for_its_parent(catalogue, shopper):
    """A child variant's page (Oscar shows those too) is a view of the parent product."""
    shopper.view(catalogue["G-GLOVES-S"])
    assert rows() == [(catalogue["G-GLOVES"].pk, "view", None)]


def test_staff_preview_of_an_unpublished_product_is_not_recorded(catalogue):
    """Staff may open unpublished products in Oscar; that is no shopper's interest."""
    staff = UserFactory(is_staff=True)
    shopper = Shopper()
    shopper.client.force_login(staff)
    shopper.view(catalogue["K-PROTO"])
    assert rows() == []


def test_basket_addition_records_a_cart_event_for_the_parent(catalogue, shopper):
    """Oscar's add-to-basket view sends basket_addition: a cart event of the (parent) product."""
    shopper.add_to_basket(catalogue["K-KNIFE"], quantity=2)
    shopper.add_to_basket(catalogue["G-GLOVES-S"])
    assert rows(event="cart") == [(catalogue["K-KNIFE"].pk, "cart", 1), (catalogue["G-GLOVES"].pk, "cart", 1)]


def test_signed_in_checkout_records_each_line_once(catalogue):
    """An account's order through Oscar's checkout: one purchase per product, naming the order number."""
    customer = UserFactory(password=PASSWORD)
    shopper = Shopper()
    shopper.log_in(customer.email)
    shopper.add_to_basket(catalogue["K-SKILLET"], quantity=3)
    shopper.add_to_basket(catalogue["G-GLOVES-S"])
    order = shopper.checkout()
    purchases = Interaction.objects.filter(event="purchase").order_by("pk")
    assert [(row.user_id, row.product_id, row.value) for row in purchases] == [
        (customer.pk, catalogue["K-SKILLET"].pk, 3), (customer.pk, catalogue["G-GLOVES"].pk, 1)]
    assert {row.context["order"] for row in purchases} == {order.number}
    assert {row.timestamp for row in purchases} == {order.date_placed}


def test_guest_checkout_records_the_purchases_for_the_sessions_visitor(catalogue, shopper):
    """A guest order belongs to the visitor whose views led to it (Oscar's order_placed has no request)."""
    shopper.view(catalogue["B-CRIME"])
    shopper.add_to_basket(catalogue["B-CRIME"])
    order = shopper.checkout(guest_email="guest@example.com")
    assert order.user_id is None and order.guest_email == "guest@example.com"
    visitor_key = shopper.client.session[settings.VISITOR_SESSION_KEY]
    assert rows(visitor_key=visitor_key) == [
        (catalogue["B-CRIME"].pk, "view", None), (catalogue["B-CRIME"].pk, "cart", 1),
        (catalogue["B-CRIME"].pk, "purchase", 1)]


def test_login_through_oscars_login_view_merges_the_visitors_history(catalogue, shopper):
    """Events made anonymously move to the account when the customer logs in on Oscar's login page."""
    customer = UserFactory(password=PASSWORD)
    shopper.view(catalogue["G-HOSE"])
    shopper.add_to_basket(catalogue["G-HOSE"])
    shopper.log_in(customer.email)
    assert rows(user=customer) == [(catalogue["G-HOSE"].pk, "view", None), (catalogue["G-HOSE"].pk, "cart", 1)]
    assert not Interaction.objects.filter(user__isnull=True).exists()


def test_registration_through_oscar_moves_history_and_profile(catalogue, shopper):
    """Oscar's registration view (user_registered, then its login) moves events and profile once."""
    shopper.view(catalogue["K-KETTLE"])
    visitor_key = shopper.client.session[settings.VISITOR_SESSION_KEY]
    UserProfile.objects.create(visitor_key=visitor_key, country="gb")
    shopper.register("new.customer@example.com")
    customer = get_user_model().objects.get(email="new.customer@example.com")
    assert rows(user=customer) == [(catalogue["K-KETTLE"].pk, "view", None)]
    assert UserProfile.objects.get().user == customer
    assert UserProfile.objects.get().country == "gb"


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_with_async_orders_a_real_worker_records_an_oscar_checkout(catalogue, shopper):
    """RECORD_ORDERS_ASYNC: Oscar's checkout commits the order, then a Celery worker stores its purchases."""
    from celery.contrib.testing.worker import start_worker

    from shop_demo.celery import app

    # A queue of its own, so a worker of another run on the same broker cannot take the task.
    queue = f"recommender-oscar-test-{uuid.uuid4().hex}"
    saved_queue, app.conf.task_default_queue = app.conf.task_default_queue, queue
    try:
        with override_settings(RECOMMENDER={**django_settings.RECOMMENDER, "RECORD_ORDERS_ASYNC": True}), \
                start_worker(app, pool="solo", perform_ping_check=False, queues=[queue], shutdown_timeout=30):
            shopper.add_to_basket(catalogue["K-WHISK"], quantity=2)
            order = shopper.checkout(guest_email="async@example.com")
            deadline = time.monotonic() + 30
            while not Interaction.objects.filter(event="purchase").exists() and time.monotonic() < deadline:
                time.sleep(0.2)  # the worker, a real process part, takes its time
    finally:
        app.conf.task_default_queue = saved_queue
    purchase = Interaction.objects.get(event="purchase")
    assert (purchase.product_id, purchase.value) == (catalogue["K-WHISK"].pk, 2)
    assert purchase.visitor_key == shopper.client.session[settings.VISITOR_SESSION_KEY]
    assert purchase.context == {"order": order.number}
