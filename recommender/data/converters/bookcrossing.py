"""Book-Crossing (the 2024 teaching subset in ``shared/data/bookcrossing``) to a Dataset.

Quirks handled:

- ``User-Country`` carries stray quotes and a leading blank (the field reads ``' usa"'``);
  locations are stripped of them, and ``n/a`` means unknown;
- ages are missing for 39 % of users, and some are implausible (0, 244): both become empty;
- ``Year-Of-Publication`` 0 means unknown;
- ``BX-NewBooks.csv`` / ``BX-NewBooksRatings.csv`` are a ready-made new-item split: their books
  are listed in ``meta["new_item_ids"]`` (the bundle's ``new_items.csv``) and their ratings come
  after the others;
- there are no timestamps, and the rows are sorted by ISBN within each user: the row order is
  not time, so the bundle says ``order: none`` and few-shot protocols reveal each user's
  ratings in a seeded random order instead;
- a few thousand users rate new books without a row in ``BX-Users.csv``; they stay users
  without attributes (``Dataset.user_ids`` includes them).

Books become items with the publisher as brand, and ``author`` and ``year`` columns; their
description reads "by AUTHOR, PUBLISHER, YEAR" so that text models see the author too.
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from ..dataset import Dataset
from . import ConversionError, require_files

USERS_FILE = "BX-Users.csv"
BOOKS_FILE = "BX-Books.csv"
RATINGS_FILE = "BX-Ratings.csv"
NEW_BOOKS_FILE = "BX-NewBooks.csv"
NEW_RATINGS_FILE = "BX-NewBooksRatings.csv"

# Ages outside this range are typing errors, not readers.
PLAUSIBLE_AGES = (1, 100)
UNKNOWN_PLACES = ("", "n/a", "na", "none", "unknown", "-")


def convert_bookcrossing(src: Path) -> Dataset:
    """Convert the Book-Crossing CSV files in ``src``; the NewBooks pair is optional."""
    src = Path(src)
    require_files(src, (USERS_FILE, BOOKS_FILE, RATINGS_FILE), "Book-Crossing")
    has_new_books = (src / NEW_BOOKS_FILE).is_file()
    if has_new_books:
        require_files(src, (NEW_RATINGS_FILE,), "Book-Crossing with new books")

    users = _users(_read(src / USERS_FILE, ("User-ID", "User-City", "User-State", "User-Country", "User-Age")))
    book_columns = ("ISBN", "Book-Title", "Book-Author", "Year-Of-Publication", "Book-Publisher")
    books = _read(src / BOOKS_FILE, book_columns)
    new_books = _read(src / NEW_BOOKS_FILE, book_columns) if has_new_books else books.iloc[:0]
    ratings = [_read(src / RATINGS_FILE, ("User-ID", "ISBN", "Book-Rating"))]
    if has_new_books:
        ratings.append(_read(src / NEW_RATINGS_FILE, ("User-ID", "ISBN", "Book-Rating")))

    items = _items(pd.concat([books, new_books], ignore_index=True))
    interactions = _ratings(pd.concat(ratings, ignore_index=True))
    return Dataset(
        users=users,
        items=items,
        interactions=interactions,
        name="bookcrossing",
        meta={"new_item_ids": new_books["ISBN"].str.strip().tolist(), "order": "none"},
    )


def _read(path: Path, columns) -> pd.DataFrame:
    """Read one file as strings; bytes that are not UTF-8 become U+FFFD rather than failing."""
    text = path.read_bytes().decode("utf-8", errors="replace")
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except pd.errors.ParserError as exc:
        raise ConversionError(f"{path} is not readable CSV: {exc}") from exc
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ConversionError(f"{path} lacks the column(s) {', '.join(missing)}")
    return frame


def _place(column: pd.Series) -> pd.Series:
    cleaned = column.str.strip().str.strip('"').str.strip()
    return cleaned.mask(cleaned.str.lower().isin(UNKNOWN_PLACES), "")


def _users(frame: pd.DataFrame) -> pd.DataFrame:
    age = pd.to_numeric(frame["User-Age"].str.strip(), errors="coerce")
    plausible = age.between(*PLAUSIBLE_AGES)
    return pd.DataFrame({
        "user_id": frame["User-ID"].str.strip(),
        "age": age.where(plausible),
        "country": _place(frame["User-Country"]),
        "region": _place(frame["User-State"]),
        "city": _place(frame["User-City"]),
    })


def _items(books: pd.DataFrame) -> pd.DataFrame:
    author = books["Book-Author"].str.strip()
    publisher = books["Book-Publisher"].str.strip()
    year = books["Year-Of-Publication"].str.strip()
    year = year.mask(pd.to_numeric(year, errors="coerce").fillna(0) <= 0, "")
    # "by AUTHOR, PUBLISHER, YEAR" without dangling commas where a part is unknown.
    description = ("by " + author).mask(author == "", "")
    for part in (publisher, year):
        joined = description + ", " + part
        description = joined.where((description != "") & (part != ""), description + part)
    return pd.DataFrame({
        "item_id": books["ISBN"].str.strip(),
        "title": books["Book-Title"].str.strip(),
        "description": description,
        "brand": publisher,
        "author": author,
        "year": year,
    })


def _ratings(ratings: pd.DataFrame) -> pd.DataFrame:
    values = pd.to_numeric(ratings["Book-Rating"].str.strip(), errors="coerce")
    if values.isna().any():
        bad = int(values.isna().to_numpy().argmax())
        raise ConversionError(f"rating {ratings['Book-Rating'].iloc[bad]!r} of row {bad + 1} is not a number")
    return pd.DataFrame({
        "user_id": ratings["User-ID"].str.strip(),
        "item_id": ratings["ISBN"].str.strip(),
        "event": "rating",
        "value": values,
    })
