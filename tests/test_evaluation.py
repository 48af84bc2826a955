"""Metrics on hand-computed examples, protocols that never leak cold users, the runner and the command contract."""

import json
import math

import numpy as np
import pytest
import pandas as pd
import scipy.sparse as sp
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from recommender.evaluation.metrics import catalogue_coverage, ranking_metrics
from recommender.data.dataset import Dataset
from recommender.evaluation.protocols import (cold_start_validation, cold_user_masks, in_reveal_order, new_item_split,
                                              new_user_splits, relevant_mask, reveal_rank, warm_split)
from recommender.evaluation.runner import evaluate, regime_of
from recommender.strategies.popularity import PopularityStrategy
from recommender.testing.factories import planted_dataset


@pytest.fixture(scope="module")
def planted():
    return planted_dataset(seed=1, n_users=160)


def relevant_rows(n_items, *rows):
    matrix = sp.lil_matrix((len(rows), n_items), dtype=np.float32)
    for row, items in enumerate(rows):
        for item in items:
            matrix[row, item] = 1
    return matrix.tocsr()


# --- metrics -----------------------------------------------------------------------------------------
def test_metrics_hand_computed():
    """Two users: hits at ranks 1 and 3 of 3 relevant; one hit at rank 2 of 1 relevant."""
    top = np.array([[0, 5, 2], [7, 3, -1]])
    relevant = relevant_rows(10, [0, 2, 9], [3])
    metrics = ranking_metrics(top, relevant, k=3)
    dcg_first = 1 + 1 / math.log2(4)
    idcg_first = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert metrics["ndcg"][0] == pytest.approx(dcg_first / idcg_first)
    assert metrics["ndcg"][1] == pytest.approx((1 / math.log2(3)) / 1.0)
    np.testing.assert_allclose(metrics["recall"], [2 / 3, 1.0])
    np.testing.assert_allclose(metrics["precision"], [2 / 3, 1 / 3])
    np.testing.assert_allclose(metrics["hr"], [1.0, 1.0])
    np.testing.assert_allclose(metrics["mrr"], [1.0, 0.5])


def test_metrics_miss_and_no_relevant():
    """A user with no hit scores 0; a user with nothing relevant is NaN (to be skipped)."""
    top = np.array([[1, 2], [1, 2]])
    metrics = ranking_metrics(top, relevant_rows(5, [4], []), k=2)
    assert metrics["ndcg"][0] == 0.0 and metrics["mrr"][0] == 0.0 and metrics["hr"][0] == 0.0
    assert all(np.isnan(metrics[name][1]) for name in metrics)


def test_padding_never_counts_as_a_hit():
    """-1 padding is not item 0."""
    metrics = ranking_metrics(np.array([[-1, -1]]), relevant_rows(3, [0]), k=2)
    assert metrics["hr"][0] == 0.0


def test_catalogue_coverage():
    """Coverage counts distinct recommended items over the catalogue, ignoring padding."""
    assert catalogue_coverage(np.array([[0, 1], [1, -1]]), 8) == pytest.approx(2 / 8)


def test_regimes():
    """Known-event counts map to the regimes 0 / 1-2 / 3-9 / 10+."""
    assert list(regime_of(np.array([0, 1, 2, 3, 9, 10, 50]))) == ["0", "1-2", "1-2", "3-9", "3-9", "10+", "10+"]


# --- protocols -----------------------------------------------------------------------------------------
def test_new_user_folds_never_leak_cold_users(planted):
    """Each fold's cold users have no profile row and no interaction in its training data; folds partition users."""
    folds = new_user_splits(planted, folds=4, seed=3)
    seen = []
    for fold in folds:
        cold = set(fold.cold_user_ids)
        assert not cold & set(fold.train.interactions["user_id"])
        assert not cold & set(fold.train.users.index)
        assert fold.train.n_items == planted.n_items
        seen.extend(cold)
    assert sorted(seen) == sorted(set(planted.interactions["user_id"]))


def test_new_user_folds_are_seeded(planted):
    """Same seed, same folds; another seed, other folds."""
    first = [list(f.cold_user_ids) for f in new_user_splits(planted, 4, seed=3)]
    assert first == [list(f.cold_user_ids) for f in new_user_splits(planted, 4, seed=3)]
    assert first != [list(f.cold_user_ids) for f in new_user_splits(planted, 4, seed=4)]


def test_validation_split_stays_inside_training(planted):
    """The tuning split's validation users are absent from its training part."""
    train, profiles, relevant = cold_start_validation(planted, seed=0, positive_threshold=4)
    assert len(profiles) == relevant.shape[0] > 0
    assert not set(profiles.index) & set(train.interactions["user_id"])


def test_new_item_split(planted):
    """Held-out items keep their catalogue row but lose every interaction; unknown ids are an error."""
    split = new_item_split(planted, holdout=0.25, seed=0)
    assert not set(split.new_item_ids) & set(split.train.interactions["item_id"])
    assert set(split.new_item_ids) <= set(split.train.item_ids)
    assert split.test_mask.sum() == planted.interactions["item_id"].isin(set(split.new_item_ids)).sum()
    with pytest.raises(ValueError, match="not in the dataset"):
        new_item_split(planted, new_item_ids=["nope"])


def test_warm_split_holds_out_the_last_event(planted):
    """The test row of each user is their latest event."""
    train, test_mask = warm_split(planted)
    test = planted.interactions[test_mask]
    last = planted.interactions.groupby("user_id").tail(1)
    assert sorted(test.index) == sorted(last.index)
    assert len(train.interactions) == len(planted.interactions) - len(test)


# --- reveal order and horizons -------------------------------------------------------------------------
def _sorted_by_item_id(dataset: Dataset, seed: int = 0) -> Dataset:
    """Book-Crossing's layout: no timestamps, each user's rows sorted by an id unrelated to taste."""
    rng = np.random.default_rng(seed)
    renamed = dict(zip(dataset.item_ids, [f"i{number:04d}" for number in rng.permutation(dataset.n_items)]))
    items = dataset.items.rename(index=renamed).sort_index()
    interactions = dataset.interactions.assign(item_id=dataset.interactions["item_id"].map(renamed), timestamp=np.nan)
    first_row = interactions.groupby("user_id", sort=False).cumcount() == 0
    user_rank = first_row.cumsum().groupby(interactions["user_id"]).transform("max")
    interactions = interactions.assign(_user=user_rank).sort_values(["_user", "item_id"], kind="stable").drop(columns="_user")
    return Dataset(users=dataset.users, items=items, interactions=interactions, name="sorted", meta={"order": "none"})


def test_reveal_order_shuffles_each_user_within_their_own_rows(planted):
    """Order 'none': each user's events are permuted (seeded) in the rows they occupy; 'time' is left alone."""
    unordered = _sorted_by_item_id(planted)
    shuffled = in_reveal_order(unordered, seed=3)
    before, after = unordered.interactions, shuffled.interactions
    assert after["user_id"].tolist() == before["user_id"].tolist()  # every row slot keeps its user
    assert sorted(map(tuple, after[["user_id", "item_id", "event"]].to_numpy())) == sorted(
        map(tuple, before[["user_id", "item_id", "event"]].to_numpy()))
    assert (after["item_id"].to_numpy() != before["item_id"].to_numpy()).mean() > 0.5
    assert after.equals(in_reveal_order(unordered, seed=3).interactions)
    assert not after.equals(in_reveal_order(unordered, seed=4).interactions)
    assert in_reveal_order(shuffled, seed=9) is shuffled  # once shuffled, nested callers agree
    assert in_reveal_order(planted, seed=3) is planted  # time order is the order


def test_reveal_rank_skips_impressions_and_the_short_horizon_takes_the_next_events():
    """Impressions are never revealed nor ranked; horizon N keeps the positives among the next N events."""
    events = ["view", "impression", "view", "purchase", "view", "purchase", "purchase"]
    interactions = pd.DataFrame({"user_id": "u", "item_id": [f"i{n}" for n in range(7)], "event": events,
                                 "timestamp": np.arange(7.0)})
    dataset = Dataset(users=pd.DataFrame({"user_id": ["u"]}), items=pd.DataFrame({"item_id": interactions["item_id"],
                                                                                   "title": "x"}),
                      interactions=interactions)
    rank = reveal_rank(dataset)
    assert rank.tolist() == [0, -1, 1, 2, 3, 4, 5]
    everyone, positive = np.ones(7, dtype=bool), relevant_mask(dataset)
    revealed, long_test = cold_user_masks(rank, everyone, positive, reveal=2)
    assert np.flatnonzero(revealed).tolist() == [0, 2]  # the impression between them is not revealed
    assert np.flatnonzero(long_test).tolist() == [3, 5, 6]
    _, short_test = cold_user_masks(rank, everyone, positive, reveal=2, horizon=2)
    assert np.flatnonzero(short_test).tolist() == [3]  # next two events: the purchase and a view
    with pytest.raises(ValueError, match="positive number"):
        cold_user_masks(rank, everyone, positive, reveal=2, horizon=0)


class AfterLastIdStrategy(PopularityStrategy):
    """Popularity, restricted to items whose id sorts after the last revealed one: knows file order, not taste."""

    key = "after_last_id"

    def _score_batch(self, contexts):
        scores = super()._score_batch(contexts)
        for row, context in enumerate(contexts):
            if context.events:
                last = max(event.item_id for event in context.events)
                scores[row, self.item_ids <= last] -= 1e6
        return scores


def test_random_reveal_removes_the_file_order_leak():
    """Revealing the lowest ids first lets a taste-blind strategy beat popularity; the seeded random reveal does not."""
    unordered = _sorted_by_item_id(planted_dataset(seed=1, n_users=400))
    as_if_time = Dataset(users=unordered.users, items=unordered.items, interactions=unordered.interactions,
                         meta={"order": "time"})

    def lift(dataset):
        rows = evaluate(dataset, ["popularity", "after_last_id"], reveal=(3,), folds=2, positive_threshold=4,
                        progress=False, host_strategies={"after_last_id": "tests.test_evaluation.AfterLastIdStrategy"})
        ndcg = {row["strategy"]: row["ndcg"] for row in rows if row["regime"] == "all"}
        return ndcg["after_last_id"] / ndcg["popularity"]

    assert lift(as_if_time) > 1.2
    assert lift(unordered) < 1.0


def test_short_horizon_rows_sit_beside_the_long_ones(planted):
    """horizons=(None, 2) scores each fit twice; the short horizon has fewer relevant items per user."""
    rows = evaluate(planted, ["popularity"], reveal=(1,), folds=2, positive_threshold=4, progress=False,
                    horizons=(None, 2))
    headline = {row["horizon"]: row for row in rows if row["regime"] == "all"}
    assert set(headline) == {None, 2}
    assert headline[2]["users"] <= headline[None]["users"]
    assert headline[2]["recall"] > headline[None]["recall"]  # two events' positives are easier to recall than all
    with pytest.raises(ValueError, match="new-user protocol only"):
        evaluate(planted, ["popularity"], protocol="warm", horizons=(None, 2), progress=False)


# --- runner ------------------------------------------------------------------------------------------
def test_runner_finds_the_planted_structure(planted):
    """On planted data segment popularity beats global popularity at reveal 0, and item-kNN gains from events."""
    rows = evaluate(planted, ["popularity", "segment_popularity", "item_knn"], reveal=(0, 3), folds=2,
                    positive_threshold=4, progress=False)
    headline = {(r["strategy"], r["reveal"]): r for r in rows if r["regime"] == "all"}
    assert headline[("segment_popularity", 0)]["ndcg"] > 1.5 * headline[("popularity", 0)]["ndcg"]
    assert headline[("item_knn", 3)]["ndcg"] > 1.5 * headline[("item_knn", 0)]["ndcg"]
    for row in headline.values():
        assert 0 < row["users"] <= 160 and 0 <= row["ndcg"] <= 1 and row["fit_seconds"] > 0


def test_runner_never_recommends_revealed_items(planted, monkeypatch):
    """Revealed items are masked: a strategy that scores them highest still never returns them."""
    from recommender.evaluation import runner

    captured = []
    original = runner.score_top_k

    def spy(strategy, contexts, known, k, candidates=None, batch_size=512):
        top = original(strategy, contexts, known, k, candidates, batch_size)
        captured.append((known, top))
        return top

    monkeypatch.setattr(runner, "score_top_k", spy)
    evaluate(planted, ["item_knn"], reveal=(5,), folds=2, positive_threshold=4, progress=False)
    for known, top in captured:
        rows = np.repeat(np.arange(top.shape[0]), top.shape[1])
        assert not np.asarray(known[rows, top.ravel()]).any()


def test_runner_rejects_unknown_protocol(planted):
    """An unknown protocol is a ValueError naming the known ones."""
    with pytest.raises(ValueError, match="new-user"):
        evaluate(planted, ["popularity"], protocol="sideways", progress=False)


# --- command contract ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bundle(tmp_path_factory, planted):
    directory = tmp_path_factory.mktemp("bundle")
    planted.write_bundle(directory)
    return directory


def test_command_writes_the_json_contract(bundle, tmp_path, capsys):
    """recommender_evaluate prints a table and writes the documented JSON keys, one row per strategy × reveal."""
    out = tmp_path / "out.json"
    call_command("recommender_evaluate", str(bundle), "--protocol", "new-user", "--reveal", "0,1", "--folds", "2",
                 "--k", "10", "--positive-threshold", "4", "--strategies", "popularity,segment_popularity",
                 "--seed", "0", "--json", str(out), "--no-progress")
    report = json.loads(out.read_text())
    assert report["protocol"] == "new-user" and report["k"] == 10 and report["dataset"]
    assert len(report["results"]) == 4
    for row in report["results"]:
        assert set(row) == {"strategy", "reveal", "horizon", "ndcg", "recall", "precision", "hr", "mrr", "coverage",
                            "users", "fit_seconds"}
        assert row["horizon"] is None
    assert report["order"] == "time" and report["horizon"] is None
    assert {(r["strategy"], r["reveal"]) for r in report["results"]} == {
        ("popularity", 0), ("popularity", 1), ("segment_popularity", 0), ("segment_popularity", 1)}
    printed = capsys.readouterr().out
    assert "segment_popularity" in printed and "ndcg@10" in printed


def test_command_horizon_reports_both_horizons(bundle, tmp_path, capsys):
    """--horizon N adds the short horizon beside the long one, in the table and the JSON."""
    out = tmp_path / "short.json"
    call_command("recommender_evaluate", str(bundle), "--reveal", "1", "--folds", "2", "--positive-threshold", "4",
                 "--strategies", "popularity", "--horizon", "3", "--json", str(out), "--no-progress")
    report = json.loads(out.read_text())
    assert report["horizon"] == 3
    assert sorted((row["horizon"] is None, row["reveal"]) for row in report["results"]) == [(False, 1), (True, 1)]
    printed = capsys.readouterr().out
    assert "next 3" in printed and "long" in printed
    with pytest.raises(CommandError, match="new-user protocol only"):
        call_command("recommender_evaluate", str(bundle), "--protocol", "warm", "--horizon", "3", "--no-progress")
    with pytest.raises(CommandError, match="positive number"):
        call_command("recommender_evaluate", str(bundle), "--horizon", "0", "--no-progress")


def test_command_order_override_is_reported(bundle, tmp_path, capsys):
    """--order none overrides the bundle's manifest, says so, and lands in the JSON."""
    out = tmp_path / "order.json"
    call_command("recommender_evaluate", str(bundle), "--reveal", "1", "--folds", "2", "--strategies", "popularity",
                 "--order", "none", "--json", str(out), "--no-progress")
    assert json.loads(out.read_text())["order"] == "none"
    assert "Event order: none (--order); few-shot protocols reveal a seeded random order" in capsys.readouterr().out


def test_command_new_item_protocol(bundle, tmp_path):
    """--protocol new-item with --holdout-items ranks held-out items and reports them."""
    out = tmp_path / "items.json"
    call_command("recommender_evaluate", str(bundle), "--protocol", "new-item", "--holdout-items", "0.2",
                 "--new-items", str(_new_items_file(tmp_path, bundle)), "--strategies", "item_knn",
                 "--positive-threshold", "4", "--json", str(out), "--no-progress")
    report = json.loads(out.read_text())
    assert report["protocol"] == "new-item" and report["results"][0]["users"] > 0


def _new_items_file(tmp_path, bundle):
    import pandas as pd

    items = pd.read_csv(bundle / "interactions.csv", dtype=str)["item_id"].drop_duplicates().head(10)
    path = tmp_path / "new_items.csv"
    items.to_frame("item_id").to_csv(path, index=False)
    return path


def test_command_unknown_strategy_is_a_clear_error(bundle):
    """An unknown key names itself and the known ones."""
    with pytest.raises(CommandError, match="nonsense"):
        call_command("recommender_evaluate", str(bundle), "--strategies", "popularity,nonsense", "--no-progress")


@override_settings(RECOMMENDER={"STRATEGIES": {"broken": "recommender.strategies.no_such_module.Strategy"}})
def test_command_strategy_that_fails_to_import(bundle):
    """A registered strategy whose module is missing is a CommandError naming the key."""
    with pytest.raises(CommandError, match="'broken'"):
        call_command("recommender_evaluate", str(bundle), "--strategies", "broken", "--no-progress")


def test_command_missing_bundle(tmp_path):
    """A path that is not a bundle directory is a CommandError saying what to pass."""
    with pytest.raises(CommandError, match="not a directory"):
        call_command("recommender_evaluate", str(tmp_path / "absent"), "--no-progress")
