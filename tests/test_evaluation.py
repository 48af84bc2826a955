"""Metrics on hand-computed examples, protocols that never leak cold users, the runner and the command contract."""

import json
import math

import numpy as np
import pytest
import scipy.sparse as sp
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from recommender.evaluation.metrics import catalogue_coverage, ranking_metrics
from recommender.evaluation.protocols import cold_start_validation, new_item_split, new_user_splits, warm_split
from recommender.evaluation.runner import evaluate, regime_of
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
        assert set(row) == {"strategy", "reveal", "ndcg", "recall", "precision", "hr", "mrr", "coverage", "users",
                            "fit_seconds"}
    assert {(r["strategy"], r["reveal"]) for r in report["results"]} == {
        ("popularity", 0), ("popularity", 1), ("segment_popularity", 0), ("segment_popularity", 1)}
    printed = capsys.readouterr().out
    assert "segment_popularity" in printed and "ndcg@10" in printed


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
