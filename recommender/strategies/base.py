"""The strategy contract every recommender follows (see docs/architecture.md, "Strategies").

A strategy is fitted on a ``Dataset`` and then recommends from a ``Context`` (profile
attributes plus recent events), never only from an id seen in training: users, sessions and
products that were not in the training data are served without refitting.

Subclasses implement ``_fit`` and ``_score_batch`` (and ``_save_state``/``_load_state`` for
anything beyond their params); the public methods here do the bookkeeping once: fitted checks,
``k`` validation, id mapping, the candidate filter (allowed and excluded items), top-k,
``similar_items``, explanations on demand and the artifact's metadata. Business rules (stock,
already bought, category cap) are not a strategy's job: serving applies them to any list.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from ..data.dataset import Dataset
from .caching import DEFAULT_CACHE_MB, LRUCache

logger = logging.getLogger(__name__)

ARTIFACT_FORMAT = 1
# ``top_k_batch``: columns sampled to bound each row's top k, and the most candidates a row
# may leave for the exact sort before it is cut at its own k-th score instead.
TOP_K_SAMPLE_COLUMNS = 2048
TOP_K_MAX_CANDIDATES = 2048
# Up to this many ids are looked up one by one in the index's hash table: building a pandas
# Index for ``get_indexer`` costs about a millisecond, a lookup a few microseconds.
SMALL_LOOKUP = 64


class NotFittedError(RuntimeError):
    """Raised when a strategy is asked to recommend before ``fit`` or ``load``."""


@dataclass(frozen=True)
class Event:
    """One thing a visitor did: the product's id, the event type, when, and how long."""

    item_id: str
    event: str = "view"
    timestamp: float | None = None
    dwell_seconds: float | None = None
    value: float | None = None


@dataclass(frozen=True)
class Context:
    """What is known about the visitor at serving time.

    ``profile`` holds attributes (``age``, ``gender``, ``country``, ``region``, ``city``, and
    any extra attribute); ``events`` the visitor's events, oldest first; ``product_id`` the
    product in view, if any (for "similar products" placements). ``blend`` names the placement
    family whose learned blend a composite strategy serves the context with (the hybrid's
    ``blends``; None: its default); other strategies ignore it.
    """

    profile: Mapping[str, Any] = field(default_factory=dict)
    events: tuple[Event, ...] = ()
    product_id: str | None = None
    user_id: str | None = None
    blend: str | None = None

    @property
    def event_item_ids(self) -> list[str]:
        return [event.item_id for event in self.events]


class Recommendations:
    """A ranked list: item ids, their scores and one human-readable reason each.

    ``reasons`` are given, or worked out on first use by ``explain`` (a callable from indices
    into this list to their reasons): serving asks only for the reasons of the items that
    survive the business rules (``reasons_at``).
    """

    def __init__(self, item_ids: list[str], scores: np.ndarray, reasons: list[str] | None = None,
                 strategy: str = "", explain: Callable[[np.ndarray], list[str]] | None = None):
        if reasons is None and explain is None:
            raise TypeError("Recommendations need reasons or an explain callable")
        self.item_ids = list(item_ids)
        self.scores = np.asarray(scores)
        self.strategy = strategy
        self._reasons = None if reasons is None else list(reasons)
        self._explain = explain

    @property
    def reasons(self) -> list[str]:
        """One reason per item, in rank order."""
        if self._reasons is None:
            self._reasons = list(self._explain(np.arange(len(self.item_ids)))) if self.item_ids else []
        return self._reasons

    def reasons_at(self, indices: Sequence[int]) -> list[str]:
        """The reasons of the items at ``indices`` of this list (only those are worked out)."""
        if self._reasons is not None or not len(indices):
            return [self.reasons[index] for index in indices]
        return list(self._explain(np.asarray(indices, dtype=np.int64)))

    def __len__(self):
        return len(self.item_ids)

    def __iter__(self):
        return iter(zip(self.item_ids, self.scores.tolist(), self.reasons))

    def __repr__(self):
        return f"<Recommendations {self.strategy or '?'}: {self.item_ids[:5]}{'...' if len(self) > 5 else ''}>"

    @classmethod
    def empty(cls, strategy: str = "") -> "Recommendations":
        return cls(item_ids=[], scores=np.zeros(0, dtype=np.float32), reasons=[], strategy=strategy)


def index_positions(index: pd.Index, item_ids: Sequence[str]) -> np.ndarray:
    """Positions of string ``item_ids`` in a unique ``index``; -1 for ids it does not hold."""
    if len(item_ids) > SMALL_LOOKUP:
        return index.get_indexer(pd.Index(item_ids, dtype=object))
    positions = np.empty(len(item_ids), dtype=np.int64)
    for number, item_id in enumerate(item_ids):
        try:
            positions[number] = index.get_loc(item_id)
        except KeyError:
            positions[number] = -1
    return positions


def top_k_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest finite scores, best first (ties: lower index first)."""
    finite = np.flatnonzero(np.isfinite(scores))
    if finite.size == 0:
        return finite
    k = min(k, finite.size)
    candidate_scores = scores[finite]
    if k < finite.size:
        part = np.argpartition(-candidate_scores, k - 1)[:k]
    else:
        part = np.arange(finite.size)
    order = np.lexsort((finite[part], -candidate_scores[part]))
    return finite[part[order]]


def top_k_batch(scores: np.ndarray, k: int) -> np.ndarray:
    """Row-wise top-k column indices of a 2-D score array, best first; -1 pads rows with fewer.

    Ties: lower index first (as ``top_k_indices``). Only finite scores are returned.

    Rather than a selection over every row's full width, the k-th largest score of a strided
    sample of the columns bounds each row's top k from below (at least k scores reach it), so
    one comparison pass leaves a few hundred candidates per row to sort exactly. Rows where
    the sample gives no useful bound (fewer than k finite sampled scores, or many ties) are
    cut exactly at their own k-th largest score instead.
    """
    scores = np.asarray(scores)
    n_rows, n_cols = scores.shape
    k_eff = min(k, n_cols)
    top = np.full((n_rows, k), -1, dtype=np.int64)
    if n_rows == 0 or k_eff <= 0:
        return top
    step = max(1, n_cols // TOP_K_SAMPLE_COLUMNS)
    exact_rows = np.arange(n_rows)
    if step > 1 and n_cols // step >= k_eff:
        sample = scores[:, ::step]
        bound = -np.partition(-np.nan_to_num(sample, nan=-np.inf, neginf=-np.inf, posinf=np.inf), k_eff - 1, axis=1)[:, k_eff - 1]
        usable = np.isfinite(bound)
        candidates = scores >= np.where(usable, bound, np.inf)[:, None]
        usable &= np.count_nonzero(candidates, axis=1) <= TOP_K_MAX_CANDIDATES
        # flatnonzero + divmod: several times faster than a 2-D nonzero.
        rows, cols = np.divmod(np.flatnonzero(candidates if usable.all() else candidates & usable[:, None]), n_cols)
        _fill_top(top, rows, cols, scores[rows, cols], k_eff)
        exact_rows = np.flatnonzero(~usable)
    if exact_rows.size:
        block = np.nan_to_num(scores[exact_rows], nan=-np.inf, neginf=-np.inf, posinf=np.inf)
        kth = np.partition(block, n_cols - k_eff, axis=1)[:, n_cols - k_eff][:, None]
        above = block > kth
        # Of the scores tied with the k-th, the lowest-index ones fill what ``above`` leaves.
        tied = (block == kth) & np.isfinite(kth)
        room = k_eff - above.sum(axis=1, keepdims=True)
        chosen = above | (tied & (np.cumsum(tied, axis=1) <= room))
        rows, cols = np.divmod(np.flatnonzero(chosen), n_cols)
        _fill_top(top, exact_rows[rows], cols, block[rows, cols], k_eff)
    return top


def _fill_top(top: np.ndarray, rows: np.ndarray, cols: np.ndarray, values: np.ndarray, k: int) -> None:
    """Write each row's best ``k`` finite (row, col, value) candidates into ``top``, best first."""
    finite = np.isfinite(values)
    rows, cols, values = rows[finite], cols[finite], values[finite]
    order = np.lexsort((cols, -values, rows))  # by row, then score descending, then index
    rows, cols = rows[order], cols[order]
    starts = np.searchsorted(rows, rows, side="left")
    rank = np.arange(len(rows)) - starts
    keep = rank < k
    top[rows[keep], rank[keep]] = cols[keep]


class Strategy:
    """Base class of all strategies.

    Subclasses set ``key`` and ``default_params`` and implement the hooks below.
    """

    key: ClassVar[str] = ""
    label: ClassVar[str] = ""
    default_params: ClassVar[dict[str, Any]] = {}
    # True: without session events the strategy has nothing of its own to say (it would only
    # repeat popularity), so serving asks the next strategy of the chain instead.
    needs_events: ClassVar[bool] = False
    # Memory each bounded score cache of this strategy may use (``set_score_cache_size``).
    score_cache_mb: float = DEFAULT_CACHE_MB

    def __init__(self, **params):
        unknown = set(params) - set(self.default_params) - {"seed"}
        if unknown:
            raise TypeError(
                f"{type(self).__name__} got unknown params {sorted(unknown)}; "
                f"known: {sorted(self.default_params)}"
            )
        self.params: dict[str, Any] = {**self.default_params, **params}
        self.seed: int = int(params.get("seed", 0))
        self.params["seed"] = self.seed
        self.item_ids: np.ndarray | None = None
        self.fitted = False

    # --- hooks for subclasses ------------------------------------------------------------------
    def _fit(self, dataset: Dataset, **options) -> None:
        """Learn from ``dataset``; ``self.item_ids`` is already set to its item universe.

        ``options`` are what ``fit`` was given besides the dataset (a strategy that takes none
        declares none, so an unexpected option is a ``TypeError``).
        """
        raise NotImplementedError

    def _score_batch(self, contexts: Sequence[Context]) -> np.ndarray:
        """Return a float32 array (len(contexts), n_items): higher is better, -inf never."""
        raise NotImplementedError

    def _score_cache_key(self, context: Context) -> Hashable | None:
        """What a single context's scores depend on (e.g. its profile tokens), or None.

        A strategy whose scores for some contexts are a function of a small key (no session
        events: only the profile counts) returns that key; ``score_batch`` then computes such a
        context's row once and serves it from a bounded cache until the next ``fit``, ``load`` or
        ``add_items``. None (the default): always computed.
        """
        return None

    def _explain(self, context: Context, item_positions: np.ndarray) -> list[str]:
        """Return one short, human-readable reason per recommended item position."""
        return [self.label or "Recommended for you"] * len(item_positions)

    def _add_items(self, new_items: pd.DataFrame) -> None:
        """Extend internal arrays for items appended to ``item_ids`` (default: nothing)."""

    def untrained_item_ids(self) -> list[str] | None:
        """Ids of known items the fit saw no events of (new arrivals), or None when the strategy cannot tell."""
        return None

    def _save_state(self, directory: Path) -> None:
        """Write learned state into ``directory`` (params and item ids are written for you)."""

    def _load_state(self, directory: Path) -> None:
        """Read what ``_save_state`` wrote."""

    # --- public API ----------------------------------------------------------------------------
    def fit(self, dataset: Dataset, **options) -> "Strategy":
        """Train on ``dataset`` and return self.

        ``options`` go to ``_fit`` for strategies that take some (the hybrid's already fitted
        ``components``).
        """
        self.item_ids = np.asarray(dataset.item_ids, dtype=object)
        self._item_index = pd.Index(self.item_ids)
        self.clear_score_cache()
        self._fit(dataset, **options)
        self.fitted = True
        return self

    @property
    def n_items(self) -> int:
        self._check_fitted()
        return len(self.item_ids)

    def item_positions(self, item_ids: Iterable[str]) -> np.ndarray:
        """Positions of ``item_ids`` in ``self.item_ids``; -1 for items never seen."""
        self._check_fitted()
        return index_positions(self._item_index, [str(i) for i in item_ids])

    def score_batch(self, contexts: Sequence[Context]) -> np.ndarray:
        """Scores of every item for each context, float32 (len(contexts), n_items)."""
        self._check_fitted()
        if not contexts:
            return np.zeros((0, self.n_items), dtype=np.float32)
        contexts = list(contexts)
        key = self._score_cache_key(contexts[0]) if len(contexts) == 1 else None
        if key is not None:
            # A copy: callers may write into the scores they get (exclusions, rules).
            return self._score_cache.get_or_compute(key, lambda: self._checked_scores(contexts)).copy()
        return self._checked_scores(contexts)

    def _checked_scores(self, contexts: list[Context]) -> np.ndarray:
        scores = np.asarray(self._score_batch(contexts), dtype=np.float32)
        if scores.shape != (len(contexts), self.n_items):
            raise RuntimeError(f"{self.key}: _score_batch returned shape {scores.shape}")
        return scores

    @property
    def _score_cache(self) -> LRUCache:
        cache = self.__dict__.get("_score_cache_")
        if cache is None:
            cache = self.__dict__["_score_cache_"] = LRUCache.for_rows(self.n_items, megabytes=self.score_cache_mb)
        return cache

    def clear_score_cache(self) -> None:
        """Forget cached single-context scores (called whenever the fitted state changes)."""
        self.__dict__.pop("_score_cache_", None)

    def set_score_cache_size(self, megabytes: float) -> None:
        """Let each of this strategy's score caches use up to ``megabytes`` (0: none); clears them."""
        if isinstance(megabytes, bool) or float(megabytes) < 0:
            raise ValueError(f"score cache size must be a number of megabytes >= 0, got {megabytes!r}")
        self.score_cache_mb = float(megabytes)
        self.clear_score_cache()

    def score(self, context: Context) -> np.ndarray:
        return self.score_batch([context])[0]

    def recommend(self, context: Context | None = None, k: int = 10, exclude: Iterable[str] = (),
                  allowed: Iterable[str] | None = None) -> Recommendations:
        """Return the top ``k`` items for ``context``.

        The candidate filter: never one of ``exclude``; when ``allowed`` is given, only items
        in it (ids the strategy does not know are ignored in both). Fewer than ``k`` come back
        when fewer candidates have a finite score.
        """
        _check_k(k)
        context = context or Context()
        scores = self.score(context).copy()
        self._filter_candidates(scores, exclude, allowed)
        return self._ranked(context, scores, self._top_k(scores, int(k)))

    def similar_items(self, item_id: str, k: int = 10, exclude: Iterable[str] = (),
                      allowed: Iterable[str] | None = None) -> Recommendations:
        """The ``k`` items most like ``item_id``, never the item itself; same candidate filter.

        By default: what the strategy recommends to a visitor looking at ``item_id`` and known
        for nothing else (``_similar_context``). An item the strategy does not know has no
        similar items here: the list is empty (serving asks the next strategy).
        """
        _check_k(k)
        item_id = str(item_id)
        if self.item_positions([item_id])[0] < 0:
            return Recommendations.empty(self.key)
        context = self._similar_context(item_id)
        scores = self.score(context).copy()
        self._filter_candidates(scores, [item_id, *exclude], allowed)
        return self._ranked(context, scores, self._top_k(scores, int(k)))

    def _similar_context(self, item_id: str) -> Context:
        """The context ``similar_items`` scores for ``item_id`` (default: the product in view alone)."""
        return Context(product_id=item_id)

    def _filter_candidates(self, scores: np.ndarray, exclude: Iterable[str], allowed: Iterable[str] | None) -> None:
        """Rule out, in place, items outside the candidate filter (``-inf``)."""
        if allowed is not None:
            positions = self.item_positions(allowed)
            keep = np.zeros(len(scores), dtype=bool)
            keep[positions[positions >= 0]] = True
            scores[~keep] = -np.inf
        excluded = self.item_positions(exclude)
        scores[excluded[excluded >= 0]] = -np.inf

    def _ranked(self, context: Context, scores: np.ndarray, positions: np.ndarray) -> Recommendations:
        """The list of ``positions`` (best first), explained on demand."""
        return Recommendations(
            item_ids=[str(i) for i in self.item_ids[positions]],
            scores=scores[positions],
            strategy=self.key,
            explain=lambda chosen: self._explain(context, positions[chosen]),
        )

    def _top_k(self, scores: np.ndarray, k: int) -> np.ndarray:
        """Positions of the list ``recommend`` returns, best first (a strategy with list rules overrides it)."""
        return top_k_indices(scores, k)

    def add_items(self, new_items: pd.DataFrame) -> int:
        """Make products added after training known (no refit); returns how many were new.

        ``new_items`` is indexed by item id with the columns of ``Dataset.items``.
        """
        self._check_fitted()
        known = self._item_index
        new_items = new_items[~new_items.index.astype(str).isin(known)]
        if new_items.empty:
            return 0
        new_items = new_items.copy()
        new_items.index = new_items.index.astype(str)
        self.item_ids = np.concatenate([self.item_ids, np.asarray(new_items.index, dtype=object)])
        self._item_index = pd.Index(self.item_ids)
        self.clear_score_cache()
        self._add_items(new_items)
        return len(new_items)

    def save(self, directory) -> Path:
        """Write the fitted strategy into ``directory`` (created if needed)."""
        self._check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": ARTIFACT_FORMAT,
            "key": self.key,
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "params": self.params,
        }
        (directory / "meta.json").write_text(json.dumps(meta, indent=2, default=_json_default))
        np.save(directory / "item_ids.npy", self.item_ids.astype(str))
        self._save_state(directory)
        return directory

    @classmethod
    def load(cls, directory) -> "Strategy":
        """Read a strategy written by ``save``; the class is taken from the artifact."""
        directory = Path(directory)
        meta = json.loads((directory / "meta.json").read_text())
        if meta.get("format") != ARTIFACT_FORMAT:
            raise ValueError(f"{directory}: artifact format {meta.get('format')} is not {ARTIFACT_FORMAT}")
        klass = cls if cls.key == meta["key"] and cls is not Strategy else import_strategy_class(meta["class"])
        params = dict(meta["params"])
        retired = set(params) - set(klass.default_params) - {"seed"}
        if retired:
            # An artifact of an older release: params the class no longer has are dropped.
            logger.warning("%s: ignoring params %s that %s no longer takes", directory, sorted(retired), klass.__name__)
            params = {name: value for name, value in params.items() if name not in retired}
        strategy = klass(**params)
        strategy.item_ids = np.load(directory / "item_ids.npy", allow_pickle=False).astype(object)
        strategy._item_index = pd.Index(strategy.item_ids)
        strategy._load_state(directory)
        strategy.fitted = True
        return strategy

    def _check_fitted(self):
        if not self.fitted or self.item_ids is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit() or load() first.")

    def __repr__(self):
        state = "fitted" if self.fitted else "not fitted"
        return f"<{type(self).__name__} {self.key!r} {state}>"


def import_strategy_class(path: str) -> type[Strategy]:
    """The ``Strategy`` subclass at dotted ``path`` (``ImproperlyConfigured`` if it is not one)."""
    klass = import_string(path)
    if not (isinstance(klass, type) and issubclass(klass, Strategy)):
        raise ImproperlyConfigured(f"{path} is not a subclass of recommender.strategies.base.Strategy")
    return klass


def _check_k(k) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}")


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"{value!r} is not JSON serialisable")
