"""The catalog adapter for django-oscar's ``catalogue.Product``.

Oscar keeps a product's price and stock on its stock records and lets a *strategy* decide which
record applies and whether the product can be bought; categories are a many-to-many relation
(a tree) and a brand, where a shop has one, is a product attribute. Field paths cannot say any
of that, so this adapter reads those parts itself:

- products: parents and standalone products that Oscar shows (``Product.objects.browsable()``);
  child variants are never recommended: their events count for their parent (``canonical``);
- ``in_stock``: ``is_available_to_buy`` of the strategy that Oscar's ``Selector`` gives for no
  request (what Oscar uses offline too); a parent is available when one of its children is;
- ``price``: that strategy's price, tax included when the strategy knows the tax;
- ``category``: the product's first category (in the order they were assigned) as its path from
  the root, ``"Books|Fiction|Crime"``;
- ``brand``: the value of the product attribute coded ``brand_attribute`` ("brand"), if any;
- ``description``: Oscar's rich text with the HTML tags taken out.

Pages keep showing Oscar's own price for the visitor (``purchase_info_for_product``): the shelves
render Oscar's product cards. Subclass to change a choice (for example ``strategy()`` to price for
a particular partner) and name the subclass in ``RECOMMENDER["CATALOG_ADAPTER"]``.
"""

import html
import re

from django.core.exceptions import ImproperlyConfigured
from django.db.models import OuterRef, Prefetch, Subquery
from django.db.models.functions import Substr
from django.utils.html import strip_tags
from oscar.core.loading import get_class, get_model

from ...catalog import CatalogAdapter

Selector = get_class("partner.strategy", "Selector")
Category = get_model("catalogue", "Category")
ProductCategory = get_model("catalogue", "ProductCategory")
ProductAttributeValue = get_model("catalogue", "ProductAttributeValue")

# What field paths can express of an Oscar product; the rest is read by the methods below.
OSCAR_FIELD_PATHS = {
    "external_id": "upc",
    "title": "title",
    "description": "description",
    "category": None,
    "brand": None,
    "price": None,
    "in_stock": None,
}
# A category path in the app's terms joins the names from the root with this.
CATEGORY_SEPARATOR = "|"
_SPACES = re.compile(r"\s+")


def canonical(product):
    """The product the recommender knows ``product`` as: a child variant's parent, else itself."""
    return product.parent if product.is_child else product


class OscarCatalogAdapter(CatalogAdapter):
    """Reads Oscar's catalogue: browsable products, stock records, categories, attributes.

    ``RECOMMENDER["PRODUCT_FIELDS"]`` is not used: Oscar's model is known.
    """

    # Code of the product attribute that holds the brand (None: the catalogue has no brands).
    brand_attribute = "brand"

    def __init__(self, model, field_paths=None):
        super().__init__(model, OSCAR_FIELD_PATHS)

    # --- which products, priced and stocked by Oscar's strategy --------------------------------
    def queryset(self):
        """Products Oscar lists: public parents and standalone products, never child variants."""
        return self.model._default_manager.browsable()

    def strategy(self):
        """The Oscar strategy that prices products and says whether they can be bought."""
        return Selector().strategy()

    def with_stock(self, queryset):
        """``queryset`` with what Oscar's default strategies read prefetched: the stock records of
        the products and of their public variants."""
        children = self.model._default_manager.public().select_related("product_class")
        return queryset.select_related("product_class").prefetch_related(
            "stockrecords",
            Prefetch("children", queryset=children.prefetch_related("stockrecords"),
                     to_attr="_prefetched_public_children"),
        )

    def with_purchase_data(self, queryset):
        """``with_stock`` plus what shelves and rows read: images, and the categories with their top level."""
        root_name = Category._default_manager.filter(
            path=Substr(OuterRef("category__path"), 1, Category.steplen)).values("name")[:1]
        placed = ProductCategory.objects.order_by("pk").annotate(root_name=Subquery(root_name))
        return self.with_stock(queryset).prefetch_related(
            "images", Prefetch("productcategory_set", queryset=placed, to_attr="_recommender_categories"))

    def purchase_info(self, product, strategy=None):
        """Oscar's ``PurchaseInfo`` (price, availability, stock record) of ``product``."""
        strategy = strategy or self.strategy()
        if product.is_parent:
            return strategy.fetch_for_parent(product)
        return strategy.fetch_for_product(product)

    def is_available(self, product, strategy=None):
        """True when Oscar's strategy lets ``product`` be bought now."""
        return bool(self.purchase_info(product, strategy).availability.is_available_to_buy)

    def price_of(self, product, strategy=None):
        """The strategy's price of ``product`` as a float (tax included where known), or None."""
        return _price_value(self.purchase_info(product, strategy).price)

    def available(self, queryset):
        """``queryset`` narrowed to what Oscar's strategy lets be bought now.

        A strategy is Python, not SQL: the products are read once with their stock records to ask
        it, and the result is ``queryset`` filtered to the available primary keys.
        """
        strategy = self.strategy()
        products = self.with_stock(queryset.order_by())
        return queryset.filter(pk__in=[product.pk for product in products if self.is_available(product, strategy)])

    def sellable(self, pks):
        """What a shelf shows, with Oscar's product cards' data prefetched (see ``with_purchase_data``)."""
        return self.with_purchase_data(super().sellable(pks))

    # --- rows for training ------------------------------------------------------------------
    def iter_rows(self, queryset=None, chunk_size=2000):
        """Yield the app's row of every product, reading Oscar's relations in a few queries per chunk."""
        queryset = self.queryset() if queryset is None else queryset
        category_paths = self.category_paths()
        strategy = self.strategy()
        products = self.with_purchase_data(queryset.order_by("pk")).prefetch_related(*self._brand_prefetch())
        for product in products.iterator(chunk_size=chunk_size):
            info = self.purchase_info(product, strategy)
            placed = product._recommender_categories
            yield {
                "pk": product.pk,
                "external_id": product.upc or "",
                "title": product.get_title() or "",
                "description": plain_text(product.description),
                "category": category_paths.get(placed[0].category_id, "") if placed else "",
                "brand": self._brand(product),
                "price": _price_value(info.price),
                "in_stock": bool(info.availability.is_available_to_buy),
            }

    def category_paths(self):
        """``{category pk: "Root|Child|Leaf"}`` of every category, from one query.

        Oscar's categories are a materialised-path tree: a node's ancestors are the prefixes of
        its ``path``, ``steplen`` characters per level.
        """
        rows = list(Category._default_manager.order_by("path").values_list("pk", "path", "name"))
        name_by_path = {path: name for _, path, name in rows}
        step = Category.steplen
        return {
            pk: CATEGORY_SEPARATOR.join(
                name_by_path.get(path[:end], "") for end in range(step, len(path) + 1, step)
            )
            for pk, path, _ in rows
        }

    def _brand_prefetch(self):
        if not self.brand_attribute:
            return []
        values = (ProductAttributeValue.objects.filter(attribute__code=self.brand_attribute)
                  .select_related("attribute", "value_option").prefetch_related("value_multi_option"))
        return [Prefetch("attribute_values", queryset=values, to_attr="_recommender_brand")]

    def _brand(self, product):
        values = getattr(product, "_recommender_brand", None) or []
        return str(values[0].value_as_text) if values else ""

    # --- single products ----------------------------------------------------------------------
    def title_of(self, product):
        return product.get_title() or str(product)

    def category_of(self, product):
        """The top-level category of the product's first category ("" without one)."""
        placed = getattr(product, "_recommender_categories", None)
        if placed is None:
            placed = list(self.with_purchase_data(self.model._default_manager.filter(pk=product.pk))
                          .get()._recommender_categories)
        return placed[0].root_name or "" if placed else ""

    def value_of(self, product, name):
        """``price`` and ``in_stock`` from Oscar's strategy; ``category`` is the top-level one (rows for
        training carry the whole path)."""
        if name == "price":
            return self.price_of(product)
        if name == "in_stock":
            return self.is_available(product)
        if name == "category":
            return self.category_of(product) or None
        return super().value_of(product, name)

    # --- writing ------------------------------------------------------------------------------
    def build_product(self, row):
        raise ImproperlyConfigured(
            "The Oscar catalog adapter does not create products: an Oscar product needs a product "
            "class, stock records and categories. Create them in Oscar (its dashboard or its import "
            "tools); recommender_import then matches a bundle's item_id against Product.upc, and "
            "recommender_oscar_history loads the shop's past orders."
        )


def plain_text(rich_text):
    """Oscar's rich-text description as plain words for the text model."""
    return _SPACES.sub(" ", html.unescape(strip_tags(rich_text or ""))).strip()


def _price_value(price):
    if not price.exists:
        return None
    return float(price.incl_tax if price.is_tax_known else price.excl_tax)
