"""Step 5 of the request path: the served items, each with the reason shown next to it.

Reasons are worked out here, only for the items the rules kept (``Recommendations.reasons_at``:
a strategy explains ``k`` items, not the whole over-fetched list), and each item gets what a
shelf shows of its product (title, price, URL) from the rows the rules step already read: no
query. See docs/architecture.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..catalog import get_adapter
from ..strategies.base import Context
from .rules import Shelf


@dataclass(frozen=True)
class ServedItem:
    """One recommended product with its score and the reason shown next to it."""

    product: Any
    item_id: str
    score: float
    reason: str
    title: str = ""
    price: Any = None
    url: str = ""


@dataclass
class ServedRecommendations:
    """What a page, tag or endpoint shows: products in rank order plus how they were chosen.

    ``source`` says where the list came from: ``"precomputed"``, ``"live"`` (a strategy scored
    it now) or ``"database"`` (popularity counted from the event log).
    """

    items: list[ServedItem]
    strategy: str
    placement: str
    arm: str = ""
    title: str = ""
    cached: bool = False
    stamp: str = ""
    context: Context = field(default_factory=Context, repr=False)
    source: str = ""
    # Signed attribution of this list (recommender.attribution): the widget's markup and the API
    # response carry it, the beacon sends it back with impressions and clicks.
    token: str = field(default="", repr=False)
    # Positions (0-based) of the list given to the exploration slot (recommender.serving.exploration).
    explored: tuple[int, ...] = ()

    @property
    def products(self):
        return [item.product for item in self.items]

    @property
    def item_ids(self):
        return [item.item_id for item in self.items]

    @property
    def scores(self):
        return [item.score for item in self.items]

    @property
    def reasons(self):
        return [item.reason for item in self.items]

    def __iter__(self):
        return iter(self.items)

    def __len__(self):
        return len(self.items)

    def __bool__(self):
        return bool(self.items)


def served_items(shelf: Shelf) -> list[ServedItem]:
    """The shelf's items with their reasons and what the widget shows of each product."""
    adapter = get_adapter()
    reasons = shelf.ranked.reasons_at(shelf.indices)
    scores = shelf.ranked.scores
    return [
        ServedItem(product=product, item_id=shelf.ranked.item_ids[index], score=float(scores[index]),
                   reason=reason or "Recommended for you", title=adapter.title_of(product),
                   price=adapter.value_of(product, "price"), url=url_of(product))
        for index, product, reason in zip(shelf.indices, shelf.products, reasons)
    ]


def url_of(product) -> str:
    """The product page's URL, "" when the catalog has none."""
    url = getattr(product, "get_absolute_url", None)
    return url() if url else ""
