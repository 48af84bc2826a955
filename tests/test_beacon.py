"""recommender/static/recommender/beacon.js in headless Chromium against a live server."""

import shutil
import subprocess
from urllib.parse import urlencode

import pytest

from recommender.models import Interaction
from recommender.testing.factories import make_product

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.urls("tests.beacon_urls")
@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (make browser-deps)")
def test_beacon_sends_impressions_clicks_and_dwell(live_server, transactional_db):
    """Visible items send impressions attributed through the list's token, a click is sent at once, leaving adds
    the dwell to the page's view."""
    visible = [str(make_product().pk) for _ in range(3)]
    hidden = str(make_product().pk)
    viewed = str(make_product().pk)
    query = urlencode({"visible": ",".join(visible), "hidden": hidden, "viewed": viewed})
    subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=800,600",
         "--virtual-time-budget=4000", "--dump-dom", f"{live_server.url}/beacon-test/?{query}"],
        check=True, capture_output=True, timeout=90,
    )
    events = list(Interaction.objects.order_by("pk"))
    impressions = [event for event in events if event.event == "impression"]
    assert sorted(str(event.product_id) for event in impressions) == sorted(visible)
    assert {(event.placement, event.strategy, event.arm) for event in impressions} == {("home", "hybrid", "b")}
    assert len({event.served_list for event in impressions}) == 1 and impressions[0].served_list
    assert sorted(event.context["position"] for event in impressions) == [1, 2, 3]
    [click] = [event for event in events if event.event == "click"]
    assert (str(click.product_id), click.context) == (visible[1], {"position": 2})
    assert (click.strategy, click.served_list) == ("hybrid", impressions[0].served_list)
    [view] = [event for event in events if event.event == "view"]  # the server's view, with the beacon's dwell
    assert str(view.product_id) == viewed
    assert 1.0 <= view.dwell_seconds <= 2.5
    assert len({event.visitor_key for event in events}) == 1
