"""Training cost: seconds and peak memory to train every strategy, the old path and the new side by side.

Two measurements, on the synthetic shop (``recommender.data.synthetic``) scaled to the
interaction count:

1. **Fits.** Each (strategy, size) fit runs in a fresh subprocess so its peak memory is its own:
   the process's resident-set high-water mark is reset just before ``fit`` (Linux
   ``clear_refs``) and read just after. The hybrid is fitted two ways: ``hybrid (refits)``, the
   old path, fits every component itself (once without its validation users to learn the blend,
   then again on all data to serve); ``hybrid (given components)``, the new path, is handed the
   components fitted in the same subprocess just before (not timed), as a train-all hands it the
   versions it trained, and fits them only to learn the blend. The content strategy's first
   text-embedding pass is excluded, as the target says (its embedding cache is warmed first).
   Wall seconds and CPU seconds (every thread of the process) are both recorded, with the load
   average as each fit started: on a shared machine the wall clock grows with the others' load,
   the CPU seconds much less.
2. **Train-all pipeline.** What ``manage.py recommender_train --sync`` does, in a subprocess on
   a throw-away SQLite database and artifact folder: every strategy's run (held-out check, fit on
   all data, checksummed artifact, guarded activation), the components first. ``old``: the hybrid
   fits its components itself (``components={}``); ``new``: ``versions.run.train_here``, which
   hands it the component versions the run just trained.

    python benchmarks/training.py                                # fits at 10k/100k/1M, pipeline at 10k/100k
    python benchmarks/training.py --sizes 100000 --pipeline-sizes 100000
    python benchmarks/training.py --strategies popularity,hybrid --pipeline-sizes ""

Prints tables and writes ``benchmarks/results/training.json``. Target (docs/benchmarks.md): every
strategy, the hybrid included, on 100k interactions in at most 45 s on a 2-core machine, cost
close to linear in interactions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "training.json"
COMPONENTS = ("popularity", "segment_popularity", "item_knn", "demographic", "generative", "behavior", "content")
HYBRID = "hybrid"
HYBRID_GIVEN = "hybrid (given components)"
HYBRID_REFITS = "hybrid (refits)"
DEFAULT_STRATEGIES = (*COMPONENTS, HYBRID)
DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
DEFAULT_PIPELINE_SIZES = (10_000, 100_000)
TARGET_SECONDS = 45.0
TARGET_SIZE = 100_000


def dataset_for(n_interactions: int):
    """The synthetic shop scaled so users and products grow with the interaction count."""
    from recommender.data.synthetic import make_shop_dataset

    n_users = max(300, n_interactions // 40)
    n_items = min(20_000, max(500, n_interactions // 50))
    return make_shop_dataset(seed=0, n_users=n_users, n_items=n_items, n_categories=24, n_events=n_interactions)


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _setup_django(var_dir: str) -> None:
    """The test settings on a throw-away folder: SQLite, local-memory cache, eager Celery."""
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        os.environ.pop(name, None)
    os.environ["RECOMMENDER_TEST_VAR_DIR"] = var_dir
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import django

    django.setup()
    import logging

    logging.getLogger("recommender").setLevel(logging.ERROR)


# --- 1. fits ---------------------------------------------------------------------------------------
def fit_one(name: str, size: int, work_dir: str) -> dict:
    """Fit one strategy on one size in this process; return seconds and memory figures."""
    _setup_django(work_dir)
    from recommender.strategies.registry import create_strategy

    dataset = dataset_for(size)
    key = HYBRID if name.startswith(HYBRID) else name
    params, fit_options = {}, {}
    if key in ("content", HYBRID):
        # Warm the embedding cache outside the timed fit: the first pass is excluded. The content
        # strategy is timed with a cache file; the hybrid's content component reads the
        # process-wide cache, which a warm-up fit without a file fills.
        cache_path = Path(work_dir) / f"embeddings-{size}.npz"
        params = {"embedding_cache": str(cache_path)} if key == "content" else {}
        create_strategy("content", **params).fit(dataset)
    if name == HYBRID_GIVEN:
        # What a train-all hands the hybrid: the components it trained just before (not timed).
        hybrid_components = create_strategy(HYBRID).params["components"]
        fit_options["components"] = {component: create_strategy(component).fit(dataset)
                                     for component in hybrid_components}
    strategy = create_strategy(key, **params)
    rss_before = _rss_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    started, cpu_started = time.perf_counter(), time.process_time()
    strategy.fit(dataset, **fit_options)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    peak = _rss_kib("VmHWM")
    row = {
        "strategy": name,
        "interactions": int(len(dataset.interactions)),
        "users": int(dataset.n_users),
        "items": int(dataset.n_items),
        "fit_seconds": round(seconds, 3),
        "fit_cpu_seconds": round(cpu_seconds, 3),
        "peak_rss_mib": round(peak / 1024, 1),
        "fit_extra_mib": round(max(0, peak - rss_before) / 1024, 1),
    }
    if key == HYBRID:
        row["reused_components"] = list(getattr(strategy, "reused_components_", []))
    return row


# --- 2. the train-all pipeline ---------------------------------------------------------------------
def pipeline_one(path: str, size: int, work_dir: str) -> dict:
    """Train every strategy through versions.run on one snapshot, the ``old`` or the ``new`` way."""
    _setup_django(work_dir)
    from django.core.management import call_command

    from recommender.embeddings import shared_embedding_cache
    from recommender.models import ModelVersion
    from recommender.strategies.registry import create_strategy
    from recommender.versions import run, specs

    call_command("migrate", verbosity=0)
    dataset = dataset_for(size)
    with shared_embedding_cache() as cache_path:  # the first text-embedding pass is excluded
        create_strategy("content", embedding_cache=str(cache_path)).fit(dataset)
    keys = specs.trainable_strategy_keys([*COMPONENTS, HYBRID])
    started, cpu_started = time.perf_counter(), time.process_time()
    if path == "new":
        summaries = run.train_here(keys, dataset)
    else:
        summaries = [run.run_summary(run.train_strategy(key, dataset=dataset, components={} if key == HYBRID else None))
                     for key in keys]
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    hybrid = ModelVersion.objects.filter(strategy=HYBRID).order_by("-pk").first()
    return {
        "path": path,
        "interactions": int(len(dataset.interactions)),
        "wall_seconds": round(wall, 2),
        "cpu_seconds": round(cpu, 2),
        "runs": [{"strategy": summary["strategy"], "seconds": summary["seconds"], "outcome": summary["outcome"],
                  "key_value": summary["key_value"]} for summary in summaries],
        "hybrid_timings": {name: value for name, value in (hybrid.timings if hybrid else {}).items()
                           if name.endswith("_seconds")},
        "hybrid_components_given": (hybrid.metrics or {}).get("components_given", {}) if hybrid else {},
    }


# --- the parent process ----------------------------------------------------------------------------
def _subprocess(arguments: list[str], timeout: int) -> dict:
    command = [sys.executable, __file__, "--one", *arguments]
    with tempfile.TemporaryDirectory(prefix="training-bench-") as work_dir:
        try:
            done = subprocess.run([*command, work_dir], capture_output=True, text=True, timeout=timeout, cwd=ROOT)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout} s"}
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _fit_names(strategies: list[str]) -> list[str]:
    names = [name for name in strategies if name != HYBRID]
    return names + [HYBRID_REFITS, HYBRID_GIVEN] if HYBRID in strategies else names


def run_fits(strategies: list[str], sizes: list[int], timeout: int) -> tuple[list[dict], dict]:
    rows = []
    print(f"{'strategy':<28}{'interactions':>13}{'fit s':>10}{'cpu s':>10}{'peak MiB':>10}{'fit +MiB':>10}",
          flush=True)
    for size in sizes:
        for name in _fit_names(strategies):
            load = round(os.getloadavg()[0], 2)  # the machine is shared: how busy it was as this fit started
            row = {"strategy": name, "interactions": size, **_subprocess(["fit", name, str(size)], timeout),
                   "load_average_at_start": load}
            rows.append(row)
            if "error" in row:
                print(f"{name:<28}{size:>13}  error: {row['error']}", flush=True)
            else:
                print(f"{name:<28}{row['interactions']:>13}{row['fit_seconds']:>10.2f}{row['fit_cpu_seconds']:>10.2f}"
                      f"{row['peak_rss_mib']:>10.0f}{row['fit_extra_mib']:>10.0f}", flush=True)
    totals = {}
    for size in sizes:
        totals[str(size)] = _totals([row for row in rows if size * 0.9 <= row["interactions"] <= size * 1.1],
                                    "fit_seconds")
        totals[str(size)]["cpu"] = _totals([row for row in rows if size * 0.9 <= row["interactions"] <= size * 1.1],
                                           "fit_cpu_seconds")
    return rows, totals


def _totals(rows: list[dict], column: str) -> dict:
    """Seconds of every component's fit, plus the hybrid refitting them (old) or given them (new)."""
    fitted = {row["strategy"]: row[column] for row in rows if column in row}
    components = round(sum(seconds for name, seconds in fitted.items() if not name.startswith(HYBRID)), 2)
    return {
        "components": components,
        "old_path": round(components + fitted[HYBRID_REFITS], 2) if HYBRID_REFITS in fitted else None,
        "new_path": round(components + fitted[HYBRID_GIVEN], 2) if HYBRID_GIVEN in fitted else None,
    }


def run_pipelines(sizes: list[int], timeout: int) -> list[dict]:
    results = []
    for size in sizes:
        for path in ("old", "new"):
            result = {"path": path, "interactions": size, **_subprocess(["pipeline", path, str(size)], timeout)}
            results.append(result)
            if "error" in result:
                print(f"train-all {path} at {size}: error: {result['error']}", flush=True)
                continue
            hybrid = next((r for r in result["runs"] if r["strategy"] == HYBRID), {})
            print(f"train-all {path:<4} {result['interactions']:>9} interactions: {result['wall_seconds']:>8.1f} s "
                  f"({result['cpu_seconds']:.1f} CPU s; hybrid run {hybrid.get('seconds')} s, {hybrid.get('outcome')})", flush=True)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategies", default=",".join(DEFAULT_STRATEGIES))
    parser.add_argument("--sizes", default=",".join(str(s) for s in DEFAULT_SIZES), help="fit sizes")
    parser.add_argument("--pipeline-sizes", default=",".join(str(s) for s in DEFAULT_PIPELINE_SIZES),
                        help="train-all pipeline sizes (empty: none)")
    parser.add_argument("--json", default=str(RESULTS))
    parser.add_argument("--timeout", type=int, default=3600, help="seconds allowed per subprocess")
    parser.add_argument("--one", nargs=4, metavar=("MODE", "NAME", "SIZE", "WORK_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.one:
        mode, name, size, work_dir = args.one
        result = fit_one(name, int(size), work_dir) if mode == "fit" else pipeline_one(name, int(size), work_dir)
        print(json.dumps(result))
        return

    strategies = [s for s in args.strategies.split(",") if s]
    sizes = [int(s) for s in args.sizes.split(",") if s]
    pipeline_sizes = [int(s) for s in args.pipeline_sizes.split(",") if s]
    load_before = os.getloadavg()[0]
    started = time.strftime("%Y-%m-%d %H:%M")
    rows, totals = run_fits(strategies, sizes, args.timeout) if sizes else ([], {})
    if totals:
        print("\nall strategies, seconds of fits (components; + hybrid refitting them; + hybrid given them):")
        for size, total in totals.items():
            cpu = total["cpu"]
            print(f"  {int(size):>9}: components {total['components']}, old path {total['old_path']}, "
                  f"new path {total['new_path']} (CPU seconds: {cpu['components']}, {cpu['old_path']}, "
                  f"{cpu['new_path']})")
    pipelines = run_pipelines(pipeline_sizes, args.timeout) if pipeline_sizes else []
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "training", "started": started, "cpu_count": os.cpu_count(), "platform": platform.platform(),
        "load_average_at_start": round(load_before, 2), "load_average_at_end": round(os.getloadavg()[0], 2),
        "target": {"seconds": TARGET_SECONDS, "interactions": TARGET_SIZE},
        "rows": rows, "fit_totals_by_size": totals, "pipelines": pipelines,
    }, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
