"""The baselines: time-decayed global popularity and popularity within profile segments.

Both are deliberately strong: in cold start, "what people like you buy" is hard to beat, so
the weighting of events, the time decay, the segment keys and the shrinkage are chosen on a
zero-shot validation split of the *training* users when ``auto_tune`` is on (never on the
users being evaluated).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..data.dataset import Dataset
from ..data.features import LOCATION_LEVELS, ProfileEncoder, describe_segment, segment_of
from .base import Context, Strategy, top_k_batch

WEIGHTINGS = ("events", "positive", "count")
DEFAULT_LEVELS = (("gender", "age_band"), ("age_band",), ("gender",), ("country",))
TUNING_K = 10


def interaction_weights(
    dataset: Dataset, weighting: str = "events", positive_threshold: float | None = None,
    half_life_seconds: float | None = None,
) -> np.ndarray:
    """Weight of each interaction for popularity counts.

    Parameters
    ----------
    weighting
        ``"events"``: the event-type weights (purchase > cart > view); ``"positive"``: 1 for
        positive interactions (``Dataset.is_positive``) else 0; ``"count"``: 1 for every event
        except impressions.
    half_life_seconds
        Exponential decay relative to the newest event; None for no decay.
    """
    if weighting == "events":
        weights = dataset.event_weights().astype(np.float64)
    elif weighting == "positive":
        weights = dataset.is_positive(positive_threshold).astype(np.float64)
    elif weighting == "count":
        weights = (dataset.interactions["event"].to_numpy() != "impression").astype(np.float64)
    else:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    if half_life_seconds and len(weights):
        age = dataset.timestamps.max() - dataset.timestamps
        weights = weights * np.exp2(-age / float(half_life_seconds))
    return weights


def half_life_candidates(dataset: Dataset) -> list[float | None]:
    """No decay, or a half-life of half / an eighth of the training time span."""
    if not len(dataset.interactions):
        return [None]
    span = float(dataset.timestamps.max() - dataset.timestamps.min())
    return [None] + ([span / 2, span / 8] if span > 0 else [])


def _zero_shot_ndcg(top_items: np.ndarray, relevant: sp.csr_matrix) -> float:
    """Mean NDCG@10 of validation users given their top items."""
    from ..evaluation.metrics import mean_ndcg

    return mean_ndcg(top_items, relevant, TUNING_K)


def _shared_ranking_ndcg(scores: np.ndarray, relevant: sp.csr_matrix) -> float:
    """Mean NDCG@10 when every validation user gets the same ranking."""
    top = top_k_batch(scores[None, :].astype(np.float32), TUNING_K)
    return _zero_shot_ndcg(np.repeat(top, relevant.shape[0], axis=0), relevant)


class PopularityStrategy(Strategy):
    """Global popularity with exponential time decay.

    Params
    ------
    weighting
        One of ``WEIGHTINGS`` (see ``interaction_weights``).
    half_life_days
        Decay half-life in days relative to the newest event; None: no decay.
    positive_threshold
        Rating threshold for ``weighting="positive"`` (None: every rating counts).
    auto_tune
        Choose ``weighting`` and the half-life on a validation split of the training users.
    """

    key = "popularity"
    label = "Popular right now"
    default_params = {"weighting": "events", "half_life_days": None, "positive_threshold": None, "auto_tune": True}

    def _fit(self, dataset: Dataset) -> None:
        half_life = self.params["half_life_days"] * 86400.0 if self.params["half_life_days"] else None
        weighting = self.params["weighting"]
        if self.params["auto_tune"]:
            weighting, half_life = self._tune(dataset)
        self.weighting_, self.half_life_seconds_ = weighting, half_life
        self.popularity_ = self._popularity(dataset, weighting, half_life)

    def _popularity(self, dataset: Dataset, weighting: str, half_life: float | None) -> np.ndarray:
        weights = interaction_weights(dataset, weighting, self.params["positive_threshold"], half_life)
        counts = np.bincount(dataset.item_codes, weights=weights, minlength=dataset.n_items)
        return (counts / counts.max() if counts.max() > 0 else counts).astype(np.float32)

    def _tune(self, dataset: Dataset) -> tuple[str, float | None]:
        from ..evaluation.protocols import cold_start_validation

        train, _, relevant = cold_start_validation(dataset, seed=self.seed, positive_threshold=self.params["positive_threshold"])
        if relevant.shape[0] == 0 or not len(train.interactions):
            return self.params["weighting"], None
        best, best_score = (self.params["weighting"], None), -1.0
        for weighting in WEIGHTINGS:
            for half_life in half_life_candidates(train):
                score = _shared_ranking_ndcg(self._popularity(train, weighting, half_life), relevant)
                if score > best_score + 1e-12:
                    best, best_score = (weighting, half_life), score
        return best

    def _score_batch(self, contexts: Sequence[Context]) -> np.ndarray:
        return np.tile(self.popularity_, (len(contexts), 1))

    def _add_items(self, new_items: pd.DataFrame) -> None:
        self.popularity_ = np.concatenate([self.popularity_, np.zeros(len(new_items), dtype=np.float32)])

    def _save_state(self, directory: Path) -> None:
        np.save(directory / "popularity.npy", self.popularity_)
        (directory / "tuned.json").write_text(json.dumps(
            {"weighting": self.weighting_, "half_life_seconds": self.half_life_seconds_}))

    def _load_state(self, directory: Path) -> None:
        self.popularity_ = np.load(directory / "popularity.npy")
        tuned = json.loads((directory / "tuned.json").read_text())
        self.weighting_, self.half_life_seconds_ = tuned["weighting"], tuned["half_life_seconds"]



class SegmentTables:
    """Weighted item counts per segment for several segment levels (key tuples).

    For a level such as ``("gender", "age_band")`` the segments are the value tuples seen in
    training users that know every key; ``counts[level]`` is a CSR (n_segments, n_items) and
    ``totals[level]`` the weight of each segment.
    """

    def __init__(self):
        self.index: dict[tuple[str, ...], dict[tuple, int]] = {}
        self.counts: dict[tuple[str, ...], sp.csr_matrix] = {}
        self.totals: dict[tuple[str, ...], np.ndarray] = {}

    @classmethod
    def build(cls, user_tokens: list[dict], user_item: sp.csr_matrix, levels, min_support: float) -> "SegmentTables":
        """Count ``user_item`` rows per segment of every level (one sparse product per level)."""
        tables = cls()
        for level in levels:
            level = tuple(level)
            if level in tables.counts:
                continue
            segments = [segment_of(tokens, level) for tokens in user_tokens]
            known = np.array([None not in segment for segment in segments], dtype=bool)
            codes, uniques = pd.factorize(pd.Series(["\x1f".join(s) if ok else "" for s, ok in zip(segments, known)]))
            membership = sp.csr_matrix(
                (np.ones(int(known.sum()), dtype=np.float64), (codes[known], np.flatnonzero(known))),
                shape=(len(uniques), len(user_tokens)),
            )
            counts = (membership @ user_item).tocsr()
            totals = np.asarray(counts.sum(axis=1)).ravel()
            supported = [code for code in range(len(uniques)) if totals[code] >= min_support and uniques[code]]
            tables.index[level] = {tuple(uniques[code].split("\x1f")): row for row, code in enumerate(supported)}
            tables.counts[level] = counts[supported].astype(np.float32).tocsr()
            tables.totals[level] = totals[supported]
        return tables

    def extend_items(self, n_new: int) -> None:
        for level, counts in self.counts.items():
            self.counts[level] = sp.hstack([counts, sp.csr_matrix((counts.shape[0], n_new), dtype=np.float32)]).tocsr()

    def save(self, directory: Path, prefix: str) -> None:
        levels = list(self.counts)
        arrays = {}
        for number, level in enumerate(levels):
            counts = self.counts[level]
            arrays.update({f"data{number}": counts.data, f"indices{number}": counts.indices,
                           f"indptr{number}": counts.indptr, f"totals{number}": self.totals[level],
                           f"shape{number}": np.array(counts.shape)})
        np.savez(directory / f"{prefix}_segments.npz", **arrays)
        keys = [{"level": list(level), "segments": [list(segment) for segment in self.index[level]]} for level in levels]
        (directory / f"{prefix}_segments.json").write_text(json.dumps(keys))

    @classmethod
    def load(cls, directory: Path, prefix: str) -> "SegmentTables":
        tables = cls()
        arrays = np.load(directory / f"{prefix}_segments.npz")
        for number, entry in enumerate(json.loads((directory / f"{prefix}_segments.json").read_text())):
            level = tuple(entry["level"])
            tables.index[level] = {tuple(segment): row for row, segment in enumerate(entry["segments"])}
            tables.counts[level] = sp.csr_matrix(
                (arrays[f"data{number}"], arrays[f"indices{number}"], arrays[f"indptr{number}"]),
                shape=tuple(arrays[f"shape{number}"]))
            tables.totals[level] = arrays[f"totals{number}"]
        return tables


def shrunk_segment_distributions(
    tables: SegmentTables, global_distribution: np.ndarray, token_rows: Sequence[Mapping[str, str]], levels,
    shrinkage: float,
) -> tuple[np.ndarray, list[tuple[str, ...] | None]]:
    """Item distribution of each profile's segments, shrunk from coarse to fine levels.

    Starting from global popularity, each level a profile has a known, supported segment for
    (coarsest first) updates ``p = (counts + shrinkage * p) / (total + shrinkage)``: a segment
    with little data stays close to the coarser estimate.

    Returns the distributions (float64, rows sum to 1) and the finest level used per row
    (None: global only).
    """
    distributions = np.tile(global_distribution, (len(token_rows), 1))
    finest: list[tuple[str, ...] | None] = [None] * len(token_rows)
    for level in reversed([tuple(level) for level in levels]):
        index = tables.index.get(level, {})
        rows = np.array([index.get(segment_of(tokens, level), -1) for tokens in token_rows], dtype=np.int64)
        has_segment = np.flatnonzero(rows >= 0)
        if not has_segment.size:
            continue
        counts = tables.counts[level][rows[has_segment]].toarray()
        totals = tables.totals[level][rows[has_segment]][:, None]
        distributions[has_segment] = (counts + shrinkage * distributions[has_segment]) / (totals + shrinkage)
        for row in has_segment:
            finest[row] = level
    return distributions, finest


class SegmentPopularityStrategy(Strategy):
    """Popularity within profile segments (e.g. gender × age band), with backoff and shrinkage.

    Params
    ------
    levels
        Segment key tuples, finest first, e.g. ``[["gender", "age_band"], ["age_band"]]``;
        a profile is scored with every level it has a known segment for, shrunk coarse → fine.
    shrinkage
        Pseudo-count (in event weight) pulling a segment toward the coarser estimate.
    min_support
        Segments with less total weight than this are ignored (backoff to coarser ones).
    weighting, half_life_days, positive_threshold
        As for ``PopularityStrategy``.
    auto_tune
        Choose levels, shrinkage, weighting and half-life on a validation split of the
        training users.
    """

    key = "segment_popularity"
    label = "Popular with shoppers like you"
    default_params = {
        "levels": [list(level) for level in DEFAULT_LEVELS],
        "shrinkage": 50.0,
        "min_support": 1.0,
        "weighting": "events",
        "half_life_days": None,
        "positive_threshold": None,
        "auto_tune": True,
    }

    def _fit(self, dataset: Dataset) -> None:
        self.encoder_ = ProfileEncoder().fit(dataset.users)
        # Tokenising profiles is the slow part: do it once per user for fitting and tuning.
        self._tokens_by_user = dict(zip(dataset.users.index, self.encoder_.tokens_frame(dataset.users)))
        chosen = {
            "levels": [list(level) for level in self.params["levels"]],
            "shrinkage": float(self.params["shrinkage"]),
            "weighting": self.params["weighting"],
            "half_life_seconds": self.params["half_life_days"] * 86400.0 if self.params["half_life_days"] else None,
        }
        if self.params["auto_tune"]:
            chosen = self._tune(dataset, chosen)
        self.tuned_ = chosen
        weights = interaction_weights(dataset, chosen["weighting"], self.params["positive_threshold"], chosen["half_life_seconds"])
        self.global_, self.tables_ = self._build(dataset, weights, self._user_tokens(dataset), chosen["levels"])
        del self._tokens_by_user

    # --- fitting ----------------------------------------------------------------------------------
    def _user_tokens(self, dataset: Dataset) -> list[dict]:
        """Profile tokens of every user in ``dataset.user_ids`` order ({} for users without a profile)."""
        return [self._tokens_by_user.get(user_id, {}) for user_id in dataset.user_ids]

    def _build(self, dataset: Dataset, weights: np.ndarray, user_tokens: list[dict], levels) -> tuple[np.ndarray, SegmentTables]:
        user_item = dataset.interaction_matrix(weights=weights.astype(np.float32)).astype(np.float64).tocsr()
        item_totals = np.asarray(user_item.sum(axis=0)).ravel()
        # A touch of uniform mass keeps every item (new ones too) at a finite, non-zero share.
        global_distribution = (item_totals + 1e-3) / (item_totals.sum() + 1e-3 * dataset.n_items)
        return global_distribution, SegmentTables.build(user_tokens, user_item, levels, self.params["min_support"])

    def candidate_levels(self, user_tokens: list[dict]) -> list[list[list[str]]]:
        """Segment level chains worth trying, given which profile keys the data has."""
        coverage = {key: np.mean([key in row for row in user_tokens]) if user_tokens else 0.0
                    for key in ("gender", "age_band", *LOCATION_LEVELS, *(self.encoder_.extra_columns or ()))}
        present = {key for key, share in coverage.items() if share >= 0.1}
        chains = [
            [],
            [["gender", "age_band"], ["age_band"], ["gender"]],
            [["gender", "age_band"], ["age_band"], ["gender"], ["country"]],
            [["gender", "age_band", "country"], ["gender", "age_band"], ["age_band"], ["gender"], ["country"]],
            [["age_band", "country"], ["age_band"], ["country"]],
            [["age_band", "country"], ["age_band"], ["country"], ["region"]],
            [["age_band"]], [["gender"]], [["country"]], [["region"], ["country"]],
        ] + [[[column]] for column in (self.encoder_.extra_columns or ())]
        usable = []
        for chain in chains:
            chain = [level for level in chain if set(level) <= present]
            if chain not in usable:
                usable.append(chain)
        return usable

    def _tune(self, dataset: Dataset, chosen: dict) -> dict:
        """Pick weighting and half-life on global popularity, then levels and shrinkage."""
        from ..evaluation.protocols import cold_start_validation

        threshold = self.params["positive_threshold"]
        train, profiles, relevant = cold_start_validation(dataset, seed=self.seed, positive_threshold=threshold, max_users=1500)
        if relevant.shape[0] == 0 or not len(train.interactions):
            return chosen
        best_score = -1.0
        for weighting in WEIGHTINGS:
            for half_life in half_life_candidates(train):
                weights = interaction_weights(train, weighting, threshold, half_life)
                popularity = np.bincount(train.item_codes, weights=weights, minlength=train.n_items)
                score = _shared_ranking_ndcg(popularity, relevant)
                if score > best_score + 1e-12:
                    best_score, best_weights = score, weights
                    chosen = {**chosen, "levels": [], "weighting": weighting, "half_life_seconds": half_life}
        user_tokens = self._user_tokens(train)
        validation_tokens = [self._tokens_by_user.get(user_id, {}) for user_id in profiles.index]
        chains = self.candidate_levels(user_tokens)
        all_levels = {tuple(level) for chain in chains for level in chain}
        global_distribution, tables = self._build(train, best_weights, user_tokens, all_levels)
        for chain in chains:
            for shrinkage in (5.0, 50.0, 500.0) if chain else ():
                top = self._distributions(tables, global_distribution, validation_tokens, chain, shrinkage, TUNING_K)
                score = _zero_shot_ndcg(top, relevant)
                if score > best_score + 1e-12:
                    best_score = score
                    chosen = {**chosen, "levels": chain, "shrinkage": shrinkage}
        chosen["validation_ndcg"] = best_score
        return chosen

    # --- scoring ------------------------------------------------------------------------------------
    def _distributions(self, tables, global_distribution, token_rows, levels, shrinkage, top_k: int | None = None):
        """Scores (float32, one row per token row), computed once per distinct segment combination.

        With ``top_k`` the result is the top-k item positions instead, computed chunk by chunk
        so that thousands of distinct profiles never need a dense (profiles × items) array.
        """
        level_keys = sorted({key for level in levels for key in level})
        combos = ["\x1f".join(str(tokens.get(key)) for key in level_keys) for tokens in token_rows]
        codes, uniques = pd.factorize(pd.Series(combos, dtype=object))
        first_rows = np.unique(codes, return_index=True)[1]
        unique_tokens = [token_rows[row] for row in first_rows]
        if top_k is None:
            unique_scores = shrunk_segment_distributions(tables, global_distribution, unique_tokens, levels, shrinkage)[0]
            return unique_scores[codes].astype(np.float32)
        unique_top = np.empty((len(unique_tokens), top_k), dtype=np.int64)
        for start in range(0, len(unique_tokens), 256):
            chunk = shrunk_segment_distributions(
                tables, global_distribution, unique_tokens[start:start + 256], levels, shrinkage)[0]
            unique_top[start:start + 256] = top_k_batch(chunk, top_k)
        return unique_top[codes]

    def _score_batch(self, contexts: Sequence[Context]) -> np.ndarray:
        token_rows = [self.encoder_.tokens(context.profile) for context in contexts]
        scores = self._distributions(self.tables_, self.global_, token_rows, self.tuned_["levels"], self.tuned_["shrinkage"])
        # Scale so the best item of the global ranking is near 1 (comparable across contexts).
        return scores / np.float32(self.global_.max())

    def segment_description(self, profile: Mapping) -> str | None:
        """Words for the finest segment used for ``profile`` ('women aged 25–34'), or None."""
        tokens = self.encoder_.tokens(profile)
        finest = shrunk_segment_distributions(self.tables_, self.global_, [tokens], self.tuned_["levels"], 1.0)[1][0]
        return describe_segment(tokens, finest) if finest else None

    def _explain(self, context: Context, item_positions: np.ndarray) -> list[str]:
        described = self.segment_description(context.profile)
        reason = f"Popular with {described}" if described else "Popular with shoppers right now"
        return [reason] * len(item_positions)

    def _add_items(self, new_items: pd.DataFrame) -> None:
        floor = np.full(len(new_items), self.global_.min())
        self.global_ = np.concatenate([self.global_, floor])
        self.tables_.extend_items(len(new_items))

    def _save_state(self, directory: Path) -> None:
        np.save(directory / "global.npy", self.global_)
        self.tables_.save(directory, "popularity")
        (directory / "tuned.json").write_text(json.dumps(
            {**self.tuned_, "encoder": self.encoder_.get_state()}, default=float))

    def _load_state(self, directory: Path) -> None:
        self.global_ = np.load(directory / "global.npy")
        self.tables_ = SegmentTables.load(directory, "popularity")
        tuned = json.loads((directory / "tuned.json").read_text())
        self.encoder_ = ProfileEncoder.from_state(tuned.pop("encoder"))
        self.tuned_ = tuned
