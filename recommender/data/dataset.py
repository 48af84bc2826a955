"""The in-memory dataset every strategy trains on, and the canonical bundle it is read from.

A canonical bundle (docs/integration.md, "Data in") is a directory with three CSV files:

- ``users.csv``: ``user_id`` plus any attribute columns (``age``, ``gender``, ``country``,
  ``region``, ``city``, ...);
- ``items.csv``: ``item_id``, ``title``, optional ``description``, ``category``
  (``|``-separated path), ``brand``, ``price``, ``in_stock`` and any others;
- ``interactions.csv``: ``user_id``, ``item_id``, ``event``, optional ``value``,
  ``timestamp`` (seconds since the epoch, may be empty), ``dwell_seconds``.

Row order of ``interactions.csv`` is the tie-breaker for time (and the only time order where
timestamps are empty), unless the bundle's ``bundle.json`` says ``"order": "none"``: then the
order is not time at all (``meta["order"]``). All ids are strings.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .weights import capped_event_weights, visitor_day_groups

EVENT_TYPES = ("impression", "view", "click", "cart", "purchase", "rating")

# How strongly each event signals interest; mirrors RECOMMENDER["EVENT_WEIGHTS"] so that the
# numeric code does not need Django settings (pass ``weights=`` to override).
DEFAULT_EVENT_WEIGHTS = {
    "impression": 0.0,
    "view": 1.0,
    "click": 1.0,
    "cart": 3.0,
    "purchase": 5.0,
    "rating": 1.0,
}

USER_COLUMNS = ("user_id",)
ITEM_COLUMNS = ("item_id", "title", "description", "category", "brand", "price", "in_stock")
INTERACTION_COLUMNS = ("user_id", "item_id", "event", "value", "timestamp", "dwell_seconds")

# Whether a dataset's row order is real time (``meta["order"]``): "time", or "none" where rows
# are in some other order (Book-Crossing: sorted by ISBN within each user, no timestamps).
EVENT_ORDERS = ("time", "none")

# Profile attributes with a known meaning; any other users.csv column is a free attribute.
KNOWN_PROFILE_COLUMNS = ("age", "gender", "country", "region", "city", "language")


@dataclass
class Dataset:
    """Users, items and interactions as DataFrames, plus array views for numeric code.

    ``users`` is indexed by ``user_id``; ``items`` by ``item_id``; ``interactions`` has the
    columns of ``INTERACTION_COLUMNS`` in event order (time, then file order). The item
    universe is ``items``: strategies score every item in it, including items with no
    interactions (new products).
    """

    users: pd.DataFrame
    items: pd.DataFrame
    interactions: pd.DataFrame
    name: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.users = _normalise_users(self.users)
        self.items = _normalise_items(self.items)
        self.interactions = _normalise_interactions(self.interactions)

    # --- index views -------------------------------------------------------------------------
    @functools.cached_property
    def user_ids(self) -> np.ndarray:
        """All user ids: those in ``users`` then any that only appear in interactions."""
        extra = pd.Index(self.interactions["user_id"].unique()).difference(self.users.index, sort=False)
        return np.asarray(self.users.index.append(extra), dtype=object)

    @functools.cached_property
    def item_ids(self) -> np.ndarray:
        return np.asarray(self.items.index, dtype=object)

    @functools.cached_property
    def user_index(self) -> pd.Index:
        return pd.Index(self.user_ids)

    @functools.cached_property
    def item_index(self) -> pd.Index:
        return pd.Index(self.item_ids)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @functools.cached_property
    def user_codes(self) -> np.ndarray:
        """Row index into ``user_ids`` for each interaction (int32)."""
        return self.user_index.get_indexer(self.interactions["user_id"]).astype(np.int32)

    @functools.cached_property
    def item_codes(self) -> np.ndarray:
        """Column index into ``item_ids`` for each interaction (int32)."""
        return self.item_index.get_indexer(self.interactions["item_id"]).astype(np.int32)

    @functools.cached_property
    def timestamps(self) -> np.ndarray:
        """Event time in seconds; where missing, the row's position stands in for it."""
        ts = self.interactions["timestamp"].to_numpy(dtype=np.float64)
        if np.isnan(ts).all():
            return np.arange(len(ts), dtype=np.float64)
        return np.where(np.isnan(ts), np.nanmin(ts), ts)

    @functools.cached_property
    def visitor_day_groups(self) -> np.ndarray:
        """Group of each interaction: one per (user, item, UTC day); see ``data.weights``."""
        return visitor_day_groups(self.user_codes, self.item_codes,
                                  self.interactions["timestamp"].to_numpy(dtype=np.float64))

    # --- numeric views -----------------------------------------------------------------------
    def event_weights(self, weights: dict | None = None) -> np.ndarray:
        """Interest weight of each interaction from its event type (float32).

        A user's repeats of one item on one day count once, at their strongest event
        (``data.weights.capped_event_weights``): one visitor's flood of events moves no count.
        ``weights`` overrides entries of ``DEFAULT_EVENT_WEIGHTS``.
        """
        table = {**DEFAULT_EVENT_WEIGHTS, **(weights or {})}
        return capped_event_weights(self.interactions["event"].to_numpy(), self.visitor_day_groups, table,
                                    EVENT_TYPES)

    def is_positive(self, threshold: float | None = None) -> np.ndarray:
        """Whether each interaction counts as relevant (docs/architecture.md, "Offline evaluation").

        Ratings count when ``value >= threshold`` (every rating when ``threshold`` is None);
        carts and purchases always count; views, clicks and impressions never do.
        """
        events = self.interactions["event"].to_numpy()
        values = self.interactions["value"].to_numpy(dtype=np.float64)
        positive = np.isin(events, ("cart", "purchase"))
        rating = events == "rating"
        if threshold is None:
            positive |= rating
        else:
            positive |= rating & (np.nan_to_num(values, nan=-np.inf) >= threshold)
        return positive

    def interaction_matrix(self, weights: np.ndarray | None = None, mask: np.ndarray | None = None) -> sp.csr_matrix:
        """Users × items CSR matrix summing ``weights`` (default: event weights) over ``mask``."""
        if weights is None:
            weights = self.event_weights()
        rows, cols = self.user_codes, self.item_codes
        if mask is not None:
            rows, cols, weights = rows[mask], cols[mask], weights[mask]
        matrix = sp.csr_matrix(
            (np.asarray(weights, dtype=np.float32), (rows, cols)), shape=(self.n_users, self.n_items)
        )
        matrix.sum_duplicates()
        matrix.eliminate_zeros()
        return matrix

    @functools.cached_property
    def item_categories(self) -> np.ndarray:
        """Top-level category of each item ('' when unknown)."""
        return self.items["category"].fillna("").str.split("|").str[0].to_numpy(dtype=object)

    def item_text(self) -> list[str]:
        """One text per item for content models: title, brand, category path, description."""
        items = self.items
        parts = [items["title"], items["brand"], items["category"].str.replace("|", " > ", regex=False), items["description"]]
        text = parts[0].fillna("")
        for part in parts[1:]:
            part = part.fillna("")
            text = text.str.cat(part, sep=". ").str.strip(". ")
        return text.tolist()

    # --- slicing ---------------------------------------------------------------------------------
    def subset(self, interaction_mask: np.ndarray, user_ids=None) -> "Dataset":
        """Return a dataset with only the masked interactions (and the given users).

        The item universe is kept whole, so held-out items stay scoreable.
        """
        interactions = self.interactions[interaction_mask]
        users = self.users if user_ids is None else self.users[self.users.index.isin(user_ids)]
        return Dataset(users=users, items=self.items, interactions=interactions, name=self.name, meta=dict(self.meta))

    def without_users(self, user_ids) -> "Dataset":
        keep = ~self.interactions["user_id"].isin(set(user_ids)).to_numpy()
        remaining = self.users.index.difference(pd.Index(list(user_ids)), sort=False)
        return self.subset(keep, user_ids=remaining)

    def without_item_interactions(self, item_ids) -> "Dataset":
        keep = ~self.interactions["item_id"].isin(set(item_ids)).to_numpy()
        return self.subset(keep)

    def counts(self) -> dict:
        return {"users": int(self.n_users), "items": int(self.n_items), "interactions": int(len(self.interactions))}

    def __repr__(self):
        c = self.counts()
        return f"<Dataset {self.name or '?'}: {c['users']} users, {c['items']} items, {c['interactions']} interactions>"

    # --- bundle io -------------------------------------------------------------------------------
    @classmethod
    def read_bundle(cls, directory) -> "Dataset":
        """Read and validate a canonical bundle; see ``recommender.data.bundle``."""
        from .bundle import read_bundle

        return read_bundle(directory)

    def write_bundle(self, directory) -> Path:
        from .bundle import write_bundle

        return write_bundle(self, directory)


def _normalise_users(users: pd.DataFrame) -> pd.DataFrame:
    users = users.copy()
    if "user_id" in users.columns:
        users = users.set_index("user_id")
    users.index = users.index.astype(str)
    users.index.name = "user_id"
    if "age" in users.columns:
        users["age"] = pd.to_numeric(users["age"], errors="coerce")
    return users


def _normalise_items(items: pd.DataFrame) -> pd.DataFrame:
    items = items.copy()
    if "item_id" in items.columns:
        items = items.set_index("item_id")
    items.index = items.index.astype(str)
    items.index.name = "item_id"
    for column in ("title", "description", "category", "brand"):
        if column not in items.columns:
            items[column] = ""
        items[column] = items[column].fillna("").astype(str)
    if "price" not in items.columns:
        items["price"] = np.nan
    items["price"] = pd.to_numeric(items["price"], errors="coerce")
    if "in_stock" not in items.columns:
        items["in_stock"] = True
    items["in_stock"] = items["in_stock"].map(_as_bool).astype(bool)
    return items


def _as_bool(value) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return True
    return str(value).strip().lower() not in ("0", "false", "no", "n", "f")


def _normalise_interactions(interactions: pd.DataFrame) -> pd.DataFrame:
    interactions = interactions.copy()
    for column in INTERACTION_COLUMNS:
        if column not in interactions.columns:
            interactions[column] = np.nan
    interactions["user_id"] = interactions["user_id"].astype(str)
    interactions["item_id"] = interactions["item_id"].astype(str)
    interactions["event"] = interactions["event"].astype(str)
    for column in ("value", "timestamp", "dwell_seconds"):
        interactions[column] = pd.to_numeric(interactions[column], errors="coerce").astype(np.float64)
    interactions = interactions[list(INTERACTION_COLUMNS)]
    # Time order, file order on ties (stable sort keeps it).
    if interactions["timestamp"].notna().any():
        interactions = interactions.sort_values("timestamp", kind="stable", na_position="first")
    return interactions.reset_index(drop=True)
