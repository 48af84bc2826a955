"""Signals a host shop sends so the recommender learns about carts and orders.

The app connects receivers that turn them into events (see ``receivers.py``)::

    from recommender.signals import cart_changed, order_placed

    cart_changed.send(sender=Cart, request=request, product=product, quantity=1)
    order_placed.send(sender=Order, request=request, user=request.user,
                      items=[(product, quantity), ...], order_id=order.number)

``request`` lets the app find the anonymous visitor (session) when there is no user.
``quantity`` in ``cart_changed`` is the change: positive when added, negative when removed.
``order_id`` (optional, recommended) is the shop's order number: an order sent again (a retried
signal, a history import) is stored once. ``placed_at`` (optional datetime) dates the purchase
events of an order placed in the past; the default is now.
"""

from django.dispatch import Signal

cart_changed = Signal()
order_placed = Signal()
