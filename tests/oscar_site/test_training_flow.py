"""The whole story in an Oscar shop: past orders loaded, shoppers through Oscar's checkout, the app's
training command on that data, and Oscar's pages showing what was learned.

Real commits (``transaction=True``): a model activation tells serving processes after its commit.
"""

import pytest
from django.core.management import call_command
from django.urls import reverse
from oscar.apps.partner.strategy import Default
from oscar.core.loading import get_model
from oscar.test.factories import UserFactory, create_order

from recommender.models import Interaction, ModelVersion

from .shop import GARDEN_UPCS, Shopper, shelves

pytestmark = [pytest.mark.oscar, pytest.mark.django_db(transaction=True)]

Basket = get_model("basket", "Basket")
# What shoppers of each taste buy together.
BOUGHT_TOGETHER = (("G-TROWEL", "G-HOSE"), ("K-SKILLET", "K-KNIFE"), ("B-CRIME", "B-THRILLER"))
ALSO_VIEWED = ("G-SHEARS", "K-KETTLE", "B-POETRY")


def place_past_order(catalogue, upcs):
    """An order placed before the recommender was installed, with Oscar's own order factory."""
    basket = Basket.objects.create(owner=UserFactory())
    basket.strategy = Default()
    for upc in upcs:
        basket.add_product(catalogue[upc])
    return create_order(user=basket.owner, basket=basket)


@pytest.fixture
def trained(catalogue, capsys):
    """Nine past orders loaded as history, three guests through Oscar's checkout, then training."""
    orders = [place_past_order(catalogue, BOUGHT_TOGETHER[number % 3]) for number in range(9)]
    Interaction.objects.all().delete()  # the shop had these orders before the app was installed
    call_command("recommender_oscar_history", "--no-progress")
    assert "9 orders read: 18 purchase events added" in capsys.readouterr().out
    for pair, viewed in zip(BOUGHT_TOGETHER, ALSO_VIEWED):
        guest = Shopper()
        for upc in (*pair, viewed):
            guest.view(catalogue[upc])
        for upc in pair:
            guest.add_to_basket(catalogue[upc])
        guest.checkout(guest_email=f"{viewed.lower()}@example.com")
    call_command("recommender_train", "--sync", "--no-progress")
    return orders


def test_trained_on_the_oscar_shops_data_its_pages_learn_and_react_to_a_checkout(catalogue, trained):
    """Training on Oscar's products and events activates models. Then a new visitor's garden views lead
    their home shelf, the product page pairs the trowel with the hose, and once they buy the trowel
    through the checkout no shelf offers it again.

    One test, not several: every test that trains would reuse the model version ids of the last
    (the database is emptied between transactional tests), and this process keeps loaded models by id.
    """
    active = dict(ModelVersion.objects.filter(status="active").values_list("strategy", "data_counts"))
    assert {"popularity", "item_knn", "content", "hybrid"} <= set(active)
    counts = active["hybrid"]
    assert counts["items"] == 16, "parents and standalone products, no variants, nothing unpublished"
    assert counts["interactions"] == 18 + 3 * (3 + 2 + 2), "history + each guest's views, basket adds, purchases"

    visitor = Shopper()
    # One product other shoppers looked at, two nobody has (new arrivals).
    viewed = ("G-SHEARS", "G-TOMATO", "G-RAKE")
    for upc in viewed:
        visitor.view(catalogue[upc])
    garden = {str(catalogue[upc].pk) for upc in GARDEN_UPCS + ("G-GLOVES",)}

    home = shelves(visitor.home())["home"]
    assert home.strategy not in ("", "database_popularity"), "served by a trained model"
    assert sum(item in garden for item in home.item_ids) >= len(home.item_ids) / 2, home
    titles = [catalogue[upc].title for upc in viewed]
    assert any(title in reason for reason in home.reasons for title in titles), home.reasons
    trowel, hose = str(catalogue["G-TROWEL"].pk), str(catalogue["G-HOSE"].pk)
    assert trowel in home.item_ids, "the garden bestseller suits a garden visitor"

    product = shelves(visitor.view(catalogue["G-TROWEL"]))
    assert set(product["similar"].item_ids) <= garden and product["similar"].item_ids
    assert all("Steel trowel" in reason for reason in product["similar"].reasons), product["similar"].reasons
    # Bought together with the trowel in every garden order: "Often chosen together" shows it unless
    # "Similar products" above it already does (a page's shelves never repeat a product).
    similar, also_bought = product["similar"].item_ids, product["also_bought"].item_ids
    assert hose in similar + also_bought and also_bought and not set(similar) & set(also_bought)

    visitor.add_to_basket(catalogue["G-TROWEL"])
    assert trowel not in shelves(visitor.basket())["cart"].item_ids
    visitor.checkout(guest_email="new.gardener@example.com")

    after = [visitor.home(), visitor.view(catalogue["G-HOSE"]), visitor.view(catalogue["G-BASIL"])]
    shown = [shelf for page in after for shelf in shelves(page).values()]
    assert shown and all(trowel not in shelf.item_ids for shelf in shown), "already bought"
    home_after = shelves(after[0])["home"]
    assert sum(item in garden for item in home_after.item_ids) >= len(home_after.item_ids) / 2, home_after

    # The shop's staff see the same in the recommender's admin pages, on Oscar's products.
    staff = Shopper()
    staff.client.force_login(UserFactory(is_staff=True, is_superuser=True))
    staff.get(reverse("admin:recommender_dashboard_changelist"))
    preview = staff.client.post(reverse("admin:recommender_preview_changelist"), {
        "product_ids": ",".join(str(catalogue[upc].pk) for upc in viewed), "k": 5, "gender": "", "user_id": ""})
    assert preview.status_code == 200
    assert "Steel trowel" in preview.content.decode()
