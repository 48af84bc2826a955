"""Reading and writing canonical bundles, and the errors a bad bundle gets."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recommender.data.bundle import BundleError, read_bundle, write_bundle
from recommender.data.dataset import Dataset

USERS = "user_id,age,gender,country,occupation\nu1,34,f,de,nurse\nu2,,m,,\n"
ITEMS = 'item_id,title,category,brand,price\ni1,"Kettle, steel",kitchen|small appliances,Acme,19.5\ni2,Trowel,garden,,\ni3,Rake,garden,,\n'
INTERACTIONS = (
    "user_id,item_id,event,value,timestamp,dwell_seconds\n"
    "u1,i1,view,,1700000000,12.5\n"
    "u1,i1,purchase,,1700000100,\n"
    "u2,i2,rating,4,1700000050,\n"
)


def make_bundle(directory: Path, users=USERS, items=ITEMS, interactions=INTERACTIONS, new_items=None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in (("users.csv", users), ("items.csv", items), ("interactions.csv", interactions),
                       ("new_items.csv", new_items)):
        if text is not None:
            (directory / name).write_text(text, encoding="utf-8")
    return directory


def test_reads_a_valid_bundle(tmp_path):
    """A well-formed bundle reads into a Dataset with ids, attributes, numbers and time order."""
    dataset = read_bundle(make_bundle(tmp_path / "b"))
    assert list(dataset.item_ids) == ["i1", "i2", "i3"]
    assert dataset.items.loc["i1", "title"] == "Kettle, steel"
    assert dataset.items.loc["i1", "price"] == 19.5
    assert dataset.users.loc["u1", "occupation"] == "nurse"
    assert dataset.users.loc["u1", "age"] == 34
    assert dataset.interactions["item_id"].tolist() == ["i1", "i2", "i1"]  # sorted by time
    assert dataset.interactions["dwell_seconds"].iloc[0] == 12.5
    assert dataset.meta["new_item_ids"] == []


def test_new_items_file_is_exposed_in_meta(tmp_path):
    """new_items.csv lists held-out products in dataset.meta['new_item_ids']."""
    dataset = read_bundle(make_bundle(tmp_path / "b", new_items="item_id\ni3\n"))
    assert dataset.meta["new_item_ids"] == ["i3"]


@pytest.mark.parametrize(
    "files, message",
    [
        ({"interactions": "user_id,item_id,event\nu1,i1,view\nu1,i1,like\n"},
         "interactions.csv, line 3, field 'event': 'like' is not an event type"),
        ({"interactions": "user_id,item_id,event,value\nu1,i1,rating,4\nu1,i2,rating,four\n"},
         "interactions.csv, line 3, field 'value': 'four' is not a number"),
        ({"interactions": "user_id,item_id,event,timestamp\nu1,i1,view,yesterday\n"},
         "interactions.csv, line 2, field 'timestamp': 'yesterday' is not a number"),
        ({"interactions": "user_id,item_id,event,dwell_seconds\nu1,i1,view,3\nu2,i1,view,-2\n"},
         "interactions.csv, line 3, field 'dwell_seconds': -2 is negative"),
        ({"interactions": "user_id,item_id,event\nu1,i1,view\nu1,i9,view\n"},
         "interactions.csv, line 3, field 'item_id': 'i9' is not listed in items.csv"),
        ({"interactions": "user_id,item_id,event\n,i1,view\n"},
         "interactions.csv, line 2, field 'user_id': is empty"),
        ({"interactions": "user_id,item_id\nu1,i1\n"}, "interactions.csv, line 1: lacks the required column(s) event"),
        ({"items": "item_id,title\ni1,A\ni1,B\n"}, "items.csv, line 3, field 'item_id': 'i1' appears more than once"),
        ({"items": "item_id,title,price\ni1,A,cheap\n"}, "items.csv, line 2, field 'price': 'cheap' is not a number"),
        ({"users": "user_id,age\nu1,old\n"}, "users.csv, line 2, field 'age': 'old' is not a number"),
        ({"users": "user_id,age\nu1,3,4\n"}, "users.csv, line 2: is not valid CSV"),
        ({"new_items": "item_id\ni7\n"}, "new_items.csv, line 2, field 'item_id': 'i7' is not listed"),
    ],
)
def test_bad_rows_name_file_line_and_field(tmp_path, files, message):
    """Each kind of malformed row raises BundleError naming the file, line and field."""
    with pytest.raises(BundleError) as caught:
        read_bundle(make_bundle(tmp_path / "b", **files))
    assert message in str(caught.value)


def test_line_numbers_count_quoted_newlines_and_blank_lines(tmp_path):
    """A title spanning lines and a blank line do not throw the reported line number off."""
    items = 'item_id,title\ni1,"two\nlines"\n\ni2,B\n'
    interactions = "user_id,item_id,event\nu1,i1,view\nu1,i2,jump\n"
    with pytest.raises(BundleError, match=r"interactions.csv, line 3") as caught:
        read_bundle(make_bundle(tmp_path / "b", items=items, interactions=interactions))
    assert caught.value.line == 3
    dataset = read_bundle(make_bundle(tmp_path / "c", items=items))
    assert dataset.items.loc["i1", "title"] == "two\nlines"
    with pytest.raises(BundleError, match=r"items.csv, line 6, field 'item_id': 'i1' appears more than once"):
        read_bundle(make_bundle(tmp_path / "d", items=items + "i1,again\n"))


def test_missing_file_and_directory(tmp_path):
    """A missing directory or file is named in the error."""
    with pytest.raises(BundleError, match="is not a directory"):
        read_bundle(tmp_path / "nowhere")
    directory = make_bundle(tmp_path / "b")
    (directory / "users.csv").unlink()
    with pytest.raises(BundleError, match=r"users.csv: file is missing"):
        read_bundle(directory)


def test_non_utf8_file_is_refused(tmp_path):
    """A latin-1 file is refused with a message, not read as mojibake."""
    directory = make_bundle(tmp_path / "b")
    (directory / "items.csv").write_bytes("item_id,title\ni1,Café\n".encode("latin-1"))
    with pytest.raises(BundleError, match=r"items.csv: is not UTF-8"):
        read_bundle(directory)


def test_write_then_read_round_trips(tmp_path):
    """write_bundle output reads back to the same frames, new items included."""
    original = read_bundle(make_bundle(tmp_path / "b", new_items="item_id\ni3\n"))
    write_bundle(original, tmp_path / "copy")
    copy = read_bundle(tmp_path / "copy")
    pd.testing.assert_frame_equal(copy.interactions, original.interactions)
    pd.testing.assert_frame_equal(copy.items, original.items)
    pd.testing.assert_frame_equal(copy.users, original.users)
    assert copy.meta["new_item_ids"] == ["i3"]
    assert "1700000000," in (tmp_path / "copy" / "interactions.csv").read_text()  # no "1700000000.0"


def test_event_order_manifest_round_trips(tmp_path):
    """write_bundle records meta['order'] in bundle.json; read_bundle gives it back; no manifest means time."""
    original = read_bundle(make_bundle(tmp_path / "b"))
    assert original.meta["order"] == "time" and "no bundle.json" in original.meta["order_source"]
    original.meta["order"] = "none"
    write_bundle(original, tmp_path / "copy")
    assert json.loads((tmp_path / "copy" / "bundle.json").read_text()) == {"format": 1, "order": "none"}
    assert read_bundle(tmp_path / "copy").meta["order"] == "none"


@pytest.mark.parametrize("manifest, message", [
    ('{"order": "shuffled"}', r"bundle.json, field 'order': 'shuffled' is not an event order; use one of time, none"),
    ("{order: time", r"bundle.json: is not valid JSON"),
    ('["time"]', r"bundle.json: must hold a JSON object"),
])
def test_bad_manifest_is_a_clear_error(tmp_path, manifest, message):
    """A bundle.json that is not JSON, not an object, or names an unknown order is refused, saying what to write."""
    directory = make_bundle(tmp_path / "b")
    (directory / "bundle.json").write_text(manifest)
    with pytest.raises(BundleError, match=message):
        read_bundle(directory)


def test_write_replaces_atomically_and_leaves_nothing_on_failure(tmp_path):
    """Rewriting replaces the bundle whole; a failed write leaves the old bundle and no debris."""
    target = tmp_path / "bundle"
    first = Dataset(users=pd.DataFrame({"user_id": ["a"]}), items=pd.DataFrame({"item_id": ["x"], "title": ["X"]}),
                    interactions=pd.DataFrame({"user_id": ["a"], "item_id": ["x"], "event": ["view"]}),
                    meta={"new_item_ids": ["x"]})
    write_bundle(first, target)
    second = Dataset(users=first.users, items=first.items, interactions=first.interactions)
    write_bundle(second, target)
    assert not (target / "new_items.csv").exists()  # the old bundle's file is gone with it

    class Exploding(pd.DataFrame):
        def reset_index(self, *args, **kwargs):
            raise RuntimeError("disk full")

    broken = Dataset(users=first.users, items=first.items, interactions=first.interactions)
    broken.items = Exploding(broken.items)
    with pytest.raises(RuntimeError, match="disk full"):
        write_bundle(broken, target)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bundle"]
    assert read_bundle(target).counts() == {"users": 1, "items": 1, "interactions": 1}
    assert np.isnan(read_bundle(target).interactions["value"].iloc[0])
