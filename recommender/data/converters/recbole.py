"""RecBole atomic files (the UniSRec-style Amazon preprocessing) to a Dataset.

Files, for a data set prefix ``X`` detected from the directory:

- ``X.text``: ``item_id:token`` (ASIN) TAB ``text:token_seq`` = "TITLE. CATEGORIES. BRAND. ";
- ``X.item2index`` / ``X.user2index``: original id TAB the numeric id used in the ``.inter`` files;
- ``X.test.inter``: ``user_id:token`` TAB ``item_id_list:token_seq`` TAB ``item_id:token``, one row
  per user whose list plus last item is the user's whole history in time order.

Interactions are that history as ``purchase`` events in order (there are no timestamps, but the
sequences are in time order, so the bundle's event order is time); users have no attributes. The category text joins the levels of the Amazon path with spaces
("Industrial & Scientific Lab & Scientific Products Lab Supplies"), so the levels are found
again from the data: a level ends where the paths of different items part ways (see
``split_category_levels``). The root level that every item shares (the data set's own name)
is dropped, so the top level is the first one that tells products apart.
"""

from __future__ import annotations

import csv
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from ..dataset import Dataset
from . import ConversionError, require_files

INTER_SUFFIX = ".test.inter"
# The root must prefix at least this share of category texts to be recognised as one.
ROOT_MIN_SHARE = 0.5


def convert_recbole(src: Path) -> Dataset:
    """Convert the RecBole atomic files in ``src`` (prefix detected from ``*.test.inter``)."""
    src = Path(src)
    prefix = detect_prefix(src)
    files = [f"{prefix}.text", f"{prefix}.item2index", f"{prefix}.user2index", f"{prefix}{INTER_SUFFIX}"]
    require_files(src, files, f"RecBole atomic files for {prefix!r}")
    item_ids = _read_index(src / f"{prefix}.item2index")
    user_ids = _read_index(src / f"{prefix}.user2index")
    items = parse_item_text(_read_tsv(src / f"{prefix}.text", ("item_id:token", "text:token_seq")))
    interactions = _histories(src / f"{prefix}{INTER_SUFFIX}", user_ids, item_ids)
    users = pd.DataFrame({"user_id": user_ids})
    return Dataset(users=users, items=items, interactions=interactions, name=prefix.lower(), meta={"order": "time"})


def detect_prefix(src: Path) -> str:
    """Return the one data set prefix ``X`` for which ``src`` has ``X.test.inter``."""
    prefixes = sorted(path.name[: -len(INTER_SUFFIX)] for path in src.glob(f"*{INTER_SUFFIX}"))
    if not prefixes:
        raise ConversionError(f"{src} holds no RecBole '*{INTER_SUFFIX}' file")
    if len(prefixes) > 1:
        raise ConversionError(f"{src} holds several RecBole data sets ({', '.join(prefixes)}); keep one")
    return prefixes[0]


def _read_tsv(path: Path, columns) -> pd.DataFrame:
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=csv.QUOTE_NONE,
                        encoding="utf-8", encoding_errors="replace")
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ConversionError(f"{path} lacks the column(s) {', '.join(missing)}")
    return frame


def _read_index(path: Path) -> np.ndarray:
    """Return original ids positioned by their numeric id (a headerless ``id TAB index`` file)."""
    table = pd.read_csv(path, sep="\t", header=None, names=["original", "index"], dtype=str,
                        keep_default_na=False, quoting=csv.QUOTE_NONE)
    index = pd.to_numeric(table["index"], errors="coerce")
    if index.isna().any() or not np.array_equal(np.sort(index.to_numpy()), np.arange(len(table))):
        raise ConversionError(f"{path}: the numeric ids are not 0..{len(table) - 1}")
    originals = np.empty(len(table), dtype=object)
    originals[index.to_numpy(dtype=np.int64)] = table["original"].str.strip().to_numpy()
    return originals


def _histories(path: Path, user_ids: np.ndarray, item_ids: np.ndarray) -> pd.DataFrame:
    inter = _read_tsv(path, ("user_id:token", "item_id_list:token_seq", "item_id:token"))
    sequences = (inter["item_id_list:token_seq"] + " " + inter["item_id:token"]).str.split()
    lengths = sequences.str.len().to_numpy()
    try:
        user_codes = np.repeat(inter["user_id:token"].astype(np.int64).to_numpy(), lengths)
        item_codes = np.concatenate(sequences.to_numpy()).astype(np.int64)
    except ValueError as exc:
        raise ConversionError(f"{path}: ids must be the numbers of the .item2index/.user2index maps ({exc})")
    if user_codes.max(initial=0) >= len(user_ids) or item_codes.max(initial=0) >= len(item_ids):
        raise ConversionError(f"{path} uses a numeric id that the .user2index/.item2index maps lack")
    return pd.DataFrame({"user_id": user_ids[user_codes], "item_id": item_ids[item_codes], "event": "purchase"})


# --- item text ----------------------------------------------------------------------------------
def parse_item_text(table: pd.DataFrame) -> pd.DataFrame:
    """Split "TITLE. CATEGORIES. BRAND. " into title, ``|``-separated category path and brand."""
    texts = table["text:token_seq"].str.strip()
    root = _category_root(texts)
    category = rf"{re.escape(root)}[^.]*|" if root else r"[^.]*"
    # Greedy title: the category is the last "CATEGORY. " run before the brand, so a title may
    # itself contain ". " ("12 oz. (Pack of 1)").
    parts = texts.str.extract(rf"^(?P<title>.*)\. (?P<category>{category})\. (?P<brand>.*?)\.?$")
    unparsed = parts["title"].isna()
    parts.loc[unparsed, ["title", "category", "brand"]] = np.c_[texts[unparsed], [""] * unparsed.sum(),
                                                                [""] * unparsed.sum()]
    parts = parts.apply(lambda column: column.str.strip())
    paths = parts["category"].str.removeprefix(root).str.strip() if root else parts["category"]
    levels = split_category_levels(paths.tolist())
    title = parts["title"]
    # A few titles are markup debris (" Industrial & Scientific />"): name the product by
    # brand and leaf category instead.
    debris = title.str.contains("/>", regex=False) | (title == "")
    leaf = pd.Series([path[-1] if path else "" for path in levels], index=title.index)
    title = title.mask(debris, (parts["brand"] + " " + leaf).str.strip())
    return pd.DataFrame({
        "item_id": table["item_id:token"].str.strip(),
        "title": title,
        "category": ["|".join(path) for path in levels],
        "brand": parts["brand"],
    })


def _category_root(texts: pd.Series) -> str:
    """Return the longest word prefix shared by most category texts ('' if there is none)."""
    segments = texts.str.rstrip(". ").str.split(". ", regex=False).str[-2].dropna()
    words = segments.str.split()
    root = ""
    for length in range(1, 6):
        prefixes = words[words.str.len() > length].map(lambda w: " ".join(w[:length]))
        if prefixes.empty:
            break
        prefix, count = Counter(prefixes).most_common(1)[0]
        if count < ROOT_MIN_SHARE * len(segments):
            break
        root = prefix
    return root


def split_category_levels(paths: list[str]) -> list[list[str]]:
    """Split space-joined category paths into levels where the paths of different items part.

    Over the distinct paths as word sequences, a level ends after a prefix that is itself a
    whole path, or after which paths continue with different words; single-child runs merge
    (a radix tree). Sibling names that share a first word ("Industrial Electrical",
    "Industrial Hardware", "Lab Flasks", "Lab Tubes") would split one word early, so a
    one-word level that no item ends at and that reads as a modifier rather than a shelf name
    (see ``_reads_as_modifier``) joins the level after it. A lone child level merges into its
    parent; that is rare in Amazon paths and keeps products of one shelf together.
    """
    distinct = {tuple(path.split()) for path in paths if path.strip()}
    next_words = defaultdict(set)
    for words in distinct:
        for end in range(1, len(words)):
            next_words[words[:end]].add(words[end])
    levels_of = {}
    for words in distinct:
        levels, start = [], 0
        for end in range(1, len(words)):
            if words[:end] in distinct:
                pass  # an item sits at this level: always a boundary
            elif len(next_words[words[:end]]) < 2 or (end - start == 1 and _reads_as_modifier(words[start])):
                continue
            levels.append(" ".join(words[start:end]))
            start = end
        levels.append(" ".join(words[start:]))
        levels_of[words] = levels
    return [levels_of.get(tuple(path.split()), []) for path in paths]


def _reads_as_modifier(word: str) -> bool:
    """Whether a lone word looks like the first word of a name, not a whole shelf name.

    Shelf names of one word are plural nouns ("Fasteners", "Valves") or nouns in -ion/-ics
    ("Filtration", "Robotics"); "Industrial", "Lab", "Sanding" are not.
    """
    lowered = word.lower()
    if lowered.endswith(("al", "ing", "ive", "ic")):
        return True
    return not lowered.endswith(("s", "ion", "ics"))
