"""The behavior strategy: the contract suite plus content-aware scoring of new products."""

import copy

import numpy as np
import pytest

from recommender.strategies.base import Context, Event
from recommender.testing.contract import StrategyContract
from recommender.testing.factories import new_items_frame, planted_dataset

pytest.importorskip("torch")

TINY = {"epochs": 6, "model_dim": 32, "feedforward_dim": 64, "layers": 1, "batch_size": 32,
        "max_events": 8, "content_dim": 16, "patience": 6, "threads": 1}


class TestBehaviorContract(StrategyContract):
    strategy_key = "behavior"
    strategy_params = TINY
    uses_profile = True
    uses_events = True
    uses_sequence = True
    uses_content = True
    subsumes_popularity = True
    # A sampled softmax (as on real catalogues, far larger than 2 × negatives) on the planted one.
    popularity_check_params = {"negatives": 16}


@pytest.fixture(scope="module")
def planted():
    return planted_dataset(n_users=200)


@pytest.fixture(scope="module")
def fitted(planted):
    from recommender.strategies.behavior import BehaviorStrategy

    return BehaviorStrategy(**TINY).fit(planted)


def test_added_item_scored_by_its_text(fitted, planted):
    """A product added after training scores higher when its text matches the session's items."""
    strategy = copy.deepcopy(fitted)
    strategy.add_items(new_items_frame(["added-garden"], category="garden", seed=1))
    strategy.add_items(new_items_frame(["added-sports"], category="sports", seed=1))
    garden = planted.meta["category_items"]["garden"]
    scores = strategy.score(Context(events=tuple(Event(item, "view") for item in garden[:3])))
    garden_score, sports_score = scores[strategy.item_positions(["added-garden", "added-sports"])]
    assert np.isfinite(garden_score) and garden_score > sports_score


def test_added_item_in_session_is_used(fitted, planted):
    """An event on a product added after training changes the scores (it is not ignored)."""
    strategy = copy.deepcopy(fitted)
    strategy.add_items(new_items_frame(["added-kitchen"], category="kitchen"))
    base = Context(events=(Event(planted.meta["category_items"]["books"][0], "view"),))
    with_new = Context(events=base.events + (Event("added-kitchen", "view"),))
    assert not np.allclose(strategy.score(base), strategy.score(with_new))


def test_dwell_buckets():
    """Dwell times map to buckets: 0 unknown, then <5 s, <30 s, <2 min, <10 min, longer."""
    from recommender.strategies.behavior import dwell_buckets

    assert dwell_buckets([np.nan, 1, 5, 29, 119, 599, 4000]).tolist() == [0, 1, 2, 2, 3, 4, 5]


def test_unknown_text_encoder_is_an_error():
    """An unknown text_encoder names the known ones."""
    from recommender.strategies.behavior import BehaviorStrategy

    with pytest.raises(ValueError, match="tfidf"):
        BehaviorStrategy(text_encoder="word2vec")


def test_time_budget_stops_training_and_keeps_a_usable_model(planted):
    """max_seconds=0 stops inside the first epoch, says so in history, and still scores every item."""
    from recommender.strategies.behavior import BehaviorStrategy

    strategy = BehaviorStrategy(**{**TINY, "max_seconds": 0}).fit(planted)
    assert strategy.history["epochs_run"] == 1 and strategy.history["stopped_by_budget"] is True
    assert np.isfinite(strategy.score(Context())).all()


def test_artifact_from_before_the_shared_text_encoders_loads(fitted, planted, tmp_path):
    """An artifact with the old text files (text_model.json, tfidf.npz) loads and scores the same."""
    import json

    from recommender.strategies.base import Strategy

    directory = fitted.save(tmp_path / "artifact")
    state = json.loads((directory / "behavior.json").read_text())
    del state["text_encoder"]
    (directory / "behavior.json").write_text(json.dumps(state))
    with np.load(directory / "text_encoder.npz") as arrays:
        np.savez(directory / "tfidf.npz", vocabulary=arrays["tfidf_terms"], idf=arrays["tfidf_idf"],
                 components=arrays["tfidf_components"])
    (directory / "text_encoder.npz").unlink()
    (directory / "text_model.json").write_text(json.dumps({"kind": "tfidf"}))
    loaded = Strategy.load(directory)
    loaded.add_items(new_items_frame(["added-garden"], category="garden"))
    reference = copy.deepcopy(fitted)
    reference.add_items(new_items_frame(["added-garden"], category="garden"))
    context = Context(events=(Event(planted.meta["category_items"]["garden"][0], "view"),))
    np.testing.assert_allclose(loaded.score(context), reference.score(context), rtol=1e-5, atol=1e-6)
