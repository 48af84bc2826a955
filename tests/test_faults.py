"""Faults of the services around the app, on throwaway instances of their own (never the
machine's shared Redis or PostgreSQL): Redis killed and restarted during traffic, PostgreSQL
stopped and started again under a running server, and a damaged artifact file.

Each prints its figures (requests served, errors, events stored, time to recover) for
docs/reliability.md.
"""

import http.cookiejar
import json
import logging
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings
from django.urls import reverse
from rest_framework.test import APIClient

from recommender.versions import guardrail, run
from recommender.models import Interaction
from recommender.serving import loaded_models

from .training_support import forget_training_cache_keys, seed_shop

pytestmark = pytest.mark.slow
REPO_ROOT = Path(__file__).resolve().parent.parent


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
        loaded_models.forget_loaded_models()
        yield server
        loaded_models.forget_loaded_models()
    if server.process.poll() is None:
        server.kill()


def test_redis_down_and_back_during_traffic(transactional_db, own_redis, caplog):
    """Redis killed mid-traffic: recommendations keep coming from the loaded model and events are
    stored; Redis restarted: the cache is used again, without restarting anything."""
    products, _ = seed_shop(n_users=30)
    assert run.train_strategy("popularity").status == "active"
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
    loaded_models.forget_loaded_models()
    fitted = ToyStrategy().fit(planted_dataset(n_users=40, n_items=20))
    good = artifacts.save_artifact(fitted, ModelVersion.objects.create(strategy="toy", status="ready"))
    guardrail.activate(good)
    assert loaded_models.get_active_strategy("toy").version_id == good.pk
    newer = artifacts.save_artifact(fitted, ModelVersion.objects.create(strategy="toy", status="ready"))
    guardrail.activate(newer)
    damage(newer, how)
    caplog.set_level(logging.ERROR, logger="recommender.serving.loaded_models")
    assert loaded_models.get_active_strategy("toy").version_id == good.pk
    newer.refresh_from_db()
    assert "Serving refused to load this artifact" in newer.error
    assert ("checksum" if how == "corrupted" else "missing") in newer.error
    assert any(f"v{newer.pk} cannot be loaded" in record.getMessage() for record in caplog.records)
    print(f"\nartifact {how}: detected, v{good.pk} kept serving; recorded: {newer.error[:120]}")
    loaded_models.forget_loaded_models()


# --- PostgreSQL restarted --------------------------------------------------------------------------
def postgres_bin_dir() -> Path | None:
    """Folder of initdb and pg_ctl: on PATH, else Debian's newest /usr/lib/postgresql/<version>/bin."""
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0)
    return found[-1].parent if found else None


class ThrowawayPostgres:
    """A PostgreSQL cluster of this test alone: initdb in a temporary folder, trust authentication,
    a free port on 127.0.0.1, its socket in that folder. initdb refuses to run as root, so as root
    every server command runs as the ``postgres`` OS user, which owns the folder."""

    def __init__(self, bin_dir: Path, root: Path, port: int):
        self.bin_dir, self.root, self.port = bin_dir, root, port
        self.data = root / "data"

    def _run(self, program, *args, check=True):
        command = [str(self.bin_dir / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        finished = subprocess.run(command, cwd=self.root, capture_output=True, text=True, timeout=120)
        if check and finished.returncode != 0:
            raise RuntimeError(f"{program} {' '.join(args)} failed:\n{finished.stdout}{finished.stderr}"
                               f"\n{self.log_tail()}")
        return finished

    def initdb(self):
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    def start(self):
        """Start the server and return once it accepts connections."""
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options,
                  "-w", "-t", "120", "start")

    def stop(self, mode: str):
        """Stop the server: ``fast`` (clients disconnected, clean shutdown) or ``immediate`` (as a crash)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "120", "stop")

    def ensure_running(self):
        if not (self.data / "postmaster.pid").exists():
            self.start()

    def destroy(self):
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def connect(self):
        import psycopg

        return psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                               autocommit=True)

    def log_tail(self) -> str:
        log = self.root / "server.log"
        return log.read_text()[-3000:] if log.exists() else ""


def postgres_server_unavailable_reason() -> str | None:
    """Why this machine cannot run a throwaway PostgreSQL cluster, or None when it can."""
    if postgres_bin_dir() is None:
        return "PostgreSQL server programs (initdb, pg_ctl) not found: install the postgresql package"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root, and initdb refuses root: no 'postgres' OS user to run it as"
        if shutil.which("runuser") is None:
            return "running as root, and initdb refuses root: runuser (util-linux) not found"
    return None


@pytest.fixture(scope="module")
def restartable_postgres():
    """A throwaway cluster, removed afterwards whatever happened; never the machine's shared server."""
    reason = postgres_server_unavailable_reason()
    if reason:
        pytest.skip(reason)
    # Not under pytest's tmp_path: as root that lies in a folder the postgres user cannot enter.
    root = Path(tempfile.mkdtemp(prefix="recommender-pg-"))
    server = ThrowawayPostgres(postgres_bin_dir(), root, free_port())
    try:
        if os.geteuid() == 0:
            shutil.chown(server.root, "postgres", "postgres")
        server.initdb()
        server.start()
        yield server
    finally:
        server.destroy()


class ShopServer:
    """gunicorn (2 workers × 4 threads) serving the test settings from ``database_url``, migrated and
    stocked with products; its own cache (local memory) and var folder, no rate limits."""

    def __init__(self, database_url: str, var_dir: Path, port: int):
        services = {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND",
                    "RECOMMENDER_TEST_CACHE_PREFIX"}
        inherited = {name: value for name, value in os.environ.items() if name not in services}
        self.environment = {**inherited, "DJANGO_SETTINGS_MODULE": "tests.settings_fault_server",
                            "DATABASE_URL": database_url, "RECOMMENDER_TEST_VAR_DIR": str(var_dir)}
        self.port, self.log_path, self.process = port, var_dir / "gunicorn.log", None
        self.base_url = f"http://127.0.0.1:{port}"

    def manage(self, *args) -> str:
        finished = subprocess.run([sys.executable, "manage.py", *args], cwd=REPO_ROOT, env=self.environment,
                                  capture_output=True, text=True, timeout=600)
        if finished.returncode != 0:
            raise RuntimeError(f"manage.py {args[0]} failed:\n{finished.stdout}{finished.stderr}")
        return finished.stdout

    def start(self):
        gunicorn = Path(sys.executable).with_name("gunicorn")
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [str(gunicorn), "shop_demo.wsgi:application", "--workers", "2", "--worker-class", "gthread",
             "--threads", "4", "--bind", f"127.0.0.1:{self.port}", "--log-level", "warning",
             "--timeout", "60"],
            cwd=REPO_ROOT, env=self.environment, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.base_url}/api/recommendations/?k=1", timeout=5).read()
                return
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"gunicorn exited:\n{self.log_text()}")
                time.sleep(0.2)  # waiting for a server process to come up, not for a test clock
        raise RuntimeError(f"gunicorn did not answer within 120 s:\n{self.log_text()}")

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None:
            self.log.close()

    def log_text(self) -> str:
        return self.log_path.read_text()[-4000:] if self.log_path.exists() else ""

    def refusals_logged(self) -> int:
        """How many 503s the middleware has logged so far."""
        return self.log_path.read_text().count("Database unavailable, answered 503:")


@pytest.fixture(scope="module")
def shop_on_throwaway_postgres(restartable_postgres, tmp_path_factory):
    """The server and the ids of its products (created through the catalog adapter)."""
    server = ShopServer(restartable_postgres.url, tmp_path_factory.mktemp("fault-server"), free_port())
    server.manage("migrate", "--noinput")
    created = server.manage("shell", "-c", "from recommender.testing.factories import make_product; "
                                           "print(' '.join(str(make_product().pk) for _ in range(20)))")
    product_ids = created.strip().splitlines()[-1].split()  # the shell may print a banner first
    try:
        server.start()
        yield server, product_ids
    finally:
        server.stop()


SHOPPERS = 4
EVENTS_PER_BATCH = 5
PHASE_ANSWERS = 40  # successes before the stop and after the start, clean 503s in between
RETRY_PAUSE = 0.25  # shorter than Retry-After (5 s) so the time to recover is measured finely
CLIENT_TIMEOUT = 20
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@dataclass
class Answer:
    """One request of a shopper: what it asked, when, and what came back."""

    kind: str  # "events" (POST /api/events/), "api" (GET /api/recommendations/) or "page" (HTML)
    started: float
    finished: float
    status: int | None  # None: no HTTP answer at all (refused, reset, timed out)
    clean_503: bool = False
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def unexpected(self) -> bool:
        return not self.ok and not self.clean_503


def is_clean_503(kind, headers, body) -> bool:
    """A 503 with Retry-After and the middleware's body: JSON for API calls, its page for browsers."""
    if headers.get("Retry-After") != "5":
        return False
    if kind == "page":
        return headers.get_content_type() == "text/html" and b"Temporarily unavailable" in body
    try:
        return (headers.get_content_type() == "application/json"
                and json.loads(body)["code"] == "database_unavailable")
    except (ValueError, KeyError):
        return False


def ask(opener, request, kind) -> Answer:
    started = time.perf_counter()
    try:
        with opener.open(request, timeout=CLIENT_TIMEOUT) as response:
            status, headers, body = response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        status, headers, body = exc.code, exc.headers, exc.read()
    except OSError as exc:
        return Answer(kind, started, time.perf_counter(), None, detail=repr(exc))
    answer = Answer(kind, started, time.perf_counter(), status)
    answer.clean_503 = status == 503 and is_clean_503(kind, headers, body)
    if answer.unexpected:
        answer.detail = body[:300].decode(errors="replace")
    return answer


class Shopper(threading.Thread):
    """An anonymous visitor (its own cookies): posts a batch of events, asks for recommendations and
    opens a page, again and again; a batch that is not accepted is sent again with its batch_id."""

    def __init__(self, name, base_url, product_ids, answers, stop):
        super().__init__(name=name)
        self.base_url, self.product_ids, self.answers, self.stop = base_url, product_ids, answers, stop
        self.give_up_at = time.perf_counter() + 120
        self.accepted, self.attempts, self.unaccepted, self.failure = [], {}, None, None
        cookies = urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        self.opener = urllib.request.build_opener(cookies)

    def run(self):
        try:
            batch_number = 0
            while not self.stop.is_set():
                batch_id = f"{self.name}-batch-{batch_number}"
                if not self.post_until_accepted(batch_id, batch_number):
                    self.unaccepted = batch_id
                    return
                recommendations = urllib.request.Request(f"{self.base_url}/api/recommendations/?k=4")
                self.answers.append(ask(self.opener, recommendations, "api"))
                page = urllib.request.Request(f"{self.base_url}/recommendations/onboarding/",
                                              headers={"Accept": BROWSER_ACCEPT})
                self.answers.append(ask(self.opener, page, "page"))
                batch_number += 1
        except Exception as exc:  # reported by the test; a thread's exception would otherwise vanish
            self.failure = exc

    def post_until_accepted(self, batch_id, batch_number) -> bool:
        products = [self.product_ids[(batch_number + index) % len(self.product_ids)]
                    for index in range(EVENTS_PER_BATCH)]
        events = [{"product": product, "event": "view"} for product in products]
        body = {"batch_id": batch_id, "events": events}
        request = urllib.request.Request(f"{self.base_url}/api/events/", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        self.attempts[batch_id] = 0
        while time.perf_counter() < self.give_up_at:
            answer = ask(self.opener, request, "events")
            self.answers.append(answer)
            self.attempts[batch_id] += 1
            if answer.ok:
                self.accepted.append(batch_id)
                return True
            time.sleep(RETRY_PAUSE)  # the client's pause before retrying, not a test clock
        return False


class Traffic:
    """``SHOPPERS`` shoppers on the server, and every answer they got."""

    def __init__(self, server, product_ids, name):
        self.server, self.answers, self.stop = server, [], threading.Event()
        self.shoppers = [
            Shopper(f"{name}-shopper-{number}", server.base_url, product_ids, self.answers, self.stop)
            for number in range(SHOPPERS)
        ]
        for shopper in self.shoppers:
            shopper.start()

    def finish(self):
        """Let each shopper get its current batch accepted, then stop."""
        self.stop.set()
        for shopper in self.shoppers:
            shopper.join(timeout=150)

    def count(self, since, clean_503=False) -> int:
        """Successes (or clean 503s) of requests started at ``since`` or later."""
        return sum((answer.clean_503 if clean_503 else answer.ok) and answer.started >= since
                   for answer in list(self.answers))

    def wait_for(self, what, predicate, postgres, timeout=60):
        """Poll ``predicate`` (the shoppers and the servers do the work); fail at the first answer
        that is neither a success nor a clean 503."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            unexpected = [answer for answer in list(self.answers) if answer.unexpected]
            if unexpected:
                pytest.fail(f"{len(unexpected)} unexpected answers while waiting for {what}: "
                            f"{unexpected[:3]}\n--- gunicorn:\n{self.server.log_text()}")
            if predicate():
                return
            time.sleep(0.05)
        pytest.fail(f"timed out after {timeout} s waiting for {what}\n"
                    f"--- gunicorn:\n{self.server.log_text()}\n--- postgres:\n{postgres.log_tail()}")


def phase_figures(answers) -> dict:
    return {"requests": len(answers), "2xx": sum(answer.ok for answer in answers),
            "503": sum(answer.clean_503 for answer in answers),
            "other": sum(answer.unexpected for answer in answers)}


def events_stored_per_batch(postgres, prefix) -> dict:
    """{batch_id: rows} of the batches whose id starts with ``prefix``, read from the server's database."""
    with postgres.connect() as database:
        return dict(database.execute(
            # Keys are "<owner kind>:<owner>:<batch id>:<index>" (batch ids are scoped to their owner).
            "SELECT split_part(dedupe_key, ':', 3), count(*) FROM recommender_interaction "
            "WHERE split_part(dedupe_key, ':', 3) LIKE %s GROUP BY 1", [f"{prefix}%"]).fetchall())


@pytest.mark.postgres
@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_postgres_restarted_during_traffic(restartable_postgres, shop_on_throwaway_postgres, mode):
    """PostgreSQL stopped under a running gunicorn (``pg_ctl stop -m fast``, or ``immediate`` as a
    crash) and started again: while it is down every request gets a clean 503 at once, after it
    every request succeeds again with no restart of the server, and every accepted event batch,
    retried or not, is stored exactly once."""
    server, product_ids = shop_on_throwaway_postgres
    logged_before = server.refusals_logged()
    traffic = Traffic(server, product_ids, mode)
    try:
        traffic.wait_for("traffic while PostgreSQL is up",
                         lambda: traffic.count(since=0) >= PHASE_ANSWERS, restartable_postgres)
        stopping = time.perf_counter()
        restartable_postgres.stop(mode)
        stopped = time.perf_counter()
        traffic.wait_for("requests during the outage",
                         lambda: traffic.count(since=stopped, clean_503=True) >= PHASE_ANSWERS,
                         restartable_postgres)
        restartable_postgres.start()
        back = time.perf_counter()
        traffic.wait_for("traffic after the restart",
                         lambda: traffic.count(since=back) >= PHASE_ANSWERS, restartable_postgres)
    finally:
        traffic.finish()
        restartable_postgres.ensure_running()  # for the next test on this cluster, had this one failed

    shoppers, answers = traffic.shoppers, traffic.answers
    assert [shopper.failure for shopper in shoppers if shopper.failure] == []
    assert [shopper.unaccepted for shopper in shoppers if shopper.unaccepted] == [], server.log_text()
    # Phases by when a request started: "up" includes requests in flight when the stop began.
    phases = {"up": [answer for answer in answers if answer.started < stopping],
              "down": [answer for answer in answers if stopping <= answer.started < back],
              "back": [answer for answer in answers if answer.started >= back]}
    figures = {name: phase_figures(phase) for name, phase in phases.items()}
    first_success = min(answer.finished for answer in phases["back"] if answer.ok) - back
    slowest_503 = max(answer.finished - answer.started for answer in answers if answer.clean_503)
    accepted = [batch_id for shopper in shoppers for batch_id in shopper.accepted]
    retried = [batch_id for shopper in shoppers
               for batch_id, attempts in shopper.attempts.items() if attempts > 1]
    stored = events_stored_per_batch(restartable_postgres, f"{mode}-shopper-")
    print()
    for name, row in figures.items():
        print(f"postgres {mode} {name}: {row['requests']} requests, {row['2xx']} 2xx, "
              f"{row['503']} clean 503s, {row['other']} other errors")
    print(f"postgres {mode}: down {back - stopping:.2f} s (the stop took {stopped - stopping:.2f} s), "
          f"first success {first_success * 1000:.0f} ms after it was back, "
          f"slowest 503 {slowest_503 * 1000:.0f} ms; batches accepted {len(accepted)} "
          f"({len(accepted) * EVENTS_PER_BATCH} events, {len(retried)} after retries), "
          f"events stored {sum(stored.values())}")
    assert [answer for answer in answers if answer.unexpected] == []
    assert figures["down"]["503"] > 0 and retried, "the outage was not seen by the clients"
    assert figures["back"]["503"] == 0, "a request failed after PostgreSQL was back (stale connection kept?)"
    assert slowest_503 < 10, "a request hung while PostgreSQL was down (connect_timeout is 5 s)"
    assert server.refusals_logged() - logged_before == sum(row["503"] for row in figures.values())
    assert stored == {batch_id: EVENTS_PER_BATCH for batch_id in accepted}
