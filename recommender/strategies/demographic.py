"""Collaborative filtering on user attributes: what warm users with similar profiles liked.

A new visitor's profile (age band, gender, location hierarchy, extra attributes) is encoded
with ``ProfileEncoder``; warm users are compared by cosine on the same (idf-weighted) encoding;
their interactions are aggregated, weighted by similarity raised to a power (a soft nearest-
neighbour cut), and shrunk toward segment popularity. Revealed session events are folded in
item-kNN style, more strongly the more of them there are.

Warm users with identical encoded profiles are merged before scoring, so the cost of a batch
is (contexts × distinct profiles) + one sparse product, not a loop over users × items.

The module also holds ``cosine_user_similarity`` and ``predict_ratings``: the seed's textbook
formulas on a small dense rating table (see ``tests/test_worked_example.py``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..data.dataset import Dataset
from ..data.features import describe_segment
from .base import Context, Strategy, top_k_batch
from .caching import LRUCache, profile_key
from .knn import (EVENT_VERBS, dense_block, event_query_matrix, event_query_row, item_cosine_similarity,
                  weighted_row_sum)
from .popularity import SegmentPopularityStrategy, interaction_weights

DESCRIBED_KEYS = ("gender", "age_band", "city", "region", "country")


# --- the seed's worked-example formulas ------------------------------------------------------------
def cosine_user_similarity(ratings: np.ndarray) -> np.ndarray:
    """Cosine similarity between the rows of a dense user × item rating table.

    Unrated cells are 0 and take part in the norms (cosine over full rows, zeros included),
    which is the seed's formula ``sim(u, v) = r_u · r_v / (|r_u| |r_v|)``.
    """
    ratings = np.asarray(ratings, dtype=np.float64)
    norms = np.linalg.norm(ratings, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        similarity = (ratings @ ratings.T) / np.outer(norms, norms)
    return np.nan_to_num(similarity)


def predict_ratings(ratings: np.ndarray, similarity: np.ndarray | None = None) -> np.ndarray:
    """Similarity-weighted rating prediction for every (user, item) cell.

    ``pred(u, i) = Σ_v sim(u, v) r_vi / Σ_v |sim(u, v)|`` over the other users ``v`` who rated
    ``i`` (``r_vi > 0``); NaN where no other user rated the item.
    """
    ratings = np.asarray(ratings, dtype=np.float64)
    similarity = cosine_user_similarity(ratings) if similarity is None else np.array(similarity, dtype=np.float64)
    np.fill_diagonal(similarity, 0.0)  # a user is not their own neighbour
    rated = (ratings > 0).astype(np.float64)
    numerator = similarity @ ratings
    denominator = np.abs(similarity) @ rated
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / denominator, np.nan)


# --- the strategy ------------------------------------------------------------------------------------
def _row_normalise(matrix: sp.csr_matrix) -> sp.csr_matrix:
    totals = np.asarray(matrix.sum(axis=1)).ravel()
    return (sp.diags(1.0 / np.where(totals > 0, totals, 1.0)) @ matrix).tocsr()


def _identical_row_codes(matrix: sp.csr_matrix) -> tuple[np.ndarray, int]:
    """Code of each row's sparsity pattern (same stored columns, same code), in order of first
    appearance, and the number of distinct patterns; vectorised over rows."""
    lengths = np.diff(matrix.indptr)
    width = int(lengths.max()) if len(lengths) else 0
    padded = np.full((matrix.shape[0], width + 1), -1, dtype=np.int64)
    padded[:, 0] = lengths
    positions = np.arange(matrix.nnz) - np.repeat(matrix.indptr[:-1], lengths)
    padded[np.repeat(np.arange(matrix.shape[0]), lengths), 1 + positions] = matrix.indices
    _, first_rows, inverse = np.unique(padded, axis=0, return_index=True, return_inverse=True)
    order_of_appearance = np.empty(len(first_rows), dtype=np.int64)
    order_of_appearance[np.argsort(first_rows, kind="stable")] = np.arange(len(first_rows))
    return order_of_appearance[inverse.ravel()], len(first_rows)


def _l2_normalise(matrix: sp.csr_matrix) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    return (sp.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ matrix).tocsr()


class DemographicStrategy(Strategy):
    """Similar warm users by profile, similarity-weighted, shrunk toward segment popularity.

    Params
    ------
    idf
        Weight profile features by inverse frequency (a rare shared city says more than a
        shared gender).
    power
        Similarities are raised to this power before weighting (higher: fewer, closer users).
    shrinkage
        Pseudo-users of segment popularity added to the neighbours' aggregate.
    event_pseudo_count
        Revealed events get weight ``n / (n + event_pseudo_count)`` against the profile part.
    weighting, positive_threshold
        Interaction weights (see ``popularity.interaction_weights``).
    neighbours
        Item neighbours kept for folding in revealed events.
    event_weights
        Weight of each event type, for training and for a context's events (None:
        ``DEFAULT_EVENT_WEIGHTS``); training passes the shop's ``EVENT_WEIGHTS``.
    auto_tune
        Choose ``power`` and ``shrinkage`` on a validation split of the training users (the
        inner segment popularity tunes itself too).
    """

    key = "demographic"
    label = "Popular with shoppers like you"
    default_params = {
        "idf": True,
        "power": 3.0,
        "shrinkage": 10.0,
        "event_pseudo_count": 1.0,
        "weighting": "events",
        "positive_threshold": None,
        "neighbours": 50,
        "auto_tune": True,
        "event_weights": None,
    }

    def _fit(self, dataset: Dataset) -> None:
        chosen = {"power": float(self.params["power"]), "shrinkage": float(self.params["shrinkage"])}
        self._full_data_prior = None
        if self.params["auto_tune"]:
            chosen = self._tune(dataset, chosen)
        self.tuned_ = chosen
        self._build(dataset, segment=self._full_data_prior)
        del self._full_data_prior

    def _build(self, dataset: Dataset, segment_params: dict | None = None, with_events: bool = True,
               segment: SegmentPopularityStrategy | None = None) -> None:
        """Encoder, merged warm profiles and their item distributions, segment prior, item kNN.

        ``segment_params`` fixes the segment prior's settings (no inner tuning), as used while
        tuning this strategy's own params; ``segment`` is an already fitted prior to reuse.
        """
        self.segment_ = segment or SegmentPopularityStrategy(
            **(segment_params or {"weighting": self.params["weighting"], "auto_tune": self.params["auto_tune"]}),
            positive_threshold=self.params["positive_threshold"], event_weights=self.params["event_weights"],
            seed=self.seed,
        ).fit(dataset)
        self.encoder_ = self.segment_.encoder_
        # The prior already tokenised the training users: encode that table.
        tokens = getattr(self.segment_, "training_token_table_", None)
        if tokens is None or not tokens.index.equals(dataset.users.index):
            tokens = self.encoder_.token_table(dataset.users)
        profiles = self.encoder_._transform_table(tokens.reindex(pd.Index(dataset.user_ids, dtype=object)))
        self.segment_.training_token_table_ = None
        document_frequency = np.bincount(profiles.indices, minlength=self.encoder_.n_features)
        self.feature_weights_ = (
            np.log((1.0 + profiles.shape[0]) / (1.0 + document_frequency)) + 1.0 if self.params["idf"]
            else np.ones(self.encoder_.n_features)
        ).astype(np.float32)
        weights = interaction_weights(dataset, self.params["weighting"], self.params["positive_threshold"],
                                      event_weights=self.params["event_weights"])
        user_item = dataset.interaction_matrix(weights=weights.astype(np.float32))
        user_item.data = np.log1p(user_item.data)
        if with_events:
            self.similarity_ = item_cosine_similarity(user_item, self.params["neighbours"])
        # Each warm user with a known profile contributes one distribution over items.
        warm = (np.diff(user_item.indptr) > 0) & (np.diff(profiles.indptr) > 0)
        profiles, user_item = profiles[warm], _row_normalise(user_item[warm])
        codes, n_profiles = _identical_row_codes(profiles)
        first_rows = np.unique(codes, return_index=True)[1]
        merge = sp.csr_matrix((np.ones(len(codes), dtype=np.float32), (codes, np.arange(len(codes)))),
                              shape=(n_profiles, len(codes)))
        self.profile_vectors_ = _l2_normalise(profiles[first_rows] @ sp.diags(self.feature_weights_)).astype(np.float32)
        self.profile_items_ = (merge @ user_item).tocsr().astype(np.float32)
        self.profile_counts_ = np.bincount(codes, minlength=n_profiles).astype(np.float32)
        self.titles_ = dataset.items["title"].to_numpy(dtype=object)

    def _tune(self, dataset: Dataset, chosen: dict) -> dict:
        """Choose power and shrinkage on a zero-shot validation split of the training users."""
        from ..evaluation.metrics import ranking_metrics
        from ..evaluation.protocols import cold_start_validation

        train, profiles, relevant = cold_start_validation(
            dataset, seed=self.seed, positive_threshold=self.params["positive_threshold"], max_users=1000)
        if relevant.shape[0] == 0 or not len(train.interactions):
            return chosen
        # The segment prior is tuned once on the whole training data, then held fixed here.
        prior_strategy = SegmentPopularityStrategy(
            weighting=self.params["weighting"], positive_threshold=self.params["positive_threshold"],
            auto_tune=self.params["auto_tune"], event_weights=self.params["event_weights"], seed=self.seed).fit(dataset)
        self._full_data_prior = prior_strategy
        fixed = {key: prior_strategy.tuned_[key] for key in ("levels", "shrinkage", "weighting")}
        fixed.update(auto_tune=False, half_life_days=(prior_strategy.tuned_["half_life_seconds"] or 0) / 86400.0 or None)
        self._build(train, segment_params=fixed, with_events=False)
        grid = [(power, shrinkage) for power in (1.0, 3.0, 10.0) for shrinkage in (0.0, 3.0, 30.0, 300.0)]
        ndcg_sums = np.zeros(len(grid))
        contexts = [Context(profile=record) for record in profiles.reset_index().to_dict("records")]
        for start in range(0, len(contexts), 500):
            similarity, prior = self._profile_parts(contexts[start:start + 500])
            for power in sorted({power for power, _ in grid}):
                aggregate, mass = self._neighbour_aggregate(similarity, power)
                for number, (grid_power, shrinkage) in enumerate(grid):
                    if grid_power == power:
                        top = top_k_batch(self._shrink(aggregate, mass, prior, shrinkage), 10)
                        ndcg_sums[number] += np.nansum(ranking_metrics(top, relevant[start:start + 500], 10)["ndcg"])
        best = int(np.argmax(ndcg_sums))
        return {"power": grid[best][0], "shrinkage": grid[best][1], "validation_ndcg": float(ndcg_sums[best] / len(contexts))}

    # --- scoring --------------------------------------------------------------------------------------
    def _profile_parts(self, contexts: Sequence[Context]) -> tuple[np.ndarray, np.ndarray]:
        """Cosine of each context to each merged warm profile, and the segment prior (rows sum to 1)."""
        # One token table serves both the encoding and the segment prior.
        tokens = self.segment_._context_tokens(contexts)
        queries = self.encoder_._transform_table(tokens)
        queries = _l2_normalise(queries @ sp.diags(self.feature_weights_)).astype(np.float32)
        # sparse @ dense: the similarity is dense (most profiles share a country or a band).
        similarity = np.asarray(self.profile_vectors_ @ queries.T.toarray()).T
        prior = self.segment_.score_token_table(tokens).astype(np.float64)
        return similarity, prior / prior.sum(axis=1, keepdims=True)

    def _neighbour_aggregate(self, similarity: np.ndarray, power: float) -> tuple[np.ndarray, np.ndarray]:
        """Similarity-weighted sum of warm users' item distributions, and the total weight."""
        # profile_items_ already sums each merged profile's users, so weight it per profile;
        # the mass counts every user behind a profile.
        closeness = np.power(np.clip(similarity, 0.0, None), power)
        # Row-major like the prior, so that blending them runs over contiguous memory.
        aggregate = np.ascontiguousarray((self.profile_items_.T @ closeness.T).T)
        return aggregate, (closeness @ self.profile_counts_)[:, None]

    @staticmethod
    def _shrink(aggregate: np.ndarray, mass: np.ndarray, prior: np.ndarray, shrinkage: float) -> np.ndarray:
        """``(aggregate + shrinkage * prior) / (mass + shrinkage)``; the prior where both are 0."""
        # In place, one temporary of contexts × items (same arithmetic as the formula above).
        blended = shrinkage * prior
        blended += aggregate
        with np.errstate(divide="ignore", invalid="ignore"):
            blended /= mass + shrinkage
        empty = np.flatnonzero((mass + shrinkage <= 0).ravel())
        if empty.size:
            blended[empty] = prior[empty]
        return blended.astype(np.float32)

    def _combine(self, similarity: np.ndarray, prior: np.ndarray, power: float, shrinkage: float) -> np.ndarray:
        """Similarity-weighted distribution of warm users' items, shrunk toward the prior."""
        aggregate, mass = self._neighbour_aggregate(similarity, power)
        return self._shrink(aggregate, mass, prior, shrinkage)

    def _profile_scores(self, contexts: Sequence[Context]) -> np.ndarray:
        """Distribution over items from similar warm users, shrunk toward segment popularity."""
        similarity, prior = self._profile_parts(contexts)
        return self._combine(similarity, prior, self.tuned_["power"], self.tuned_["shrinkage"])

    def _profile_row(self, context: Context) -> np.ndarray:
        """``_profile_scores`` of one context (1, n_items), cached per encoded profile.

        The neighbour aggregation reads every merged profile's items; many visitors share a
        profile (same age band, gender and place), so it is done once per distinct one.
        """
        cache = self.__dict__.get("_profile_rows")
        if cache is None:
            cache = self.__dict__["_profile_rows"] = LRUCache.for_rows(len(self.item_ids), megabytes=self.score_cache_mb)
        tokens = self.encoder_.tokens(context.profile)
        return cache.get_or_compute(profile_key(tokens), lambda: self._single_profile_scores(context.profile, tokens))

    def _single_profile_scores(self, profile, tokens: dict) -> np.ndarray:
        """``_profile_scores`` of one profile as vector operations (no sparse matrix built), (1, n_items)."""
        columns = [self.encoder_.vocabulary_.get(pair) for pair in tokens.items()]
        columns = np.array([column for column in columns if column is not None], dtype=np.int64)
        values = self.feature_weights_[columns].astype(np.float32)
        norm = np.sqrt((values * values).sum(dtype=np.float32))
        query = np.zeros(self.encoder_.n_features, dtype=np.float32)
        query[columns] = values * (np.float32(1.0) / norm) if norm > 0 else values
        similarity = self.profile_vectors_ @ query
        prior = self.segment_.score_batch([Context(profile=profile)])[0].astype(np.float64)
        closeness = np.power(np.clip(similarity, 0.0, None), self.tuned_["power"])
        aggregate = self.profile_items_.T @ closeness
        mass = np.float32(closeness @ self.profile_counts_)
        return self._shrink(aggregate[None, :], np.full((1, 1), mass), (prior / prior.sum())[None, :],
                            self.tuned_["shrinkage"])

    def clear_score_cache(self) -> None:
        super().clear_score_cache()
        self.__dict__.pop("_profile_rows", None)

    def set_score_cache_size(self, megabytes: float) -> None:
        super().set_score_cache_size(megabytes)
        if getattr(self, "segment_", None) is not None:
            self.segment_.set_score_cache_size(megabytes)

    def _score_cache_key(self, context: Context):
        if (self.item_positions(context.event_item_ids) >= 0).any():
            return None
        return profile_key(self.encoder_.tokens(context.profile))

    def _score_batch(self, contexts: Sequence[Context]) -> np.ndarray:
        if len(contexts) == 1:
            return self._single_score(contexts[0])
        scores = self._profile_scores(contexts)
        query = event_query_matrix(contexts, self._item_index, event_weights=self.params["event_weights"])
        known_events = np.diff(query.indptr)
        if known_events.any():
            event_scores = (query @ self.similarity_).toarray()
            totals = event_scores.sum(axis=1, keepdims=True)
            event_share = (known_events / (known_events + self.params["event_pseudo_count"]))[:, None]
            event_share = np.where(totals > 0, event_share, 0.0)
            scores = (1 - event_share) * scores + event_share * event_scores / np.where(totals > 0, totals, 1.0)
        # Scaled so typical values are O(1) rather than O(1 / n_items).
        return (scores * len(self.item_ids)).astype(np.float32)

    def _single_score(self, context: Context) -> np.ndarray:
        """``_score_batch`` of one context: the cached profile row, events as a CSR row sum."""
        scores = self._profile_row(context)
        positions, weights = event_query_row(context, self._item_index, event_weights=self.params["event_weights"])
        if len(positions):
            event_scores = weighted_row_sum(self.similarity_, positions, weights)
            total = event_scores.sum()
            if total > 0:
                # float64, as the batch path's per-row shares make it
                event_share = np.float64(len(positions) / (len(positions) + self.params["event_pseudo_count"]))
                scores = (1 - event_share) * scores + event_share * (event_scores / total)[None, :]
        return (scores * len(self.item_ids)).astype(np.float32)

    def _explain(self, context: Context, item_positions: np.ndarray) -> list[str]:
        tokens = self.encoder_.tokens(context.profile)
        keys = [key for key in DESCRIBED_KEYS if tokens.get(key)]
        profile_reason = f"Popular with shoppers like you ({describe_segment(tokens, keys)})" if keys else "Popular with shoppers right now"
        event_positions = self.item_positions(context.event_item_ids)
        known = event_positions >= 0
        if not known.any() or not len(item_positions):
            return [profile_reason] * len(item_positions)
        events = [event for event, ok in zip(context.events, known) if ok]
        contributions = dense_block(self.similarity_, event_positions[known], np.asarray(item_positions))
        best = contributions.argmax(axis=0)
        return [
            f"Because you {EVENT_VERBS.get(events[row].event, 'viewed')} {self.titles_[event_positions[known][row]]}"
            if contributions[row, column] > 0 else profile_reason
            for column, row in enumerate(best)
        ]

    # --- new items, persistence ---------------------------------------------------------------------
    def _add_items(self, new_items: pd.DataFrame) -> None:
        n_items = len(self.item_ids)
        self.segment_.add_items(new_items)
        self.similarity_ = sp.csr_matrix(self.similarity_, copy=True)
        self.similarity_.resize((n_items, n_items))
        self.profile_items_ = sp.csr_matrix(self.profile_items_, copy=True)
        self.profile_items_.resize((self.profile_items_.shape[0], n_items))
        self.titles_ = np.concatenate([self.titles_, new_items["title"].to_numpy(dtype=object)])

    def _save_state(self, directory: Path) -> None:
        self.segment_.save(directory / "segment")
        sp.save_npz(directory / "similarity.npz", self.similarity_)
        sp.save_npz(directory / "profile_vectors.npz", self.profile_vectors_)
        sp.save_npz(directory / "profile_items.npz", self.profile_items_)
        np.save(directory / "profile_counts.npy", self.profile_counts_)
        np.save(directory / "feature_weights.npy", self.feature_weights_)
        np.save(directory / "titles.npy", self.titles_.astype(str))
        (directory / "tuned.json").write_text(json.dumps(self.tuned_))

    def _load_state(self, directory: Path) -> None:
        self.segment_ = Strategy.load(directory / "segment")
        self.encoder_ = self.segment_.encoder_
        self.similarity_ = sp.load_npz(directory / "similarity.npz").tocsr()
        self.profile_vectors_ = sp.load_npz(directory / "profile_vectors.npz").tocsr()
        self.profile_items_ = sp.load_npz(directory / "profile_items.npz").tocsr()
        self.profile_counts_ = np.load(directory / "profile_counts.npy")
        self.feature_weights_ = np.load(directory / "feature_weights.npy")
        self.titles_ = np.load(directory / "titles.npy").astype(object)
        self.tuned_ = json.loads((directory / "tuned.json").read_text())
