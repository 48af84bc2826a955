"""Signal receivers the app connects on startup (see apps.py).

They turn what the host shop tells us (logins, cart changes, orders) into events through
``events.record``. A refused event is logged, never raised: a checkout must not fail because
the recommender did not like its data.
"""

import hashlib
import logging
import uuid

from django.contrib.auth.signals import user_logged_in
from django.db import transaction
from django.dispatch import receiver
from django.utils import timezone

from . import events
from .conf import settings
from .signals import cart_changed, order_placed
from .tasks import record_events_task

logger = logging.getLogger(__name__)


@receiver(user_logged_in, dispatch_uid="recommender.merge_visitor_on_login")
def merge_visitor_on_login(sender, request, user, **kwargs):
    """Move the anonymous session's events and profile to the account that just logged in."""
    visitor_key = events.visitor_key_for(request, create=False)
    if visitor_key:
        events.merge_visitor_into_user(visitor_key, user)


def _owner_of(request, user, signal_name):
    """Return (user or None, visitor key) of whoever the host's signal is about, or None if nobody."""
    if user is None and request is not None:
        user = getattr(request, "user", None)
    if user is not None and not user.is_authenticated:
        user = None
    visitor_key = events.visitor_key_for(request, create=user is None) if request is not None else ""
    if user is None and not visitor_key:
        logger.warning("%s without a user or a request with a session: events not recorded", signal_name)
        return None
    return user, visitor_key


def _record_logged(batch, owner, signal_name, batch_key=None):
    user, visitor_key = owner
    try:
        events.record(batch, user=user, visitor_key=visitor_key, batch_key=batch_key)
    except events.EventValidationError as exc:
        logger.error("%s: events refused: %s", signal_name, exc)


@receiver(cart_changed, dispatch_uid="recommender.record_cart_change")
def record_cart_change(sender, product, quantity, request=None, user=None, **kwargs):
    """A product added to a cart is a "cart" event; a removal records nothing."""
    if not quantity or quantity <= 0:
        return
    owner = _owner_of(request, user, "cart_changed")
    if owner:
        _record_logged([{"product": product, "event": "cart", "value": quantity}], owner, "cart_changed")


# Key of a purchase event's context that holds the host's order id.
ORDER_CONTEXT_KEY = "order"


def order_batch_key(order_id):
    """The idempotency key an order's purchase events are stored under: one order, stored once."""
    key = f"order-{order_id}"
    if len(key) <= events.BATCH_KEY_MAX_LENGTH:
        return key
    return f"order-sha256-{hashlib.sha256(str(order_id).encode()).hexdigest()}"


@receiver(order_placed, dispatch_uid="recommender.record_order")
def record_order(sender, items, request=None, user=None, order_id=None, placed_at=None, **kwargs):
    """Each ordered line is a "purchase" event valued at its quantity.

    With the host's ``order_id`` the order is stored once however often it is sent for the same
    owner (a retried signal), and each event's context names it (``{"order": "<order_id>"}``), so a
    history import can tell the order is recorded; ``placed_at`` dates the events (default now).
    """
    context = {} if order_id is None else {"context": {ORDER_CONTEXT_KEY: str(order_id)}}
    batch = [
        {"product": product, "event": "purchase", "value": quantity, **context}
        for product, quantity in items
        if quantity and quantity > 0
    ]
    owner = _owner_of(request, user, "order_placed") if batch else None
    if not owner:
        return
    if placed_at is not None:
        batch = [{**event, "timestamp": placed_at} for event in batch]
    batch_key = None if order_id is None else order_batch_key(order_id)
    if settings.RECORD_ORDERS_ASYNC:
        _queue_order(batch, owner, batch_key)
    else:
        _record_logged(batch, owner, "order_placed", batch_key)


def _queue_order(batch, owner, batch_key):
    """Record the order through a Celery task once the host's transaction commits."""
    user, visitor_key = owner
    now = timezone.now()
    # JSON for the broker: product ids and ISO timestamps (stamped now: the task may run later).
    payload = [
        {**event, "product": str(getattr(event["product"], "pk", event["product"])),
         "timestamp": event.get("timestamp", now).isoformat()}
        for event in batch
    ]
    # A fixed key makes a redelivered task store the order once; on_commit: only if the order is saved.
    batch_key = batch_key or f"order-{uuid.uuid4().hex}"
    user_id = None if user is None else user.pk
    transaction.on_commit(
        lambda: record_events_task.delay(payload, user_id=user_id, visitor_key=visitor_key, batch_key=batch_key)
    )
