"""Strategy keys → classes (docs/architecture.md, "How to add a strategy").

Built-in strategies are listed here by dotted path (so heavy dependencies are imported only
when a strategy is used). A host adds its own with ``RECOMMENDER["STRATEGIES"]``; that setting is
read on the Django side and passed in here as ``host_strategies`` ({key: dotted path}, winning
over a built-in of the same key), so this module runs without Django settings.
"""

from collections.abc import Mapping

from django.core.exceptions import ImproperlyConfigured

from .base import import_strategy_class

BUILTIN_STRATEGIES = {
    "popularity": "recommender.strategies.popularity.PopularityStrategy",
    "segment_popularity": "recommender.strategies.popularity.SegmentPopularityStrategy",
    "item_knn": "recommender.strategies.knn.ItemKNNStrategy",
    "demographic": "recommender.strategies.demographic.DemographicStrategy",
    "generative": "recommender.strategies.generative.GenerativeStrategy",
    "behavior": "recommender.strategies.behavior.BehaviorStrategy",
    "content": "recommender.strategies.content.ContentStrategy",
    "content_tfidf": "recommender.strategies.content.TfidfContentStrategy",
    "hybrid": "recommender.strategies.hybrid.HybridStrategy",
}


def strategy_paths(host_strategies: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every registered key and its dotted path, the host's additions last (and winning)."""
    return {**BUILTIN_STRATEGIES, **(host_strategies or {})}


def available_keys(host_strategies: Mapping[str, str] | None = None) -> list[str]:
    return list(strategy_paths(host_strategies))


def get_strategy_class(key: str, host_strategies: Mapping[str, str] | None = None):
    """Return the strategy class registered under ``key``; a clear error for unknown keys."""
    paths = strategy_paths(host_strategies)
    if key not in paths:
        raise ImproperlyConfigured(
            f"Unknown recommendation strategy {key!r}. Known strategies: {', '.join(paths)}. "
            "Register your own in RECOMMENDER['STRATEGIES']."
        )
    return import_strategy_class(paths[key])


def create_strategy(key: str, host_strategies: Mapping[str, str] | None = None, **params):
    """Instantiate the strategy registered under ``key`` with ``params``."""
    return get_strategy_class(key, host_strategies)(**params)
