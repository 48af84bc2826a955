"""The strategy contract suite (recommender.testing.contract) on data that lives in Oscar's catalogue.

The planted dataset's products are created as Oscar products (Oscar's factories: product class,
category tree, stock record, brand attribute, rich-text description); its users and events go in
through the app's importer, matched to those products by UPC; and the dataset each strategy is fitted
on is the app's snapshot of that database, read through the Oscar catalog adapter. So item ids are
Oscar primary keys and every product attribute came back out of Oscar's models.
"""

from decimal import Decimal

import pytest
from django.conf import settings as django_settings
from django.db import transaction
from django.test import override_settings
from oscar.apps.catalogue.categories import create_from_breadcrumbs
from oscar.core.loading import get_model
from oscar.test.factories import create_product

from recommender.catalog import get_adapter
from recommender.conf import settings
from recommender.data.dataset import Dataset
from recommender.data.importer import import_dataset
from recommender.data.snapshot import build_dataset_from_db
from recommender.testing.contract import StrategyContract
from recommender.testing.factories import planted_dataset

from .. import test_strategies_behavior as behavior
from .. import test_strategies_content as content
from .. import test_strategies_generative as generative
from .. import test_strategies_hybrid as hybrid

# django_db: the module fixture needs the test database, which pytest-django sets up only for marked tests.
pytestmark = [pytest.mark.oscar, pytest.mark.slow, pytest.mark.django_db]

ProductCategory = get_model("catalogue", "ProductCategory")


def oscar_products_for(items):
    """Create an Oscar product per planted item (UPC = item id); return {item id: pk}."""
    categories = {}
    pks = {}
    for item_id, item in items.iterrows():
        breadcrumb = " > ".join(item["category"].split("|"))
        if breadcrumb not in categories:
            categories[breadcrumb] = create_from_breadcrumbs(breadcrumb)
        product = create_product(
            upc=item_id, title=item["title"], product_class="Planted goods", description=f"<p>{item['description']}</p>",
            price=Decimal(str(item["price"])), num_in_stock=100, attributes={"brand": item["brand"]},
        )
        ProductCategory.objects.create(product=product, category=categories[breadcrumb])
        pks[item_id] = str(product.pk)
    return pks


def renamed_meta(meta, pk_of, user_pk_of):
    """The planted truth with item ids replaced by Oscar pks and user ids by account pks."""
    return {
        **meta,
        "category_items": {category: [pk_of[item] for item in items] for category, items in meta["category_items"].items()},
        "item_category": {pk_of[item]: category for item, category in meta["item_category"].items()},
        "next_item": {pk_of[item]: pk_of[following] for item, following in meta["next_item"].items()},
        "new_item_ids": [pk_of[item] for item in meta["new_item_ids"]],
        "user_category": {user_pk_of[user]: category for user, category in meta["user_category"].items()},
    }


@pytest.fixture(scope="module")
def oscar_planted(django_db_setup, django_db_blocker):
    """The planted dataset as the app reads it back from an Oscar shop (rolled back afterwards)."""
    from django.contrib.auth import get_user_model

    planted = planted_dataset()
    # The planted profiles carry a customer type: declared, as a shop that asks for it would.
    declared = override_settings(RECOMMENDER={**django_settings.RECOMMENDER,
                                              "PROFILE_ATTRIBUTES": {"customer_type": ["retail", "business"]}})
    with django_db_blocker.unblock(), transaction.atomic(), declared:
        pk_of = oscar_products_for(planted.items)
        import_dataset(planted, progress=False)
        snapshot = build_dataset_from_db()
        names = {settings.IMPORT_USERNAME_PREFIX + user: user for user in planted.user_ids}
        accounts = get_user_model().objects.filter(username__in=list(names)).values_list("username", "pk")
        user_pk_of = {names[username]: str(pk) for username, pk in accounts}
        transaction.set_rollback(True)
    assert get_adapter().__class__.__name__ == "OscarCatalogAdapter"
    assert set(snapshot.item_ids) == set(pk_of.values()), "every planted product, by its Oscar pk"
    return Dataset(users=snapshot.users, items=snapshot.items, interactions=snapshot.interactions,
                   name="planted-in-oscar", meta=renamed_meta(planted.meta, pk_of, user_pk_of))


class OscarContract(StrategyContract):
    """The contract, fitted on the planted data read back out of Oscar."""

    @pytest.fixture(scope="class")
    @classmethod
    def planted(cls, oscar_planted):
        """The planted dataset read back from Oscar (instead of the synthetic one itself)."""
        return oscar_planted


def test_the_contracts_data_came_through_oscar(oscar_planted):
    """Categories, brands, prices and plain text were read from Oscar's models: they match the bundle's."""
    original = planted_dataset().items
    read = oscar_planted.items.set_index("external_id")
    assert len(read) == len(original) and (read["in_stock"]).all()
    for column in ("title", "description", "category", "brand", "price"):
        assert read[column].reindex(original.index).tolist() == original[column].tolist(), column
    assert oscar_planted.n_users == 400 and len(oscar_planted.interactions) == len(planted_dataset().interactions)
    planted_users = planted_dataset().users
    assert set(planted_users.columns) <= set(oscar_planted.users.columns)


class TestOscarPopularity(OscarContract):
    strategy_key = "popularity"


class TestOscarSegmentPopularity(OscarContract):
    strategy_key = "segment_popularity"
    uses_profile = True


class TestOscarItemKNN(OscarContract):
    strategy_key = "item_knn"
    uses_events = True
    uses_sequence = True


class TestOscarDemographic(OscarContract):
    strategy_key = "demographic"
    uses_profile = True
    uses_events = True


class TestOscarContent(OscarContract):
    strategy_key = "content"
    strategy_params = content.TestContentContract.strategy_params
    uses_events = True
    uses_content = True


class TestOscarBehavior(OscarContract):
    strategy_key = "behavior"
    strategy_params = behavior.TINY
    uses_profile = True
    uses_events = True
    uses_sequence = True
    uses_content = True


class TestOscarGenerative(OscarContract):
    strategy_key = "generative"
    strategy_params = generative.TINY
    uses_profile = True
    uses_events = True


class TestOscarHybrid(OscarContract):
    strategy_key = "hybrid"
    strategy_params = hybrid.TestHybridContract.strategy_params
    uses_profile = True
    uses_events = True
    uses_content = True
