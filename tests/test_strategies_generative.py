"""The generative strategy: contract suite for the CVAE, the CFGAN variant and augment()."""

import numpy as np
import pytest

from recommender.strategies.base import Context, Event
from recommender.testing.contract import StrategyContract
from recommender.testing.factories import planted_dataset

pytest.importorskip("torch")

TINY = {"epochs": 10, "batch_size": 32, "hidden_dim": 32, "latent_dim": 8, "patience": 4,
        "learning_rate": 3e-3, "threads": 1}


class TestGenerativeContract(StrategyContract):
    strategy_key = "generative"
    strategy_params = TINY
    uses_profile = True
    uses_events = True
    subsumes_popularity = True
    # A sampled softmax (as on real catalogues, far larger than 2 × negatives) on the planted one.
    popularity_check_params = {"negatives": 16}


class TestAugmentedSegmentPopularityContract(StrategyContract):
    """Segment popularity fitted with generated virtual users keeps the whole contract."""

    strategy_key = "segment_popularity"
    strategy_params = {"augment": {**TINY, "epochs": 3}}
    uses_profile = True


def test_augmented_segment_popularity_counts_its_virtual_users(planted):
    """augment= fits a generative model first; the virtual users join the fit, not the item set."""
    from recommender.strategies.popularity import SegmentPopularityStrategy

    plain = SegmentPopularityStrategy().fit(planted)
    augmented = SegmentPopularityStrategy(augment={
        **TINY, "epochs": 3, "segments": [{"gender": "m", "age_band": "45–54"}], "n_per_segment": 5}).fit(planted)
    assert plain.virtual_users_ == 0 and augmented.virtual_users_ == 5
    assert np.array_equal(augmented.item_ids, plain.item_ids)


@pytest.fixture(scope="module")
def planted():
    return planted_dataset(n_users=200)


@pytest.fixture(scope="module")
def fitted(planted):
    from recommender.strategies.generative import GenerativeStrategy

    return GenerativeStrategy(**TINY).fit(planted)


def test_cfgan_variant_fits_and_scores(planted, tmp_path):
    """model='cfgan' trains, scores every item finitely and survives save/load."""
    from recommender.strategies.base import Strategy
    from recommender.strategies.generative import GenerativeStrategy

    strategy = GenerativeStrategy(**{**TINY, "model": "cfgan", "epochs": 3}).fit(planted)
    context = Context(profile=planted.meta["segment_profiles"]["garden"], events=(Event(planted.item_ids[0]),))
    scores = strategy.score(context)
    assert scores.shape == (planted.n_items,) and np.isfinite(scores).all()
    assert scores.std() > 0
    strategy.save(tmp_path / "gan")
    np.testing.assert_array_equal(Strategy.load(tmp_path / "gan").score(context), scores)


def test_unknown_model_is_an_error():
    """An unknown model name says which ones exist."""
    from recommender.strategies.generative import GenerativeStrategy

    with pytest.raises(ValueError, match="cvae"):
        GenerativeStrategy(model="diffusion")


def _shrink_segment(dataset, gender, keep_users):
    """The dataset with only ``keep_users`` users of one gender × age segment (a sparse one)."""
    users = dataset.users
    segment = users.index[(users["gender"] == gender) & (users["age"] < 35)]
    drop = segment[keep_users:]
    return dataset.without_users(drop), segment[:keep_users]


def test_augment_adds_virtual_users_to_the_sparse_segment_only(planted):
    """augment() adds 'virtual-' users, all copied from the sparse segment, with items of its taste."""
    from recommender.data.features import age_band
    from recommender.strategies.generative import GenerativeStrategy

    sparse, _ = _shrink_segment(planted, "f", 8)
    strategy = GenerativeStrategy(**TINY).fit(sparse)
    augmented = strategy.augment(sparse)
    virtual = augmented.users.index[augmented.users.index.str.startswith("virtual-")]
    assert augmented.meta["virtual_users"] == len(virtual) > 0
    profiles = augmented.users.loc[virtual]
    assert set(profiles["gender"]) == {"f"}
    assert {age_band(age) for age in profiles["age"]} == {"25–34"}
    assert len(augmented.interactions) > len(sparse.interactions)
    virtual_items = augmented.interactions.loc[augmented.interactions["user_id"].isin(virtual), "item_id"]
    item_category = planted.meta["item_category"]
    garden_share = np.mean([item_category[item] == "garden" for item in virtual_items])
    base_share = np.mean([item_category[item] == "garden" for item in sparse.interactions["item_id"]])
    assert garden_share > 1.5 * base_share
    # The real data is kept unchanged.
    assert augmented.users.index[: sparse.n_users].tolist() == list(sparse.users.index)


def test_augment_named_segment_and_count(planted, fitted):
    """augment(segments=[...], n_per_segment=n) adds exactly n users to each named segment."""
    augmented = fitted.augment(planted, segments=[{"gender": "m", "age_band": "45–54"}], n_per_segment=5)
    virtual = augmented.users.index[augmented.users.index.str.startswith("virtual-")]
    assert len(virtual) == 5
    assert set(augmented.users.loc[virtual, "gender"]) == {"m"}
    with pytest.raises(ValueError, match="no active users"):
        fitted.augment(planted, segments=[("x", "65+")], n_per_segment=1)


def test_time_budget_stops_training_after_the_step_that_crosses_it(planted):
    """max_seconds=0 trains one step, says so in history, and still scores every item finitely."""
    from recommender.strategies.generative import GenerativeStrategy

    strategy = GenerativeStrategy(**{**TINY, "max_seconds": 0}).fit(planted)
    assert strategy.history["steps"] == 1 and strategy.history["stopped_by_budget"] is True
    assert np.isfinite(strategy.score(Context())).all()


def test_capped_vocabulary_keeps_the_most_chosen_items_and_ranks_the_rest_last(planted):
    """max_vocabulary keeps the most chosen items; every other item scores below all of them."""
    from recommender.strategies.generative import GenerativeStrategy

    strategy = GenerativeStrategy(**{**TINY, "epochs": 2, "max_vocabulary": 10}).fit(planted)
    # "Chosen" counts a user's repeats of an item on one day once (Dataset.event_weights).
    chosen = planted.event_weights() > 0
    counts = np.bincount(planted.item_codes[chosen], minlength=planted.n_items)
    assert len(strategy.vocabulary_positions) == 10
    assert counts[strategy.vocabulary_positions].min() >= np.sort(counts)[-10]
    scores = strategy.score(Context(profile=planted.meta["segment_profiles"]["garden"]))
    outside = np.setdiff1d(np.arange(planted.n_items), strategy.vocabulary_positions)
    assert scores[outside].max() < scores[strategy.vocabulary_positions].min()


def test_bad_input_dropout_is_an_error():
    """input_dropout must be 'uniform' or a rate in [0, 1)."""
    from recommender.strategies.generative import GenerativeStrategy

    with pytest.raises(ValueError, match="uniform"):
        GenerativeStrategy(input_dropout=1.5)
