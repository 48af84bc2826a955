"""Faults of the services around the app, on throwaway instances of their own (never the
machine's shared Redis or PostgreSQL): Redis killed and restarted during traffic, and a damaged
artifact file.

Each prints its figures (requests served, errors, events stored, time to recover) for
docs/reliability.md.
"""

import logging
import socket
import subprocess
import time

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings
from django.urls import reverse
from rest_framework.test import APIClient

from recommender import training
from recommender.models import Interaction

from .training_support import forget_training_cache_keys, seed_shop

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ThrowawayRedis:
    """A redis-server of this test alone: no persistence, on a port nobody else uses."""

    def __init__(self, port: int):
        self.port, self.process = port, None

    def start(self):
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "no"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in self.process.stdout:  # blocks until the server says it is ready
            if "Ready to accept connections" in line:
                return
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def kill(self):
        self.process.kill()
        self.process.wait()
        self.process.stdout.close()

    def keys(self) -> int:
        import redis

        return redis.Redis(port=self.port, socket_timeout=1).dbsize()

    @property
    def cache_settings(self):
        return {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                            "LOCATION": f"redis://127.0.0.1:{self.port}/0",
                            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}}}


@pytest.fixture
def own_redis():
    server = ThrowawayRedis(free_port())
    server.start()
    with override_settings(CACHES=server.cache_settings):
        forget_training_cache_keys()
        training.forget_loaded_models()
        yield server
        training.forget_loaded_models()
    if server.process.poll() is None:
        server.kill()


def test_redis_down_and_back_during_traffic(transactional_db, own_redis, caplog):
    """Redis killed mid-traffic: recommendations keep coming from the loaded model and events are
    stored; Redis restarted: the cache is used again, without restarting anything."""
    products, _ = seed_shop(n_users=30)
    assert training.train_strategy("popularity").status == "active"
    shopper = get_user_model().objects.create(username="fault-shopper")
    client = APIClient(REMOTE_ADDR="10.9.9.9")
    client.force_authenticate(shopper)
    rounds, kill_at, restart_at = 300, 100, 200
    phase_of = {0: "up", kill_at: "down", restart_at: "back"}
    figures = {phase: {"requests": 0, "errors": 0, "events_sent": 0, "seconds": 0.0, "strategies": set()}
               for phase in phase_of.values()}
    recovered_after = None
    phase = "up"
    caplog.set_level(logging.WARNING)
    for round_number in range(rounds):
        if round_number == kill_at:
            own_redis.kill()
        if round_number == restart_at:
            own_redis.start()
            restarted = time.perf_counter()
        phase = phase_of.get(round_number, phase)
        started = time.perf_counter()
        product = products[round_number % len(products)]
        posted = client.post(reverse("recommender:api:events"), {
            "batch_id": f"fault-{round_number}",
            "events": [{"product": str(product.pk), "event": "view"}, {"product": str(product.pk), "event": "click"}],
        }, format="json")
        served = client.get(reverse("recommender:api:recommendations"), {"k": 4})
        row = figures[phase]
        row["seconds"] += time.perf_counter() - started
        row["requests"] += 2
        row["events_sent"] += 2
        row["errors"] += (posted.status_code != 201) + (served.status_code != 200)
        if served.status_code == 200:
            row["strategies"].add(served.json()["strategy"])
        if phase == "back" and recovered_after is None and own_redis.keys() > 0:
            recovered_after = time.perf_counter() - restarted
    stored = Interaction.objects.filter(user=shopper).count()
    for name, row in figures.items():
        print(f"\nredis {name}: {row['requests']} requests, {row['errors']} errors, "
              f"{row['requests'] / row['seconds']:.0f} requests/s, served by {sorted(row['strategies'])}")
    sent = sum(row["events_sent"] for row in figures.values())
    print(f"events sent {sent} stored {stored}; cache in use again {recovered_after * 1000:.1f} ms after restart")
    assert all(row["errors"] == 0 for row in figures.values()), figures
    assert figures["down"]["strategies"] == {"popularity"}  # the loaded model, not the database fallback
    assert stored == sent
    assert recovered_after is not None, "the restarted Redis was never written to"
    assert any("cache" in record.getMessage().lower() and record.levelno >= logging.WARNING
               for record in caplog.records), "the outage was not logged"


# --- damaged artifacts -----------------------------------------------------------------------------
def damage(version, how):
    """Corrupt or delete a file of ``version`` in storage and drop this process's downloaded copies."""
    import shutil

    from django.core.files.base import ContentFile

    from recommender import artifacts

    storage = artifacts.get_storage()
    storage.delete(f"{version.artifact_path}/counts.npy")
    if how == "corrupted":
        storage.save(f"{version.artifact_path}/counts.npy", ContentFile(b"corrupted"))
    shutil.rmtree(artifacts.local_cache_root())


@pytest.mark.parametrize("how", ["corrupted", "missing"])
def test_a_damaged_active_artifact_is_refused_recorded_and_the_previous_version_serves(transactional_db, how,
                                                                                      caplog):
    """A corrupted or missing file of the newly active version is caught by its checksum: the
    version loaded before keeps serving, the error is logged and written on the version's row."""
    from recommender import artifacts
    from recommender.models import ModelVersion
    from recommender.testing.factories import planted_dataset

    from .training_support import ToyStrategy

    forget_training_cache_keys()
    training.forget_loaded_models()
    fitted = ToyStrategy().fit(planted_dataset(n_users=40, n_items=20))
    good = artifacts.save_artifact(fitted, ModelVersion.objects.create(strategy="toy", status="ready"))
    training.activate(good)
    assert training.get_active_strategy("toy").version_id == good.pk
    newer = artifacts.save_artifact(fitted, ModelVersion.objects.create(strategy="toy", status="ready"))
    training.activate(newer)
    damage(newer, how)
    caplog.set_level(logging.ERROR, logger="recommender.training")
    assert training.get_active_strategy("toy").version_id == good.pk
    newer.refresh_from_db()
    assert "Serving refused to load this artifact" in newer.error
    assert ("checksum" if how == "corrupted" else "missing") in newer.error
    assert any(f"v{newer.pk} cannot be loaded" in record.getMessage() for record in caplog.records)
    print(f"\nartifact {how}: detected, v{good.pk} kept serving; recorded: {newer.error[:120]}")
    training.forget_loaded_models()
