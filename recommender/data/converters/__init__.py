"""Converters from published data sets to the canonical bundle (docs/integration.md, "Data in").

Each converter is a function ``convert_<name>(src: Path) -> Dataset`` reading the files as
they are published; ``convert(name, src)`` picks one by key. Each says in ``meta["order"]``
whether its row order is real time (written to the bundle's ``bundle.json``).
"""

from __future__ import annotations

from pathlib import Path

from django.utils.module_loading import import_string

CONVERTERS = {
    "movielens": "recommender.data.converters.movielens.convert_movielens",
    "bookcrossing": "recommender.data.converters.bookcrossing.convert_bookcrossing",
    "recbole": "recommender.data.converters.recbole.convert_recbole",
}


class ConversionError(ValueError):
    """The source directory does not hold the files a converter expects."""


def convert(name: str, src) -> "Dataset":  # noqa: F821
    """Convert the data set of kind ``name`` found in directory ``src``."""
    if name not in CONVERTERS:
        raise ConversionError(f"unknown data set kind {name!r}; known: {', '.join(CONVERTERS)}")
    src = Path(src)
    if not src.is_dir():
        raise ConversionError(f"{src} is not a directory")
    return import_string(CONVERTERS[name])(src)


def require_files(src: Path, names, what: str) -> None:
    """Raise ConversionError naming every file of ``names`` missing from ``src``."""
    missing = [name for name in names if not (src / name).is_file()]
    if missing:
        raise ConversionError(f"{src} does not look like {what}: missing {', '.join(missing)}")
