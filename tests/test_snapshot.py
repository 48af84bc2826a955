"""Dataset snapshots of the shop's database: ids, profiles, events, ratings, chunking."""

import datetime

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.test import override_settings
from django.utils import timezone

from recommender.data.snapshot import build_dataset_from_db
from recommender.models import Interaction, Rating, UserProfile
from recommender.testing.factories import make_product

NOW = timezone.now().replace(microsecond=0)


@pytest.fixture
def shop(db):
    products = [make_product(title=f"Thing {n}", category="Garden") for n in range(3)]
    ada, bob = (get_user_model().objects.create(username=name) for name in ("ada", "bob"))
    UserProfile.objects.create(user=ada, birth_year=NOW.year - 30, gender="f", country="de", city="berlin",
                               attributes={"customer_type": "business", "nested": {"no": 1},
                                           "injected_column_1": "x"})
    UserProfile.objects.create(user=bob, birth_year=1950, gender="m", country="fr", personalization_consent=False)
    UserProfile.objects.create(visitor_key="v-1", country="us")
    Interaction.objects.bulk_create([
        Interaction(user=ada, product=products[0], event="view", dwell_seconds=12.5, timestamp=NOW - datetime.timedelta(hours=3)),
        Interaction(user=ada, product=products[1], event="rating", value=5, timestamp=NOW - datetime.timedelta(hours=2)),
        Interaction(visitor_key="v-1", product=products[2], event="cart", timestamp=NOW - datetime.timedelta(hours=1)),
        Interaction(user=bob, product=products[2], event="purchase", timestamp=NOW - datetime.timedelta(minutes=30)),
    ])
    # Ada's rating of product 1 has its own event; bob's imported rating of product 0 does not.
    Rating.objects.create(user=ada, product=products[1], score=5)
    Rating.objects.create(user=bob, product=products[0], score=2)
    return products, ada, bob


def test_snapshot_reads_users_items_and_events_with_string_ids(shop):
    """Accounts are str(pk), visitors visitor:<key>, products str(pk); events keep their order and values."""
    products, ada, bob = shop
    dataset = build_dataset_from_db()
    assert set(dataset.users.index) == {str(ada.pk), str(bob.pk), "visitor:v-1"}
    assert sorted(dataset.item_ids) == sorted(str(product.pk) for product in products)
    events = dataset.interactions
    assert events["user_id"].tolist() == [str(ada.pk), str(ada.pk), "visitor:v-1", str(bob.pk), str(bob.pk)]
    assert events["event"].tolist() == ["view", "rating", "cart", "purchase", "rating"]
    assert events["item_id"].iloc[0] == str(products[0].pk)
    assert events["dwell_seconds"].iloc[0] == 12.5 and events["value"].iloc[1] == 5
    assert events["timestamp"].iloc[0] == (NOW - datetime.timedelta(hours=3)).timestamp()


def test_ratings_without_an_event_are_added_once(shop):
    """An imported Rating with no rating event becomes one; a rating that has its event is not doubled."""
    products, ada, bob = shop
    dataset = build_dataset_from_db()
    ratings = dataset.interactions[dataset.interactions["event"] == "rating"]
    assert sorted(zip(ratings["user_id"], ratings["value"])) == [(str(ada.pk), 5.0), (str(bob.pk), 2.0)]
    assert dataset.meta["counts"]["ratings_only"] == 1


def test_profiles_become_attribute_columns_and_respect_consent(shop):
    """Age, gender, location and declared scalar attributes are columns; an opted-out profile has none."""
    _, ada, bob = shop
    users = build_dataset_from_db(profile_attributes=["customer_type", "nested"]).users
    assert users.loc[str(ada.pk), "age"] == 30
    assert users.loc[str(ada.pk), "gender"] == "f"
    assert users.loc[str(ada.pk), "city"] == "berlin"
    assert users.loc[str(ada.pk), "customer_type"] == "business"
    assert "nested" not in users.columns
    assert "injected_column_1" not in users.columns, "an undeclared key must never become a column"
    assert users.loc[str(bob.pk)].isna().all()
    assert users.loc["visitor:v-1", "country"] == "us"


def test_only_declared_attributes_become_columns(shop):
    """With PROFILE_ATTRIBUTES unset, no free attribute becomes a column (a stranger cannot add columns)."""
    users = build_dataset_from_db().users
    assert {"customer_type", "injected_column_1", "nested"}.isdisjoint(users.columns)
    with override_settings(RECOMMENDER={**django_settings.RECOMMENDER, "PROFILE_ATTRIBUTES": {"customer_type": None}}):
        assert "customer_type" in build_dataset_from_db().users.columns


def test_counts_are_recorded(shop):
    """meta['counts'] has what a ModelVersion records."""
    counts = build_dataset_from_db().meta["counts"]
    assert counts["users"] == 3 and counts["profiles"] == 3 and counts["visitors"] == 1
    assert counts["items"] == 3 and counts["interactions"] == 5 and counts["skipped"] == 0
    assert counts["snapshot_at"]


def test_small_chunks_give_the_same_dataset(shop):
    """Reading two rows at a time gives exactly what one big chunk gives."""
    whole = build_dataset_from_db(chunk_size=10_000).interactions
    chunked = build_dataset_from_db(chunk_size=2).interactions
    assert whole.equals(chunked)


def test_since_keeps_only_later_events(shop):
    """since= drops older events (and ratings) but keeps every profile and product."""
    dataset = build_dataset_from_db(since=NOW - datetime.timedelta(minutes=90))
    assert dataset.interactions["event"].tolist() == ["cart", "purchase", "rating"]
    assert len(dataset.users) == 3 and dataset.n_items == 3


def test_an_empty_shop_gives_an_empty_dataset(db):
    """No products, profiles or events: an empty but valid dataset."""
    dataset = build_dataset_from_db()
    assert (dataset.n_users, dataset.n_items, len(dataset.interactions)) == (0, 0, 0)
