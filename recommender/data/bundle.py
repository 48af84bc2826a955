"""Read and write canonical bundles (docs/integration.md, "Data in"), validating every row at the edge.

A bundle is a directory of UTF-8 CSV files (see ``recommender.data.dataset``): ``users.csv``,
``items.csv``, ``interactions.csv`` and, optionally, ``new_items.csv`` (one column ``item_id``:
products held out as new, exposed as ``dataset.meta["new_item_ids"]``), plus a small manifest
``bundle.json``: ``{"format": 1, "order": "time"}`` says whether the interactions' row order is
real time (``"time"``) or not (``"none"``), exposed as ``dataset.meta["order"]``. The
converters write it; a bundle without one is taken to be in time order.

Any problem raises ``BundleError`` naming the file, the line (1-based; the header is line 1)
and the field, so that the person who made the file knows what to fix. Writing goes to a
temporary directory beside the target and is renamed into place, so a half-written bundle
never exists under the target's name.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from .dataset import EVENT_ORDERS, EVENT_TYPES, Dataset

USERS_FILE = "users.csv"
ITEMS_FILE = "items.csv"
INTERACTIONS_FILE = "interactions.csv"
NEW_ITEMS_FILE = "new_items.csv"
MANIFEST_FILE = "bundle.json"
MANIFEST_FORMAT = 1

REQUIRED_COLUMNS = {
    USERS_FILE: ("user_id",),
    ITEMS_FILE: ("item_id", "title"),
    INTERACTIONS_FILE: ("user_id", "item_id", "event"),
    NEW_ITEMS_FILE: ("item_id",),
}
# Columns that must be numbers when filled in (empty means unknown).
NUMERIC_COLUMNS = {
    USERS_FILE: ("age",),
    ITEMS_FILE: ("price",),
    INTERACTIONS_FILE: ("value", "timestamp", "dwell_seconds"),
    NEW_ITEMS_FILE: (),
}
# Enough digits for a timestamp with milliseconds; whole numbers are written without ".0".
FLOAT_FORMAT = "%.15g"


class BundleError(ValueError):
    """A bundle file is missing or has a bad row; the message says which file, line and field."""

    def __init__(self, path, problem, line=None, field=None):
        self.path, self.problem, self.line, self.field = Path(path), problem, line, field
        where = str(self.path)
        if line is not None:
            where += f", line {line}"
        if field is not None:
            where += f", field {field!r}"
        super().__init__(f"{where}: {problem}")


# --- reading ------------------------------------------------------------------------------------
def read_bundle(directory) -> Dataset:
    """Read and validate the bundle in ``directory``; return it as a ``Dataset``.

    Raises
    ------
    BundleError
        For a missing directory, file or required column, an empty or duplicate id, an unknown
        event type, a non-numeric number, a negative dwell time, or an interaction (or new
        item) naming an item that ``items.csv`` does not list.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise BundleError(directory, "is not a directory holding a bundle (users.csv, items.csv, interactions.csv)")
    users = _read_table(directory / USERS_FILE)
    items = _read_table(directory / ITEMS_FILE)
    interactions = _read_table(directory / INTERACTIONS_FILE)
    new_items_path = directory / NEW_ITEMS_FILE
    new_items = _read_table(new_items_path) if new_items_path.exists() else None

    _check_ids(directory / USERS_FILE, users, "user_id", unique=True)
    _check_ids(directory / ITEMS_FILE, items, "item_id", unique=True)
    _check_ids(directory / INTERACTIONS_FILE, interactions, "user_id")
    _check_ids(directory / INTERACTIONS_FILE, interactions, "item_id")
    _check_events(directory / INTERACTIONS_FILE, interactions)
    known_items = pd.Index(items["item_id"])
    _check_known_items(directory / INTERACTIONS_FILE, interactions, known_items)
    if new_items is not None:
        _check_ids(new_items_path, new_items, "item_id", unique=True)
        _check_known_items(new_items_path, new_items, known_items)

    users = users.drop(columns="_line")
    return Dataset(
        users=users,
        items=items.drop(columns="_line"),
        interactions=interactions.drop(columns="_line"),
        name=directory.resolve().name,
        meta={"new_item_ids": [] if new_items is None else new_items["item_id"].tolist(),
              **read_manifest(directory)},
    )


def read_manifest(directory) -> dict:
    """The bundle's ``bundle.json`` as dataset meta (``{"order": ...}``); absent: time order."""
    path = Path(directory) / MANIFEST_FILE
    if not path.exists():
        return {"order": "time", "order_source": "default (no bundle.json)"}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(path, f"is not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict):
        raise BundleError(path, 'must hold a JSON object such as {"format": 1, "order": "time"}')
    order = manifest.get("order", "time")
    if order not in EVENT_ORDERS:
        raise BundleError(path, f"{order!r} is not an event order; use one of {', '.join(EVENT_ORDERS)} "
                                "(time: rows are in time order; none: they are not)", field="order")
    return {"order": order, "order_source": MANIFEST_FILE}


def _read_table(path: Path) -> pd.DataFrame:
    """Read one CSV as strings, with a ``_line`` column giving each row's line in the file.

    A row with too many fields is an error; missing trailing fields read as empty, and blank
    lines are skipped.
    """
    if not path.is_file():
        raise BundleError(path, "file is missing")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise BundleError(path, f"is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    try:
        with warnings.catch_warnings():
            # With index_col=False pandas only warns (and drops data) when the first row is too long.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            table = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skip_blank_lines=False,
                                index_col=False)
    except pd.errors.ParserWarning:
        raise BundleError(path, "is not valid CSV: the row has more fields than the header", line=2) from None
    except pd.errors.EmptyDataError:
        raise BundleError(path, "file is empty; expected a header line", line=1) from None
    except pd.errors.ParserError as exc:
        line = re.search(r"line (\d+)", str(exc))
        raise BundleError(path, f"is not valid CSV: {exc}", line=int(line.group(1)) if line else None) from exc
    table.columns = [str(name).strip().lstrip("\ufeff") for name in table.columns]
    missing = [name for name in REQUIRED_COLUMNS[path.name] if name not in table.columns]
    if missing:
        raise BundleError(path, f"lacks the required column(s) {', '.join(missing)}", line=1)
    table["_line"] = _record_lines(text, len(table))
    table = table[(table.drop(columns="_line") != "").any(axis=1)].reset_index(drop=True)
    for column in NUMERIC_COLUMNS[path.name]:
        if column in table.columns:
            _check_numbers(path, table, column)
    return table


def _record_lines(text: str, n_records: int) -> np.ndarray:
    """Line (1-based) on which each record after the header starts.

    Usually one record per line; when a quoted field spans lines the csv module counts them.
    """
    n_lines = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
    if n_lines == n_records + 1:
        return np.arange(2, n_records + 2, dtype=np.int64)
    reader = csv.reader(io.StringIO(text, newline=""))
    next(reader, None)
    starts, start = [], reader.line_num
    for _ in reader:
        starts.append(start + 1)
        start = reader.line_num
    return np.asarray(starts[:n_records], dtype=np.int64)


def _fail_at(path, table, bad_mask, field, problem):
    """Raise a BundleError for the first row where ``bad_mask`` holds, if any."""
    bad_mask = np.asarray(bad_mask, dtype=bool)
    if bad_mask.any():
        first = int(np.argmax(bad_mask))
        value = table[field].iloc[first] if field in table.columns else None
        raise BundleError(path, problem.format(value=value), line=int(table["_line"].iloc[first]), field=field)


def _check_numbers(path, table, column):
    text = table[column]
    numbers = pd.to_numeric(text.where(text != ""), errors="coerce")
    _fail_at(path, table, (text != "") & ~np.isfinite(numbers.to_numpy(dtype=np.float64)), column,
             "{value!r} is not a number")
    if column == "dwell_seconds":
        _fail_at(path, table, numbers < 0, column, "{value} is negative; dwell time cannot be")


def _check_ids(path, table, column, unique=False):
    ids = table[column]
    _fail_at(path, table, ids == "", column, "is empty; every row needs an id")
    if unique:
        _fail_at(path, table, ids.duplicated(), column, "{value!r} appears more than once")


def _check_events(path, table):
    _fail_at(path, table, ~table["event"].isin(EVENT_TYPES), "event",
             "{value!r} is not an event type (one of " + ", ".join(EVENT_TYPES) + ")")


def _check_known_items(path, table, known_items):
    _fail_at(path, table, ~table["item_id"].isin(known_items), "item_id",
             f"{{value!r}} is not listed in {ITEMS_FILE}")


# --- writing ------------------------------------------------------------------------------------
def write_bundle(dataset: Dataset, directory) -> Path:
    """Write ``dataset`` as a bundle at ``directory``, replacing any bundle already there.

    The files are written into a temporary sibling directory which is then renamed into place,
    so readers see either the old bundle or the complete new one.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        _write_csv(dataset.users.reset_index(), staging / USERS_FILE)
        _write_csv(dataset.items.reset_index(), staging / ITEMS_FILE)
        _write_csv(dataset.interactions, staging / INTERACTIONS_FILE)
        new_item_ids = dataset.meta.get("new_item_ids")
        if new_item_ids is not None and len(new_item_ids):
            _write_csv(pd.DataFrame({"item_id": list(new_item_ids)}), staging / NEW_ITEMS_FILE)
        manifest = {"format": MANIFEST_FORMAT, "order": dataset.meta.get("order", "time")}
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        _replace_directory(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


def _write_csv(frame: pd.DataFrame, path: Path):
    frame.to_csv(path, index=False, encoding="utf-8", float_format=FLOAT_FORMAT, lineterminator="\n")


def _replace_directory(staging: Path, directory: Path):
    """Rename ``staging`` to ``directory``; an existing target is moved aside first, then removed."""
    os.chmod(staging, 0o755)  # mkdtemp makes it private
    if not directory.exists():
        staging.rename(directory)
        return
    if not directory.is_dir():
        raise BundleError(directory, "exists and is not a directory; refusing to replace it")
    retired = Path(tempfile.mkdtemp(prefix=f".{directory.name}-old-", dir=directory.parent))
    directory.rename(retired / directory.name)
    staging.rename(directory)
    shutil.rmtree(retired, ignore_errors=True)
