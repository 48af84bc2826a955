"""Tests of benchmarks/simulate.py: the replayed shop is deterministic by seed and exploration shows new products."""

import importlib.util
from pathlib import Path

import pytest

from .conftest import uses_postgres

# The simulator replays the demo shop (its product model and adapter): not the alternative catalogue.
pytestmark = [pytest.mark.django_db, pytest.mark.shop]
ROOT = Path(__file__).resolve().parent.parent
SMALL = ["--users", "120", "--products", "80", "--categories", "6", "--events", "2500", "--days", "3",
         "--visits-per-day", "25", "--new-share", "0.1", "--arrivals-per-day", "3", "--refresh-every", "10"]


def simulator():
    spec = importlib.util.spec_from_file_location("simulate", ROOT / "benchmarks" / "simulate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def outcome(run):
    """What a run measured, without the database ids of the products that arrived."""
    return {key: value for key, value in run.items() if key not in ("clicks_of_new_by_day", "arrived_on")} | {
        "arrivals": sorted(run["arrived_on"].values()),
        "clicks_by_arrival": sorted((run["arrived_on"][item], tuple(days)) for item, days in run["clicks_of_new_by_day"].items())}


@pytest.mark.skipif(uses_postgres(), reason="the simulator runs on its own SQLite file; replayed twice in one "
                    "PostgreSQL database, the products that arrive get new ids (sequences are not rolled back) "
                    "and the exploration draws are seeded by the visitor's events, which name products by id")
def test_the_simulator_gives_the_same_result_for_the_same_seed():
    """Two replays of the same seeded world give the same clicks, impressions and days to 20 clicks;
    only the run with exploration shows new products in an exploration slot."""
    simulate = simulator()
    args = simulate.parse_args(SMALL)
    prepared = simulate.prepare(args)
    first, second = simulate.run_pair(prepared, args), simulate.run_pair(prepared, args)
    assert outcome(first["with"]) == outcome(second["with"])
    assert outcome(first["without"]) == outcome(second["without"])
    assert first["with"]["explored_impressions"] > 0 and first["without"]["explored_impressions"] == 0
    assert first["with"]["new_product_clicks"] > first["without"]["new_product_clicks"]
    summary = simulate.summarise(first, args, elapsed=1.0)
    assert summary["runs"]["with"]["days"]["products"] == 8  # 10% of 80 products, 3 a day
