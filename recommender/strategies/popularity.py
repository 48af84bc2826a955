"""The baselines: time-decayed global popularity and popularity within profile segments.

Both are deliberately strong: in cold start, "what people like you buy" is hard to beat, so
the weighting of events, the time decay, the segment keys and the shrinkage are chosen on a
zero-shot validation split of the *training* users when ``auto_tune`` is on (never on the
users being evaluated).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..data.dataset import Dataset
from ..data.weights import strongest_per_group
from ..data.features import LOCATION_LEVELS, ProfileEncoder, describe_segment
from .base import Context, Strategy, top_k_batch
from .context import context_rows

logger = logging.getLogger(__name__)

WEIGHTINGS = ("events", "positive", "count")
DEFAULT_LEVELS = (("gender", "age_band"), ("age_band",), ("gender",), ("country",))
TUNING_K = 10
SEGMENT_KEY_SEPARATOR = "\x1f"


def token_table_of(token_rows) -> pd.DataFrame:
    """Profile tokens as a table (one column per group, missing = None/NaN).

    ``token_rows`` is already such a table (``ProfileEncoder.token_table``) or a sequence of
    token dicts (``ProfileEncoder.tokens``), as a few served contexts give.
    """
    if isinstance(token_rows, pd.DataFrame):
        return token_rows
    return pd.DataFrame.from_records(list(token_rows), index=pd.RangeIndex(len(token_rows)))


def _token_column(table: pd.DataFrame, key: str) -> np.ndarray:
    if key in table.columns:
        return table[key].to_numpy(dtype=object)
    return np.full(len(table), None, dtype=object)


def segment_keys(table: pd.DataFrame, level: Sequence[str]) -> np.ndarray:
    """Each row's segment of ``level`` as one string (values joined), "" where a key is unknown.

    The vectorised form of ``segment_of`` over a token table: one array operation per key.
    """
    keys = np.full(len(table), "", dtype=object)
    known = np.ones(len(table), dtype=bool)
    for number, key in enumerate(level):
        values = _token_column(table, key)
        present = pd.notna(values)
        known &= present
        text = np.where(present, values, "")
        keys = text if number == 0 else keys + SEGMENT_KEY_SEPARATOR + text
    return np.where(known, keys, "")


def interaction_weights(
    dataset: Dataset, weighting: str = "events", positive_threshold: float | None = None,
    half_life_seconds: float | None = None, event_weights: Mapping[str, float] | None = None,
) -> np.ndarray:
    """Weight of each interaction for popularity counts.

    Whatever the weighting, a user's repeats of one item on one day count once
    (``data.weights``): one visitor's flood cannot lift an item.

    Parameters
    ----------
    weighting
        ``"events"``: the event-type weights (purchase > cart > view); ``"positive"``: 1 for
        positive interactions (``Dataset.is_positive``) else 0; ``"count"``: 1 for every event
        except impressions.
    half_life_seconds
        Exponential decay relative to the newest event; None for no decay.
    event_weights
        The weight of each event type for ``"events"`` (None: ``DEFAULT_EVENT_WEIGHTS``).
    """
    if weighting == "events":
        weights = dataset.event_weights(event_weights).astype(np.float64)
    elif weighting == "positive":
        weights = strongest_per_group(dataset.is_positive(positive_threshold).astype(np.float64),
                                      dataset.visitor_day_groups)
    elif weighting == "count":
        weights = strongest_per_group(context_rows(dataset).astype(np.float64), dataset.visitor_day_groups)
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
    event_weights
        Weight of each event type (None: ``DEFAULT_EVENT_WEIGHTS``); training passes the shop's
        ``EVENT_WEIGHTS``.
    """

    key = "popularity"
    label = "Popular right now"
    default_params = {"weighting": "events", "half_life_days": None, "positive_threshold": None, "auto_tune": True,
                      "event_weights": None}

    def _fit(self, dataset: Dataset) -> None:
        half_life = self.params["half_life_days"] * 86400.0 if self.params["half_life_days"] else None
        weighting = self.params["weighting"]
        if self.params["auto_tune"]:
            weighting, half_life = self._tune(dataset)
        self.weighting_, self.half_life_seconds_ = weighting, half_life
        self.popularity_ = self._popularity(dataset, weighting, half_life)

    def _popularity(self, dataset: Dataset, weighting: str, half_life: float | None) -> np.ndarray:
        weights = interaction_weights(dataset, weighting, self.params["positive_threshold"], half_life,
                                      self.params["event_weights"])
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
        self._key_index: dict[tuple[str, ...], pd.Index] = {}

    @classmethod
    def build(cls, user_tokens, user_item: sp.csr_matrix, levels, min_support: float) -> "SegmentTables":
        """Count ``user_item`` rows per segment of every level (one sparse product per level).

        ``user_tokens`` is a token table (or token dicts) with one row per ``user_item`` row.
        """
        tables = cls()
        table = token_table_of(user_tokens)
        for level in levels:
            level = tuple(level)
            if level in tables.counts:
                continue
            keys = segment_keys(table, level)
            known = keys != ""
            codes, uniques = pd.factorize(keys)
            membership = sp.csr_matrix(
                (np.ones(int(known.sum()), dtype=np.float64), (codes[known], np.flatnonzero(known))),
                shape=(len(uniques), len(table)),
            )
            counts = (membership @ user_item).tocsr()
            totals = np.asarray(counts.sum(axis=1)).ravel()
            supported = np.flatnonzero((totals >= min_support) & (uniques != ""))
            tables.index[level] = {tuple(uniques[code].split(SEGMENT_KEY_SEPARATOR)): row for row, code in enumerate(supported)}
            tables.counts[level] = counts[supported].astype(np.float32).tocsr()
            tables.totals[level] = totals[supported]
        return tables

    def segment_rows(self, level: tuple[str, ...], token_rows) -> np.ndarray:
        """Row of each token row's ``level`` segment in ``counts[level]``; -1 when none."""
        level = tuple(level)
        lookup = self._key_index.get(level)
        if lookup is None:
            by_row = sorted(self.index.get(level, {}).items(), key=lambda pair: pair[1])
            lookup = self._key_index[level] = pd.Index(
                [SEGMENT_KEY_SEPARATOR.join(segment) for segment, _ in by_row], dtype=object)
        keys = segment_keys(token_table_of(token_rows), level)
        rows = lookup.get_indexer(keys) if len(lookup) else np.full(len(keys), -1)
        return np.where(keys != "", rows, -1).astype(np.int64)

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
    levels = [tuple(level) for level in levels]
    segment_rows = _segment_rows_per_level(tables, token_table_of(token_rows), levels)
    distributions = _shrink_segment_rows(tables, global_distribution, segment_rows, levels, shrinkage)
    finest_number = np.full(segment_rows.shape[0], -1)
    for number in reversed(range(len(levels))):
        finest_number[segment_rows[:, number] >= 0] = number
    return distributions, [levels[number] if number >= 0 else None for number in finest_number]


def _segment_rows_per_level(tables: SegmentTables, table: pd.DataFrame, levels) -> np.ndarray:
    """(n_rows, n_levels) row of each token row's segment in each level's counts; -1: none."""
    rows = np.full((len(table), len(levels)), -1, dtype=np.int64)
    for number, level in enumerate(levels):
        if tuple(level) in tables.counts:
            rows[:, number] = tables.segment_rows(tuple(level), table)
    return rows


def _shrink_segment_rows(
    tables: SegmentTables, global_distribution: np.ndarray, segment_rows: np.ndarray, levels, shrinkage: float,
) -> np.ndarray:
    """``shrunk_segment_distributions`` given each row's segment per level (float64).

    The update runs in place (no temporaries of rows × items beyond the counts block), and on
    the whole array when every row has a segment at that level; the arithmetic is the same,
    operation by operation, as ``(counts + shrinkage * p) / (total + shrinkage)``.
    """
    distributions = np.tile(global_distribution, (segment_rows.shape[0], 1))
    for number in reversed(range(len(levels))):
        level = tuple(levels[number])
        rows = segment_rows[:, number]
        has_segment = np.flatnonzero(rows >= 0)
        if not has_segment.size:
            continue
        every_row = has_segment.size == len(rows)
        block = distributions if every_row else distributions[has_segment]
        block *= shrinkage
        block += tables.counts[level][rows[has_segment]].toarray()
        block /= (tables.totals[level][rows[has_segment]] + shrinkage)[:, None]
        if not every_row:
            distributions[has_segment] = block
    return distributions


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
    weighting, half_life_days, positive_threshold, event_weights
        As for ``PopularityStrategy``.
    auto_tune
        Choose levels, shrinkage, weighting and half-life on a validation split of the
        training users.
    augment
        None, or params for a ``generative`` model (plus ``segments`` and ``n_per_segment`` for
        its ``augment``) fitted first on the
        training data to synthesise virtual users for sparse segments, which this strategy is
        then fitted on as well (``GenerativeStrategy.augment``; needs torch). Off by default:
        it helped this strategy only for brand-new visitors on Book-Crossing (docs/benchmarks.md).
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
        "augment": None,
        "event_weights": None,
    }

    def _fit(self, dataset: Dataset) -> None:
        self.virtual_users_ = 0
        if self.params["augment"] is not None:
            dataset = self._augmented(dataset)
        self.encoder_ = ProfileEncoder()
        # Tokenising profiles is the slow part: do it once (one table) for fitting and tuning.
        self._token_table = self.encoder_.fit_token_table(dataset.users)
        chosen = {
            "levels": [list(level) for level in self.params["levels"]],
            "shrinkage": float(self.params["shrinkage"]),
            "weighting": self.params["weighting"],
            "half_life_seconds": self.params["half_life_days"] * 86400.0 if self.params["half_life_days"] else None,
        }
        if self.params["auto_tune"]:
            chosen = self._tune(dataset, chosen)
        self.tuned_ = chosen
        weights = interaction_weights(dataset, chosen["weighting"], self.params["positive_threshold"],
                                      chosen["half_life_seconds"], self.params["event_weights"])
        self.global_, self.tables_ = self._build(dataset, weights, self._user_tokens(dataset), chosen["levels"])
        # Kept for a strategy built on this one (demographic) to reuse; it drops it after.
        self.training_token_table_ = self._token_table
        del self._token_table

    def _augmented(self, dataset: Dataset) -> Dataset:
        """``dataset`` plus the virtual users a generative model fitted on it synthesises."""
        from .generative import GenerativeStrategy  # torch: imported only when asked for

        options = dict(self.params["augment"])
        growth = {key: options.pop(key) for key in ("segments", "n_per_segment") if key in options}
        options.setdefault("event_weights", self.params["event_weights"])
        generator = GenerativeStrategy(seed=self.seed, **options).fit(dataset)
        augmented = generator.augment(dataset, **growth)
        self.virtual_users_ = int(augmented.meta.get("virtual_users", 0))
        logger.info("segment_popularity: fitted with %d virtual users", self.virtual_users_)
        return augmented

    # --- fitting ----------------------------------------------------------------------------------
    def _user_tokens(self, dataset: Dataset, user_ids=None) -> pd.DataFrame:
        """Token table of ``user_ids`` (default: every user in ``dataset.user_ids`` order); users
        without a profile get an all-missing row."""
        user_ids = dataset.user_ids if user_ids is None else user_ids
        return self._token_table.reindex(pd.Index(user_ids, dtype=object))

    def _build(self, dataset: Dataset, weights: np.ndarray, user_tokens: pd.DataFrame, levels) -> tuple[np.ndarray, SegmentTables]:
        user_item = dataset.interaction_matrix(weights=weights.astype(np.float32)).astype(np.float64).tocsr()
        item_totals = np.asarray(user_item.sum(axis=0)).ravel()
        # A touch of uniform mass keeps every item (new ones too) at a finite, non-zero share.
        global_distribution = (item_totals + 1e-3) / (item_totals.sum() + 1e-3 * dataset.n_items)
        return global_distribution, SegmentTables.build(user_tokens, user_item, levels, self.params["min_support"])

    def candidate_levels(self, user_tokens) -> list[list[list[str]]]:
        """Segment level chains worth trying, given which profile keys the data has."""
        table = token_table_of(user_tokens)
        coverage = {key: float(pd.notna(_token_column(table, key)).mean()) if len(table) else 0.0
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
                weights = interaction_weights(train, weighting, threshold, half_life, self.params["event_weights"])
                popularity = np.bincount(train.item_codes, weights=weights, minlength=train.n_items)
                score = _shared_ranking_ndcg(popularity, relevant)
                if score > best_score + 1e-12:
                    best_score, best_weights = score, weights
                    chosen = {**chosen, "levels": [], "weighting": weighting, "half_life_seconds": half_life}
        user_tokens = self._user_tokens(train)
        validation_tokens = self._user_tokens(train, profiles.index)
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
        levels = [tuple(level) for level in levels]
        if isinstance(token_rows, np.ndarray):  # already segment rows per level
            segment_rows = token_rows
        else:
            segment_rows = _segment_rows_per_level(tables, token_table_of(token_rows), levels)
        # Profiles with the same segment in every level get the same distribution.
        unique_rows, codes = np.unique(segment_rows, axis=0, return_inverse=True)
        codes = codes.ravel()
        if top_k is None:
            unique_scores = _shrink_segment_rows(tables, global_distribution, unique_rows, levels, shrinkage)
            return unique_scores[codes].astype(np.float32)
        unique_top = np.empty((len(unique_rows), top_k), dtype=np.int64)
        for start in range(0, len(unique_rows), 256):
            chunk = _shrink_segment_rows(tables, global_distribution, unique_rows[start:start + 256], levels, shrinkage)
            unique_top[start:start + 256] = top_k_batch(chunk, top_k)
        return unique_top[codes]

    def _score_batch(self, contexts: Sequence[Context]) -> np.ndarray:
        return self.score_token_table(self._context_tokens(contexts))

    def score_token_table(self, token_table: pd.DataFrame) -> np.ndarray:
        """``score_batch`` for profiles already tokenised (``_context_tokens``), float32."""
        scores = self._distributions(self.tables_, self.global_, token_table, self.tuned_["levels"], self.tuned_["shrinkage"])
        # Scale so the best item of the global ranking is near 1 (comparable across contexts).
        return scores / np.float32(self.global_.max())

    def _context_tokens(self, contexts: Sequence[Context]) -> pd.DataFrame:
        """Token table of the contexts' profiles (vectorised for large batches)."""
        if len(contexts) < 64:
            return token_table_of([self.encoder_.tokens(context.profile) for context in contexts])
        profiles = pd.DataFrame.from_records([dict(context.profile) for context in contexts],
                                             index=pd.RangeIndex(len(contexts)))
        return self.encoder_.token_table(profiles)

    def segment_description(self, profile: Mapping) -> str | None:
        """Words for the finest segment used for ``profile`` ('women aged 25–34'), or None."""
        tokens = self.encoder_.tokens(profile)
        finest = self._finest_level(tokens)
        return describe_segment(tokens, finest) if finest else None

    def _finest_level(self, tokens: Mapping[str, str]) -> tuple[str, ...] | None:
        """The first (finest) level with a known, supported segment for ``tokens``; None: global only.

        The level ``shrunk_segment_distributions`` reports, found by dictionary lookups alone.
        """
        for level in map(tuple, self.tuned_["levels"]):
            if tuple(tokens.get(key) for key in level) in self.tables_.index.get(level, {}):
                return level
        return None

    def _explain(self, context: Context, item_positions: np.ndarray) -> list[str]:
        described = self.segment_description(context.profile)
        reason = f"Popular with {described}" if described else "Popular with shoppers right now"
        return [reason] * len(item_positions)

    def _score_cache_key(self, context: Context):
        # A context's scores depend only on its tokens of the keys the levels use.
        tokens = self.encoder_.tokens(context.profile)
        return tuple(tokens.get(key) for key in sorted({key for level in self.tuned_["levels"] for key in level}))

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
