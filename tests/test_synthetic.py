"""The synthetic shop: sizes, determinism and the planted structure a strategy should find."""

import numpy as np
import pandas as pd
import pytest

from recommender.data.features import age_band
from recommender.data.synthetic import make_shop_dataset, make_tiny_shop_dataset


@pytest.fixture(scope="module")
def tiny():
    return make_tiny_shop_dataset(seed=3)


@pytest.fixture(scope="module")
def default_size():
    return make_shop_dataset(seed=0)


def _purchases_with_segments(dataset):
    purchases = dataset.interactions[dataset.interactions["event"] == "purchase"]
    users = dataset.users.loc[purchases["user_id"]]
    segment = users["gender"].to_numpy() + "|" + users["age"].map(lambda age: age_band(age) or "").to_numpy()
    categories = dataset.items.loc[purchases["item_id"], "category"].to_numpy()
    return pd.DataFrame({"segment": segment, "category": categories, "country": users["country"].to_numpy()})


def test_same_seed_gives_identical_data():
    """Two runs with one seed produce equal users, items, interactions and planted truth."""
    first, second = make_tiny_shop_dataset(seed=7), make_tiny_shop_dataset(seed=7)
    pd.testing.assert_frame_equal(first.users, second.users)
    pd.testing.assert_frame_equal(first.items, second.items)
    pd.testing.assert_frame_equal(first.interactions, second.interactions)
    assert first.meta == second.meta


def test_other_seed_gives_other_data(tiny):
    """A different seed changes the events and the planted preferences."""
    other = make_tiny_shop_dataset(seed=4)
    assert not other.interactions["item_id"].equals(tiny.interactions["item_id"])
    assert other.meta["segment_categories"] != tiny.meta["segment_categories"]


def test_tiny_sizes_are_exact(tiny):
    """Sizes requested are the sizes produced, and every category has products."""
    assert tiny.counts() == {"users": 300, "items": 240, "interactions": 12_000}
    assert tiny.items["category"].nunique() == 12


def test_events_are_well_formed(tiny):
    """Known event types, increasing time within 90 days, dwell on views, 1–5 star ratings."""
    events = tiny.interactions
    assert set(events["event"]) <= {"view", "click", "cart", "purchase", "rating"}
    assert set(events["event"]) >= {"view", "click", "cart", "purchase", "rating"}
    assert np.all(np.diff(events["timestamp"].to_numpy()) >= 0)
    span_days = (events["timestamp"].max() - events["timestamp"].min()) / 86_400
    assert 60 < span_days <= 90
    views = events[events["event"] == "view"]
    assert views["dwell_seconds"].notna().all() and (views["dwell_seconds"] > 0).all()
    ratings = events.loc[events["event"] == "rating", "value"]
    assert ratings.between(1, 5).all() and len(ratings) > 0


def test_products_look_like_a_shop(tiny):
    """Titles name the brand, descriptions are sentences, prices are positive, some are out of stock."""
    items = tiny.items
    assert all(brand in title for brand, title in zip(items["brand"], items["title"]))
    assert items["title"].is_unique
    assert items["description"].str.len().min() > 40
    assert (items["price"] > 0).all()
    assert 0 < (~items["in_stock"]).sum() < len(items) // 4


def test_users_have_demographics(tiny):
    """Users carry age, gender, country and a city of that country."""
    users = tiny.users
    assert {"age", "gender", "country", "city"} <= set(users.columns)
    assert users["age"].dropna().between(18, 79).all()
    assert set(users["gender"]) <= {"f", "m", "x", ""}
    assert users["country"].nunique() >= 8


def test_new_items_have_no_events(tiny):
    """Products listed as new are the last ones and appear in no interaction."""
    new_items = tiny.meta["new_items"]
    assert len(new_items) > 0
    assert list(tiny.items.index[-len(new_items):]) == new_items
    assert not tiny.interactions["item_id"].isin(new_items).any()
    assert not set(new_items) & {target for targets in tiny.meta["next_items"].values() for target in targets}


def test_sessions_follow_next_item_links(tiny):
    """A large share of consecutive views by one user go to one of the product's planted next items."""
    views = tiny.interactions[tiny.interactions["event"].isin(["view", "click"])]
    previous = views.groupby("user_id")["item_id"].shift()
    next_items = tiny.meta["next_items"]
    followed = [item in next_items.get(before, ()) for item, before in zip(views["item_id"], previous) if isinstance(before, str)]
    # By chance alone it would be about 3 / 240.
    assert np.mean(followed) > 0.3


def test_next_items_stay_in_related_categories(tiny):
    """Every planted next item is in the same category or a complementary one."""
    category = tiny.items["category"]
    complements = tiny.meta["complementary_categories"]
    for item, targets in tiny.meta["next_items"].items():
        allowed = {category[item], *complements[category[item]]}
        assert {category[target] for target in targets} <= allowed


@pytest.mark.parametrize("size", ["tiny", "default_size"])
def test_segments_buy_mostly_in_their_categories(size, request):
    """Each segment's planted categories take most of its purchases, and (in the demo's size, where a
    segment has hundreds of purchases, not the tiny shop's 30–40) a far larger share than of others'."""
    dataset = request.getfixturevalue(size)
    purchases = _purchases_with_segments(dataset)
    for segment, categories in dataset.meta["segment_categories"].items():
        own = purchases[purchases["segment"] == segment]
        if len(own) < 30:
            continue
        others = purchases[purchases["segment"] != segment]
        own_share = own["category"].isin(categories).mean()
        assert own_share > 0.45, segment
        if size == "default_size":
            assert own_share > 2 * others["category"].isin(categories).mean(), segment


def test_sessions_keep_to_a_mission(default_size):
    """A session's products mostly share one category (its mission) or a complementary one: the next
    product is in the same category far more often than an independent draw would be."""
    views = default_size.interactions[default_size.interactions["event"].isin(["view", "click"])]
    category = default_size.items["category"]
    current = category.loc[views["item_id"]].to_numpy()
    previous = views.groupby("user_id")["item_id"].shift()
    gap = views.groupby("user_id")["timestamp"].diff().to_numpy()
    same_session = previous.notna().to_numpy() & (gap < 1800)
    before = category.reindex(previous[same_session]).to_numpy()
    same_category = np.mean(before == current[same_session])
    chance = float((category.value_counts(normalize=True) ** 2).sum())
    assert same_category > 0.5 > 5 * chance
    complements = default_size.meta["complementary_categories"]
    related = [now == then or now in complements[then] for now, then in zip(current[same_session], before)]
    assert np.mean(related) > 0.75


def test_countries_lean_to_their_categories(tiny):
    """A country's planted categories take a larger share of its purchases than of other countries'."""
    purchases = _purchases_with_segments(tiny)
    for country, categories in tiny.meta["country_categories"].items():
        own = purchases[purchases["country"] == country]
        if len(own) < 50:
            continue
        assert own["category"].isin(categories).mean() > 1.3 * purchases.loc[
            purchases["country"] != country, "category"
        ].isin(categories).mean(), country


def test_popularity_is_skewed(tiny):
    """The top tenth of products draws far more than a tenth of the events."""
    counts = tiny.interactions["item_id"].value_counts().to_numpy()
    top = counts[: len(tiny.items) // 10].sum()
    assert top / counts.sum() > 0.3


def test_bad_sizes_are_refused():
    """Impossible sizes get an error naming the parameter."""
    with pytest.raises(ValueError, match="n_categories"):
        make_shop_dataset(n_categories=99)
    with pytest.raises(ValueError, match="n_items"):
        make_shop_dataset(n_items=10, n_categories=12)


def test_default_size_meets_the_targets(default_size):
    """The default shop has ≥2,000 products in ≥20 categories, ≥5,000 users and ≥200k events."""
    counts = default_size.counts()
    assert counts["items"] >= 2000 and counts["users"] >= 5000 and counts["interactions"] >= 200_000
    assert default_size.items["category"].nunique() >= 20
    assert default_size.items["title"].is_unique
