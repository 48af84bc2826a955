"""Signals a host shop sends so the recommender learns about carts and orders.

The app connects receivers that turn them into events (see ``receivers.py``)::

    from recommender.signals import cart_changed, order_placed

    cart_changed.send(sender=Cart, request=request, product=product, quantity=1)
    order_placed.send(sender=Order, request=request, user=request.user,
                      items=[(product, quantity), ...])

``request`` lets the app find the anonymous visitor (session) when there is no user.
``quantity`` in ``cart_changed`` is the change: positive when added, negative when removed.
"""

from django.dispatch import Signal

cart_changed = Signal()
order_placed = Signal()
