"""Single-request scoring: fast paths and profile caches give the batch path's scores."""

import pickle

import numpy as np
import pytest

from recommender.strategies.base import Context, Event, index_positions
from recommender.strategies.caching import LRUCache
from recommender.strategies.registry import create_strategy
from recommender.testing.factories import new_items_frame, planted_dataset

KEYS_AND_PARAMS = [
    ("segment_popularity", {}),
    ("item_knn", {}),
    ("demographic", {}),
    ("content", {"encoder": "tfidf"}),
    ("hybrid", {"components": ["segment_popularity", "demographic", "item_knn", "content"],
                "component_params": {"content": {"encoder": "tfidf"}}}),
]


@pytest.fixture(scope="module")
def planted():
    return planted_dataset(n_users=200)


@pytest.fixture(scope="module")
def fitted(planted):
    return {key: create_strategy(key, **params).fit(planted) for key, params in KEYS_AND_PARAMS}


def contexts_of(planted):
    garden = planted.meta["category_items"]["garden"]
    profiles = list(planted.meta["segment_profiles"].values())
    return [
        Context(),
        Context(profile=profiles[0]),
        Context(profile=profiles[0]),  # the same profile again: served from the cache
        Context(profile=profiles[1], events=(Event(garden[1], "view"), Event(garden[2], "view", dwell_seconds=40.0))),
        Context(profile=profiles[1], events=(Event(garden[1], "view"), Event(garden[1], "purchase"))),
        Context(events=(Event("no-such-item", "view"),)),
        Context(product_id=garden[3]),
    ]


@pytest.mark.parametrize("key", [key for key, _ in KEYS_AND_PARAMS])
def test_single_context_scores_match_the_batch(fitted, planted, key):
    """Each context scored alone (fast path, caches) equals its row of one batch call."""
    strategy = fitted[key]
    contexts = contexts_of(planted)
    batch = strategy.score_batch(contexts)
    for _ in range(2):  # the second round is served from the caches
        single = np.vstack([strategy.score_batch([context]) for context in contexts])
        np.testing.assert_array_equal(np.isneginf(single), np.isneginf(batch))
        finite = np.isfinite(batch)
        np.testing.assert_allclose(single[finite], batch[finite], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("key", [key for key, _ in KEYS_AND_PARAMS])
def test_callers_may_write_into_cached_scores(fitted, planted, key):
    """Scores served from a cache are a private copy: writing into them changes no later answer."""
    strategy = fitted[key]
    context = Context(profile=list(planted.meta["segment_profiles"].values())[0])
    first = strategy.score_batch([context])
    expected = first.copy()
    first[:] = -np.inf
    np.testing.assert_array_equal(strategy.score_batch([context]), expected)


def test_new_items_reach_cached_profiles(planted):
    """After add_items a cached profile's scores cover the new product (the caches are dropped)."""
    strategy = create_strategy("hybrid", **dict(KEYS_AND_PARAMS)["hybrid"]).fit(planted)
    context = Context(profile=list(planted.meta["segment_profiles"].values())[0])
    before = strategy.score_batch([context])
    strategy.add_items(new_items_frame(["fresh"]))
    after = strategy.score_batch([context])
    assert after.shape == (1, before.shape[1] + 1)
    assert np.isfinite(after[0, strategy.item_positions(["fresh"])[0]])


def test_lru_cache_is_bounded_read_only_and_pickles_empty():
    """The oldest entry goes first, cached arrays cannot be written, a pickled cache starts empty."""
    cache = LRUCache(max_entries=2)
    cache.get_or_compute("a", lambda: np.zeros(3))
    cache.get_or_compute("b", lambda: np.zeros(3))
    cache.get_or_compute("a", lambda: pytest.fail("'a' was cached"))
    cache.get_or_compute("c", lambda: np.ones(3))  # evicts "b", the least recently used
    assert len(cache) == 2
    recomputed = []
    cache.get_or_compute("b", lambda: recomputed.append(1) or np.zeros(3))
    assert recomputed == [1]
    with pytest.raises(ValueError):
        cache.get_or_compute("c", lambda: None)[0] = 5.0
    assert len(pickle.loads(pickle.dumps(cache))) == 0


def test_index_positions_small_and_large_lookups_agree():
    """The per-id hash lookup and pandas' get_indexer give the same positions, -1 when unknown."""
    import pandas as pd

    index = pd.Index([f"item-{number}" for number in range(500)], dtype=object)
    ids = [f"item-{number}" for number in range(0, 600, 7)] + ["other"]
    small = np.concatenate([index_positions(index, ids[start:start + 10]) for start in range(0, len(ids), 10)])
    np.testing.assert_array_equal(small, index_positions(index, ids * 2)[: len(ids)])
    np.testing.assert_array_equal(small, index.get_indexer(pd.Index(ids, dtype=object)))
    assert small[-1] == -1 and small[0] == 0
