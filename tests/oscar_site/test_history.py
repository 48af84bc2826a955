"""recommender_oscar_history: an Oscar shop's past orders loaded as purchase history."""

import datetime

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from oscar.apps.partner.strategy import Default
from oscar.core.loading import get_model
from oscar.test.factories import UserFactory, create_order

from recommender.contrib.oscar.orders import guest_visitor_key
from recommender.models import Interaction

from .shop import Shopper

pytestmark = [pytest.mark.oscar, pytest.mark.django_db]

Basket = get_model("basket", "Basket")
Order = get_model("order", "Order")


def past_order(catalogue, lines, user=None, placed_days_ago=30, **order_fields):
    """An order placed with Oscar's factory; ``lines`` are (upc, quantity)."""
    basket = Basket.objects.create(owner=user)
    basket.strategy = Default()
    for upc, quantity in lines:
        basket.add_product(catalogue[upc], quantity)
    order = create_order(user=user, basket=basket, **order_fields)
    order.date_placed = timezone.now() - datetime.timedelta(days=placed_days_ago)
    order.save()
    return order


def load(*args):
    call_command("recommender_oscar_history", "--no-progress", *args)


@pytest.fixture
def history(catalogue):
    """Orders from before the app: an account's, a guest's two, one with a variant, one unsellable."""
    customer = UserFactory()
    orders = {
        "account": past_order(catalogue, [("G-TROWEL", 1), ("G-HOSE", 2)], user=customer, placed_days_ago=40),
        "variants": past_order(catalogue, [("G-GLOVES-S", 1), ("G-GLOVES-L", 2)], user=customer, placed_days_ago=20),
        "guest": past_order(catalogue, [("B-CRIME", 1)], guest_email="Reader@Example.com", placed_days_ago=10),
        "guest again": past_order(catalogue, [("B-POETRY", 1)], guest_email="reader@example.com", placed_days_ago=5),
        "unpublished": past_order(catalogue, [("K-PROTO", 1)], user=customer, placed_days_ago=3),
    }
    Interaction.objects.all().delete()  # placed before the recommender was installed
    return customer, orders


def purchases(**filters):
    return list(Interaction.objects.filter(event="purchase", **filters).order_by("timestamp", "pk")
                .values_list("product_id", "value", "timestamp"))


def test_past_orders_become_dated_purchases(catalogue, history, capsys):
    """Each order's lines become purchases of its owner, dated when it was placed; variants count for the parent."""
    customer, orders = history
    load()
    out = capsys.readouterr().out
    assert "5 orders read: 5 purchase events added, 0 orders already recorded, 1 without a listed product" in out
    assert purchases(user=customer) == [
        (catalogue["G-TROWEL"].pk, 1, orders["account"].date_placed),
        (catalogue["G-HOSE"].pk, 2, orders["account"].date_placed),
        (catalogue["G-GLOVES"].pk, 3, orders["variants"].date_placed),
    ]


def test_a_guests_orders_stay_together_under_one_key(catalogue, history):
    """A guest's orders (e-mail in any case) belong to one visitor key derived from the e-mail."""
    load()
    key = guest_visitor_key("reader@example.com")
    assert key == guest_visitor_key(" Reader@Example.COM ") and "reader" not in key
    assert [row[0] for row in purchases(visitor_key=key, user__isnull=True)] == [
        catalogue["B-CRIME"].pk, catalogue["B-POETRY"].pk]


def test_loading_twice_adds_nothing(history, capsys):
    """Every order is stored once: a second run (or a run after an interruption) skips the stored ones."""
    load()
    count = Interaction.objects.count()
    capsys.readouterr()
    load()
    assert Interaction.objects.count() == count
    assert "0 purchase events added, 4 orders already recorded" in capsys.readouterr().out


def test_orders_recorded_live_are_not_counted_again(catalogue, history):
    """An order the receivers recorded at checkout is the same batch to the history load."""
    shopper = Shopper()
    shopper.add_to_basket(catalogue["K-WHISK"])
    order = shopper.checkout(guest_email="live@example.com")
    live = purchases(product=catalogue["K-WHISK"])
    assert len(live) == 1
    load()
    assert purchases(product=catalogue["K-WHISK"]) == live
    assert Order.objects.filter(number=order.number).exists()


def test_since_loads_only_recent_orders(catalogue, history):
    """--since takes a date: older orders are left out."""
    load("--since", (timezone.now() - datetime.timedelta(days=15)).date().isoformat())
    assert {row[0] for row in purchases()} == {catalogue["B-CRIME"].pk, catalogue["B-POETRY"].pk}


def test_a_deleted_product_leaves_the_rest_of_its_order(catalogue, history):
    """A line whose product was deleted since (Oscar keeps the line) is skipped, not the order."""
    customer, orders = history
    catalogue["G-HOSE"].delete()
    load()
    assert [row[0] for row in purchases(user=customer)] == [catalogue["G-TROWEL"].pk, catalogue["G-GLOVES"].pk]


def test_a_bad_since_is_a_clear_error(history):
    with pytest.raises(CommandError, match="not a date"):
        load("--since", "last tuesday")
