"""Serving speed: in-process recommendation latency and HTTP throughput against a trivial endpoint.

    python benchmarks/serving.py                         # 10k and 100k products, hybrid, HTTP at 10k
    python benchmarks/serving.py --sizes 10000 --strategy segment_popularity --http-seconds 5

1. **In-process**, per catalogue size, for a new visitor with 0 and with 3 session events: the
   strategy path of ``service.recommend`` on a cache miss — the context (``ContextBuilder``),
   the candidates (``strategy.recommend`` with the over-fetch and the exclusions), the rules on
   the ranked list (stock and categories from memory; in serving they come with the one product
   query) and the explanations of the ``k`` kept items — timed call by call; p50/p99. At the
   first size the full ``service.recommend`` (its SQLite queries included; served-list cache
   off) is timed as well, and so is the precompute read: warm signed-in users served from their
   fresh precomputed list against the same users scored live.
2. **HTTP**: the shop under gunicorn (2 sync workers) on loopback, a threaded Python client;
   ``GET /api/recommendations/?k=8`` for anonymous visitors, the same with a random product in
   view (mostly cache misses), and a trivial DRF endpoint (``/bench/ping/``) measured in the
   same run. Throughput is reported as a ratio to the trivial endpoint's.

The catalogue and events are the synthetic shop (``recommender.data.synthetic``); at the first
size its products are written to a throw-away SQLite database and the fitted strategy is saved
as a real artifact and activated, so gunicorn serves it through ``serving.loaded_models.get_active_strategy``.
Prints a table and writes ``benchmarks/results/serving.json``; ``--markdown`` also rewrites the
"Serving" section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "serving.json"
DOCS = ROOT / "docs" / "benchmarks.md"
SECTION_START, SECTION_END = "<!-- serving:start -->", "<!-- serving:end -->"
K = 8
# 10k products with 3 session events: p50 and p99; 100k products: p50; HTTP: × the trivial endpoint.
TARGETS = {"p50_ms": 1.0, "p99_ms": 5.0, "p50_100k_ms": 5.0, "http_ratio": 0.7}


def setup_django(bench_dir: Path):
    os.environ["RECOMMENDER_BENCH_DIR"] = str(bench_dir)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings_serving")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, skip_checks=True)


def percentiles(samples_ms):
    import numpy as np

    values = np.asarray(samples_ms)
    if values.size == 0:
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "mean_ms": float("nan"), "calls": 0}
    return {"p50_ms": float(np.percentile(values, 50)), "p99_ms": float(np.percentile(values, 99)),
            "mean_ms": float(values.mean()), "calls": int(values.size)}


# --- data and model --------------------------------------------------------------------------
def synthetic_shop(n_items: int, seed: int):
    from recommender.data.synthetic import make_shop_dataset

    n_events = min(200_000, max(50_000, n_items * 2))
    return make_shop_dataset(seed=seed, n_users=max(2000, n_events // 40), n_items=n_items, n_events=n_events)


def strategy_params(key: str) -> dict:
    # TF-IDF text vectors: embedding 100k product texts with the sentence model takes far longer
    # than this benchmark; serving cost is the same for any 128-dimensional item vectors.
    if key == "hybrid":
        return {"components": ["segment_popularity", "demographic", "item_knn", "content"],
                "component_params": {"content": {"encoder": "tfidf"}}}
    if key == "content":
        return {"encoder": "tfidf"}
    return {}


def fit(key: str, dataset):
    from recommender.strategies.registry import create_strategy

    started = time.perf_counter()
    strategy = create_strategy(key, **strategy_params(key)).fit(dataset)
    return strategy, time.perf_counter() - started


def with_database_ids(dataset):
    """Write the dataset's products into the shop's catalogue; return the dataset keyed by pk."""
    from recommender.catalog import get_adapter
    from recommender.data.dataset import Dataset

    adapter = get_adapter()
    items = dataset.items.reset_index()
    products = [adapter.build_product({**row, "external_id": row["item_id"]}) for row in items.to_dict("records")]
    adapter.model._default_manager.bulk_create(products, batch_size=2000)
    pk_of = {str(ext): str(pk) for ext, pk in adapter.model._default_manager.values_list("sku", "pk")}
    items["item_id"] = items["item_id"].map(pk_of)
    interactions = dataset.interactions.assign(item_id=dataset.interactions["item_id"].map(pk_of))
    return Dataset(users=dataset.users.reset_index(), items=items, interactions=interactions, name=dataset.name)


def activate(strategy):
    """Save ``strategy`` as a real artifact and make it the active version of its key."""
    from recommender import artifacts
    from recommender.versions import guardrail
    from recommender.models import ModelVersion

    version = ModelVersion.objects.create(strategy=strategy.key, status="ready")
    artifacts.save_artifact(strategy, version)
    guardrail.activate(version)


# --- in-process ------------------------------------------------------------------------------
def visitor_contexts(dataset, n_events: int, count: int, seed: int):
    """Contexts of new visitors: a real profile from the data and ``n_events`` session views."""
    from recommender.strategies.base import Context, Event

    rng = random.Random(seed)
    users = dataset.users.reset_index().to_dict("records")
    popular = dataset.interactions["item_id"].value_counts().index[:2000].tolist()
    contexts = []
    for _ in range(count):
        user = rng.choice(users)
        # NaN != NaN: attributes missing from this user's row are left out of the profile.
        profile = {key: user[key] for key in ("age", "gender", "country", "region", "city")
                   if key in user and user[key] == user[key]}
        events = tuple(Event(item_id=rng.choice(popular), event="view", timestamp=1.7e9 + i) for i in range(n_events))
        contexts.append(Context(profile=profile, events=events))
    return contexts


def time_strategy_path(strategy, dataset, n_events: int, calls: int, seed: int):
    """Per-call milliseconds of the request path's in-memory part on a cache miss.

    What ``service.recommend`` does between its queries: the context, the candidates
    (``strategy.recommend`` with the over-fetch and the exclusions known from the context), the
    rules on the ranked list (stock and categories from memory here: the rules step reads them
    in its one query) and the explanations of the kept items.
    """
    from recommender.serving import placements, rules
    from recommender.serving.candidates import OVERFETCH
    from recommender.strategies.context import ContextBuilder

    builder = ContextBuilder()
    home = placements.Placement(name="home")
    items = dataset.items
    in_stock = set(items.index[items["in_stock"].astype(bool)].astype(str))
    category_of = dict(zip(items.index.astype(str), items["category"].fillna("").astype(str).str.split("|").str[0]))
    samples = []
    for template in visitor_contexts(dataset, n_events, calls, seed):
        started = time.perf_counter()
        context = builder.build(profile=template.profile, events=template.events)
        excluded = rules.excluded_ids(context, home)
        ranked = strategy.recommend(context, k=K * OVERFETCH, exclude=excluded)
        kept = [index for index, item_id in enumerate(ranked.item_ids) if item_id in in_stock]
        chosen = [kept[position] for position in
                  rules.diversified([category_of[ranked.item_ids[index]] for index in kept], K, home.max_category_share)]
        reasons = ranked.reasons_at(chosen)
        samples.append((time.perf_counter() - started) * 1000)
        assert len(reasons) == K, "the strategy recommended too little"
    return percentiles(samples[calls // 10:])  # the first calls warm caches and code paths


def time_full_service(strategy, dataset, n_events: int, calls: int, seed: int):
    """Per-call milliseconds of service.recommend with the database and no served-list cache."""
    from recommender import events, service
    from recommender.serving import loaded_models

    contexts = visitor_contexts(dataset, n_events, calls, seed)
    for number, context in enumerate(contexts):
        if context.events:
            events.record([{"product": event.item_id, "event": "view"} for event in context.events],
                          visitor_key=f"bench-{n_events}-{number}")
    samples = []
    with served_lists_not_cached(), serving_only(loaded_models, strategy):
        for number in range(calls):
            started = time.perf_counter()
            served = service.recommend(visitor_key=f"bench-{n_events}-{number}", k=K, strategy=strategy.key)
            samples.append((time.perf_counter() - started) * 1000)
            assert len(served) == K and served.strategy == strategy.key
    return percentiles(samples[calls // 10:])


def time_precompute_gain(strategy, dataset, calls: int, seed: int):
    """service.recommend for warm signed-in users: their fresh precomputed list against live scoring.

    Same users, same data, the served-list cache off in both (a returning user after
    ``CACHE_TIMEOUT``, or another ``k``); the precomputed lists are written by
    ``precompute.precompute_for_users`` as the beat job would.
    """
    from django.contrib.auth import get_user_model

    from recommender import events, precompute, service
    from recommender.models import ModelVersion
    from recommender.serving import loaded_models

    rng = random.Random(seed)
    popular = dataset.interactions["item_id"].value_counts().index[:2000].tolist()
    users = [get_user_model().objects.create_user(f"warm-{number}") for number in range(calls)]
    for user in users:
        events.record([{"product": rng.choice(popular), "event": "view"} for _ in range(12)], user=user)
    version = ModelVersion.objects.filter(strategy=strategy.key, status="active").first()
    results = {}
    with served_lists_not_cached(), serving_only(loaded_models, strategy):
        strategy.version_id = version.pk
        stored = precompute.precompute_for_users(strategy.key, version.pk, [user.pk for user in users])
        assert stored == len(users)
        for label, use_precomputed in (("precomputed list", True), ("live scoring", False)):
            samples = []
            with precomputed_lists(use_precomputed):
                for user in users:
                    started = time.perf_counter()
                    served = service.recommend(user=user, k=K, strategy=strategy.key)
                    samples.append((time.perf_counter() - started) * 1000)
                    assert served.source == ("precomputed" if use_precomputed else "live"), served.source
            results[label] = percentiles(samples[len(samples) // 10:])
    results["gain"] = results["live scoring"]["p50_ms"] / results["precomputed list"]["p50_ms"]
    return results


@contextlib.contextmanager
def served_lists_not_cached():
    """Every call computes its list: the served-list cache misses (the model stamp, the loaded
    models and the precomputed lists are read as usual, they do not go through it)."""
    from recommender.serving import cache

    original = cache.get
    cache.get = lambda key: None
    try:
        yield
    finally:
        cache.get = original


@contextlib.contextmanager
def serving_only(loaded_models, strategy):
    """``strategy`` is the only model this process serves, under its own key."""
    original = loaded_models.get_active_strategy
    loaded_models.get_active_strategy = lambda key: strategy if key == strategy.key else None
    try:
        yield
    finally:
        loaded_models.get_active_strategy = original


@contextlib.contextmanager
def precomputed_lists(enabled: bool):
    from recommender.serving import candidates

    original = candidates.precomputed_list
    if not enabled:
        candidates.precomputed_list = lambda *args, **kwargs: None
    try:
        yield
    finally:
        candidates.precomputed_list = original


# --- HTTP ------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(bench_dir: Path, port: int):
    env = {**os.environ, "RECOMMENDER_BENCH_DIR": str(bench_dir), "DJANGO_SETTINGS_MODULE": "benchmarks.settings_serving"}
    gunicorn = Path(sys.executable).with_name("gunicorn")
    process = subprocess.Popen(
        # --preload: the master loads the active models once (see wsgi_serving) and the workers
        # share them, as a production deployment would do.
        [str(gunicorn), "benchmarks.wsgi_serving:application", "--preload", "--workers", "2", "--bind", f"127.0.0.1:{port}",
         "--log-level", "warning", "--chdir", str(ROOT)],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/bench/ping/", timeout=2).read()
            return process
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {process.stderr.read().decode()[-2000:]}")
            time.sleep(0.2)  # waiting for a server process to come up, not for a test clock
    process.kill()
    raise RuntimeError("gunicorn did not answer within 600 s")


def load(base_url: str, make_path, seconds: float, threads: int):
    """Hit ``make_path()`` URLs from ``threads`` clients for ``seconds``; throughput and latency."""
    samples, errors, stop_at = [], [0], time.perf_counter() + seconds
    lock = threading.Lock()

    def client(seed):
        rng = random.Random(seed)
        mine = []
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(base_url + make_path(rng), timeout=10) as response:
                    response.read()
                mine.append((time.perf_counter() - started) * 1000)
            except OSError:
                with lock:
                    errors[0] += 1
        with lock:
            samples.extend(mine)

    workers = [threading.Thread(target=client, args=(seed,)) for seed in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    return {**percentiles(samples), "requests_per_s": len(samples) / elapsed, "errors": errors[0]}


def http_benchmark(bench_dir: Path, product_ids, seconds: float, threads: int):
    port = free_port()
    server = start_gunicorn(bench_dir, port)
    base = f"http://127.0.0.1:{port}"
    endpoints = {
        "trivial DRF endpoint (/bench/ping/)": lambda rng: "/bench/ping/",
        "/api/recommendations/?k=8 (anonymous)": lambda rng: f"/api/recommendations/?k={K}",
        "/api/recommendations/ with a random product in view": lambda rng: (
            f"/api/recommendations/?k={K}&placement=also_bought&product={rng.choice(product_ids)}"),
    }
    try:
        results = {}
        for name, make_path in endpoints.items():
            load(base, make_path, min(2.0, seconds / 4), threads)  # warm both workers
            results[name] = load(base, make_path, seconds, threads)
    finally:
        server.terminate()
        server.wait(timeout=30)
    trivial = results["trivial DRF endpoint (/bench/ping/)"]["requests_per_s"]
    for row in results.values():
        row["ratio_to_trivial"] = row["requests_per_s"] / trivial
    return results


# --- report ----------------------------------------------------------------------------------
def table(report) -> str:
    lines = ["| products | strategy | session events | path | p50 ms | p99 ms | calls |",
             "|---:|---|---:|---|---:|---:|---:|"]
    for row in report["in_process"]:
        lines.append(f"| {row['products']:,} | {row['strategy']} | {row['events']} | {row['path']} | "
                     f"{row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['calls']} |")
    if report.get("precompute"):
        lines += ["", f"| warm signed-in user, {report['precompute_products']:,} products, full service | p50 ms | p99 ms | calls |",
                  "|---|---:|---:|---:|"]
        for name, row in report["precompute"].items():
            if isinstance(row, dict):
                lines.append(f"| {name} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['calls']} |")
    if report.get("http"):
        lines += ["", "| HTTP endpoint (gunicorn, 2 workers) | req/s | p50 ms | p99 ms | × trivial | errors |",
                  "|---|---:|---:|---:|---:|---:|"]
        for name, row in report["http"].items():
            lines.append(f"| {name} | {row['requests_per_s']:.0f} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | "
                         f"{row['ratio_to_trivial']:.2f} | {row['errors']} |")
    return "\n".join(lines)


def write_markdown(report, command: str):
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    machine = report["machine"]
    section = "\n".join([
        SECTION_START,
        "## Serving",
        "",
        f"Measured on {machine['cpus']} CPU cores ({machine['platform']}, Python {machine['python']}), "
        f"{report['date']}, 1-minute load average {machine.get('load_average_at_start', '?')} at the start "
        "(other work on the same cores slows every figure alike). Reproduce with:",
        "",
        "```",
        command,
        "```",
        "",
        "In-process: the strategy path of `service.recommend` on a cache miss (the context, the "
        "candidates from `strategy.recommend` with the over-fetch and exclusions, the rules on the "
        "ranked list with stock and categories from memory, the explanations of the k kept items) for "
        "a new visitor with 0 or 3 session events; `full service` is `service.recommend` itself with "
        "its three SQLite queries (profile, newest events, sellable product rows) and the served-list "
        "cache off. A cache hit skips the strategy. The precompute rows serve warm signed-in users "
        "(12 events each) from their fresh precomputed list, then the same users scored live. HTTP: "
        "gunicorn with 2 sync workers, a threaded Python client on the same cores (it competes with "
        "the server for CPU, equally for every endpoint).",
        "",
        f"Targets: at 10k products with 3 session events p50 ≤ {TARGETS['p50_ms']:g} ms and p99 ≤ "
        f"{TARGETS['p99_ms']:g} ms; at 100k products p50 ≤ {TARGETS['p50_100k_ms']:g} ms; HTTP throughput "
        f"≥ {TARGETS['http_ratio']:g} × the trivial endpoint's.",
        "",
        table(report),
        "",
        *[f"- {line}" for line in report["verdicts"]],
        SECTION_END,
    ])
    if SECTION_START in text and SECTION_END in text:
        head, rest = text.split(SECTION_START, 1)
        text = head + section + rest.split(SECTION_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    DOCS.write_text(text)


def verdicts(report) -> list[str]:
    lines = []
    for row in report["in_process"]:
        if row["path"] != "strategy" or row["events"] != 3:
            continue
        if row["products"] == 10_000:
            misses = [f"p50 by {row['p50_ms'] / TARGETS['p50_ms']:.1f}x"] if row["p50_ms"] > TARGETS["p50_ms"] else []
            misses += [f"p99 by {row['p99_ms'] / TARGETS['p99_ms']:.1f}x"] if row["p99_ms"] > TARGETS["p99_ms"] else []
            lines.append(f"10k products, 3 events: p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms — "
                         + (f"MISSES the target ({', '.join(misses)})." if misses else "meets the target."))
        if row["products"] == 100_000:
            ok = row["p50_ms"] <= TARGETS["p50_100k_ms"]
            lines.append(f"100k products, 3 events: p50 {row['p50_ms']:.2f} ms — " + (
                "meets the target." if ok else f"MISSES the target by {row['p50_ms'] / TARGETS['p50_100k_ms']:.1f}x."))
    if report.get("precompute"):
        lines.append(f"Precomputed lists: a warm user's shelf p50 {report['precompute']['precomputed list']['p50_ms']:.2f} ms "
                     f"against {report['precompute']['live scoring']['p50_ms']:.2f} ms scored live "
                     f"({report['precompute']['gain']:.1f}x faster).")
    for name, row in (report.get("http") or {}).items():
        if name.startswith("/api/recommendations/?k=8"):
            ok = row["ratio_to_trivial"] >= TARGETS["http_ratio"]
            lines.append(f"HTTP {name}: {row['ratio_to_trivial']:.2f} × the trivial endpoint — " + (
                "meets the target." if ok else f"MISSES the target ({TARGETS['http_ratio']:g}x)."))
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="Catalogue sizes (comma-separated).")
    parser.add_argument("--strategy", default="hybrid", help="Strategy key to serve (default hybrid).")
    parser.add_argument("--calls", type=int, default=1000, help="Timed calls per in-process case.")
    parser.add_argument("--http-seconds", type=float, default=10.0, help="Seconds of load per HTTP endpoint.")
    parser.add_argument("--threads", type=int, default=8, help="HTTP client threads.")
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--markdown", action="store_true", help="Rewrite the Serving section of docs/benchmarks.md.")
    parser.add_argument("--merge", action="store_true",
                        help="Keep rows of other sizes (and the HTTP figures when skipped) from the last results file.")
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args(argv)
    sizes = [int(size) for size in options.sizes.split(",")]

    bench_dir = Path(tempfile.mkdtemp(prefix="recommender-bench-"))
    setup_django(bench_dir)
    report = {"date": time.strftime("%Y-%m-%d"), "k": K, "strategy": options.strategy,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                          "load_average_at_start": round(os.getloadavg()[0], 1)},
              "in_process": [], "fit_seconds": {}}
    if options.merge and RESULTS.exists():
        previous = json.loads(RESULTS.read_text())
        report["in_process"] = [row for row in previous.get("in_process", []) if row["products"] not in sizes]
        report["fit_seconds"] = {size: seconds for size, seconds in previous.get("fit_seconds", {}).items()
                                 if int(size) not in sizes}
        report["commands"] = previous.get("commands", []) if report["in_process"] else []
        if options.skip_http and previous.get("http"):
            report["http"], report["http_products"] = previous["http"], previous.get("http_products")
        if sizes[0] != previous.get("precompute_products") and previous.get("precompute"):
            report["precompute"], report["precompute_products"] = previous["precompute"], previous["precompute_products"]
    command = "python benchmarks/serving.py " + " ".join(argv if argv is not None else sys.argv[1:])
    product_ids = []
    for index, size in enumerate(sizes):
        dataset = synthetic_shop(size, options.seed)
        if index == 0:
            dataset = with_database_ids(dataset)
            product_ids = list(dataset.item_ids)
        strategy, fit_seconds = fit(options.strategy, dataset)
        report["fit_seconds"][str(size)] = round(fit_seconds, 1)
        print(f"{size:,} products: fitted {options.strategy} in {fit_seconds:.1f} s", flush=True)
        for n_events in (0, 3):
            row = time_strategy_path(strategy, dataset, n_events, options.calls, options.seed)
            report["in_process"].append({"products": size, "strategy": options.strategy, "events": n_events,
                                         "path": "strategy", **row})
            if index == 0:
                row = time_full_service(strategy, dataset, n_events, max(200, options.calls // 2), options.seed)
                report["in_process"].append({"products": size, "strategy": options.strategy, "events": n_events,
                                             "path": "full service", **row})
        if index == 0:
            save(report, options.markdown, command)
            activate(strategy)
            report["precompute"] = time_precompute_gain(strategy, dataset, max(100, options.calls // 5), options.seed)
            report["precompute_products"] = size
        if index == 0 and not options.skip_http:
            save(report, options.markdown, command)
            report["http"] = http_benchmark(bench_dir, product_ids, options.http_seconds, options.threads)
            report["http_products"] = size
        del strategy, dataset
        save(report, options.markdown, command)  # after every size: a long run keeps what it measured
    print(table(report))
    print("\n".join(report["verdicts"]))
    return report


def save(report, markdown: bool, command: str):
    report["in_process"].sort(key=lambda row: (row["products"], row["events"], row["path"]))
    report["verdicts"] = verdicts(report)
    report["commands"] = sorted(set(report.get("commands", [])) | {command.strip()})
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2))
    if markdown:
        write_markdown(report, "\n".join(report["commands"]))


if __name__ == "__main__":
    main()
