"""Product lists the shop pages show (besides the recommender's widgets)."""

from django.core.cache import cache
from django.db.models import Count, Q

from recommender.events import visitor_days_by_product
from recommender.models import EventType, Interaction

from .models import Category, Product

BESTSELLER_CACHE_SECONDS = 300


def products():
    return Product.objects.select_related("category")


def categories_with_counts():
    return Category.objects.annotate(product_count=Count("products")).filter(product_count__gt=0)


def new_arrivals(limit=8):
    return list(products().filter(in_stock=True).order_by("-created_at", "-pk")[:limit])


def bestsellers(limit=8):
    """The in-stock products the most shoppers bought (cached: the count scans every purchase).

    Shoppers, not purchase events: one buyer's purchases of a product on one day count once, so
    no single account or session can buy its way onto the shelf.
    """
    pks = cache.get("shop_demo:bestsellers")
    if pks is None:
        counted = visitor_days_by_product(Interaction.objects.all(), event_types=[EventType.PURCHASE],
                                          limit=limit * 3)
        pks = [product for product, _ in counted]
        cache.set("shop_demo:bestsellers", pks, BESTSELLER_CACHE_SECONDS)
    found = products().filter(in_stock=True).in_bulk(pks)
    return [found[pk] for pk in pks if pk in found][:limit]


SORTS = {
    "name": ("name", "pk"),
    "price": ("price", "pk"),
    "-price": ("-price", "pk"),
    "new": ("-created_at", "-pk"),
}


def sorted_products(queryset, sort):
    return queryset.order_by(*SORTS.get(sort, SORTS["name"]))


def search(query):
    """Products whose name, brand or category contains every word of ``query``."""
    queryset = products()
    for word in query.split()[:8]:
        queryset = queryset.filter(
            Q(name__icontains=word) | Q(brand__icontains=word) | Q(category__name__icontains=word)
        )
    return queryset


def more_from_category(product, limit=4):
    if product.category_id is None:
        return []
    return list(
        products().filter(category_id=product.category_id, in_stock=True, pk__gt=product.pk).order_by("pk")[:limit]
    )


def recent_purchases(user, limit=10):
    """The user's latest purchases with their products, newest first."""
    rows = (
        Interaction.objects.filter(user=user, event=EventType.PURCHASE)
        .order_by("-timestamp")
        .values_list("product_id", "timestamp", "value")[:limit]
    )
    found = products().in_bulk([product_id for product_id, _, _ in rows])
    return [
        {"product": found[product_id], "timestamp": timestamp, "quantity": int(value or 1)}
        for product_id, timestamp, value in rows
        if product_id in found
    ]
