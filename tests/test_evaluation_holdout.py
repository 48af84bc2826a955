"""The held-out check that guards activation: who is held out, what is revealed, how parts pool."""

import numpy as np
import pandas as pd
import pytest

from recommender.data.dataset import Dataset
from recommender.evaluation import holdout
from recommender.testing.factories import planted_dataset

from .training_support import ToyStrategy


class RecordingToy(ToyStrategy):
    """Toy popularity that keeps every context it is asked to score."""

    def _score_batch(self, contexts):
        self.__dict__.setdefault("seen", []).extend(contexts)
        return super()._score_batch(contexts)


def with_first_impressions(dataset: Dataset) -> Dataset:
    """``dataset`` where every user's first event is preceded by an impression of another item."""
    interactions = dataset.interactions
    first = interactions.groupby("user_id", sort=False).head(1).copy()
    first["event"], first["value"] = "impression", np.nan
    first["item_id"] = dataset.item_ids[(dataset.item_index.get_indexer(first["item_id"]) + 1) % dataset.n_items]
    first["timestamp"] = first["timestamp"] - 1.0
    combined = pd.concat([first, interactions]).sort_values(["timestamp"], kind="stable").reset_index(drop=True)
    return Dataset(users=dataset.users, items=dataset.items, interactions=combined, name=dataset.name)


def test_a_good_model_ranks_above_a_reversed_one():
    """On planted data, popularity beats its reverse at reveal 0 and 3 for held-out users."""
    dataset = planted_dataset(n_users=200, n_items=40)
    good, _ = holdout.fit_and_evaluate(lambda: ToyStrategy(), dataset)
    bad, _ = holdout.fit_and_evaluate(lambda: ToyStrategy(reverse=True), dataset)
    assert good["holdout"]["users"] == 20
    for reveal in ("0", "3"):
        assert good["new_user"][reveal]["ndcg"] > bad["new_user"][reveal]["ndcg"]
    assert good["key_value"] == good["new_user"]["0"]["ndcg"]


def test_held_out_users_stay_held_out_when_the_shop_grows():
    """A later snapshot with 5% more users holds out nearly the same users (a draw would not)."""
    dataset = planted_dataset(n_users=400, n_items=40)
    before = holdout.holdout_split(dataset)
    more = planted_dataset(n_users=420, n_items=40)  # the same first 400 users, 20 new ones
    after = holdout.holdout_split(more)
    assert len(before.cold_user_ids) == 40 and len(after.cold_user_ids) == 42
    assert len(set(before.cold_user_ids) & set(after.cold_user_ids)) >= 36
    reseeded = holdout.holdout_split(dataset, holdout.HoldoutPlan(seed=1))
    assert len(set(before.cold_user_ids) & set(reseeded.cold_user_ids)) < 20


def test_impressions_are_never_revealed_nor_excluded():
    """Revealing 3 events gives the first 3 events that count as context; the impressed items stay candidates."""
    dataset = with_first_impressions(planted_dataset(n_users=200, n_items=40))
    split = holdout.holdout_split(dataset)
    strategy = RecordingToy().fit(split.train)
    holdout.evaluate(strategy, split, reveals=(3,))
    assert strategy.seen and all(len(context.events) == 3 for context in strategy.seen)
    assert all(event.event != "impression" for context in strategy.seen for event in context.events)
    interactions = dataset.interactions
    for context in strategy.seen[:10]:
        own = interactions[(interactions["user_id"] == context.user_id) & (interactions["event"] != "impression")]
        assert context.event_item_ids == own["item_id"].head(3).tolist()


def test_parts_scored_by_their_own_strategy_pool_to_the_whole():
    """Splitting the held-out users between two copies of one model gives the whole's figures."""
    dataset = planted_dataset(n_users=200, n_items=40)
    split = holdout.holdout_split(dataset)
    strategy = ToyStrategy().fit(split.train)
    whole = holdout.evaluate(strategy, split)
    half = len(split.cold_user_ids) // 2
    parts = [(strategy, split.cold_user_ids[:half]), (ToyStrategy().fit(split.train), split.cold_user_ids[half:])]
    pooled = holdout.evaluate_parts(parts, split)
    for reveal in ("0", "3"):
        assert pooled["new_user"][reveal]["users"] == whole["new_user"][reveal]["users"] > 0
        for name in ("ndcg", "recall", "hr", "mrr", "coverage"):
            assert pooled["new_user"][reveal][name] == pytest.approx(whole["new_user"][reveal][name])


def test_too_few_users_hold_none_out():
    """With fewer users than one held-out user needs, there is no split and no key metric."""
    dataset = planted_dataset(n_users=4, n_items=20)
    metrics, fitted = holdout.fit_and_evaluate(lambda: ToyStrategy(), dataset)
    assert fitted is None and metrics["key_value"] is None and metrics["holdout"]["users"] == 0
