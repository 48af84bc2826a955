"""Page speed of the seeded demo shop over real HTTP: pages with recommendation widgets against a plain page.

    python benchmarks/pages.py                                   # SQLite and PostgreSQL, 200 visits each
    python benchmarks/pages.py --databases sqlite --visits 100 --var-dir var   # reuse `make demo`'s shop

For each database the demo shop is seeded (``seed_demo``: 2,000 products, 5,000 shoppers,
200,000 events) and trained (``recommender_train --sync``: every strategy, the hybrid served)
unless its folder already holds a trained shop, then served by gunicorn (2 sync workers,
``DJANGO_DEBUG=0``). One client replays visits one request at a time, each visit a new
anonymous visitor (its own cookies), in this order:

1. a category page (a plain page: a product grid, no recommendation widget);
2. a product page of a random product (records the view, then renders "Similar products" and
   "Often chosen together": the view changes the visitor's newest event, so both are
   computed, not cached);
3. the home page right after that view ("Picked for you" after one event: computed, not cached).

The three kinds are measured side by side in one run, so a busy machine slows them alike; the
report gives each kind's median and the ratios of the medians to the category page's (the
target: product page and home after a view each at most 3x a category page). Prints a table
and writes ``benchmarks/results/pages.json``; ``--markdown`` rewrites the "Pages" part of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import http.cookiejar
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "pages.json"
DOCS = ROOT / "docs" / "benchmarks.md"
SECTION_START, SECTION_END = "<!-- pages:start -->", "<!-- pages:end -->"
TARGET_RATIO = 3.0
KINDS = ("category page", "product page", "home after a product view")
DEFAULT_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/serving"


def environment(database: str, var_dir: Path, postgres_url: str) -> dict:
    env = {**os.environ, "SHOP_DEMO_VAR_DIR": str(var_dir), "DJANGO_SETTINGS_MODULE": "shop_demo.settings",
           "DJANGO_DEBUG": "0", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("DATABASE_URL", None)
    if database == "postgres":
        env["DATABASE_URL"] = postgres_url
    for name in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        env.pop(name, None)  # training runs in this process (--sync), as `make demo` does
    return env


def manage(env: dict, *args: str) -> str:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return result.stdout


def ensure_postgres_database(url: str) -> None:
    """Create the run's PostgreSQL database when it does not exist yet."""
    import dj_database_url
    import psycopg

    config = dj_database_url.parse(url)
    with psycopg.connect(host=config["HOST"] or None, port=config["PORT"] or None, user=config["USER"] or None,
                         password=config["PASSWORD"] or None, dbname="postgres", autocommit=True) as connection:
        if not connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [config["NAME"]]).fetchone():
            connection.execute(f'CREATE DATABASE "{config["NAME"]}"')


def prepare_shop(env: dict, var_dir: Path) -> dict:
    """Migrate, seed and train the demo shop in ``var_dir`` unless it is trained already."""
    started = time.perf_counter()
    if "DATABASE_URL" in env:
        ensure_postgres_database(env["DATABASE_URL"])
    manage(env, "migrate", "--noinput")
    manage(env, "seed_demo", "--seed", "0", "--if-empty")
    trained_marker = var_dir / (".demo-trained" if "DATABASE_URL" not in env else ".pages-trained-postgres")
    trained_now = not trained_marker.exists()
    if trained_now:
        print(f"  training every strategy (recommender_train --sync) in {var_dir} ...", flush=True)
        manage(env, "recommender_train", "--sync", "--no-progress")
        trained_marker.touch()
    return {"prepared_seconds": round(time.perf_counter() - started, 1), "trained_now": trained_now}


def shop_urls(env: dict) -> dict:
    """Category slugs and product ids of the shop (read through Django, not timed)."""
    code = ("import json, django; django.setup(); from shop_demo.catalog.models import Category, Product; "
            "print(json.dumps({'categories': [c.get_absolute_url() for c in Category.objects.all()], "
            "'products': [p.get_absolute_url() for p in Product.objects.all()]}))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(env: dict, port: int) -> subprocess.Popen:
    gunicorn = Path(sys.executable).with_name("gunicorn")
    process = subprocess.Popen(
        [str(gunicorn), "shop_demo.wsgi:application", "--workers", "2", "--bind", f"127.0.0.1:{port}",
         "--log-level", "warning", "--chdir", str(ROOT)],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30).read()
            return process
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {process.stderr.read().decode()[-3000:]}")
            time.sleep(0.2)  # waiting for a server process to come up, not a test clock
    process.kill()
    raise RuntimeError("gunicorn did not answer within 300 s")


def timed_get(opener, url: str) -> tuple[float, bytes]:
    started = time.perf_counter()
    with opener.open(url, timeout=60) as response:
        body = response.read()
    return (time.perf_counter() - started) * 1000, body


def visit(base: str, urls: dict, rng: random.Random) -> dict:
    """One new visitor: a category page, a product page, then the home page."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    product = rng.choice(urls["products"])
    timings = {}
    for kind, path in zip(KINDS, (rng.choice(urls["categories"]), product, "/")):
        milliseconds, body = timed_get(opener, base + path)
        timings[kind] = milliseconds
        if kind != KINDS[0] and b"data-rec-item=" not in body:
            raise RuntimeError(f"{path} showed no recommendation widget: the shop is not serving")
    return timings


def measure(database: str, var_dir: Path, visits: int, seed: int, postgres_url: str) -> dict:
    env = environment(database, var_dir, postgres_url)
    print(f"{database}: preparing the demo shop in {var_dir}", flush=True)
    prepared = prepare_shop(env, var_dir)
    urls = shop_urls(env)
    port = free_port()
    server = start_gunicorn(env, port)
    base = f"http://127.0.0.1:{port}"
    rng = random.Random(seed)
    samples = {kind: [] for kind in KINDS}
    try:
        for _ in range(10):  # warm both workers: models loaded, code paths and caches warm
            visit(base, urls, rng)
        for number in range(visits):
            for kind, milliseconds in visit(base, urls, rng).items():
                samples[kind].append(milliseconds)
            if (number + 1) % 50 == 0:
                print(f"  {number + 1}/{visits} visits", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    category = statistics.median(samples[KINDS[0]])
    rows = {}
    for kind, values in samples.items():
        values = sorted(values)
        rows[kind] = {"median_ms": statistics.median(values), "p90_ms": values[int(0.9 * (len(values) - 1))],
                      "requests": len(values), "ratio_to_category": statistics.median(values) / category}
    return {"database": database, "pages": rows, **prepared, "products": len(urls["products"])}


def verdicts(report) -> list[str]:
    lines = []
    for run in report["runs"]:
        for kind in KINDS[1:]:
            ratio = run["pages"][kind]["ratio_to_category"]
            verdict = "meets the" if ratio <= TARGET_RATIO else f"MISSES (by {ratio / TARGET_RATIO - 1:.0%}) the"
            lines.append(f"{run['database']}: {kind} median {run['pages'][kind]['median_ms']:.1f} ms = "
                         f"{ratio:.2f}x the category page ({run['pages'][KINDS[0]]['median_ms']:.1f} ms) — "
                         f"{verdict} ≤ {TARGET_RATIO:g}x target.")
    return lines


def table(report) -> str:
    lines = ["| database | page | median ms | p90 ms | × category page | requests |", "|---|---|---:|---:|---:|---:|"]
    for run in report["runs"]:
        for kind, row in run["pages"].items():
            lines.append(f"| {run['database']} | {kind} | {row['median_ms']:.1f} | {row['p90_ms']:.1f} | "
                         f"{row['ratio_to_category']:.2f} | {row['requests']} |")
    return "\n".join(lines)


def write_markdown(report) -> None:
    text = DOCS.read_text()
    machine = report["machine"]
    section = "\n".join([
        SECTION_START,
        "### Pages over HTTP (`benchmarks/pages.py`)",
        "",
        f"Measured {report['date']} at commit `{report['commit']}` on {machine['cpus']} CPU cores "
        f"({machine['platform']}), 1-minute load average {machine['load_average_at_start']} at the start. "
        "Reproduce with:",
        "",
        "```",
        report["command"],
        "```",
        "",
        "The seeded demo (2,000 products, 5,000 shoppers, 200,000 events, every strategy trained, the "
        "hybrid served) under gunicorn with 2 sync workers and `DJANGO_DEBUG=0`; one client, one request "
        "at a time, each visit a new anonymous visitor: a category page (no widget), a product page "
        "(records the view, then computes \"Similar products\" and \"Often chosen together\"), "
        "then the home page (\"Picked for you\" after that view, computed). Ratios are of medians, in "
        "the same run. Target: product page and home after a view ≤ 3x the category page.",
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
    DOCS.write_text(text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", default="sqlite,postgres", help="sqlite and/or postgres (comma-separated).")
    parser.add_argument("--visits", type=int, default=200, help="Timed visits (3 pages each) per database.")
    parser.add_argument("--var-dir", default=None,
                        help="Folder of the SQLite shop (default: benchmarks/results/pages-var-sqlite; `var` reuses make demo's).")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL, help="Database of the PostgreSQL run.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markdown", action="store_true", help="Rewrite the Pages part of docs/benchmarks.md.")
    parser.add_argument("--markdown-only", action="store_true",
                        help="Rewrite the Pages part of docs/benchmarks.md from the last results file; measure nothing.")
    options = parser.parse_args(argv)
    if options.markdown_only:
        report = json.loads(RESULTS.read_text())
        report["verdicts"] = verdicts(report)
        write_markdown(report)
        return report
    argv_text = " ".join(argv if argv is not None else sys.argv[1:])
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    report = {"date": time.strftime("%Y-%m-%d"), "commit": commit, "command": f"python benchmarks/pages.py {argv_text}".strip(),
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                          "load_average_at_start": round(os.getloadavg()[0], 1)},
              "target_ratio": TARGET_RATIO, "runs": []}
    for database in options.databases.split(","):
        default_dir = ROOT / "benchmarks" / "results" / f"pages-var-{database}"
        var_dir = Path(options.var_dir) if options.var_dir and database == "sqlite" else default_dir
        var_dir.mkdir(parents=True, exist_ok=True)
        report["runs"].append(measure(database, var_dir.resolve(), options.visits, options.seed, options.postgres_url))
    report["verdicts"] = verdicts(report)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2))
    print(table(report))
    print("\n".join(report["verdicts"]))
    if options.markdown:
        write_markdown(report)
    return report


if __name__ == "__main__":
    main()
