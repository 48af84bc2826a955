"""Rate limits of event ingestion and the recommendation endpoints (``recommender.api.throttles``)."""

import uuid

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.test import override_settings
from django.urls import reverse
from rest_framework.test import APIClient

from recommender.api.throttles import RecommenderRateThrottle
from recommender.testing.factories import make_product

pytestmark = pytest.mark.django_db


class FakeClock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(RecommenderRateThrottle, "timer", fake)
    return fake


def rates(events=None, recommendations=None):
    return override_settings(RECOMMENDER={**django_settings.RECOMMENDER, "EVENTS_THROTTLE_RATE": events,
                                          "RECOMMENDATIONS_THROTTLE_RATE": recommendations})


def client_from_fresh_address():
    """A client with an address of its own: the counters live in a cache other runs may share."""
    return APIClient(REMOTE_ADDR=f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}")


def post_empty_batch(client):
    return client.post(reverse("recommender:api:events"), {"events": []}, format="json")


def test_event_batches_over_the_rate_get_429_with_retry_after(clock):
    """The third batch in a minute at 2/minute is refused with 429 and a Retry-After in seconds."""
    client = client_from_fresh_address()
    with rates(events="2/minute"):
        assert [post_empty_batch(client).status_code for _ in range(2)] == [201, 201]
        clock.now += 10
        refused = post_empty_batch(client)
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert "throttled" in refused.json()["detail"].lower()


def test_the_limit_lifts_when_the_window_has_passed(clock):
    """After the minute has passed, a throttled client may post again."""
    client = client_from_fresh_address()
    with rates(events="1/minute"):
        assert post_empty_batch(client).status_code == 201
        assert post_empty_batch(client).status_code == 429
        clock.now += 61
        assert post_empty_batch(client).status_code == 201


def test_recommendations_and_similar_share_one_limit(clock):
    """The visitor's list and "similar products" count against RECOMMENDATIONS_THROTTLE_RATE."""
    client = client_from_fresh_address()
    with rates(recommendations="2/minute"):
        assert client.get(reverse("recommender:api:recommendations")).status_code == 200
        similar = client.get(reverse("recommender:api:similar", args=["no-such-product"]))
        assert similar.status_code == 404  # counted, then answered
        refused = client.get(reverse("recommender:api:recommendations"))
    assert refused.status_code == 429
    assert "Retry-After" in refused


def test_signed_in_users_are_counted_per_account(clock):
    """Two accounts behind one address each get their own allowance."""
    address = client_from_fresh_address()
    first, second = APIClient(**address.defaults), APIClient(**address.defaults)
    first.force_authenticate(get_user_model().objects.create(username="throttle-first"))
    second.force_authenticate(get_user_model().objects.create(username="throttle-second"))
    with rates(events="1/minute"):
        assert post_empty_batch(first).status_code == 201
        assert post_empty_batch(second).status_code == 201
        assert post_empty_batch(first).status_code == 429


def test_limits_of_one_endpoint_do_not_touch_the_other(clock):
    """Exhausting the events allowance leaves recommendations served."""
    client = client_from_fresh_address()
    with rates(events="1/minute", recommendations="5/minute"):
        post_empty_batch(client)
        assert post_empty_batch(client).status_code == 429
        assert client.get(reverse("recommender:api:recommendations")).status_code == 200


def test_none_means_no_limit(clock):
    """With the rate set to None, many requests in the same instant are all answered."""
    client = client_from_fresh_address()
    with rates(events=None):
        assert {post_empty_batch(client).status_code for _ in range(30)} == {201}


def test_a_broken_cache_lets_requests_through(clock):
    """When the counter cache fails, requests are served rather than refused."""
    broken = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                          "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens on port 1
                          "OPTIONS": {"socket_connect_timeout": 0.2}}}
    client = client_from_fresh_address()
    with rates(events="1/minute"), override_settings(CACHES=broken):
        assert [post_empty_batch(client).status_code for _ in range(3)] == [201, 201, 201]


def test_default_rates_are_generous():
    """Out of the box both endpoints allow at least 10 requests a second per client."""
    from recommender.conf import DEFAULTS

    for key in ("EVENTS_THROTTLE_RATE", "RECOMMENDATIONS_THROTTLE_RATE"):
        count, period = DEFAULTS[key].split("/")
        seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400}[period[0]]
        assert int(count) / seconds >= 10


def rates_with(**extra):
    return override_settings(RECOMMENDER={**django_settings.RECOMMENDER, "EVENTS_THROTTLE_RATE": None,
                                          "RECOMMENDATIONS_THROTTLE_RATE": None, **extra})


def post_views(client, count, **headers):
    product = make_product()
    body = {"events": [{"product": str(product.pk), "event": "view"}] * count}
    return client.post(reverse("recommender:api:events"), body, format="json", **headers)


def test_rotating_x_forwarded_for_gives_no_fresh_allowance(clock):
    """The attack: a new X-Forwarded-For per request. Without NUM_PROXIES the header is ignored."""
    client = client_from_fresh_address()
    with rates(events="2/minute"):
        answers = [post_empty_batch_from(client, f"203.0.113.{number}").status_code for number in range(4)]
    assert answers == [201, 201, 429, 429]


def post_empty_batch_from(client, forwarded_for):
    return client.post(reverse("recommender:api:events"), {"events": []}, format="json",
                       HTTP_X_FORWARDED_FOR=forwarded_for)


def test_with_one_proxy_the_last_forwarded_address_is_the_client(clock):
    """NUM_PROXIES=1: the address the host's proxy appended is counted; what the client wrote before it is not."""
    proxy = client_from_fresh_address()
    with rates_with(EVENTS_THROTTLE_RATE="1/minute", NUM_PROXIES=1):
        assert post_empty_batch_from(proxy, "spoofed, 198.51.100.7").status_code == 201
        assert post_empty_batch_from(proxy, "another-spoof, 198.51.100.7").status_code == 429
        assert post_empty_batch_from(proxy, "spoofed, 198.51.100.8").status_code == 201


def test_ipv6_clients_are_counted_per_64_network(clock):
    """Two addresses of one /64 share an allowance: a subscriber cannot rotate through their own network."""
    with rates(events="1/minute"):
        first = APIClient(REMOTE_ADDR="2001:db8:aa:1::1")
        second = APIClient(REMOTE_ADDR="2001:db8:aa:1:ffff::2")
        elsewhere = APIClient(REMOTE_ADDR="2001:db8:aa:2::1")
        assert post_empty_batch(first).status_code == 201
        assert post_empty_batch(second).status_code == 429
        assert post_empty_batch(elsewhere).status_code == 201


def test_the_events_limit_counts_events_not_batches(clock):
    """At 10 events a minute, a batch of 8 fits, then a batch of 3 is refused and a batch of 2 still fits."""
    client = client_from_fresh_address()
    with rates(events="10/minute"):
        assert post_views(client, 8).status_code == 201
        refused = post_views(client, 3)
        assert refused.status_code == 429 and int(refused["Retry-After"]) >= 1
        assert post_views(client, 2).status_code == 201
        assert post_views(client, 1).status_code == 429


def test_one_huge_batch_cannot_pass_the_events_limit(clock):
    """A single batch larger than the whole allowance is refused (the old limit let 500 events per request by)."""
    client = client_from_fresh_address()
    with rates(events="100/minute"):
        assert post_views(client, 101).status_code == 429


def test_refused_and_malformed_batches_count_too(clock):
    """Bad bodies cost at least one unit: a flood of malformed requests is throttled like any other."""
    client = client_from_fresh_address()
    url = reverse("recommender:api:events")
    with rates(events="2/minute"):
        assert client.post(url, "{not json", content_type="application/json").status_code == 400
        assert client.post(url, {"nope": 1}, format="json").status_code == 400
        assert client.post(url, "{not json", content_type="application/json").status_code == 429


def test_profile_writes_are_throttled_and_reads_are_not(clock):
    """PROFILE_THROTTLE_RATE limits PATCH /api/profile/ per client; GET stays free."""
    client = client_from_fresh_address()
    url = reverse("recommender:api:profile")
    with rates_with(PROFILE_THROTTLE_RATE="2/minute"):
        assert [client.patch(url, {"city": f"c{n}"}, format="json").status_code for n in range(3)] == [200, 200, 429]
        assert client.get(url).status_code == 200
        clock.now += 61
        assert client.patch(url, {"city": "again"}, format="json").status_code == 200


def test_cookieless_profile_writes_from_one_address_are_throttled(clock):
    """The column-explosion attack needed thousands of cookieless PATCHes; one address gets PROFILE_THROTTLE_RATE."""
    url = reverse("recommender:api:profile")
    address = client_from_fresh_address().defaults
    with rates_with(PROFILE_THROTTLE_RATE="5/minute"):
        answers = [APIClient(**address).patch(url, {"city": "x"}, format="json").status_code for _ in range(8)]
    assert answers == [200] * 5 + [429] * 3
