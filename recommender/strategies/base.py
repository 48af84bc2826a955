"""The strategy contract every recommender follows (STYLE rules 3–4).

A strategy is fitted on a ``Dataset`` and then recommends from a ``Context`` (profile
attributes plus recent events), never only from an id seen in training: users, sessions and
products that were not in the training data are served without refitting.

Subclasses implement ``_fit`` and ``_score_batch`` (and ``_save_state``/``_load_state`` for
anything beyond their params); the public methods here do the bookkeeping once: fitted checks,
``k`` validation, id mapping, exclusion, top-k, and the artifact's metadata.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from ..data.dataset import Dataset

ARTIFACT_FORMAT = 1


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
    product in view, if any (for "similar products" placements).
    """

    profile: Mapping[str, Any] = field(default_factory=dict)
    events: tuple[Event, ...] = ()
    product_id: str | None = None
    user_id: str | None = None

    @property
    def event_item_ids(self) -> list[str]:
        return [event.item_id for event in self.events]


@dataclass
class Recommendations:
    """A ranked list: item ids, their scores and one human-readable reason each."""

    item_ids: list[str]
    scores: np.ndarray
    reasons: list[str]
    strategy: str = ""

    def __len__(self):
        return len(self.item_ids)

    def __iter__(self):
        return iter(zip(self.item_ids, self.scores.tolist(), self.reasons))


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
    """Row-wise top-k column indices of a 2-D score array, best first; -1 pads rows with fewer."""
    n_rows, n_cols = scores.shape
    k_eff = min(k, n_cols)
    part = np.argpartition(-scores, k_eff - 1, axis=1)[:, :k_eff]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    top = np.take_along_axis(part, order, axis=1)
    top_scores = np.take_along_axis(part_scores, order, axis=1)
    top = np.where(np.isfinite(top_scores), top, -1)
    if k_eff < k:
        top = np.hstack([top, -np.ones((n_rows, k - k_eff), dtype=top.dtype)])
    return top


class Strategy:
    """Base class of all strategies.

    Subclasses set ``key`` and ``default_params`` and implement the hooks below.
    """

    key: ClassVar[str] = ""
    label: ClassVar[str] = ""
    default_params: ClassVar[dict[str, Any]] = {}

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
    def _fit(self, dataset: Dataset) -> None:
        """Learn from ``dataset``; ``self.item_ids`` is already set to its item universe."""
        raise NotImplementedError

    def _score_batch(self, contexts: Sequence[Context]) -> np.ndarray:
        """Return a float32 array (len(contexts), n_items): higher is better, -inf never."""
        raise NotImplementedError

    def _explain(self, context: Context, item_positions: np.ndarray) -> list[str]:
        """Return one short, human-readable reason per recommended item position."""
        return [self.label or "Recommended for you"] * len(item_positions)

    def _add_items(self, new_items: pd.DataFrame) -> None:
        """Extend internal arrays for items appended to ``item_ids`` (default: nothing)."""

    def _save_state(self, directory: Path) -> None:
        """Write learned state into ``directory`` (params and item ids are written for you)."""

    def _load_state(self, directory: Path) -> None:
        """Read what ``_save_state`` wrote."""

    # --- public API ----------------------------------------------------------------------------
    def fit(self, dataset: Dataset) -> "Strategy":
        """Train on ``dataset`` and return self."""
        self.item_ids = np.asarray(dataset.item_ids, dtype=object)
        self._item_index = pd.Index(self.item_ids)
        self._fit(dataset)
        self.fitted = True
        return self

    @property
    def n_items(self) -> int:
        self._check_fitted()
        return len(self.item_ids)

    def item_positions(self, item_ids: Iterable[str]) -> np.ndarray:
        """Positions of ``item_ids`` in ``self.item_ids``; -1 for items never seen."""
        self._check_fitted()
        return self._item_index.get_indexer(pd.Index([str(i) for i in item_ids], dtype=object))

    def score_batch(self, contexts: Sequence[Context]) -> np.ndarray:
        """Scores of every item for each context, float32 (len(contexts), n_items)."""
        self._check_fitted()
        if not contexts:
            return np.zeros((0, self.n_items), dtype=np.float32)
        scores = np.asarray(self._score_batch(list(contexts)), dtype=np.float32)
        if scores.shape != (len(contexts), self.n_items):
            raise RuntimeError(f"{self.key}: _score_batch returned shape {scores.shape}")
        return scores

    def score(self, context: Context) -> np.ndarray:
        return self.score_batch([context])[0]

    def recommend(self, context: Context | None = None, k: int = 10, exclude: Iterable[str] = ()) -> Recommendations:
        """Return the top ``k`` items for ``context``, never one of ``exclude``."""
        if not isinstance(k, (int, np.integer)) or k <= 0:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        context = context or Context()
        scores = self.score(context).copy()
        excluded = self.item_positions(exclude)
        scores[excluded[excluded >= 0]] = -np.inf
        positions = top_k_indices(scores, int(k))
        return Recommendations(
            item_ids=[str(i) for i in self.item_ids[positions]],
            scores=scores[positions],
            reasons=self._explain(context, positions),
            strategy=self.key,
        )

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
        from .registry import import_strategy_class

        directory = Path(directory)
        meta = json.loads((directory / "meta.json").read_text())
        if meta.get("format") != ARTIFACT_FORMAT:
            raise ValueError(f"{directory}: artifact format {meta.get('format')} is not {ARTIFACT_FORMAT}")
        klass = cls if cls.key == meta["key"] and cls is not Strategy else import_strategy_class(meta["class"])
        strategy = klass(**meta["params"])
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


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"{value!r} is not JSON serialisable")
