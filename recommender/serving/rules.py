"""Step 4 of the request path: the business rules, one post-processor for any strategy's list.

Whatever produced the ranked list (a precomputed list, any strategy of the chain, database
popularity), the same rules decide what may be shown:

- never the product in view, nor products the placement hides (``exclude_events``: the cart
  placement hides what is already in the cart), nor what the context shows was bought;
- only products the shop sells now (live stock, read at request time) that the visitor never
  bought: one query for the whole candidate list, which also brings the product rows the shelf
  shows (their related rows joined in);
- at most ``max_category_share`` of the ``k`` slots per top-level category (greedy, best first;
  where the candidates cannot fill ``k`` within the cap, the best capped ones fill the rest).

See docs/architecture.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.db.models import Exists, OuterRef

from ..catalog import get_adapter
from ..models import EventType
from ..strategies.base import Context, Recommendations
from .placements import Placement
from .visitor import Visitor


@dataclass
class Shelf:
    """What the rules kept of one ranked list: indices into it (best first) and their product rows."""

    ranked: Recommendations
    indices: list[int] = field(default_factory=list)
    products: list = field(default_factory=list)
    source: str = ""
    # {item id: product} of the extra ids checked with the list (the exploration candidates)
    # that passed the same rules: sellable, never bought, not excluded.
    also: dict = field(default_factory=dict)

    def __len__(self):
        return len(self.indices)

    @property
    def item_ids(self) -> list[str]:
        return [self.ranked.item_ids[index] for index in self.indices]


def excluded_ids(context: Context, placement: Placement) -> set[str]:
    """Products ruled out before ranking, from what is already known (no query).

    The product in view, products of the context's events of the placement's
    ``exclude_events`` types, and products the context shows were bought.
    """
    hidden_events = {*placement.exclude_events, EventType.PURCHASE}
    excluded = {event.item_id for event in context.events if event.event in hidden_events}
    if context.product_id is not None:
        excluded.add(context.product_id)
    return excluded


def sellable_products(item_ids: Sequence[str], visitor: Visitor) -> dict:
    """``{item id: product}`` of those ``item_ids`` that are sellable now and the visitor never bought.

    One query (the purchases are a ``NOT EXISTS`` on the visitor's purchase index). Without
    personalisation consent the visitor's purchases are not read. Ids from another catalog
    (a model trained on a bundle) are not sellable here.
    """
    adapter = get_adapter()
    pks = {}
    for item_id in item_ids:
        try:
            pks[adapter.pk_from_string(item_id)] = item_id
        except Exception:
            continue
    if not pks:
        return {}
    queryset = adapter.sellable(pks.keys())
    if visitor.known and visitor.consent:
        bought = visitor.interactions().filter(event=EventType.PURCHASE, product=OuterRef("pk"))
        queryset = queryset.exclude(Exists(bought))
    return {pks[product.pk]: product for product in queryset if product.pk in pks}


def diversified(categories: Sequence[str], k: int, max_share: float) -> list[int]:
    """Indices of the best ``k`` entries (given best first), at most ``max_share × k`` per category.

    Entries without a category are not capped. Where the entries cannot fill ``k`` within the
    cap, the best capped ones fill the rest. The result keeps the given order.
    """
    cap = max(1, math.floor(max_share * k + 1e-9))
    chosen, capped, counts = [], [], {}
    for index, category in enumerate(categories):
        if category and counts.get(category, 0) >= cap:
            capped.append(index)
            continue
        counts[category] = counts.get(category, 0) + 1
        chosen.append(index)
        if len(chosen) == k:
            break
    if len(chosen) < k:
        chosen += capped[: k - len(chosen)]
    return sorted(chosen)


def apply(ranked: Recommendations, visitor: Visitor, excluded: set[str], k: int, max_share: float,
          source: str = "", also: Sequence[str] = ()) -> Shelf:
    """The rules applied to ``ranked``: at most ``k`` entries, possibly none (one query).

    ``also``: more ids checked in the same query (the exploration candidates); those that pass
    are in ``Shelf.also``.
    """
    candidates = [index for index, item_id in enumerate(ranked.item_ids) if item_id not in excluded]
    extra = [item_id for item_id in also if item_id not in excluded]
    products = sellable_products([ranked.item_ids[index] for index in candidates] + extra, visitor)
    kept = [index for index in candidates if ranked.item_ids[index] in products]
    adapter = get_adapter()
    categories = [adapter.category_of(products[ranked.item_ids[index]]) for index in kept]
    indices = [kept[position] for position in diversified(categories, k, max_share)]
    return Shelf(ranked=ranked, indices=indices, products=[products[ranked.item_ids[index]] for index in indices],
                 source=source, also={item_id: products[item_id] for item_id in extra if item_id in products})
