"""Contract suite and specific checks for the baselines: popularity, segment popularity, item-kNN, demographic."""

from recommender.testing.contract import StrategyContract


class TestPopularityContract(StrategyContract):
    """Global time-decayed popularity under the strategy contract."""

    strategy_key = "popularity"


class TestSegmentPopularityContract(StrategyContract):
    """Segment popularity under the strategy contract; profiles find their segment."""

    strategy_key = "segment_popularity"
    uses_profile = True


class TestItemKNNContract(StrategyContract):
    """Item-kNN under the strategy contract; a session's events find their category and next item."""

    strategy_key = "item_knn"
    uses_events = True
    uses_sequence = True


class TestDemographicContract(StrategyContract):
    """Demographic CF under the strategy contract; profiles and events both find the category."""

    strategy_key = "demographic"
    uses_profile = True
    uses_events = True
    subsumes_popularity = True


# --- item-kNN with a product in view ("also bought") ------------------------------------------------

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from recommender.data.dataset import Dataset  # noqa: E402
from recommender.strategies.base import Context, Event  # noqa: E402
from recommender.strategies.registry import create_strategy  # noqa: E402


def _baskets_dataset():
    """Two users, each with two visits a day apart: (a, b) then (c, d); one product (e) nobody touched."""
    items = pd.DataFrame({"item_id": list("abcde"), "title": [f"Product {i}" for i in "abcde"]})
    rows, clock = [], 1_700_000_000.0
    for user in ("u1", "u2"):
        for visit in (("a", "b"), ("c", "d")):
            for item in visit:
                clock += 60
                rows.append({"user_id": user, "item_id": item, "event": "purchase", "timestamp": clock})
            clock += 86_400
    return Dataset(users=pd.DataFrame({"user_id": ["u1", "u2"]}), items=items, interactions=pd.DataFrame(rows))


def test_item_knn_sessions_keep_co_occurrence_within_a_visit():
    """With session_gap_seconds, products of different visits do not co-occur; without it they do."""
    dataset = _baskets_dataset()
    whole = create_strategy("item_knn", shrinkage=0.0).fit(dataset)
    visits = create_strategy("item_knn", shrinkage=0.0, session_gap_seconds=1800).fit(dataset)
    assert set(whole.recommend(Context(product_id="a"), k=4).item_ids) == {"b", "c", "d"}
    assert visits.recommend(Context(product_id="a"), k=4).item_ids == ["b"]


def test_item_knn_product_in_view_leads_and_never_fills_with_popularity():
    """The product in view outweighs the session; only co-occurring items; none for a product without data."""
    knn = create_strategy("item_knn", shrinkage=0.0, session_gap_seconds=1800).fit(_baskets_dataset())
    shelf = knn.recommend(Context(product_id="a", events=(Event("c", "view"),)), k=4)
    assert shelf.item_ids[0] == "b" and set(shelf.item_ids) == {"b", "d"}
    assert shelf.reasons[0] == "Often chosen with Product a"
    assert len(knn.recommend(Context(product_id="e"), k=4)) == 0  # its content neighbours take over
    assert len(knn.recommend(Context(), k=4)) == 4  # nothing known: the popularity tie-break fills it
    single = knn.score(Context(product_id="a", events=(Event("c", "view"),)))
    batch = knn.score_batch([Context(product_id="a", events=(Event("c", "view"),)), Context()])[0]
    np.testing.assert_allclose(single, batch, rtol=1e-5, atol=1e-7)
