"""The contract test suite every strategy runs (see docs/architecture.md; implicit's test mixin).

Use it by subclassing in a pytest module::

    from recommender.testing.contract import StrategyContract

    class TestMyStrategy(StrategyContract):
        strategy_key = "my_strategy"          # or strategy_class = MyStrategy
        strategy_params = {"epochs": 2}       # small, fast settings
        uses_profile = True                   # claims: a profile alone finds the segment
        uses_events = True                    # claims: a session's events find their category

Each class fits its strategy once (class-scoped fixtures) on ``planted_dataset`` and then
checks the contract: fit returns self; ``recommend`` gives ``k`` distinct items with finite
scores and one reason each; the planted answer is found (for what the strategy claims to
use); the same seed gives the same scores; save/load keeps them; unseen users, sessions,
unknown item ids and products added after training never crash; ``exclude`` and ``k`` are
respected; the candidate filter (``allowed``, ``exclude``) holds; ``similar_items`` never returns
the item itself and answers an unknown item with an empty list; ``score_batch`` has the right
shape.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import numpy as np
import pytest

from ..conf import settings
from ..strategies.base import Context, Event, Recommendations, Strategy
from ..strategies.registry import create_strategy
from .factories import new_items_frame, planted_dataset, popular_head_datasets


class StrategyContract:
    """Mixin of contract tests; subclasses set ``strategy_key`` (or ``strategy_class``)."""

    strategy_key: ClassVar[str] = ""
    strategy_class: ClassVar[type[Strategy] | None] = None
    strategy_params: ClassVar[dict[str, Any]] = {}
    dataset_params: ClassVar[dict[str, Any]] = {}
    # What the strategy claims to use; each claim switches on its known-answer test.
    uses_profile: ClassVar[bool] = False
    uses_events: ClassVar[bool] = False
    uses_sequence: ClassVar[bool] = False
    uses_content: ClassVar[bool] = False
    # Claims to learn the popularity prior: new visitors (no events) score at least plain
    # popularity's NDCG@10 on the planted best-seller shops (``popular_head_datasets``).
    subsumes_popularity: ClassVar[bool] = False
    # Extra params for that check only (say, a sampled softmax on the small planted catalogue).
    popularity_check_params: ClassVar[dict[str, Any]] = {}
    known_answer_k: ClassVar[int] = 10
    # Share of the top ``known_answer_k`` that must come from the planted category.
    known_answer_share: ClassVar[float] = 0.7

    # --- construction ------------------------------------------------------------------------
    @classmethod
    def make_strategy(cls, **overrides) -> Strategy:
        """A new, unfitted strategy with the class's params (plus ``overrides``)."""
        params = {**cls.strategy_params, **overrides}
        if cls.strategy_class is not None:
            return cls.strategy_class(**params)
        return create_strategy(cls.strategy_key, settings.STRATEGIES, **params)

    @pytest.fixture(scope="class")
    @classmethod
    def planted(cls):
        """The planted synthetic dataset, built once per class."""
        return planted_dataset(**cls.dataset_params)

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls, planted):
        """The strategy fitted once per class on the planted dataset."""
        strategy = cls.make_strategy()
        returned = strategy.fit(planted)
        assert returned is strategy, "fit() must return self"
        return strategy

    @pytest.fixture(scope="class")
    @classmethod
    def probe_contexts(cls, planted) -> list[Context]:
        """A spread of contexts: empty, profile only, events only, both, unknown ids."""
        meta = planted.meta
        garden = meta["category_items"]["garden"]
        books = meta["category_items"]["books"]
        return [
            Context(),
            Context(profile=meta["segment_profiles"]["kitchen"]),
            Context(profile={"age": 71, "gender": "x", "country": "nowhere", "favourite": "blue"}),
            Context(events=(Event(garden[0], "view"), Event(garden[1], "cart"))),
            Context(profile=meta["segment_profiles"]["sports"], events=(Event(books[2], "purchase"),)),
            Context(events=(Event("no-such-item", "view"), Event(books[0], "view"))),
            Context(product_id=garden[3]),
        ]

    # --- basic contract ---------------------------------------------------------------------------
    def test_fit_returns_self_and_recommends_k_distinct_items(self, fitted, planted):
        """recommend() gives k distinct known items, finite descending scores and one reason each."""
        recommendations = fitted.recommend(Context(profile=planted.meta["segment_profiles"]["garden"]), k=10)
        assert isinstance(recommendations, Recommendations)
        assert len(recommendations.item_ids) == 10
        assert len(set(recommendations.item_ids)) == 10
        assert set(recommendations.item_ids) <= set(planted.item_ids)
        assert np.all(np.isfinite(recommendations.scores))
        assert np.all(np.diff(recommendations.scores) <= 0), "scores must be ranked best first"
        assert len(recommendations.reasons) == 10
        assert all(isinstance(reason, str) and reason.strip() for reason in recommendations.reasons)

    def test_score_batch_shape_and_dtype(self, fitted, probe_contexts, planted):
        """score_batch returns float32 (n_contexts, n_items) with no NaN."""
        scores = fitted.score_batch(probe_contexts)
        assert scores.shape == (len(probe_contexts), planted.n_items)
        assert scores.dtype == np.float32
        assert not np.isnan(scores).any()
        assert fitted.score_batch([]).shape == (0, planted.n_items)

    def test_batch_scores_match_single_scores(self, fitted, probe_contexts):
        """Scoring contexts together gives the same scores as one at a time."""
        together = fitted.score_batch(probe_contexts)
        alone = np.vstack([fitted.score_batch([context]) for context in probe_contexts])
        np.testing.assert_allclose(together, alone, rtol=1e-4, atol=1e-5)

    def test_empty_context(self, fitted):
        """An empty context (no profile, no events) still yields k recommendations."""
        for context in (Context(), None):
            assert len(fitted.recommend(context, k=5).item_ids) == 5

    @pytest.mark.parametrize("bad_k", [0, -1, 2.5, "3"])
    def test_k_validation(self, fitted, bad_k):
        """k must be a positive integer: anything else is a ValueError."""
        with pytest.raises(ValueError):
            fitted.recommend(Context(), k=bad_k)

    def test_exclude_is_respected(self, fitted, planted):
        """Excluded items never appear, and the list is refilled to k."""
        context = Context(profile=planted.meta["segment_profiles"]["books"])
        first = fitted.recommend(context, k=10)
        excluded = first.item_ids[:5] + ["no-such-item"]
        second = fitted.recommend(context, k=10, exclude=excluded)
        assert not set(second.item_ids) & set(excluded)
        assert len(second.item_ids) == 10

    def test_allowed_items_restrict_the_candidates(self, fitted, planted):
        """With ``allowed``, only those items come back (ids the strategy does not know are ignored)."""
        context = Context(profile=planted.meta["segment_profiles"]["kitchen"])
        allowed = list(planted.item_ids[::7][:6]) + ["no-such-item"]
        recommendations = fitted.recommend(context, k=10, allowed=allowed)
        assert set(recommendations.item_ids) <= set(allowed) and len(recommendations.item_ids) == 6
        both = fitted.recommend(context, k=10, allowed=allowed, exclude=allowed[:2])
        assert set(both.item_ids) == set(allowed[2:6])
        assert np.all(np.diff(both.scores) <= 0)

    def test_similar_items_never_the_item_itself(self, fitted, planted):
        """similar_items gives up to k distinct other items, ranked, with a reason each, and keeps the filter."""
        item = planted.meta["category_items"]["sports"][2]
        similar = fitted.similar_items(item, k=8)
        assert 0 < len(similar.item_ids) <= 8 and len(set(similar.item_ids)) == len(similar.item_ids)
        assert item not in similar.item_ids
        assert np.all(np.isfinite(similar.scores)) and np.all(np.diff(similar.scores) <= 0)
        assert all(isinstance(reason, str) and reason.strip() for reason in similar.reasons)
        excluded = similar.item_ids[:2]
        assert not set(fitted.similar_items(item, k=8, exclude=excluded).item_ids) & set(excluded)
        allowed = list(planted.item_ids[1::5][:4])
        assert set(fitted.similar_items(item, k=8, allowed=allowed).item_ids) <= set(allowed) - {item}

    def test_similar_items_of_an_unknown_item_is_empty(self, fitted):
        """An item the strategy never saw has no similar items here (not an error): serving asks the next one."""
        similar = fitted.similar_items("no-such-item", k=5)
        assert similar.item_ids == [] and similar.reasons == []
        with pytest.raises(ValueError):
            fitted.similar_items("no-such-item", k=0)

    def test_reasons_are_worked_out_for_the_items_asked(self, fitted, planted):
        """reasons_at(indices) gives the same reasons as the full list, for just those items."""
        context = Context(profile=planted.meta["segment_profiles"]["garden"],
                          events=(Event(planted.meta["category_items"]["garden"][0], "view"),))
        indices = [4, 0, 2]
        assert fitted.recommend(context, k=6).reasons_at(indices) == [fitted.recommend(context, k=6).reasons[i]
                                                                      for i in indices]

    def test_not_fitted_is_a_clear_error(self):
        """Recommending before fit() raises NotFittedError."""
        from ..strategies.base import NotFittedError

        with pytest.raises(NotFittedError):
            self.make_strategy().recommend(Context(), k=3)

    # --- unseen users, sessions, items -----------------------------------------------------------
    def test_unseen_user_and_unknown_items(self, fitted):
        """A user id, profile values and event item ids never seen in training are served."""
        context = Context(
            profile={"age": 33, "gender": "f", "country": "atlantis", "region": "deep", "city": "blue"},
            events=(Event("unknown-1", "view"), Event("unknown-2", "purchase", dwell_seconds=3.0)),
            user_id="never-seen-user",
        )
        recommendations = fitted.recommend(context, k=5)
        assert len(recommendations.item_ids) == 5
        assert np.all(np.isfinite(recommendations.scores))

    def test_unknown_event_ids_are_ignored(self, fitted, planted):
        """Events naming unknown item ids change nothing next to the known events."""
        garden = planted.meta["category_items"]["garden"]
        known = Context(events=(Event(garden[0], "view"),))
        padded = Context(events=(Event("ghost-a", "view"), Event(garden[0], "view"), Event("ghost-b", "cart")))
        np.testing.assert_allclose(fitted.score(known), fitted.score(padded), rtol=1e-4, atol=1e-5)

    def test_add_items_then_recommend(self, fitted, planted):
        """A product added after training gets a score (never NaN) and recommend still works."""
        strategy = copy.deepcopy(fitted)
        added = strategy.add_items(new_items_frame(["brand-new-1", "brand-new-2"], category="garden"))
        assert added == 2
        assert strategy.n_items == planted.n_items + 2
        context = Context(
            profile=planted.meta["segment_profiles"]["garden"],
            events=(Event(planted.meta["category_items"]["garden"][0], "view"),),
        )
        scores = strategy.score(context)
        assert scores.shape == (planted.n_items + 2,)
        assert not np.isnan(scores).any()
        assert len(strategy.recommend(context, k=10).item_ids) == 10
        assert strategy.add_items(new_items_frame(["brand-new-1"])) == 0

    # --- reproducibility and persistence ---------------------------------------------------------
    def test_same_seed_same_scores(self, fitted, planted, probe_contexts):
        """Refitting with the same seed gives identical scores."""
        refitted = self.make_strategy().fit(planted)
        np.testing.assert_array_equal(fitted.score_batch(probe_contexts), refitted.score_batch(probe_contexts))

    def test_save_load_round_trip(self, fitted, probe_contexts, tmp_path):
        """A saved and reloaded strategy gives identical scores and recommendations."""
        fitted.save(tmp_path / "artifact")
        loaded = Strategy.load(tmp_path / "artifact")
        assert type(loaded) is type(fitted)
        assert list(loaded.item_ids) == list(fitted.item_ids)
        np.testing.assert_array_equal(fitted.score_batch(probe_contexts), loaded.score_batch(probe_contexts))
        context = probe_contexts[4]
        assert loaded.recommend(context, k=5).item_ids == fitted.recommend(context, k=5).item_ids

    # --- known answers -----------------------------------------------------------------------------
    def _category_share(self, recommendations: Recommendations, planted, category: str) -> float:
        item_category = planted.meta["item_category"]
        return float(np.mean([item_category.get(item) == category for item in recommendations.item_ids]))

    def test_known_answer_profile(self, fitted, planted):
        """A cold user of each segment, with no events, gets mostly their segment's category."""
        if not self.uses_profile:
            pytest.skip(f"{self.strategy_key or self.strategy_class} does not claim to use profiles")
        for category, profile in planted.meta["segment_profiles"].items():
            recommendations = fitted.recommend(Context(profile=profile), k=self.known_answer_k)
            share = self._category_share(recommendations, planted, category)
            assert share >= self.known_answer_share, (category, share, recommendations.item_ids)

    def test_known_answer_events(self, fitted, planted):
        """A session with events from one category gets mostly that category."""
        if not self.uses_events:
            pytest.skip(f"{self.strategy_key or self.strategy_class} does not claim to use events")
        next_item = planted.meta["next_item"]
        for category, items in planted.meta["category_items"].items():
            first = items[1]
            events = (Event(first, "view"), Event(next_item[first], "view"), Event(items[4], "cart"))
            recommendations = fitted.recommend(Context(events=events), k=self.known_answer_k,
                                               exclude=[event.item_id for event in events])
            share = self._category_share(recommendations, planted, category)
            assert share >= self.known_answer_share, (category, share, recommendations.item_ids)

    def test_known_answer_next_item(self, fitted, planted):
        """After viewing item i, the planted next item of i is in the top k."""
        if not self.uses_sequence:
            pytest.skip(f"{self.strategy_key or self.strategy_class} does not claim to use event order")
        next_item = planted.meta["next_item"]
        probes = [items[3] for items in planted.meta["category_items"].values()]
        hits = 0
        for item in probes:
            recommendations = fitted.recommend(Context(events=(Event(item, "view"),)), k=self.known_answer_k,
                                               exclude=[item])
            hits += next_item[item] in recommendations.item_ids
        assert hits >= len(probes) - 1, f"planted next item found for {hits} of {len(probes)} probes"

    def test_known_answer_new_items(self, fitted, planted):
        """New (never interacted) products of the session's category outrank other new products."""
        if not self.uses_content:
            pytest.skip(f"{self.strategy_key or self.strategy_class} does not claim to use item content")
        item_category = planted.meta["item_category"]
        new_items = planted.meta["new_item_ids"]
        new_positions = fitted.item_positions(new_items)
        for category, items in planted.meta["category_items"].items():
            events = tuple(Event(item, "view") for item in items[:3])
            scores = fitted.score(Context(events=events))[new_positions]
            own = np.array([item_category[item] == category for item in new_items])
            assert np.all(np.isfinite(scores[own])), "new products must get finite scores"
            assert scores[own].min() > scores[~own].max(), (category, scores)

    # --- the popularity prior ------------------------------------------------------------------------
    # On the shop without profiles popularity is the most anyone can know about a new visitor: a
    # model that learned it ties, give or take the noise of its validation split.
    POPULARITY_FLOOR = {"profiles": 1.0, "anonymous": 0.98}

    def test_new_visitors_score_at_least_popularity(self):
        """At zero events, NDCG@10 ≥ plain popularity's on planted best-seller shops (evaluator, 2 folds)."""
        if not self.subsumes_popularity:
            pytest.skip(f"{self.strategy_key or self.strategy_class} does not claim to learn the popularity prior")
        from ..evaluation.runner import evaluate

        key = self.strategy_key or self.strategy_class.key
        host = dict(settings.STRATEGIES)
        if self.strategy_class is not None:
            host[key] = f"{self.strategy_class.__module__}.{self.strategy_class.__qualname__}"
        params = {**self.strategy_params, **self.popularity_check_params}
        for name, dataset in popular_head_datasets().items():
            rows = evaluate(dataset, ["popularity", key], reveal=(0,), folds=2, progress=False,
                            strategy_params={key: params}, host_strategies=host)
            ndcg = {row["strategy"]: row["ndcg"] for row in rows if row["regime"] == "all"}
            assert ndcg[key] >= self.POPULARITY_FLOOR[name] * ndcg["popularity"], (name, ndcg)
