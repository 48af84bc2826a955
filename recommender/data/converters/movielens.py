"""MovieLens 100K (``u.data``, ``u.user``, ``u.item``) and 1M (``*.dat``) to a Dataset.

Both layouts are read as GroupLens publishes them (titles are latin-1). Ratings become
``rating`` events with their 1–5 value and timestamp; movies are items whose category is the
``|``-joined genre list; the occupation and zip code are extra user attributes. The ratings
carry real timestamps, so the bundle's event order is time.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from ..dataset import Dataset
from . import ConversionError, require_files

ML100K_FILES = ("u.data", "u.user", "u.item")
ML1M_FILES = ("ratings.dat", "users.dat", "movies.dat")

# u.genre of the published 100K release, used when the file is absent.
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
)
# 1M stores an age *group* code; each becomes an age inside its group so that age bands work.
ML1M_AGE_GROUPS = {"1": 16, "18": 21, "25": 30, "35": 40, "45": 47, "50": 53, "56": 60}
ML1M_OCCUPATIONS = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
)


def convert_movielens(src: Path) -> Dataset:
    """Convert the MovieLens 100K or 1M files in ``src`` (the layout is detected)."""
    src = Path(src)
    if (src / "u.data").is_file():
        require_files(src, ML100K_FILES, "MovieLens 100K")
        return _convert_100k(src)
    if (src / "ratings.dat").is_file():
        require_files(src, ML1M_FILES, "MovieLens 1M")
        return _convert_1m(src)
    raise ConversionError(
        f"{src} holds neither MovieLens 100K ({', '.join(ML100K_FILES)}) "
        f"nor MovieLens 1M ({', '.join(ML1M_FILES)})"
    )


def _read(path: Path, sep: str, names, encoding="latin-1") -> pd.DataFrame:
    """Read a headerless separated file as strings; ``::`` is turned into a tab for the C parser."""
    text = path.read_bytes().decode(encoding)
    if len(sep) > 1:
        text = text.replace(sep, "\t")
        sep = "\t"
    try:
        return pd.read_csv(
            io.StringIO(text), sep=sep, header=None, names=names, dtype=str,
            keep_default_na=False, quoting=3, index_col=False,
        )
    except (pd.errors.ParserError, ValueError) as exc:
        raise ConversionError(f"{path} is not in the published layout: {exc}") from exc


def _ratings(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "user_id": frame["user_id"].str.strip(),
        "item_id": frame["item_id"].str.strip(),
        "event": "rating",
        "value": pd.to_numeric(frame["rating"]),
        "timestamp": pd.to_numeric(frame["timestamp"]),
    })


def _convert_100k(src: Path) -> Dataset:
    ratings = _read(src / "u.data", "\t", ["user_id", "item_id", "rating", "timestamp"])
    users = _read(src / "u.user", "|", ["user_id", "age", "gender", "occupation", "zip_code"])
    genres = _genres_100k(src)
    item_columns = ["item_id", "title", "release_date", "video_release_date", "imdb_url", *genres]
    movies = _read(src / "u.item", "|", item_columns)
    flags = movies[list(genres)].to_numpy() == "1"
    genre_names = np.asarray(genres, dtype=object)
    items = pd.DataFrame({
        "item_id": movies["item_id"],
        "title": movies["title"],
        "category": ["|".join(genre_names[row]) for row in flags],
        "release_date": movies["release_date"],
    })
    users = users.assign(gender=users["gender"].str.lower())
    return Dataset(users=users, items=items, interactions=_ratings(ratings), name="movielens-100k",
                   meta={"order": "time"})


def _genres_100k(src: Path) -> tuple:
    path = src / "u.genre"
    if not path.is_file():
        return ML100K_GENRES
    table = _read(path, "|", ["genre", "code"])
    table = table[table["genre"].str.strip() != ""]
    return tuple(table.sort_values("code", key=lambda codes: codes.astype(int))["genre"])


def _convert_1m(src: Path) -> Dataset:
    ratings = _read(src / "ratings.dat", "::", ["user_id", "item_id", "rating", "timestamp"])
    users = _read(src / "users.dat", "::", ["user_id", "gender", "age_group", "occupation", "zip_code"])
    movies = _read(src / "movies.dat", "::", ["item_id", "title", "category"])
    occupations = pd.Series(ML1M_OCCUPATIONS, index=[str(code) for code in range(len(ML1M_OCCUPATIONS))])
    users = pd.DataFrame({
        "user_id": users["user_id"],
        "age": users["age_group"].map(ML1M_AGE_GROUPS),
        "gender": users["gender"].str.lower(),
        "occupation": users["occupation"].map(occupations).fillna(users["occupation"]),
        "zip_code": users["zip_code"],
    })
    return Dataset(users=users, items=movies, interactions=_ratings(ratings), name="movielens-1m",
                   meta={"order": "time"})
