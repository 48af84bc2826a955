"""The shelves on Oscar's own home, product and basket pages (templates of recommender.contrib.oscar).

No model is trained here: shelves come from the database's popularity fallback. The tests with
trained models are in test_training_flow.py.
"""

import pytest
from django.core.cache import caches
from django.urls import reverse

from recommender.models import Interaction

from .shop import Shopper, shelves

pytestmark = [pytest.mark.oscar, pytest.mark.django_db]


@pytest.fixture
def popular(catalogue):
    """Some shoppers' views, so the database popularity has an order: the hose most viewed."""
    for upcs in (["G-HOSE", "K-KNIFE", "G-TROWEL"], ["G-HOSE", "B-CRIME", "K-KETTLE"], ["G-HOSE", "B-POETRY"]):
        shopper = Shopper()
        for upc in upcs:
            shopper.view(catalogue[upc])
    # The database popularity is cached for a while (CACHE_TIMEOUT); the visits below come later.
    caches["default"].clear()
    return catalogue


def test_home_page_shows_picked_for_you_as_oscar_product_cards(popular, shopper):
    """Oscar's home (catalogue) page has the "Picked for you" shelf: Oscar's cards, each with a reason."""
    response = shopper.home()
    assert response.redirect_chain[-1][0] == reverse("catalogue:index")
    shelf = shelves(response)["home"]
    assert shelf.title == "Picked for you"
    assert shelf.item_ids[0] == str(popular["G-HOSE"].pk), "the most viewed product leads"
    assert len(shelf.item_ids) == 4 == len(shelf.reasons)
    assert all(reason for reason in shelf.reasons)
    html = response.content.decode()
    assert html.count('class="product_pod"') >= 4, "Oscar's own product cards, with its price and basket form"
    assert "recommender/beacon.js" in html and reverse("recommender:api:events") in html


def test_category_pages_do_not_repeat_the_home_shelf(popular, shopper):
    """The home shelf is on the catalogue's front page only, not on each category page."""
    response = shopper.get(popular.categories["Garden > Tools"].get_absolute_url())
    assert "home" not in shelves(response)


def test_product_page_shows_similar_and_also_bought_with_reasons(popular, shopper):
    """Oscar's product page has both product shelves, without the product itself, and the dwell marker."""
    knife = popular["K-KNIFE"]
    response = shopper.view(knife)
    found = shelves(response)
    assert {"similar", "also_bought"} <= set(found)
    assert found["also_bought"].title == "Often chosen together"
    for shelf in (found["similar"], found["also_bought"]):
        assert str(knife.pk) not in shelf.item_ids
        assert len(shelf.reasons) == len(shelf.item_ids)
    assert found["also_bought"].item_ids, "the popularity fallback fills it"
    assert f'data-rec-view-item="{knife.pk}"' in response.content.decode()


def test_a_variant_page_shows_the_parents_shelves(popular, shopper):
    """On a child variant's page the shelves are the parent's: neither the parent nor a variant is offered."""
    response = shopper.view(popular["G-GLOVES-S"])
    found = shelves(response)
    parent = str(popular["G-GLOVES"].pk)
    assert f'data-rec-view-item="{parent}"' in response.content.decode()
    assert parent not in found["also_bought"].item_ids
    variants = {str(popular["G-GLOVES-S"].pk), str(popular["G-GLOVES-L"].pk)}
    assert not variants & {item for shelf in found.values() for item in shelf.item_ids}


def test_basket_page_shows_a_shelf_without_what_is_in_the_basket(popular, shopper):
    """Oscar's basket page has "You may also like", leaving out the products in the basket."""
    shopper.add_to_basket(popular["G-HOSE"])
    response = shopper.basket()
    shelf = shelves(response)["cart"]
    assert shelf.title == "You may also like"
    assert shelf.item_ids and str(popular["G-HOSE"].pk) not in shelf.item_ids
    html = response.content.decode()
    assert html.index('id="content_inner"') < html.index('data-rec-placement="cart"'), \
        "outside #content_inner, so Oscar's AJAX basket updates keep the shelf"


def test_sold_out_and_unpublished_products_are_never_on_a_shelf(popular, shopper):
    """Shelves offer only what Oscar can sell: no sold-out planter, no unpublished prototype."""
    unsellable = {str(popular["G-PLANTER"].pk), str(popular["K-PROTO"].pk)}
    pages = [shopper.home(), shopper.view(popular["G-TROWEL"]), shopper.view(popular["G-RAKE"])]
    shown = {item for page in pages for shelf in shelves(page).values() for item in shelf.item_ids}
    assert shown and not shown & unsellable


def test_the_beacons_impressions_from_an_oscar_shelf_are_attributed_to_it(popular, shopper):
    """The shelf carries its signed token: an impression the beacon posts with it belongs to that list."""
    shelf = shelves(shopper.home())["home"]
    assert shelf.token
    response = shopper.client.post(reverse("recommender:api:events"), {"events": [
        {"product": shelf.item_ids[0], "event": "impression", "token": shelf.token}]}, content_type="application/json")
    assert response.status_code == 201, response.content
    impression = Interaction.objects.get(event="impression")
    assert impression.served_list and impression.placement == "home"
