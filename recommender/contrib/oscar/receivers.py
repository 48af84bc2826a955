"""Oscar's signals turned into the app's events (connected in ``apps.py``).

- ``product_viewed`` (Oscar's product page): a "view" of the product, or of its parent when the
  page shows a child variant;
- ``basket_addition``: the app's ``cart_changed`` (Oscar's signal does not carry the quantity,
  so one addition counts as one);
- ``order_placed`` for an order with an account, ``post_checkout`` for a guest order (Oscar's
  ``order_placed`` has no request, and only the session knows the guest's earlier views): the
  app's ``order_placed`` with the order number, so an order is stored once however often it is
  sent and ``recommender_oscar_history`` does not count it again;
- ``user_registered``: the visitor's events and profile move to the new account (Oscar logs the
  customer in afterwards; the app's ``user_logged_in`` receiver then finds nothing left to move).

Cart and purchase events are recorded here, on the server, never from the browser. As with the
app's own receivers, an event the app refuses is logged, never raised: a checkout must not fail
because of the recommender.
"""

import logging

from django.dispatch import receiver
from oscar.apps.basket.signals import basket_addition
from oscar.apps.catalogue.signals import product_viewed
from oscar.apps.checkout.signals import post_checkout
from oscar.apps.customer.signals import user_registered
from oscar.apps.order.signals import order_placed as oscar_order_placed

from ... import events
from ...signals import cart_changed, order_placed
from .catalog import canonical
from .orders import order_items

logger = logging.getLogger(__name__)


@receiver(product_viewed, dispatch_uid="recommender.oscar.record_product_view")
def record_product_view(sender, product, request, **kwargs):
    """Oscar rendered a product page: a "view" of the product (its parent for a variant)."""
    shown = canonical(product)
    if not shown.is_public:
        return  # staff previewing an unpublished product: nothing a shopper could see
    try:
        events.record_for_request(request, [{"product": shown, "event": "view"}], trust=events.SERVER)
    except events.EventValidationError as exc:
        logger.error("product_viewed: view of product %s refused: %s", shown.pk, exc)


@receiver(basket_addition, dispatch_uid="recommender.oscar.record_basket_addition")
def record_basket_addition(sender, product, request, user=None, **kwargs):
    """A product added to Oscar's basket is the app's cart_changed (+1) for its parent product."""
    cart_changed.send(sender=type(sender), request=request, user=user, product=canonical(product), quantity=1)


@receiver(oscar_order_placed, dispatch_uid="recommender.oscar.record_account_order")
def record_account_order(sender, order, **kwargs):
    """An order placed by an account, wherever Oscar's OrderCreator ran (checkout, API, dashboard)."""
    if order.user_id is None:
        return  # a guest order: post_checkout brings the request that knows the visitor
    _send_order(order, user=order.user)


@receiver(post_checkout, dispatch_uid="recommender.oscar.record_guest_order")
def record_guest_order(sender, order, request, **kwargs):
    """A guest order placed through Oscar's checkout: its purchases belong to the session's visitor."""
    if order.user_id is not None:
        return  # recorded by record_account_order
    _send_order(order, request=request)


def _send_order(order, **owner):
    items = order_items(order)
    if items:
        order_placed.send(sender=type(order), items=items, order_id=order.number, placed_at=order.date_placed,
                          **owner)


@receiver(user_registered, dispatch_uid="recommender.oscar.merge_visitor_on_registration")
def merge_visitor_on_registration(sender, request, user, **kwargs):
    """Move the anonymous visitor's events and profile to the account Oscar just created."""
    visitor_key = events.visitor_key_for(request, create=False)
    if visitor_key:
        events.merge_visitor_into_user(visitor_key, user)
