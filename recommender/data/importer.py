"""Bulk-load a ``Dataset`` into the shop's database: products, users, profiles, events, ratings.

- Products go into the host catalog through the catalog adapter and are matched by external
  id (the bundle's ``item_id``), so an existing product is never duplicated.
- Users become accounts named ``IMPORT_USERNAME_PREFIX + user_id`` with an unusable password;
  those listed in ``users.csv`` get a ``UserProfile`` (age becomes a birth year; gender,
  country, region, city, language go to their fields, any other column into ``attributes``).
  Existing accounts and profiles are left as they are.
- Every interaction becomes an ``Interaction`` whose ``dedupe_key`` hashes its content (user,
  item, event, value, timestamp) and how many identical rows came before it in the file, so a
  second import of the same bundle adds nothing while genuine repeats are all kept.
- ``rating`` events with a value also set the user's ``Rating`` of the product (the last one
  in event order wins; an existing rating is overwritten).

Timestamps: a row's ``timestamp`` (seconds since the epoch, UTC) when given. Rows without one
(Book-Crossing, RecBole) get synthetic times one second apart in event order, ending one
second before the earliest given timestamp, or before the import started when none is given;
the order of the file is what they preserve, not any real time.

The whole import runs in one transaction: if anything fails, nothing of that run is kept.
"""

from __future__ import annotations

import hashlib
import secrets
import sys

import numpy as np
import pandas as pd
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX
from django.db import transaction
from django.utils import timezone
from tqdm.auto import tqdm

from ..catalog import get_adapter
from ..conf import settings
from ..models import Gender, Interaction, Rating, UserProfile
from .dataset import KNOWN_PROFILE_COLUMNS, Dataset

GENDER_WORDS = {
    "f": Gender.FEMALE, "female": Gender.FEMALE, "w": Gender.FEMALE, "woman": Gender.FEMALE,
    "m": Gender.MALE, "male": Gender.MALE, "man": Gender.MALE,
    "x": Gender.OTHER, "other": Gender.OTHER, "diverse": Gender.OTHER, "non-binary": Gender.OTHER,
}
DEDUPE_KEY_PREFIX = "import:"


class DatasetImportError(ValueError):
    """The dataset cannot be stored as it is (an unknown item, an id too long for its field)."""


def import_dataset(dataset: Dataset, *, progress=True, stdout=None, batch_size=None, username_prefix=None) -> dict:
    """Store ``dataset`` in the database; return how many rows were added per table.

    ``progress`` shows a tqdm bar on stderr, or on ``stdout`` when one is given (a management
    command's ``self.stdout`` works). Writes go in batches of ``batch_size`` (default
    ``RECOMMENDER["IMPORT_BATCH_SIZE"]``), all inside one transaction.
    """
    batch_size = batch_size or settings.IMPORT_BATCH_SIZE
    prefix = settings.IMPORT_USERNAME_PREFIX if username_prefix is None else username_prefix
    interactions = dataset.interactions.assign(
        moment=synthetic_timestamps(dataset.interactions["timestamp"].to_numpy(dtype=np.float64),
                                    timezone.now().timestamp())
    )
    ratings = _rating_rows(interactions)
    total = len(dataset.items) + dataset.n_users + len(dataset.users) + len(interactions) + len(ratings)
    bar = tqdm(total=total, unit="row", disable=not progress, dynamic_ncols=True,
               file=_ProgressStream(stdout) if stdout is not None else sys.stderr)
    adapter = get_adapter()
    # The adapter caches related rows (categories); rows of a rolled-back run must not linger.
    adapter.forget_related_cache()
    try:
        with transaction.atomic():
            bar.set_description("products")
            product_pks, added_products = _import_products(dataset.items, adapter, batch_size, bar)
            bar.set_description("users")
            user_pks, added_users = _import_users(dataset.user_ids, prefix, batch_size, bar)
            bar.set_description("profiles")
            added_profiles = _import_profiles(dataset.users, user_pks, batch_size, bar)
            product_pks, user_pks = pd.Series(product_pks, dtype=object), pd.Series(user_pks, dtype=object)
            bar.set_description("interactions")
            added_interactions = _import_interactions(interactions, prefix, product_pks, user_pks, batch_size, bar)
            bar.set_description("ratings")
            added_ratings = _import_ratings(ratings, product_pks, user_pks, batch_size, bar)
    finally:
        adapter.forget_related_cache()
        bar.close()
    return {
        "products": added_products,
        "users": added_users,
        "profiles": added_profiles,
        "interactions": added_interactions,
        "ratings": added_ratings,
    }


class _ProgressStream:
    """File-like view of a stream for tqdm: Django's OutputWrapper would add a newline per write."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text):
        try:
            self.stream.write(text, ending="")
        except TypeError:
            self.stream.write(text)

    def flush(self):
        getattr(self.stream, "flush", lambda: None)()


def _batches(frame: pd.DataFrame, size: int):
    for start in range(0, len(frame), size):
        yield frame.iloc[start : start + size]


def _lookup(pks: pd.Series, keys: pd.Series, what: str) -> np.ndarray:
    """Map ``keys`` through ``pks`` (id → pk); a key it lacks is a DatasetImportError naming it."""
    values = pks.reindex(keys.to_numpy())
    missing = values.isna().to_numpy()
    if missing.any():
        raise DatasetImportError(f"{what} {keys.iloc[int(np.argmax(missing))]!r} is not in the dataset's {what}s")
    return values.to_numpy(dtype=object)


# --- products -----------------------------------------------------------------------------------
def _import_products(items: pd.DataFrame, adapter, batch_size: int, bar) -> tuple[dict, int]:
    """Create the products not in the catalog yet; return ({item_id: pk}, number created)."""
    items = items[~items.index.duplicated()]
    columns = ["title", "description", "category", "brand", "price", "in_stock"]
    pks, added = {}, 0
    for batch in _batches(items[columns], batch_size):
        ids = batch.index.tolist()
        existing = adapter.existing_pks_by_external_id(ids)
        fresh = batch[~batch.index.isin(list(existing))].astype(object)
        fresh = fresh.where(fresh.notna(), None)
        products = [adapter.build_product({"external_id": item_id, **row})
                    for item_id, row in zip(fresh.index, fresh.to_dict("records"))]
        adapter.model._default_manager.bulk_create(products, batch_size=batch_size)
        added += len(products)
        pks.update(adapter.existing_pks_by_external_id(ids))
        bar.update(len(batch))
    stored = pd.Index(list(pks))
    unstored = items.index.difference(stored)
    if len(unstored):
        raise DatasetImportError(
            f"item {unstored[0]!r} could not be stored under its id (too long for the catalog's "
            "external id field?)"
        )
    return pks, added


# --- users and profiles -------------------------------------------------------------------------
def _import_users(user_ids, prefix: str, batch_size: int, bar) -> tuple[dict, int]:
    """Create an account per user id; return ({user_id: user pk}, number created)."""
    User = get_user_model()
    name_field = User.USERNAME_FIELD
    max_length = User._meta.get_field(name_field).max_length
    ids = pd.Series(np.asarray(user_ids, dtype=object), dtype=object)
    names = prefix + ids.astype(str)
    if max_length and (names.str.len() > max_length).any():
        raise DatasetImportError(f"user name {names[names.str.len() > max_length].iloc[0]!r} is longer than "
                                 f"{max_length} characters")
    pks, added = {}, 0
    for start in range(0, len(names), batch_size):
        batch_names = names.iloc[start : start + batch_size].tolist()
        batch_ids = ids.iloc[start : start + batch_size].tolist()
        existing = dict(User._default_manager.filter(**{f"{name_field}__in": batch_names}).values_list(name_field, "pk"))
        # An unusable password is "!" plus random text; make_password(None) draws it a character
        # at a time, which costs seconds for tens of thousands of accounts.
        fresh = [User(**{name_field: name, "password": UNUSABLE_PASSWORD_PREFIX + secrets.token_hex(20)})
                 for name in batch_names if name not in existing]
        User._default_manager.bulk_create(fresh, batch_size=batch_size)
        added += len(fresh)
        stored = dict(User._default_manager.filter(**{f"{name_field}__in": batch_names}).values_list(name_field, "pk"))
        pks.update((user_id, stored[name]) for user_id, name in zip(batch_ids, batch_names))
        bar.update(len(batch_names))
    return pks, added


def _import_profiles(users: pd.DataFrame, user_pks: dict, batch_size: int, bar) -> int:
    """Create a profile for each listed user who has none; return how many were created."""
    users = users[~users.index.duplicated()]
    this_year = timezone.now().year
    text_fields = {name: UserProfile._meta.get_field(name).max_length
                   for name in ("country", "region", "city", "language")}
    extra_columns = [column for column in users.columns if column not in KNOWN_PROFILE_COLUMNS]
    added = 0
    for batch in _batches(users, batch_size):
        batch_pks = [user_pks[user_id] for user_id in batch.index]
        has_profile = set(UserProfile.objects.filter(user_id__in=batch_pks).values_list("user_id", flat=True))
        records = batch.astype(object).where(batch.notna(), None).to_dict("records")
        profiles = [
            _profile(pk, record, this_year, text_fields, extra_columns)
            for pk, record in zip(batch_pks, records)
            if pk not in has_profile
        ]
        UserProfile.objects.bulk_create(profiles, batch_size=batch_size)
        added += len(profiles)
        bar.update(len(batch))
    return added


def _profile(user_pk, record: dict, this_year: int, text_fields: dict, extra_columns) -> UserProfile:
    age = pd.to_numeric(record.get("age"), errors="coerce")
    birth_year = int(round(this_year - age)) if age is not None and 0 < age < 130 else None
    gender = GENDER_WORDS.get(str(record.get("gender") or "").strip().lower(), Gender.UNKNOWN)
    texts = {name: str(record.get(name) or "").strip()[:max_length] for name, max_length in text_fields.items()}
    attributes = {column: _json_value(record[column]) for column in extra_columns
                  if record.get(column) not in (None, "")}
    return UserProfile(user_id=user_pk, birth_year=birth_year, gender=gender, attributes=attributes, **texts)


def _json_value(value):
    return value.item() if isinstance(value, np.generic) else value


# --- interactions and ratings -------------------------------------------------------------------
def _import_interactions(interactions: pd.DataFrame, prefix, product_pks, user_pks, batch_size, bar) -> int:
    """Insert the interactions whose dedupe key is new; return how many were inserted."""
    frame = interactions.assign(dedupe_key=dedupe_keys(interactions, prefix))
    added = 0
    for batch in _batches(frame, batch_size):
        keys = batch["dedupe_key"].tolist()
        seen = set(Interaction.objects.filter(dedupe_key__in=keys).values_list("dedupe_key", flat=True))
        fresh = batch[~batch["dedupe_key"].isin(seen)]
        user_column = _lookup(user_pks, fresh["user_id"], "user")
        product_column = _lookup(product_pks, fresh["item_id"], "item")
        moments = pd.to_datetime(fresh["moment"].to_numpy(), unit="s", utc=True).to_pydatetime()
        values = fresh["value"].astype(object).where(fresh["value"].notna(), None).tolist()
        dwells = fresh["dwell_seconds"].astype(object).where(fresh["dwell_seconds"].notna(), None).tolist()
        rows = zip(user_column, product_column, fresh["event"].tolist(), values, dwells, moments, fresh["dedupe_key"])
        Interaction.objects.bulk_create(
            [Interaction(user_id=user, product_id=product, event=event, value=value, dwell_seconds=dwell,
                         timestamp=moment, dedupe_key=key)
             for user, product, event, value, dwell, moment, key in rows],
            batch_size=batch_size,
            ignore_conflicts=True,
        )
        added += len(fresh)
        bar.update(len(batch))
    return added


def dedupe_keys(interactions: pd.DataFrame, prefix: str) -> pd.Series:
    """Content hash of each interaction and its occurrence number among identical rows."""
    content = ["user_id", "item_id", "event", "value", "timestamp"]
    occurrence = interactions.groupby(content, dropna=False, sort=False).cumcount()
    text = (prefix + interactions["user_id"] + "\x1f" + interactions["item_id"] + "\x1f" + interactions["event"]
            + "\x1f" + _number_text(interactions["value"]) + "\x1f" + _number_text(interactions["timestamp"])
            + "\x1f" + occurrence.astype(str))
    digests = [hashlib.sha256(row.encode()).hexdigest() for row in text]
    return pd.Series(digests, index=interactions.index, dtype=object).radd(DEDUPE_KEY_PREFIX)


def _number_text(column: pd.Series) -> pd.Series:
    return column.map(lambda number: "" if pd.isna(number) else repr(float(number)))


def synthetic_timestamps(seconds: np.ndarray, now: float) -> np.ndarray:
    """Fill missing timestamps with increasing times that keep the given (event) order.

    Missing entries become one second apart, the last one a second before the earliest known
    timestamp (or before ``now`` when none is known).
    """
    missing = np.isnan(seconds)
    if not missing.any():
        return seconds
    anchor = np.floor(np.nanmin(seconds)) if (~missing).any() else np.floor(now)
    filled = seconds.copy()
    filled[missing] = anchor - missing.sum() + np.arange(missing.sum())
    return filled


def _rating_rows(interactions: pd.DataFrame) -> pd.DataFrame:
    """The last valued rating of each (user, item) pair, with its event time."""
    ratings = interactions[(interactions["event"] == "rating") & interactions["value"].notna()]
    return ratings.drop_duplicates(["user_id", "item_id"], keep="last")


def _import_ratings(ratings: pd.DataFrame, product_pks, user_pks, batch_size, bar) -> int:
    """Upsert one Rating per (user, product); return how many pairs had none before.

    Pairs that already hold the same score are left alone, so a second import writes nothing.
    """
    added = 0
    for start in range(0, len(ratings), batch_size):
        batch = ratings.iloc[start : start + batch_size]
        users = _lookup(user_pks, batch["user_id"], "user")
        products = _lookup(product_pks, batch["item_id"], "item")
        stored = {
            (user, product): score
            for user, product, score in Rating.objects.filter(
                user_id__in=set(users), product_id__in=set(products)
            ).values_list("user_id", "product_id", "score")
        }
        created = pd.to_datetime(batch["moment"].to_numpy(), unit="s", utc=True).to_pydatetime()
        changed = [
            Rating(user_id=user, product_id=product, score=score, created_at=when)
            for user, product, score, when in zip(users, products, batch["value"].tolist(), created)
            if stored.get((user, product)) != score
        ]
        Rating.objects.bulk_create(
            changed,
            batch_size=batch_size,
            update_conflicts=True,
            unique_fields=["user", "product"],
            update_fields=["score", "updated_at"],
        )
        added += sum((user, product) not in stored for user, product in zip(users, products))
        bar.update(len(batch))
    return added
