"""Profile encoding shared by every strategy that reads demographics.

Ages become bands, locations a hierarchy (country, country/region, country/region/city), and any
extra attribute column a categorical one-hot. Unknown values encode as all-zero in their group,
so a profile the encoder never saw still encodes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

AGE_BANDS = ((0, 18, "under 18"), (18, 25, "18–24"), (25, 35, "25–34"), (35, 45, "35–44"),
             (45, 55, "45–54"), (55, 65, "55–64"), (65, 200, "65+"))
LOCATION_LEVELS = ("country", "region", "city")
# Ages outside this range are data errors (Book-Crossing has 0 and 244).
PLAUSIBLE_AGE = (5, 100)


def age_band(age) -> str | None:
    """Return the age band label for an age in years, or None if unknown or implausible."""
    try:
        age = float(age)
    except (TypeError, ValueError):
        return None
    if not (PLAUSIBLE_AGE[0] <= age <= PLAUSIBLE_AGE[1]):
        return None
    for low, high, label in AGE_BANDS:
        if low <= age < high:
            return label
    return None


def clean_text(value) -> str | None:
    """Lower-cased, stripped text; quotes and blanks (Book-Crossing's ``' usa"'``) removed."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value).strip().strip('"').strip().lower()
    return text or None


def profile_tokens(profile: Mapping, extra_columns: Sequence[str] = ()) -> dict[str, str]:
    """Map a profile dict to categorical tokens: {group: value}.

    Groups: ``age_band``, ``gender``, ``country``, ``region`` (country/region), ``city``
    (country/region/city), and each extra attribute column by name.
    """
    tokens = {}
    band = age_band(profile.get("age"))
    if band:
        tokens["age_band"] = band
    gender = clean_text(profile.get("gender"))
    if gender:
        tokens["gender"] = gender
    path = []
    for level in LOCATION_LEVELS:
        value = clean_text(profile.get(level))
        if not value:
            break
        path.append(value)
        tokens[level] = "/".join(path)
    for column in extra_columns:
        value = clean_text(profile.get(column))
        if value:
            tokens[column] = value
    return tokens


def segment_of(tokens: Mapping[str, str], keys: Sequence[str]) -> tuple:
    """Return the segment tuple for ``keys`` (None where a key is unknown)."""
    return tuple(tokens.get(key) for key in keys)


def describe_segment(tokens: Mapping[str, str], keys: Sequence[str]) -> str:
    """Human words for a segment: 'shoppers aged 25–34 in Germany'."""
    words = []
    gender = tokens.get("gender") if "gender" in keys else None
    noun = {"f": "women", "m": "men"}.get(gender or "", "shoppers")
    words.append(noun)
    if "age_band" in keys and tokens.get("age_band"):
        words.append(f"aged {tokens['age_band']}")
    for level in ("city", "region", "country"):
        if level in keys and tokens.get(level):
            words.append(f"in {tokens[level].split('/')[-1].title()}")
            break
    for key in keys:
        if key not in ("gender", "age_band", *LOCATION_LEVELS) and tokens.get(key):
            words.append(f"({key}: {tokens[key]})")
    return " ".join(words)


class ProfileEncoder:
    """One-hot encoding of profiles into a sparse matrix, fitted on the training users.

    Parameters
    ----------
    extra_columns
        Attribute columns beyond the known ones to encode as categories. ``None`` takes every
        non-known column of the users frame with at most ``max_categories`` distinct values.
    min_count
        Values seen fewer times than this in training are dropped (encoded as unknown).
    """

    def __init__(self, extra_columns: Sequence[str] | None = None, min_count: int = 2, max_categories: int = 200):
        self.extra_columns = None if extra_columns is None else list(extra_columns)
        self.min_count = min_count
        self.max_categories = max_categories
        self.vocabulary_: dict[tuple[str, str], int] = {}
        self.groups_: list[str] = []

    def fit(self, users: pd.DataFrame) -> "ProfileEncoder":
        self.fit_token_table(users)
        return self

    def fit_token_table(self, users: pd.DataFrame) -> pd.DataFrame:
        """Fit on ``users`` and return their ``token_table`` (computed once for both)."""
        if self.extra_columns is None:
            self.extra_columns = [
                column for column in users.columns
                if column not in ("age", "gender", *LOCATION_LEVELS, "language", "birth_year")
                and users[column].nunique(dropna=True) <= self.max_categories
            ]
        table = self.token_table(users)
        kept = []
        for group in table.columns:
            counts = table[group].value_counts(dropna=True)
            kept += [(group, str(value)) for value in counts.index[counts.to_numpy() >= self.min_count]]
        kept.sort()
        self.vocabulary_ = {pair: position for position, pair in enumerate(kept)}
        self.groups_ = sorted({group for group, _ in kept})
        return table

    def token_table(self, users: pd.DataFrame) -> pd.DataFrame:
        """The tokens of every user as columns (one per group; missing = None), vectorised.

        Same tokens as ``profile_tokens`` row by row, without a Python loop over users.
        """
        frame = users.reset_index()
        table = {}

        def column(name):
            return frame[name] if name in frame.columns else pd.Series([None] * len(frame), dtype=object)

        ages = pd.to_numeric(column("age"), errors="coerce").to_numpy(dtype=np.float64)
        plausible = (ages >= PLAUSIBLE_AGE[0]) & (ages <= PLAUSIBLE_AGE[1])
        edges = np.array([high for _, high, _ in AGE_BANDS[:-1]], dtype=np.float64)
        labels = np.array([label for _, _, label in AGE_BANDS], dtype=object)
        bands = labels[np.digitize(np.nan_to_num(ages, nan=0.0), edges, right=False)]
        table["age_band"] = np.where(plausible, bands, None)
        table["gender"] = _clean_column(column("gender"))
        path = None
        for level in LOCATION_LEVELS:
            value = _clean_column(column(level))
            if path is None:
                path = value
            else:
                known = pd.notna(path) & pd.notna(value)
                path = np.where(known, pd.Series(path).astype(str) + "/" + pd.Series(value).astype(str), None)
            table[level] = path
        for name in self.extra_columns or ():
            table[name] = _clean_column(column(name))
        return pd.DataFrame(table, index=users.index).astype(object).where(lambda t: pd.notna(t), None)

    def tokens_frame(self, users: pd.DataFrame) -> list[dict[str, str]]:
        """``profile_tokens`` of every user, as dicts."""
        table = self.token_table(users)
        groups = list(table.columns)
        return [
            {group: value for group, value in zip(groups, row) if value is not None}
            for row in table.itertuples(index=False, name=None)
        ]

    def tokens(self, profile: Mapping) -> dict[str, str]:
        return profile_tokens(profile, self.extra_columns or ())

    @property
    def n_features(self) -> int:
        return len(self.vocabulary_)

    def transform(self, profiles: Sequence[Mapping] | pd.DataFrame) -> sp.csr_matrix:
        """Encode profiles (dicts or a users frame) as a CSR matrix of 0/1 (float32)."""
        if isinstance(profiles, pd.DataFrame):
            return self._transform_table(self.token_table(profiles))
        rows, cols = [], []
        for row, profile in enumerate(profiles):
            for pair in self.tokens(profile).items():
                position = self.vocabulary_.get(pair)
                if position is not None:
                    rows.append(row)
                    cols.append(position)
        data = np.ones(len(rows), dtype=np.float32)
        return sp.csr_matrix((data, (rows, cols)), shape=(len(profiles), self.n_features))

    def _transform_table(self, table: pd.DataFrame) -> sp.csr_matrix:
        positions_by_group: dict[str, dict[str, int]] = {}
        for (group, value), position in self.vocabulary_.items():
            positions_by_group.setdefault(group, {})[value] = position
        rows, cols = [], []
        for group, lookup in positions_by_group.items():
            if group not in table.columns:
                continue
            positions = table[group].map(lookup).to_numpy(dtype=np.float64, na_value=np.nan)
            found = ~np.isnan(positions)
            rows.append(np.flatnonzero(found))
            cols.append(positions[found].astype(np.int64))
        rows = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        cols = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
        data = np.ones(len(rows), dtype=np.float32)
        return sp.csr_matrix((data, (rows, cols)), shape=(len(table), self.n_features))

    def get_state(self) -> dict:
        return {
            "extra_columns": self.extra_columns,
            "min_count": self.min_count,
            "max_categories": self.max_categories,
            "vocabulary": [[group, value] for (group, value) in sorted(self.vocabulary_, key=self.vocabulary_.get)],
        }

    @classmethod
    def from_state(cls, state: dict) -> "ProfileEncoder":
        encoder = cls(state["extra_columns"], state["min_count"], state["max_categories"])
        encoder.vocabulary_ = {(group, value): i for i, (group, value) in enumerate(state["vocabulary"])}
        encoder.groups_ = sorted({group for group, _ in encoder.vocabulary_})
        return encoder


def _clean_column(values: pd.Series) -> np.ndarray:
    """``clean_text`` over a column: each distinct value is cleaned once, then spread back."""
    codes, uniques = pd.factorize(values.astype(object), use_na_sentinel=True)
    cleaned_uniques = np.array([clean_text(value) for value in uniques] + [None], dtype=object)
    return cleaned_uniques[codes]  # code -1 (missing) picks the trailing None
