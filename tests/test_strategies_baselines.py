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
