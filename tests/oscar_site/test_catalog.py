"""recommender.contrib.oscar.catalog: Oscar's catalogue read through the adapter."""

from decimal import Decimal

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test.utils import CaptureQueriesContext
from oscar.test.factories import create_product, create_stockrecord

from recommender.catalog import get_adapter
from recommender.contrib.oscar.catalog import OscarCatalogAdapter, plain_text

from .shop import BOOK_UPCS, GARDEN_UPCS, KITCHEN_UPCS

pytestmark = [pytest.mark.oscar, pytest.mark.django_db]


@pytest.fixture
def rows(catalogue):
    return {row["external_id"]: row for row in get_adapter().iter_rows()}


def test_the_configured_adapter_is_oscars():
    """The Oscar site's settings give the Oscar adapter over catalogue.Product."""
    adapter = get_adapter()
    assert isinstance(adapter, OscarCatalogAdapter)
    assert adapter.model._meta.label == "catalogue.Product"
    assert adapter.configuration_errors() == []


def test_parents_and_standalone_products_only(catalogue, rows):
    """Child variants and unpublished products are never rows (never recommended)."""
    listed = set(GARDEN_UPCS + KITCHEN_UPCS + BOOK_UPCS) | {"G-GLOVES", "G-PLANTER"}
    assert set(rows) == listed
    assert rows["G-GLOVES"]["pk"] == catalogue["G-GLOVES"].pk


def test_categories_are_paths_from_the_root(rows):
    """Oscar's category tree becomes the app's "a|b" category path."""
    assert rows["G-TROWEL"]["category"] == "Garden|Tools"
    assert rows["G-BASIL"]["category"] == "Garden|Seeds"
    assert rows["B-CRIME"]["category"] == "Books|Fiction"


def test_first_assigned_category_wins(catalogue):
    """A product in two categories is read under the one it was given first."""
    from oscar.core.loading import get_model

    get_model("catalogue", "ProductCategory").objects.create(
        product=catalogue["K-KNIFE"], category=catalogue.categories["Garden > Tools"])
    rows = {row["external_id"]: row for row in get_adapter().iter_rows()}
    assert rows["K-KNIFE"]["category"] == "Kitchen|Cookware"


def test_brand_from_the_product_attribute_where_there_is_one(rows):
    """The "brand" attribute gives the brand; products without it have none."""
    assert rows["G-TROWEL"]["brand"] == "GreenThumb"
    assert rows["K-SKILLET"]["brand"] == "IronChef"
    assert rows["G-GLOVES"]["brand"] == "GreenThumb"
    assert rows["B-CRIME"]["brand"] == ""


def test_title_and_description_without_html(rows):
    """Oscar's rich-text description reaches the text model as plain words."""
    assert rows["G-HOSE"]["title"] == "Garden hose"
    assert rows["G-HOSE"]["description"] == "A garden hose: hose for watering the garden beds and the lawn."
    assert plain_text("<p>Fish &amp; chips</p>\n<ul><li>hot</li></ul>") == "Fish & chips hot"


def test_availability_and_price_come_from_oscars_strategy(catalogue, rows):
    """In stock and price are what Oscar's default strategy says (stock records, stock required)."""
    assert (rows["G-TROWEL"]["in_stock"], rows["G-TROWEL"]["price"]) == (True, 12.5)
    assert rows["G-PLANTER"]["in_stock"] is False, "no stock left"
    assert (rows["G-GLOVES"]["in_stock"], rows["G-GLOVES"]["price"]) == (True, 8.0), "a child is in stock"
    adapter = get_adapter()
    pks = [catalogue[upc].pk for upc in ("G-TROWEL", "G-PLANTER", "G-GLOVES", "K-PROTO")]
    assert adapter.in_stock_pks(pks) == {catalogue["G-TROWEL"].pk, catalogue["G-GLOVES"].pk,
                                         catalogue["K-PROTO"].pk}
    assert set(adapter.in_stock_products(pks)) == {catalogue["G-TROWEL"].pk, catalogue["G-GLOVES"].pk}, \
        "unpublished products are not offered"


def test_a_parent_whose_children_are_sold_out_is_unavailable(catalogue):
    """Selling the last small glove makes the parent unavailable: Oscar's parent availability."""
    small = catalogue["G-GLOVES-S"].stockrecords.get()
    small.num_in_stock = small.num_allocated = 5
    small.save()
    assert get_adapter().in_stock_pks([catalogue["G-GLOVES"].pk]) == set()


def test_a_product_without_stock_records_is_unavailable(catalogue):
    """A product Oscar cannot sell (no stock record, no price) is not in stock and has no price."""
    product = create_product(upc="X-NONE", title="No stock record", product_class="Goods")
    row = next(get_adapter().iter_rows(get_adapter().queryset().filter(pk=product.pk)))
    assert (row["in_stock"], row["price"]) == (False, None)
    create_stockrecord(product, price=Decimal("3.00"), num_in_stock=1)
    assert get_adapter().in_stock_pks([product.pk]) == {product.pk}


def test_top_level_category_of_a_shelf_product(catalogue):
    """The category cap counts top-level categories: Garden for tools and seeds alike."""
    adapter = get_adapter()
    products = {product.upc: product for product in adapter.sellable([catalogue[upc].pk for upc in GARDEN_UPCS])}
    assert {adapter.category_of(product) for product in products.values()} == {"Garden"}
    assert adapter.category_of(catalogue["B-CRIME"]) == "Books", "also without the prefetch"


def test_served_products_cost_a_fixed_number_of_queries(catalogue):
    """Checking and loading a shelf's products (what serving reads of them) costs the same few
    queries for 3 or 16 products."""
    adapter = get_adapter()

    def queries(upcs):
        with CaptureQueriesContext(connection) as captured:
            for product in adapter.sellable([catalogue[upc].pk for upc in upcs]):
                adapter.title_of(product), adapter.value_of(product, "price"), adapter.category_of(product)
        return len(captured)

    few = queries(GARDEN_UPCS[:2] + ("G-GLOVES",))
    many = queries(GARDEN_UPCS + KITCHEN_UPCS + BOOK_UPCS + ("G-GLOVES", "G-PLANTER"))
    assert few == many, (few, many)


def test_rows_cost_a_fixed_number_of_queries(catalogue):
    """Reading every row does not query per product."""
    adapter = get_adapter()
    with CaptureQueriesContext(connection) as few:
        list(adapter.iter_rows(adapter.queryset().filter(upc__in=["G-TROWEL", "G-GLOVES"])))
    with CaptureQueriesContext(connection) as all_rows:
        list(adapter.iter_rows())
    assert len(few) == len(all_rows)


def test_importing_products_into_oscar_is_refused_with_what_to_do(catalogue):
    """The adapter does not invent Oscar products; the error says what to use instead."""
    with pytest.raises(ImproperlyConfigured, match="recommender_oscar_history"):
        get_adapter().build_product({"external_id": "NEW", "title": "New"})
