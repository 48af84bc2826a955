"""A small Oscar catalogue built with Oscar's test factories, and a shopper who uses Oscar's views.

The catalogue has what a real Oscar shop has and the adapter must get right: a category tree,
products in it with stock records, a brand attribute on most products (not on the books), a parent
product with child variants, a sold-out product and an unpublished one.
"""

from dataclasses import dataclass, field
from decimal import Decimal
from html.parser import HTMLParser

from django.test import Client
from django.urls import reverse
from oscar.apps.catalogue.categories import create_from_breadcrumbs
from oscar.core.loading import get_model
from oscar.test.factories import CountryFactory, create_product

Order = get_model("order", "Order")
ProductCategory = get_model("catalogue", "ProductCategory")

PRODUCT_CLASS = "Goods"
# (category breadcrumb, brand or None, [(upc, title, words of its description)])
CATALOGUE = (
    ("Garden > Tools", "GreenThumb", [
        ("G-TROWEL", "Steel trowel", "trowel for digging soil and planting bulbs in the garden"),
        ("G-HOSE", "Garden hose", "hose for watering the garden beds and the lawn"),
        ("G-SHEARS", "Pruning shears", "shears for pruning roses and garden hedges"),
        ("G-RAKE", "Leaf rake", "rake for gathering leaves and levelling garden soil"),
    ]),
    ("Garden > Seeds", "GreenThumb", [
        ("G-TOMATO", "Tomato seeds", "seeds for planting tomatoes in the garden soil"),
        ("G-BASIL", "Basil seeds", "seeds for planting basil in garden pots"),
    ]),
    ("Kitchen > Cookware", "IronChef", [
        ("K-SKILLET", "Cast iron skillet", "skillet for searing and frying in the kitchen"),
        ("K-KNIFE", "Chef knife", "knife for chopping vegetables in the kitchen"),
        ("K-KETTLE", "Copper kettle", "kettle for boiling water for tea in the kitchen"),
        ("K-WHISK", "Balloon whisk", "whisk for whipping cream and eggs in the kitchen"),
    ]),
    ("Books > Fiction", None, [
        ("B-CRIME", "Crime novel", "novel about a detective solving a crime in the city"),
        ("B-POETRY", "Poetry anthology", "anthology of poetry and poems about the sea"),
        ("B-THRILLER", "Sea thriller", "thriller novel about a storm at sea"),
        ("B-STORIES", "Short stories", "collection of short stories and a novella"),
    ]),
)
GARDEN_UPCS = ("G-TROWEL", "G-HOSE", "G-SHEARS", "G-RAKE", "G-TOMATO", "G-BASIL")
KITCHEN_UPCS = ("K-SKILLET", "K-KNIFE", "K-KETTLE", "K-WHISK")
BOOK_UPCS = ("B-CRIME", "B-POETRY", "B-THRILLER", "B-STORIES")
PASSWORD = "oscar-pass-1234"


@dataclass
class Catalogue:
    """The products by UPC, plus the special cases."""

    products: dict = field(default_factory=dict)
    categories: dict = field(default_factory=dict)

    def __getitem__(self, upc):
        return self.products[upc]

    def listed(self, upcs):
        return [self.products[upc] for upc in upcs]


def build_catalogue():
    """Create the catalogue with Oscar's factories; return it as a ``Catalogue``."""
    catalogue = Catalogue()
    for breadcrumb, brand, items in CATALOGUE:
        category = create_from_breadcrumbs(breadcrumb)
        catalogue.categories[breadcrumb] = category
        for upc, title, words in items:
            product = create_product(
                upc=upc, title=title, product_class=PRODUCT_CLASS, price=Decimal("12.50"), num_in_stock=50,
                attributes={"brand": brand} if brand else None,
                description=f"<p>A <strong>{title.lower()}</strong>: {words}.</p>",
            )
            ProductCategory.objects.create(product=product, category=category)
            catalogue.products[upc] = product
    tools = catalogue.categories["Garden > Tools"]
    # A parent product with two sizes: small in stock, large sold out.
    gloves = create_product(upc="G-GLOVES", title="Garden gloves", product_class=PRODUCT_CLASS,
                            structure="parent", description="<p>Gloves for garden work.</p>",
                            attributes={"brand": "GreenThumb"})
    ProductCategory.objects.create(product=gloves, category=tools)
    catalogue.products["G-GLOVES"] = gloves
    catalogue.products["G-GLOVES-S"] = create_product(upc="G-GLOVES-S", title="Garden gloves, small", parent=gloves,
                                                      price=Decimal("8.00"), num_in_stock=5)
    catalogue.products["G-GLOVES-L"] = create_product(upc="G-GLOVES-L", title="Garden gloves, large", parent=gloves,
                                                      price=Decimal("8.00"), num_in_stock=0)
    sold_out = create_product(upc="G-PLANTER", title="Sold-out planter", product_class=PRODUCT_CLASS,
                              price=Decimal("30.00"), num_in_stock=0, description="<p>A garden planter.</p>")
    ProductCategory.objects.create(product=sold_out, category=tools)
    catalogue.products["G-PLANTER"] = sold_out
    hidden = create_product(upc="K-PROTO", title="Unpublished prototype", product_class=PRODUCT_CLASS,
                            price=Decimal("99.00"), num_in_stock=3, is_public=False)
    ProductCategory.objects.create(product=hidden, category=catalogue.categories["Kitchen > Cookware"])
    catalogue.products["K-PROTO"] = hidden
    # Oscar's checkout needs a shipping country.
    CountryFactory(iso_3166_1_a2="GB", printable_name="United Kingdom", is_shipping_country=True)
    return catalogue


class Shopper:
    """A visitor driving Oscar's own views with Django's test client."""

    def __init__(self, client=None):
        self.client = client or Client()

    def get(self, url, status=200):
        response = self.client.get(url)
        assert response.status_code == status, (url, response.status_code)
        return response

    def home(self):
        """Oscar's home page: it redirects to the catalogue page, which is rendered."""
        return self.client.get(reverse("home"), follow=True)

    def view(self, product):
        return self.get(product.get_absolute_url())

    def add_to_basket(self, product, quantity=1):
        response = self.client.post(reverse("basket:add", kwargs={"pk": product.pk}), {"quantity": quantity})
        assert response.status_code == 302, response.status_code
        return response

    def basket(self):
        return self.get(reverse("basket:summary"))

    def register(self, email, password=PASSWORD):
        response = self.client.post(reverse("customer:register"),
                                    {"email": email, "password1": password, "password2": password})
        assert response.status_code == 302, response.context["form"].errors if response.context else response
        return response

    def log_in(self, email, password=PASSWORD):
        response = self.client.post(reverse("customer:login"), {
            "login-username": email, "login-password": password, "login_submit": "Log in",
        })
        assert response.status_code == 302, response.context["login_form"].errors if response.context else response
        return response

    def checkout(self, guest_email=None):
        """Go through Oscar's checkout to the thank-you page; return the placed order."""
        if guest_email:
            response = self.client.post(reverse("checkout:index"), {"username": guest_email, "options": "anonymous"})
            assert response.status_code == 302, response.status_code
        self.get(reverse("checkout:shipping-address"))
        response = self.client.post(reverse("checkout:shipping-address"), {
            "first_name": "Ada", "last_name": "Lovelace", "line1": "1 King Road", "line4": "London",
            "postcode": "SW1A 1AA",
        })
        assert response.status_code == 302, response.context["form"].errors if response.context else response
        # Free shipping is Oscar's only method by default, so this step forwards to payment.
        response = self.client.get(reverse("checkout:shipping-method"), follow=True)
        assert response.redirect_chain[-1][0] == reverse("checkout:payment-details"), response.redirect_chain
        self.get(reverse("checkout:preview"))
        response = self.client.post(reverse("checkout:preview"), {"action": "place_order"})
        assert response.status_code == 302 and response.url == reverse("checkout:thank-you"), response.status_code
        order = Order.objects.get(pk=self.client.session["checkout_order_id"])
        thank_you = self.get(reverse("checkout:thank-you"))
        assert order.number in thank_you.content.decode()
        return order


@dataclass
class Shelf:
    """One recommendation shelf as the page shows it."""

    placement: str
    strategy: str
    token: str = ""
    title: str = ""
    item_ids: list = field(default_factory=list)
    reasons: list = field(default_factory=list)


class _ShelfParser(HTMLParser):
    """Reads the shelves' data-rec-* markup (the beacon's contract) out of a page."""

    def __init__(self):
        super().__init__()
        self.shelves, self._text_into = [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        if "data-rec-placement" in attrs:
            self.shelves.append(Shelf(attrs["data-rec-placement"], attrs.get("data-rec-strategy", ""),
                                      attrs.get("data-rec-token", "")))
        elif self.shelves and "data-rec-item" in attrs:
            self.shelves[-1].item_ids.append(attrs["data-rec-item"])
        elif self.shelves and "rec-widget__reason" in classes:
            self._text_into = "reasons"
        elif self.shelves and "rec-widget__title" in classes:
            self._text_into = "title"

    def handle_data(self, data):
        if self._text_into == "reasons":
            self.shelves[-1].reasons.append(data.strip())
        elif self._text_into == "title":
            self.shelves[-1].title = data.strip()
        self._text_into = None


def shelves(response):
    """``{placement: Shelf}`` of the recommendation shelves on a rendered page."""
    parser = _ShelfParser()
    parser.feed(response.content.decode())
    return {shelf.placement: shelf for shelf in parser.shelves}
