"""Converters: MovieLens fixtures in the published layouts, and the real shared data sets."""

from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from recommender.data.bundle import read_bundle
from recommender.data.converters import ConversionError, convert
from recommender.data.converters.movielens import convert_movielens
from recommender.data.converters.recbole import split_category_levels
from tests.conftest import SHARED_DATA

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def bookcrossing():
    """The Book-Crossing conversion, done once for the session (it takes a few seconds)."""
    return convert("bookcrossing", SHARED_DATA / "bookcrossing")


def test_movielens_100k_layout():
    """u.data/u.user/u.item become ratings with time, profiles with occupation, genres as category."""
    dataset = convert_movielens(FIXTURES / "ml-100k")
    assert dataset.counts() == {"users": 4, "items": 5, "interactions": 7}
    assert dataset.items.loc["3", "title"] == "Café Lumière (1996)"  # latin-1 decoded
    assert dataset.items.loc["1", "category"] == "Animation|Children's|Comedy"
    assert dataset.users.loc["2"].to_dict() == {"age": 53, "gender": "f", "occupation": "other", "zip_code": "20002"}
    first = dataset.interactions.iloc[0]
    assert (first["user_id"], first["item_id"], first["event"], first["value"], first["timestamp"]) == (
        "1", "1", "rating", 5.0, 880000100.0)
    assert dataset.interactions["timestamp"].is_monotonic_increasing


def test_movielens_100k_without_u_genre(tmp_path):
    """Without u.genre the standard genre list names the flags."""
    for name in ("u.data", "u.user", "u.item"):
        (tmp_path / name).write_bytes((FIXTURES / "ml-100k" / name).read_bytes())
    dataset = convert_movielens(tmp_path)
    assert dataset.items.loc["2", "category"] == "Action|Adventure|Thriller"


def test_movielens_1m_layout():
    """users.dat/movies.dat/ratings.dat: '::' separated, age groups to ages, occupation codes to names."""
    dataset = convert_movielens(FIXTURES / "ml-1m")
    assert dataset.counts() == {"users": 5, "items": 4, "interactions": 8}
    assert dataset.items.loc["4", "title"] == "Señor Night Shift (1994)"
    assert dataset.items.loc["3", "category"] == "Drama|Romance"
    assert dataset.users.loc["1"].to_dict() == {"age": 16, "gender": "f", "occupation": "K-12 student",
                                                "zip_code": "10001"}
    assert dataset.users.loc["2", "occupation"] == "self-employed"
    assert set(dataset.interactions["event"]) == {"rating"}
    assert dataset.interactions["value"].sum() == 31


def test_movielens_fixture_survives_a_bundle_round_trip(tmp_path):
    """A converted data set written as a bundle reads back with the same counts and text."""
    convert_movielens(FIXTURES / "ml-100k").write_bundle(tmp_path / "bundle")
    dataset = read_bundle(tmp_path / "bundle")
    assert dataset.counts() == {"users": 4, "items": 5, "interactions": 7}
    assert dataset.items.loc["3", "title"] == "Café Lumière (1996)"


def test_wrong_source_gets_a_clear_error(tmp_path):
    """A directory without the expected files is refused, naming what is missing."""
    with pytest.raises(ConversionError, match="neither MovieLens 100K"):
        convert("movielens", tmp_path)
    with pytest.raises(ConversionError, match="missing BX-Users.csv, BX-Books.csv, BX-Ratings.csv"):
        convert("bookcrossing", tmp_path)
    with pytest.raises(ConversionError, match="no RecBole"):
        convert("recbole", tmp_path)
    with pytest.raises(ConversionError, match="is not a directory"):
        convert("movielens", tmp_path / "absent")


def test_convert_command_writes_bundle_and_reports_counts(tmp_path, capsys):
    """recommender_convert writes a readable bundle and prints its counts; a bad SRC is a CommandError."""
    call_command("recommender_convert", "movielens", str(FIXTURES / "ml-1m"), "--out", str(tmp_path / "out"))
    assert "5 users" in capsys.readouterr().out
    assert read_bundle(tmp_path / "out").counts()["interactions"] == 8
    assert read_bundle(tmp_path / "out").meta["order"] == "time"  # MovieLens ratings carry real timestamps
    with pytest.raises(CommandError, match="holds neither MovieLens"):
        call_command("recommender_convert", "movielens", str(tmp_path), "--out", str(tmp_path / "other"))
    assert not (tmp_path / "other").exists()


def test_category_levels_split_where_paths_part():
    """Space-joined category paths split at branch points, keeping modifier words with their name."""
    paths = [
        "Lab Supplies Lab Flasks",
        "Lab Supplies Lab Tubes",
        "Lab Supplies",
        "Fasteners Hex Nuts",
        "Fasteners Wing Nuts",
    ]
    assert split_category_levels(paths) == [
        ["Lab Supplies", "Lab Flasks"],
        ["Lab Supplies", "Lab Tubes"],
        ["Lab Supplies"],
        ["Fasteners", "Hex Nuts"],
        ["Fasteners", "Wing Nuts"],
    ]


@pytest.mark.shared_data
def test_bookcrossing_counts_match_readme(bookcrossing):
    """48,299 users, 18,185 + 8,924 books, 204,164 + 26,772 ratings, NewBooks as new items."""
    assert len(bookcrossing.users) == 48_299
    assert bookcrossing.n_items == 18_185 + 8_924
    assert len(bookcrossing.interactions) == 204_164 + 26_772
    assert len(bookcrossing.meta["new_item_ids"]) == 8_924
    assert (bookcrossing.interactions["event"] == "rating").all()
    assert bookcrossing.interactions["timestamp"].isna().all()
    # File order is kept (the new books' ratings come last), but it is not time.
    tail_items = bookcrossing.interactions["item_id"].iloc[-26_772:]
    assert tail_items.isin(bookcrossing.meta["new_item_ids"]).all()
    assert bookcrossing.meta["order"] == "none"


@pytest.mark.shared_data
def test_bookcrossing_quirks_are_cleaned(bookcrossing):
    """Stray quotes leave the countries, implausible ages become unknown, books carry author and year."""
    users = bookcrossing.users
    assert users.loc["8", "country"] == "canada" and users.loc["8", "region"] == "ontario"
    assert not users["country"].str.contains('"').any()
    ages = users["age"].dropna()
    assert 0.55 < len(ages) / len(users) < 0.62 and ages.between(1, 100).all()
    book = bookcrossing.items.loc["0399135782"]
    assert (book["title"], book["brand"], book["author"], book["year"]) == (
        "The Kitchen God's Wife", "Putnam Pub Group", "Amy Tan", "1991")
    assert book["description"] == "by Amy Tan, Putnam Pub Group, 1991"


@pytest.mark.shared_data
def test_recbole_amazon_counts_and_text(shared_data):
    """4,385 products with title/category/brand split; 8,442 users with their full histories in order."""
    dataset = convert("recbole", shared_data / "amazon-scientific")
    assert dataset.n_items == 4_385
    assert len(dataset.users) == 8_442 and dataset.n_users == 8_442
    assert (dataset.interactions["event"] == "purchase").all()
    assert dataset.meta["order"] == "time"
    sequence_lengths = dataset.interactions.groupby("user_id", sort=False).size()
    assert sequence_lengths.min() >= 3 and 6 < sequence_lengths.mean() < 8
    glue = dataset.items.loc["B0000223UV"]
    assert glue["title"] == "Gorilla Original Gorilla Glue, Waterproof Polyurethane Glue, 8 ounce Bottle, Brown"
    assert glue["category"] == "Tapes, Adhesives & Sealants|Urethane Adhesives"
    assert glue["brand"] == "Gorilla"
    # The first user's history in test.inter is items 0..13 of item2index, in order.
    first_user = dataset.users.index[0]
    history = dataset.interactions.loc[dataset.interactions["user_id"] == first_user, "item_id"].tolist()
    assert len(history) == 14 and history[0] == "B00TNNWMXI"
    top_levels = dataset.item_categories
    assert "Industrial & Scientific" not in set(top_levels)
    assert (top_levels != "").mean() > 0.95
