"""The hybrid router: learned regime weights, new products, persistence (business rules: test_serving_rules)."""

import numpy as np
import pytest
from django.test import override_settings

from recommender.strategies.base import Context, Event, Strategy
from recommender.strategies.hybrid import (
    REGIME_LABELS, HybridStrategy, normalise_scores, regime_positions, search_simplex_weights,
)
from recommender.testing.contract import StrategyContract
from recommender.testing.factories import planted_dataset

# Fast components only: the torch ones have their own tests.
FAST_PARAMS = {
    "components": ["segment_popularity", "item_knn", "content"],
    "component_params": {"content": {"encoder": "tfidf"}},
}


class TestHybridContract(StrategyContract):
    strategy_key = "hybrid"
    strategy_params = FAST_PARAMS
    uses_profile = True
    uses_events = True
    uses_content = True


@pytest.fixture(scope="module")
def planted():
    return planted_dataset(n_users=300)


@pytest.fixture(scope="module")
def hybrid(planted):
    return HybridStrategy(**FAST_PARAMS).fit(planted)


def probe_contexts(planted):
    meta = planted.meta
    garden = meta["category_items"]["garden"]
    return [
        Context(),
        *(Context(profile=profile) for profile in meta["segment_profiles"].values()),
        Context(events=tuple(Event(item, "view") for item in garden[1:4])),
        Context(profile=meta["segment_profiles"]["sports"], events=(Event(garden[2], "purchase"),)),
    ]


def test_no_business_rules_inside_the_hybrid(hybrid, planted):
    """Stock, purchases and the product in view are serving's rules now: the hybrid scores every item,
    and an item its catalogue row marks sold out is still a candidate (serving checks live stock)."""
    kitchen = planted.meta["category_items"]["kitchen"]
    bought = Context(events=(Event(kitchen[1], "purchase"),), product_id=kitchen[2])
    scores = hybrid.score(bought)
    assert np.isfinite(scores[hybrid.item_positions([kitchen[1], kitchen[2]])]).all()
    assert not hasattr(hybrid, "in_stock_")


def test_learned_weights_differ_by_regime_and_survive_save_load(hybrid, tmp_path, planted):
    """Weights are learned per regime (not all equal), sum to one, and save/load keeps them and the scores."""
    weights = hybrid.regime_weights_
    assert weights.shape == (len(REGIME_LABELS), 3)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(weights[0], weights[2]), weights
    # Nothing is known at zero events: the event-driven components cannot have the lead there.
    keys = hybrid.component_keys_
    assert weights[0, keys.index("segment_popularity")] > weights[0, keys.index("item_knn")]
    assert set(hybrid.validation_ndcg_) >= {"0", "1-2", "3-9"}

    loaded = Strategy.load(hybrid.save(tmp_path / "hybrid"))
    assert (tmp_path / "hybrid" / "components" / "content" / "meta.json").exists()
    assert loaded.weights_table() == hybrid.weights_table()
    contexts = probe_contexts(planted)
    np.testing.assert_array_equal(loaded.score_batch(contexts), hybrid.score_batch(contexts))


def test_regimes_follow_the_number_of_known_events():
    """0 / 1–2 / 3–9 / 10+ events (impressions not counted; the product in view counts)."""
    def context(n, **extra):
        return Context(events=tuple(Event(f"i{i}", "view") for i in range(n)) + (Event("x", "impression"),), **extra)

    assert regime_positions([context(0), context(1), context(2), context(3), context(9), context(10), context(40)]).tolist() \
        == [0, 1, 1, 2, 2, 3, 3]
    assert regime_positions([context(0, product_id="p")]).tolist() == [1]


def test_unimportable_component_is_skipped_with_a_reason(planted):
    """A component whose module cannot be imported is skipped; the hybrid still serves."""
    with override_settings(RECOMMENDER={"STRATEGIES": {"broken": "recommender.no_such_module.Strategy"}}):
        strategy = HybridStrategy(components=["broken", "item_knn"], learn_weights=False).fit(planted)
    assert "broken" in strategy.skipped_components_
    assert strategy.component_keys_ == ["item_knn"]
    assert len(strategy.recommend(Context(), k=5)) == 5


def test_reason_comes_from_the_leading_component(hybrid, planted):
    """Each item's reason is the reason its biggest contributor gives; contributions add up to the score."""
    garden = planted.meta["category_items"]["garden"]
    context = Context(profile=planted.meta["segment_profiles"]["books"], events=(Event(garden[5], "view"),))
    parts = hybrid.explain_scores(context)
    recommendations = hybrid.recommend(context, k=10)
    positions = hybrid.item_positions(recommendations.item_ids)
    contributions = np.stack([parts[key] for key in hybrid.component_keys_])
    blended = contributions.sum(axis=0) + np.where(hybrid.trained_, 0.0, hybrid.new_item_offset_)
    np.testing.assert_allclose(blended[positions], parts["hybrid"][positions], rtol=1e-5)
    for slot, position in enumerate(positions):
        leader = hybrid.components_[hybrid.component_keys_[int(np.argmax(contributions[:, position]))]]
        assert recommendations.reasons[slot] == leader._explain(context, np.array([position]))[0]


def test_new_product_is_scored_by_content_with_the_learned_offset(hybrid, planted):
    """A product added after training is scored by content alone plus the learned offset, and can lead a list."""
    import copy

    strategy = copy.deepcopy(hybrid)
    books = planted.meta["category_items"]["books"]
    strategy.add_items(planted.items.loc[[books[3]]].rename(index={books[3]: "fresh-book"}))
    context = Context(events=tuple(Event(item, "view") for item in books[3:6]))
    parts = strategy.explain_scores(context)
    position = strategy.item_positions(["fresh-book"])[0]
    assert parts["content"][position] > 0
    assert parts["segment_popularity"][position] == 0 and parts["item_knn"][position] == 0
    assert parts["hybrid"][position] == pytest.approx(parts["content"][position] + strategy.new_item_offset_, rel=1e-5)
    strategy.new_item_offset_ = 3.0  # a shop that wants new products pushed
    recommendations = strategy.recommend(context, k=10)
    assert recommendations.item_ids[0] == "fresh-book"
    assert recommendations.reasons[0].startswith("New arrival")


def test_new_product_weights_follow_the_component_that_ranks_new_products(planted):
    """New-product weights are learned on held-out products alone: the text component wins over
    one that knows nothing about a product nobody has bought (segment popularity's flat score)."""
    strategy = HybridStrategy(**FAST_PARAMS, new_item_components=["segment_popularity", "content"]).fit(planted)
    weights = dict(zip(strategy.component_keys_, strategy.new_item_weights_.tolist()))
    assert weights["content"] > 0.7 and weights["item_knn"] == 0
    assert strategy.new_item_weights_.sum() == pytest.approx(1.0)
    assert strategy.validation_ndcg_["new_items_only"] > 0


def test_normalise_scores_is_scale_free_and_never_vetoes():
    """Rows are standardised by their top scores: affine changes do nothing; -inf becomes the floor."""
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(3, 500)).astype(np.float32)
    np.testing.assert_allclose(normalise_scores(scores, top=50), normalise_scores(scores * 7 + 3, top=50), atol=1e-4)
    scores[0, :10] = -np.inf
    scores[1] = 2.0
    normalised = normalise_scores(scores, top=50, floor=-4)
    assert (normalised[0, :10] == -4).all() and np.isfinite(normalised).all()
    assert (normalised[1] == 0).all(), "a row with no spread has no opinion"


def test_weight_search_finds_the_informative_component():
    """Blending a component that ranks the relevant item first with pure noise puts the weight on the first."""
    rng = np.random.default_rng(1)
    n_rows, pool = 200, 40
    relevant = np.zeros((n_rows, pool), dtype=bool)
    relevant[np.arange(n_rows), rng.integers(pool, size=n_rows)] = True
    informative = relevant * 3.0 + rng.normal(scale=0.5, size=(n_rows, pool))
    noise = rng.normal(size=(n_rows, pool))
    weights, ndcg = search_simplex_weights(np.stack([noise, informative]).astype(np.float32),
                                           np.ones((n_rows, pool), dtype=bool), relevant, np.ones(n_rows, dtype=int))
    assert weights[1] > 0.8 and ndcg > 0.9


def test_reuses_given_components_instead_of_refitting(planted, monkeypatch):
    """Components handed over (already fitted on the same data) are served as they are; the weights are
    still learned on components the hybrid fits itself without the validation users."""
    from recommender.strategies.registry import create_strategy

    given = {key: create_strategy(key, **FAST_PARAMS["component_params"].get(key, {})).fit(planted)
             for key in ("item_knn", "content", "popularity")}
    fitted_on = []
    original = HybridStrategy._fit_components

    def counting(self, keys, dataset):
        fitted_on.append((tuple(keys), dataset.n_users))
        return original(self, keys, dataset)

    monkeypatch.setattr(HybridStrategy, "_fit_components", counting)
    strategy = HybridStrategy(**FAST_PARAMS).fit(planted, components=given)
    assert strategy.components_["item_knn"] is given["item_knn"]
    assert strategy.components_["content"] is given["content"]
    assert "popularity" not in strategy.components_, "a key the hybrid does not blend is ignored"
    assert strategy.reused_components_ == ["item_knn", "content"]
    # One fit of every component without the validation users (the weights), then only the missing one.
    (validation_keys, validation_users), (refit_keys, refit_users) = fitted_on
    assert set(validation_keys) == set(FAST_PARAMS["components"]) and validation_users < planted.n_users
    assert refit_keys == ("segment_popularity",) and refit_users == planted.n_users
    assert len(strategy.recommend(Context(events=(Event(planted.item_ids[0], "view"),)), k=5)) == 5


def test_given_components_must_fit_the_dataset(planted):
    """A component fitted on other products is refused with a message saying what to pass; one fitted on
    the first products of the same catalogue (before products were added) is extended, not changed."""
    from recommender.strategies.registry import create_strategy

    from recommender.data.dataset import Dataset

    kept = planted.interactions["item_id"].isin(planted.item_ids[:-5]).to_numpy()
    fewer = Dataset(users=planted.users, items=planted.items.iloc[:-5], interactions=planted.interactions[kept])
    older = create_strategy("item_knn").fit(fewer)
    strategy = HybridStrategy(**FAST_PARAMS, learn_weights=False).fit(planted, components={"item_knn": older})
    assert strategy.components_["item_knn"] is not older and len(older.item_ids) == planted.n_items - 5
    np.testing.assert_array_equal(strategy.components_["item_knn"].item_ids, planted.item_ids)

    reordered = create_strategy("item_knn").fit(
        Dataset(users=planted.users, items=planted.items.iloc[::-1], interactions=planted.interactions))
    with pytest.raises(ValueError, match="same snapshot"):
        HybridStrategy(**FAST_PARAMS, learn_weights=False).fit(planted, components={"item_knn": reordered})
    with pytest.raises(ValueError, match="fitted strategy"):
        HybridStrategy(**FAST_PARAMS, learn_weights=False).fit(planted, components={"item_knn": create_strategy("item_knn")})
