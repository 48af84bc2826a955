"""Event ingestion under concurrency: real HTTP clients posting batches into PostgreSQL at once,
and rating upserts from concurrent writers."""

import datetime
import http.cookiejar
import json
import random
import threading
import time
import urllib.request

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from recommender import events
from recommender.models import Interaction, Rating
from recommender.testing.factories import make_product

CLIENTS = 8
BATCHES_PER_CLIENT = 5
BATCH_SIZE = 250
TOTAL = CLIENTS * BATCHES_PER_CLIENT * BATCH_SIZE  # 10,000


def post_json(opener, url, body):
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with opener.open(request, timeout=60) as response:
        return response.status, json.loads(response.read())


@pytest.fixture
def no_rate_limits(settings):
    """8 clients on one address send 10,000 events in seconds: more than the default allowance."""
    settings.RECOMMENDER = {**settings.RECOMMENDER, "EVENTS_THROTTLE_RATE": None}


@pytest.mark.postgres
def test_concurrent_clients_store_every_event_exactly_once(live_server, transactional_db, no_rate_limits):
    """8 clients post 10,000 events in batches, each retrying one batch; exactly 10,000 are stored."""
    product_ids = [str(make_product().pk) for _ in range(50)]
    url = live_server.url + "/api/events/"
    answers, failures = [], []

    def client(number):
        # Each client keeps its own cookies: one session, so one anonymous visitor.
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        try:
            for batch_number in range(BATCHES_PER_CLIENT):
                events = [
                    {"product": product_ids[(number + index) % len(product_ids)], "event": "impression",
                     "context": {"client": number}}
                    for index in range(BATCH_SIZE)
                ]
                body = {"batch_id": f"client-{number}-batch-{batch_number}", "events": events}
                answers.append(post_json(opener, url, body))
                if batch_number == 0:
                    # As if the first answer were lost: the client sends the same batch again.
                    answers.append(post_json(opener, url, body))
        except Exception as exc:  # reported below; a thread's exception would otherwise vanish
            failures.append(exc)

    threads = [threading.Thread(target=client, args=(number,)) for number in range(CLIENTS)]
    started, cpu_started = time.perf_counter(), time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started

    assert failures == []
    assert len(answers) == CLIENTS * (BATCHES_PER_CLIENT + 1)
    assert [answer for answer in answers if answer != (201, {"stored": BATCH_SIZE})] == []
    assert Interaction.objects.count() == TOTAL
    assert Interaction.objects.values("visitor_key").distinct().count() == CLIENTS
    # CPU time of this process (clients and server together): the wall figure depends on the machine's load.
    print(
        f"\n{TOTAL} events from {CLIENTS} concurrent HTTP clients in {elapsed:.2f} s: {TOTAL / elapsed:,.0f} events/s "
        f"({TOTAL / cpu:,.0f} events per CPU-second of clients and server)"
    )


@pytest.mark.postgres
def test_the_same_batch_posted_at_once_by_racing_retries_is_stored_once(live_server, transactional_db,
                                                                        no_rate_limits):
    """Six copies of one visitor's batch_id posted at the same moment store the batch once, and all six are told so."""
    product_ids = [str(make_product().pk) for _ in range(5)]
    url = live_server.url + "/api/events/"
    body = {"batch_id": "raced-batch", "events": [{"product": product_id, "event": "view"} for product_id in product_ids * 40]}
    start_together = threading.Barrier(6)
    answers, failures = [], []
    # One visitor (one session cookie) retrying: batch ids are scoped to their owner.
    cookies = http.cookiejar.CookieJar()
    post_json(urllib.request.build_opener(urllib.request.HTTPCookieProcessor(cookies)), url, {"events": []})

    def client():
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(cookies))
        start_together.wait()
        try:
            answers.append(post_json(opener, url, body))
        except Exception as exc:
            failures.append(exc)

    threads = [threading.Thread(target=client) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert answers == [(201, {"stored": 200})] * 6
    assert Interaction.objects.count() == 200


@pytest.mark.postgres
def test_concurrent_rating_writers_keep_the_newest_score(transactional_db):
    """12 writers rate one product at once, in random order; the score of the newest event wins every round."""
    user = get_user_model().objects.create(username="rater")
    product = make_product()
    base = datetime.datetime(2025, 3, 1, tzinfo=datetime.timezone.utc)
    writers = 12
    for round_number in range(5):
        moments = [base + datetime.timedelta(days=round_number, minutes=minute) for minute in range(writers)]
        random.Random(round_number).shuffle(moments)
        start_together = threading.Barrier(writers)
        failures = []

        def write(moment):
            try:
                start_together.wait()
                # The score says which event it came from: minutes after the round's start.
                events.record([{"product": product.pk, "event": "rating", "value": float(moment.minute),
                                "timestamp": moment}], user=user)
            except Exception as exc:
                failures.append(exc)
            finally:
                connection.close()

        threads = [threading.Thread(target=write, args=(moment,)) for moment in moments]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        rating = Rating.objects.get(user=user, product=product)
        assert (rating.score, rating.rated_at) == (float(writers - 1), max(moments)), f"round {round_number}"
    assert Interaction.objects.filter(event="rating").count() == 5 * writers
