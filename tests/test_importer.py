"""Importing bundles into the database: idempotent, all or nothing, any host catalog."""

import io
import time
from datetime import datetime, timezone as dt_timezone

import numpy as np
import pandas as pd
import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from recommender.catalog import get_adapter
from recommender.data.bundle import read_bundle
from recommender.data.importer import DatasetImportError, import_dataset, synthetic_timestamps
from recommender.models import Interaction, Rating, UserProfile
from tests.test_bundle import make_bundle

pytestmark = pytest.mark.django_db(transaction=False)

ITEMS = "item_id,title,category,brand,price\ni1,Kettle,kitchen|small appliances,Acme,19.5\ni2,Trowel,garden,,\ni3,Rake,garden,,\n"
USERS = "user_id,age,gender,country,region,city,occupation\nu1,34,F,de,bavaria,munich,nurse\nu2,,male,,,,\n"
INTERACTIONS = (
    "user_id,item_id,event,value,timestamp,dwell_seconds\n"
    "u1,i1,view,,1700000000,12.5\n"
    "u1,i1,view,,1700000000,12.5\n"  # a genuine repeat: both are kept
    "u1,i1,rating,4,1700000100,\n"
    "u1,i1,rating,5,1700000200,\n"  # the later score wins
    "u2,i2,purchase,,1700000050,\n"
    "u3,i3,click,,1700000060,\n"  # u3 is not in users.csv: an account without profile
)


def table_counts():
    product_model = get_adapter().model
    return {
        "products": product_model._default_manager.count(),
        "users": get_user_model().objects.count(),
        "profiles": UserProfile.objects.count(),
        "interactions": Interaction.objects.count(),
        "ratings": Rating.objects.count(),
    }


@pytest.fixture
def bundle(tmp_path):
    return make_bundle(tmp_path / "bundle", users=USERS, items=ITEMS, interactions=INTERACTIONS)


def test_import_stores_everything_and_a_second_run_adds_nothing(bundle):
    """Products, accounts, profiles, events and ratings arrive once; importing again adds 0 everywhere."""
    dataset = read_bundle(bundle)
    added = import_dataset(dataset, progress=False)
    assert added == {"products": 3, "users": 3, "profiles": 2, "interactions": 6, "ratings": 1}
    assert table_counts() == added
    assert import_dataset(read_bundle(bundle), progress=False) == dict.fromkeys(added, 0)
    assert table_counts() == added


def test_imported_rows_carry_the_bundle_values(bundle):
    """Profiles get birth year, gender and location; events their time; ratings the last score."""
    import_dataset(read_bundle(bundle), progress=False)
    adapter = get_adapter()
    kettle_pk = adapter.existing_pks_by_external_id(["i1"])["i1"]
    row = next(r for r in adapter.iter_rows() if r["pk"] == kettle_pk)
    assert (row["title"], row["brand"], row["price"]) == ("Kettle", "Acme", 19.5)
    user = get_user_model().objects.get(username="imported-u1")
    assert not user.has_usable_password()
    profile = user.recommender_profile
    assert profile.birth_year == datetime.now().year - 34
    assert (profile.gender, profile.country, profile.region, profile.city) == ("f", "de", "bavaria", "munich")
    assert profile.attributes == {"occupation": "nurse"}
    assert get_user_model().objects.get(username="imported-u2").recommender_profile.gender == "m"
    assert not UserProfile.objects.filter(user__username="imported-u3").exists()
    view = Interaction.objects.filter(user=user, event="view").first()
    assert view.timestamp == datetime.fromtimestamp(1700000000, dt_timezone.utc)
    assert view.dwell_seconds == 12.5
    assert Rating.objects.get(user=user).score == 5.0


def test_username_prefix_and_small_batches(bundle):
    """A custom prefix names the accounts; batches of 2 import the same rows as one batch."""
    added = import_dataset(read_bundle(bundle), progress=False, batch_size=2, username_prefix="bx-")
    assert added["interactions"] == 6 and added["users"] == 3
    assert set(get_user_model().objects.values_list("username", flat=True)) == {"bx-u1", "bx-u2", "bx-u3"}


def test_existing_products_are_matched_by_external_id(bundle):
    """A product the catalog already has is reused, not duplicated."""
    get_adapter().build_product({"external_id": "i2", "title": "Old trowel"}).save()
    added = import_dataset(read_bundle(bundle), progress=False)
    assert added["products"] == 2
    assert table_counts()["products"] == 3


def test_missing_timestamps_become_increasing_synthetic_times():
    """Rows without a timestamp get times one second apart in file order, before the known ones."""
    seconds = np.array([np.nan, np.nan, 1000.0, 2000.0])
    assert synthetic_timestamps(seconds, now=5e9).tolist() == [998.0, 999.0, 1000.0, 2000.0]
    assert synthetic_timestamps(np.full(3, np.nan), now=5000.5).tolist() == [4997.0, 4998.0, 4999.0]


def test_events_without_timestamps_keep_file_order(tmp_path):
    """Book-Crossing-style bundles (no times) store strictly increasing times in file order."""
    interactions = "user_id,item_id,event,value\nu1,i3,rating,7\nu1,i1,rating,9\nu2,i2,rating,3\n"
    import_dataset(read_bundle(make_bundle(tmp_path / "b", users=USERS, items=ITEMS, interactions=interactions)),
                   progress=False)
    stored = list(Interaction.objects.order_by("timestamp").values_list("product_id", flat=True))
    pks = get_adapter().existing_pks_by_external_id(["i1", "i2", "i3"])
    assert stored == [pks["i3"], pks["i1"], pks["i2"]]


def test_failure_midway_keeps_nothing(bundle):
    """An error after products and users were written rolls the whole import back."""
    dataset = read_bundle(bundle)
    # An interaction naming an item the dataset does not list fails after products and users.
    dataset.interactions.loc[len(dataset.interactions)] = ["u1", "ghost", "view", np.nan, 1700000300.0, np.nan]
    before = table_counts()
    with pytest.raises(DatasetImportError, match="item 'ghost'"):
        import_dataset(dataset, progress=False)
    assert table_counts() == before
    # The adapter forgot rows of the rolled-back run: a clean import still works.
    assert import_dataset(read_bundle(bundle), progress=False)["products"] == 3


def test_command_reports_counts_and_shows_progress(bundle):
    """recommender_import prints a summary; the progress bar goes to stderr."""
    out, err = io.StringIO(), io.StringIO()
    call_command("recommender_import", str(bundle), stdout=out, stderr=err, skip_checks=True)
    assert "Added 3 products, 3 users, 2 profiles, 6 interactions, 1 ratings" in out.getvalue()
    call_command("recommender_import", str(bundle), stdout=out, skip_checks=True, no_progress=True)
    assert "Added 0 products, 0 users, 0 profiles, 0 interactions, 0 ratings" in out.getvalue()


def test_progress_bar_can_write_to_a_command_stdout(bundle):
    """With stdout given, the bar is written there (as seed_demo does) without extra newlines."""
    from django.core.management.base import OutputWrapper

    buffer = io.StringIO()
    import_dataset(read_bundle(bundle), progress=True, stdout=OutputWrapper(buffer))
    text = buffer.getvalue()
    assert "interactions" in text and "ratings: 100%" in text
    assert text.count("\n") <= 1


def test_malformed_row_stops_the_command_and_keeps_nothing(tmp_path):
    """A bad row names file and line; nothing of the bundle reaches the database."""
    interactions = INTERACTIONS + "u2,i2,rating,great,,\n"
    bundle = make_bundle(tmp_path / "bad", users=USERS, items=ITEMS, interactions=interactions)
    before = table_counts()
    with pytest.raises(CommandError, match=r"interactions.csv, line 8, field 'value': 'great' is not a number"):
        call_command("recommender_import", str(bundle), skip_checks=True, no_progress=True)
    assert table_counts() == before


@pytest.mark.postgres
@pytest.mark.shared_data
@pytest.mark.slow
@pytest.mark.timeout(900)  # 3 to 6 minutes on a busy 2-core machine (two imports and a conversion)
def test_bookcrossing_imports_into_postgres_once(shared_data, tmp_path, capsys):
    """The real Book-Crossing bundle imports into PostgreSQL with a progress bar; a second run adds nothing."""
    call_command("recommender_convert", "bookcrossing", str(shared_data / "bookcrossing"), "--out", str(tmp_path / "bx"))
    started = time.monotonic()
    call_command("recommender_import", str(tmp_path / "bx"), skip_checks=True)
    first_seconds = time.monotonic() - started
    captured = capsys.readouterr()
    assert "ratings: 100%" in captured.err  # the progress bar ran to the end
    counts = table_counts()
    assert counts["products"] == 18_185 + 8_924
    assert counts["profiles"] == 48_299
    assert counts["interactions"] == 204_164 + 26_772
    assert counts["ratings"] == pd.read_csv(tmp_path / "bx" / "interactions.csv", dtype=str)[
        ["user_id", "item_id"]].drop_duplicates().shape[0]
    call_command("recommender_import", str(tmp_path / "bx"), skip_checks=True, no_progress=True)
    assert "Added 0 products, 0 users, 0 profiles, 0 interactions, 0 ratings" in capsys.readouterr().out
    assert table_counts() == counts
    print(f"first import took {first_seconds:.0f} s")


def test_a_changed_score_updates_the_rating(bundle, tmp_path):
    """Re-importing with a new last score overwrites the Rating instead of adding one."""
    import_dataset(read_bundle(bundle), progress=False)
    changed = make_bundle(tmp_path / "changed", users=USERS, items=ITEMS,
                          interactions=INTERACTIONS + "u1,i1,rating,2,1700000900,\n")
    added = import_dataset(read_bundle(changed), progress=False)
    assert (added["interactions"], added["ratings"]) == (1, 0)
    assert Rating.objects.get(user__username="imported-u1").score == 2.0


def test_import_refreshes_the_planner_statistics(bundle):
    """After the bulk load the database knows the new table sizes (ANALYZE ran on the loaded tables)."""
    from django.db import connection

    import_dataset(read_bundle(bundle), progress=False)
    table = Interaction._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT stat FROM sqlite_stat1 WHERE tbl = %s", [table])
            rows = int(cursor.fetchone()[0].split()[0])
        else:
            cursor.execute("SELECT reltuples FROM pg_class WHERE relname = %s", [table])
            rows = int(cursor.fetchone()[0])
    assert rows == 6
