"""Strategy keys → classes (docs/architecture.md, "How to add a strategy").

Built-in strategies are listed here by dotted path (so heavy dependencies are imported only
when a strategy is used); hosts add their own with ``RECOMMENDER["STRATEGIES"]``.
"""

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from ..conf import settings

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


def strategy_paths() -> dict[str, str]:
    """Every registered key and its dotted path, host additions last (and winning)."""
    return {**BUILTIN_STRATEGIES, **(settings.STRATEGIES or {})}


def available_keys() -> list[str]:
    return list(strategy_paths())


def import_strategy_class(path: str):
    from .base import Strategy

    klass = import_string(path)
    if not (isinstance(klass, type) and issubclass(klass, Strategy)):
        raise ImproperlyConfigured(f"{path} is not a subclass of recommender.strategies.base.Strategy")
    return klass


def get_strategy_class(key: str):
    """Return the strategy class registered under ``key``; a clear error for unknown keys."""
    paths = strategy_paths()
    if key not in paths:
        raise ImproperlyConfigured(
            f"Unknown recommendation strategy {key!r}. Known strategies: {', '.join(paths)}. "
            "Register your own in RECOMMENDER['STRATEGIES']."
        )
    return import_strategy_class(paths[key])


def create_strategy(key: str, **params):
    """Instantiate the strategy registered under ``key`` with ``params``."""
    return get_strategy_class(key)(**params)
