"""The session cart, and placing an order from it.

Every change to a line sends ``recommender.signals.cart_changed`` with the change in quantity;
placing an order sends ``order_placed``. That is all the recommender needs to learn from carts
and orders (its receivers turn the signals into events).
"""

import uuid
from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from recommender.signals import cart_changed, order_placed

from .models import Product

SESSION_KEY = "shop_cart"
LAST_ORDER_SESSION_KEY = "shop_last_order"
MAX_QUANTITY = 20


@dataclass
class CartLine:
    product: Product
    quantity: int

    @property
    def subtotal(self):
        return self.product.price * self.quantity


class Cart:
    """Quantities by product id, kept in the session (so anonymous visitors have carts too)."""

    def __init__(self, request):
        self.request = request
        self.quantities = {str(pk): int(qty) for pk, qty in request.session.get(SESSION_KEY, {}).items()}

    def __len__(self):
        return sum(self.quantities.values())

    def quantity_of(self, product):
        return self.quantities.get(str(product.pk), 0)

    def add(self, product, quantity=1):
        return self.set(product, self.quantity_of(product) + quantity)

    def remove(self, product):
        return self.set(product, 0)

    def set(self, product, quantity):
        """Set a line's quantity (0 removes it) and tell the recommender about the change."""
        quantity = max(0, min(int(quantity), MAX_QUANTITY))
        change = quantity - self.quantity_of(product)
        if not change:
            return 0
        if quantity:
            self.quantities[str(product.pk)] = quantity
        else:
            self.quantities.pop(str(product.pk), None)
        self._save()
        cart_changed.send(sender=Cart, request=self.request, product=product, quantity=change)
        return change

    def lines(self):
        products = Product.objects.select_related("category").in_bulk([int(pk) for pk in self.quantities])
        return [
            CartLine(products[int(pk)], quantity)
            for pk, quantity in self.quantities.items()
            if int(pk) in products
        ]

    def total(self, lines=None):
        return sum((line.subtotal for line in (lines if lines is not None else self.lines())), Decimal("0"))

    def discard(self, products):
        """Drop lines without telling the recommender (they were ordered, not removed)."""
        for product in products:
            self.quantities.pop(str(product.pk), None)
        self._save()

    def _save(self):
        self.request.session[SESSION_KEY] = self.quantities
        self.request.session.modified = True


def place_order(request, cart):
    """Turn the cart into an order: send ``order_placed``, empty the cart, remember a receipt.

    Lines whose product went out of stock stay in the cart.

    Returns the receipt (a dict kept in the session for the confirmation page), or None when
    the cart holds nothing that can be bought.
    """
    lines = [line for line in cart.lines() if line.product.in_stock]
    if not lines:
        return None
    user = request.user if request.user.is_authenticated else None
    receipt = {
        "number": uuid.uuid4().hex[:8].upper(),
        "placed_at": timezone.now().isoformat(),
        "lines": [
            {"product_id": line.product.pk, "name": line.product.name, "quantity": line.quantity,
             "price": str(line.product.price), "subtotal": str(line.subtotal)}
            for line in lines
        ],
        "total": str(cart.total(lines)),
    }
    with transaction.atomic():
        order_placed.send(
            sender=Cart, request=request, user=user, items=[(line.product, line.quantity) for line in lines]
        )
        cart.discard(line.product for line in lines)
    request.session[LAST_ORDER_SESSION_KEY] = receipt
    return receipt
