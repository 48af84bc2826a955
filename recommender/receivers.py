"""Signal receivers the app connects on startup (see apps.py).

They turn what the host shop tells us (logins, cart changes, orders) into events through
``events.record``. A refused event is logged, never raised: a checkout must not fail because
the recommender did not like its data.
"""

import logging
import uuid

from django.contrib.auth.signals import user_logged_in
from django.db import transaction
from django.dispatch import receiver
from django.utils import timezone

from . import events
from .conf import settings
from .signals import cart_changed, order_placed

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


def _record_logged(batch, owner, signal_name):
    user, visitor_key = owner
    try:
        events.record(batch, user=user, visitor_key=visitor_key)
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


@receiver(order_placed, dispatch_uid="recommender.record_order")
def record_order(sender, items, request=None, user=None, **kwargs):
    """Each ordered line is a "purchase" event valued at its quantity."""
    batch = [
        {"product": product, "event": "purchase", "value": quantity}
        for product, quantity in items
        if quantity and quantity > 0
    ]
    owner = _owner_of(request, user, "order_placed") if batch else None
    if not owner:
        return
    if settings.RECORD_ORDERS_ASYNC:
        _queue_order(batch, owner)
    else:
        _record_logged(batch, owner, "order_placed")


def _queue_order(batch, owner):
    """Record the order through a Celery task once the host's transaction commits."""
    from .tasks import record_events_task

    user, visitor_key = owner
    placed_at = timezone.now().isoformat()
    payload = [
        {**event, "product": str(getattr(event["product"], "pk", event["product"])), "timestamp": placed_at}
        for event in batch
    ]
    # A fixed key makes a redelivered task store the order once; on_commit: only if the order is saved.
    batch_key = f"order-{uuid.uuid4().hex}"
    user_id = None if user is None else user.pk
    transaction.on_commit(
        lambda: record_events_task.delay(payload, user_id=user_id, visitor_key=visitor_key, batch_key=batch_key)
    )
