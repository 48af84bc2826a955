"""recommender.data.weights: a visitor's repeats of a product on one day count once."""

import numpy as np
import pandas as pd

from recommender.data.dataset import Dataset
from recommender.data.weights import capped_event_weights, strongest_per_group, visitor_day_groups
from recommender.strategies.popularity import interaction_weights

DAY = 86400.0
TABLE = {"impression": 0.0, "view": 1.0, "click": 1.0, "cart": 3.0, "purchase": 5.0, "rating": 1.0}
EVENT_TYPES = tuple(TABLE)


def dataset(rows):
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "event", "timestamp"])
    items = pd.DataFrame({"item_id": sorted(set(frame["item_id"]) | {"spare"})})
    return Dataset(users=pd.DataFrame({"user_id": sorted(set(frame["user_id"]))}), items=items, interactions=frame)


def test_groups_are_visitor_product_and_utc_day():
    """Same user, item and UTC day share a group; another day, item or user does not; NaN times form one day."""
    users = np.array([0, 0, 0, 0, 1, 0, 0])
    items = np.array([0, 0, 0, 1, 0, 2, 2])
    times = np.array([10.0, DAY - 1, DAY, 10.0, 10.0, np.nan, np.nan])
    groups = visitor_day_groups(users, items, times)
    assert groups[0] == groups[1]
    assert len({groups[1], groups[2], groups[3], groups[4]}) == 4
    assert groups[5] == groups[6] and groups[5] != groups[0]


def test_only_the_first_strongest_of_a_group_keeps_its_weight():
    """In each group the largest weight stays (the earliest on ties) and the rest become 0."""
    weights = np.array([1.0, 5.0, 5.0, 3.0, 2.0], dtype=np.float32)
    groups = np.array([7, 7, 7, 9, 9])
    kept = strongest_per_group(weights, groups)
    assert kept.tolist() == [0.0, 5.0, 0.0, 3.0, 0.0]
    assert kept.dtype == np.float32
    assert strongest_per_group(np.array([], dtype=np.float32), np.array([], dtype=np.int64)).shape == (0,)


def test_capped_weights_use_the_given_table():
    """The table is a parameter (no settings read); unknown event types weigh 0."""
    events = np.array(["view", "purchase", "teleport"], dtype=object)
    weights = capped_event_weights(events, np.array([0, 1, 2]), {"view": 2.0, "purchase": 7.0}, EVENT_TYPES)
    assert weights.tolist() == [2.0, 7.0, 0.0]


def test_a_flood_by_one_visitor_weighs_one_event():
    """500 purchases of one item by one visitor on one day weigh one purchase; on two days, two."""
    flood = [("attacker", "obscure", "purchase", 1_700_000_000.0 + second) for second in range(500)]
    data = dataset(flood + [("attacker", "obscure", "purchase", 1_700_000_000.0 + DAY)])
    weights = data.event_weights()
    assert weights.sum() == 10.0
    assert data.interaction_matrix().sum() == 10.0


def test_a_view_then_a_purchase_the_same_day_counts_as_the_purchase():
    """The strongest event of the visitor's day stands for the day (5, not 1 + 5)."""
    data = dataset([("u", "i", "view", 100.0), ("u", "i", "view", 200.0), ("u", "i", "purchase", 300.0)])
    assert data.event_weights().tolist() == [0.0, 0.0, 5.0]


def test_every_popularity_weighting_is_capped():
    """"events", "positive" and "count" weightings all count the visitor's day once."""
    data = dataset([("u", "i", "purchase", 100.0)] * 50 + [("v", "i", "purchase", 100.0)])
    for weighting in ("events", "positive", "count"):
        weights = interaction_weights(data, weighting)
        per_user = np.bincount(data.user_codes, weights=weights)
        assert per_user[0] == per_user[1] > 0, weighting
