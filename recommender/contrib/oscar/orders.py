"""Oscar orders as purchase events: the live order's lines, and the shop's past orders.

Both paths name the order in each purchase's context (``{"order": "<number>"}``, the app's
``order_placed`` receiver does it for live orders), so a history load skips the orders recorded
when they were placed, whoever owned them then (a guest's session or an account), and a history
load run twice stores each order once.
"""

import hashlib

from django.db.models import Prefetch
from oscar.core.loading import get_model
from tqdm.auto import tqdm

from ... import events
from ...catalog import get_adapter
from ...models import Interaction
from ...models import EventType
from ...receivers import ORDER_CONTEXT_KEY, order_batch_key
from .catalog import canonical

Order = get_model("order", "Order")
Line = get_model("order", "Line")
GUEST_VISITOR_PREFIX = "oscar-guest-"


class OrderHistoryError(ValueError):
    """An order the app refused; the message names the order number."""


def order_items(order):
    """``[(product, quantity)]`` of ``order``: lines summed per parent product, listed products only."""
    lines = list(order.lines.order_by("pk").select_related("product__parent"))
    products = {canonical(line.product).pk for line in lines if line.product_id is not None}
    listed = set(get_adapter().queryset().filter(pk__in=products).values_list("pk", flat=True))
    return _items(lines, listed)


def _items(lines, listed_pks):
    """Quantities per canonical product in line order; lines of deleted or unlisted products are left out."""
    products, quantities = {}, {}
    for line in lines:
        if line.product is None:
            continue  # the product was deleted since; the line keeps only its title
        product = canonical(line.product)
        if product.pk not in listed_pks:
            continue
        products[product.pk] = product
        quantities[product.pk] = quantities.get(product.pk, 0) + line.quantity
    return [(products[pk], quantity) for pk, quantity in quantities.items()]


def guest_visitor_key(email):
    """The visitor key of a guest's past orders: a hash of the e-mail, so one guest's orders stay together."""
    digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:40]
    return f"{GUEST_VISITOR_PREFIX}{digest}"


def load_order_history(*, since=None, progress=False, chunk_size=500):
    """Record every past Oscar order (placed at or after ``since``) as purchase events.

    Each order's lines become "purchase" events of its account, or of a guest visitor keyed by
    the guest's e-mail, dated when the order was placed. Every order goes in its own transaction
    under its idempotency key: an interrupted load can simply be run again.

    Returns counts: ``orders`` read, ``events_added``, ``already_recorded`` (orders stored
    before), ``without_products`` (no line of a listed product) and ``without_owner`` (neither
    an account nor a guest e-mail). ``progress`` shows a bar on stderr.
    """
    orders = Order._default_manager.order_by("date_placed", "pk").select_related("user")
    if since is not None:
        orders = orders.filter(date_placed__gte=since)
    listed = set(get_adapter().queryset().values_list("pk", flat=True))
    lines = Line._default_manager.order_by("pk").select_related("product__parent")
    orders = orders.prefetch_related(Prefetch("lines", queryset=lines))
    counts = {"orders": 0, "events_added": 0, "already_recorded": 0, "without_products": 0, "without_owner": 0}
    bar = tqdm(total=orders.count(), unit="order", disable=not progress, dynamic_ncols=True)
    before = Interaction.objects.count()
    recorded = recorded_order_numbers()
    try:
        for order in orders.iterator(chunk_size=chunk_size):
            counts["orders"] += 1
            bar.update(1)
            owner = _owner(order)
            items = _items(order.lines.all(), listed)
            if order.number in recorded:
                counts["already_recorded"] += 1
            elif owner is None:
                counts["without_owner"] += 1
            elif not items:
                counts["without_products"] += 1
            else:
                _record(order, items, owner)
    finally:
        bar.close()
    counts["events_added"] = Interaction.objects.count() - before
    return counts


def _owner(order):
    if order.user_id is not None:
        return {"user": order.user}
    if order.guest_email:
        return {"visitor_key": guest_visitor_key(order.guest_email)}
    return None


def recorded_order_numbers():
    """The order numbers that purchase events already name (one query over the purchases)."""
    numbers = (Interaction.objects.filter(event=EventType.PURCHASE, context__has_key=ORDER_CONTEXT_KEY)
               .values_list(f"context__{ORDER_CONTEXT_KEY}", flat=True).distinct())
    return {str(number) for number in numbers}


def _record(order, items, owner):
    """Store one order's purchases, naming the order as the live receivers do."""
    batch = [{"product": product, "event": EventType.PURCHASE, "value": quantity, "timestamp": order.date_placed,
              "context": {ORDER_CONTEXT_KEY: order.number}}
             for product, quantity in items]
    try:
        events.record(batch, batch_key=order_batch_key(order.number), **owner)
    except events.EventValidationError as exc:
        raise OrderHistoryError(f"order {order.number}: {exc}") from exc
