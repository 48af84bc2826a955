"""ContextBuilder: which events count as context (impressions never) and how many, from rows or a Dataset."""

import datetime

import numpy as np
import pandas as pd
import pytest

from recommender.data.dataset import Dataset
from recommender.strategies.base import Event
from recommender.strategies.context import CONTEXT_EVENT_TYPES, ContextBuilder


def rows_newest_first():
    moment = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    events = ["view", "impression", "click", "impression", "cart", "view"]
    # (product id, event, timestamp, dwell, value), newest first: item-0 is the newest.
    return [(f"item-{number}", event, moment - datetime.timedelta(minutes=number), 3.0 if number == 0 else None, None)
            for number, event in enumerate(events)]


def test_impressions_never_count():
    """An impression is never context, whatever the builder's length."""
    assert "impression" not in CONTEXT_EVENT_TYPES and not ContextBuilder().counts("impression")
    events = ContextBuilder(max_events=None).events_from_rows(rows_newest_first())
    assert [event.event for event in events] == ["view", "cart", "click", "view"]


def test_keeps_the_newest_events_oldest_first():
    """Of the counting events the newest max_events are kept, in time order, with their fields."""
    events = ContextBuilder(max_events=2).events_from_rows(rows_newest_first())
    assert [event.item_id for event in events] == ["item-2", "item-0"]
    assert events[-1].dwell_seconds == 3.0 and events[-1].timestamp == pytest.approx(
        datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc).timestamp())


def test_build_applies_the_same_rules_to_events():
    """build() drops impressions and keeps the newest max_events of a given event sequence."""
    given = [Event("a", "view"), Event("b", "impression"), Event("c", "click"), Event("d", "purchase")]
    context = ContextBuilder(max_events=2).build(profile={"gender": "f"}, events=given, product_id=7, user_id=3)
    assert context.event_item_ids == ["c", "d"]
    assert context.product_id == "7" and context.user_id == "3" and context.profile == {"gender": "f"}


@pytest.mark.parametrize("bad", [0, -3, True])
def test_max_events_must_be_positive_or_none(bad):
    """A zero, negative or boolean length is refused with a message naming max_events."""
    with pytest.raises(ValueError, match="max_events"):
        ContextBuilder(max_events=bad)


def small_dataset():
    users = pd.DataFrame({"user_id": ["u1", "u2", "u3"], "gender": ["f", None, "m"], "age": [30, 41, np.nan]})
    items = pd.DataFrame({"item_id": [f"i{number}" for number in range(6)], "title": ["t"] * 6})
    interactions = pd.DataFrame({
        "user_id": ["u1", "u1", "u2", "u1", "u2", "u1", "u3"],
        "item_id": ["i0", "i1", "i2", "i3", "i4", "i5", "i0"],
        "event": ["view", "impression", "view", "cart", "purchase", "view", "view"],
        "timestamp": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
        "dwell_seconds": [np.nan, np.nan, 12.0, np.nan, np.nan, np.nan, np.nan],
    })
    return Dataset(users=users, items=items, interactions=interactions)


def test_from_dataset_gives_what_rows_give():
    """A Dataset and a row mask give the same contexts as the same events given as rows."""
    dataset = small_dataset()
    mask = dataset.interactions["user_id"].isin(["u1", "u2"]).to_numpy()
    builder = ContextBuilder(max_events=2)
    contexts = builder.from_dataset(dataset, ["u2", "u1", "u3"], mask)
    assert [context.user_id for context in contexts] == ["u2", "u1", "u3"]
    assert contexts[1].event_item_ids == ["i3", "i5"]  # the impression of i1 never counts; newest 2
    assert contexts[0].event_item_ids == ["i2", "i4"] and contexts[0].events[0].dwell_seconds == 12.0
    assert contexts[2].events == ()  # u3's rows are outside the mask
    assert contexts[0].profile == {"age": 41} and contexts[2].profile == {"gender": "m"}
    u1 = dataset.interactions[dataset.interactions["user_id"] == "u1"].iloc[::-1]
    from_rows = builder.events_from_rows(u1[["item_id", "event", "timestamp", "dwell_seconds", "value"]]
                                         .itertuples(index=False))
    assert from_rows == contexts[1].events


def test_context_rows_mark_every_counting_event_and_no_impression():
    """context_rows is the builder's rule over a Dataset's rows."""
    from recommender.strategies.context import context_rows

    events = ["view", "impression", "click", "cart", "purchase", "rating", "impression"]
    dataset = Dataset(users=pd.DataFrame({"user_id": ["u"]}), items=pd.DataFrame({"item_id": ["a"]}),
                      interactions=pd.DataFrame({"user_id": "u", "item_id": "a", "event": events}))
    assert context_rows(dataset).tolist() == [ContextBuilder().counts(event) for event in events]
    assert context_rows(dataset).tolist() == [event != "impression" for event in events]


def _with_impression_floods(planted, item_id: str, per_user: int = 3) -> Dataset:
    """``planted`` with every user shown ``item_id`` ``per_user`` times before their first event."""
    users = planted.interactions["user_id"].unique()
    first_time = planted.interactions.groupby("user_id")["timestamp"].min()
    floods = pd.DataFrame({
        "user_id": np.repeat(users, per_user), "item_id": item_id, "event": "impression",
        "timestamp": np.repeat(first_time.reindex(users).to_numpy() - 1.0, per_user),
    })
    interactions = pd.concat([floods, planted.interactions], ignore_index=True).sort_values("timestamp", kind="stable")
    return Dataset(users=planted.users, items=planted.items, interactions=interactions.reset_index(drop=True),
                   meta=planted.meta)


@pytest.mark.slow
@pytest.mark.parametrize("key", ["behavior", "generative"])
def test_torch_strategies_never_train_on_impressions(key):
    """Even where a shop gives impressions a weight, the sequences and histories the torch strategies
    learn from are what a served context holds: the item only ever shown counts no training event."""
    pytest.importorskip("torch")
    from recommender.strategies.registry import create_strategy
    from recommender.testing.factories import planted_dataset

    planted = planted_dataset()
    shown_only = str(planted.item_ids[-1])
    planted = Dataset(users=planted.users, items=planted.items, meta=planted.meta,
                      interactions=planted.interactions[planted.interactions["item_id"] != shown_only])
    flooded = _with_impression_floods(planted, shown_only)
    weights = {"impression": 1.0}
    tiny = {"epochs": 1, "batch_size": 64, "threads": 1, "event_weights": weights}
    strategy = create_strategy(key, **tiny).fit(flooded)
    position = int(strategy.item_positions([shown_only])[0])
    if key == "behavior":
        assert strategy.item_counts[position] == 0 and strategy.id_rows[position] == 0
    else:
        assert position not in strategy.vocabulary_positions.tolist()
    assert flooded.event_weights(weights)[flooded.interactions["event"].to_numpy() == "impression"].sum() > 0
