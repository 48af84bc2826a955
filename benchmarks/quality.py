"""Quality report: the evaluation protocols on both shared data sets, against the baselines.

    python benchmarks/quality.py                    # both data sets, 5 folds (long: see docs)
    python benchmarks/quality.py --folds 3 --datasets amazon

Converts ``../shared/data`` into canonical bundles (in a temporary directory, or ``--bundles``;
data never enters the repository), runs the new-user protocol (reveal 0, 1, 3, 5) on two
horizons (long: every later positive; short: the positives among the next ``--horizon`` events,
default the hybrid's ``SHORT_HORIZON``) and the new-item protocol on each, writes
``benchmarks/results/quality.json``, a chart ``docs/quality.png`` and the "Quality" section of
``docs/benchmarks.md`` (accuracy with catalogue coverage beside it) with the targets checked
from the same run:

- issue 11 item 6: on the long horizon, hybrid NDCG@10 ≥ 0.99 × the best of popularity,
  segment_popularity and item_knn at every reveal; on the short horizon at reveal 3, ≥ 1.3 × that
  best baseline; at reveal 0 on data with demographics, ≥ 1.05 × segment_popularity;
- issue 11 item 2: demographic, generative and behavior each ≥ popularity at reveal 0 (long);
- issue 3: NDCG@10 on new items ≥ 1.20 × TF-IDF content (``content_tfidf``), for hybrid and content.

Hyper-parameters are chosen inside each fold's training users (strategies tune on their own
validation split); the cold users scored are never seen by any fit. ``--merge`` writes the
report from the JSON of runs made separately (say, one per data set, run side by side).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("RECOMMENDER_SHARED_DATA", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "benchmarks" / "results" / "quality.json"
REPORT = ROOT / "docs" / "benchmarks.md"
CHART = ROOT / "docs" / "quality.png"
START, END = "<!-- quality:start -->", "<!-- quality:end -->"

NEW_USER_STRATEGIES = ("popularity", "segment_popularity", "item_knn", "demographic", "generative", "behavior",
                       "content", "hybrid")
NEW_ITEM_STRATEGIES = ("content_tfidf", "content", "behavior", "hybrid")
DATASETS = {
    # name: (converter, source folder, positive threshold, has demographics)
    "bookcrossing": ("bookcrossing", "bookcrossing", 8.0, True),
    "amazon": ("recbole", "amazon-scientific", None, False),
}


BASELINES = ("popularity", "segment_popularity", "item_knn")
LEARNED = ("demographic", "generative", "behavior")


def headline(rows, strategy, reveal=None, horizon=None):
    for row in rows:
        if (row["strategy"] == strategy and row["regime"] == "all" and row["reveal"] == reveal
                and row.get("horizon") == horizon):
            return row
    return None


def ratio(a, b):
    return None if not b else a / b


def horizon_name(horizon):
    return "long" if horizon is None else f"next {horizon}"


def check_targets(name, has_demographics, new_user_rows, new_item_rows, short_horizon):
    """Return the target checks (issue 11 items 2 and 6, issue 3's new items) for one data set, from one run."""
    checks = []

    def best_baseline(reveal, horizon):
        rows = [headline(new_user_rows, key, reveal, horizon) for key in BASELINES]
        rows = [row for row in rows if row]
        return max(rows, key=lambda row: row["ndcg"]) if rows else None

    reveals = sorted({row["reveal"] for row in new_user_rows})
    for reveal in reveals:
        hybrid, best = headline(new_user_rows, "hybrid", reveal), best_baseline(reveal, None)
        if hybrid and best:
            checks.append((f"hybrid ≥ 0.99 × best baseline ({best['strategy']}), reveal {reveal}, long horizon",
                           hybrid["ndcg"], best["ndcg"], 0.99))
    hybrid3, best3 = headline(new_user_rows, "hybrid", 3, short_horizon), best_baseline(3, short_horizon)
    if hybrid3 and best3:
        checks.append((f"hybrid ≥ 1.3 × best baseline ({best3['strategy']}), reveal 3, {horizon_name(short_horizon)}",
                       hybrid3["ndcg"], best3["ndcg"], 1.3))
    hybrid0, seg0 = headline(new_user_rows, "hybrid", 0), headline(new_user_rows, "segment_popularity", 0)
    if hybrid0 and seg0 and has_demographics:
        checks.append(("hybrid ≥ 1.05 × segment_popularity, reveal 0, long horizon", hybrid0["ndcg"], seg0["ndcg"], 1.05))
    popularity0 = headline(new_user_rows, "popularity", 0)
    for key in LEARNED:
        row = headline(new_user_rows, key, 0)
        if row and popularity0:
            checks.append((f"{key} ≥ popularity, reveal 0, long horizon", row["ndcg"], popularity0["ndcg"], 1.0))
    tfidf = headline(new_item_rows, "content_tfidf")
    for key in ("hybrid", "content"):
        row = headline(new_item_rows, key)
        if row and tfidf:
            checks.append((f"{key} ≥ 1.20 × content_tfidf, new items", row["ndcg"], tfidf["ndcg"], 1.20))
    return [
        {"dataset": name, "target": label, "value": value, "baseline": base, "ratio": ratio(value, base),
         "required": required, "met": bool(base) and value >= required * base}
        for label, value, base, required in checks
    ]


def convert(name, bundle_root):
    from recommender.data.converters import convert as run_converter

    converter, folder, _, _ = DATASETS[name]
    target = Path(bundle_root) / name
    if not (target / "interactions.csv").exists():
        run_converter(converter, SHARED / folder).write_bundle(target)
    from recommender.data.dataset import Dataset

    return Dataset.read_bundle(target)


def run(names, folds, k, seed, bundle_root, only=None, short_horizon=None):
    from recommender.evaluation.runner import evaluate

    new_user_keys = [key for key in NEW_USER_STRATEGIES if not only or key in only]
    new_item_keys = [key for key in NEW_ITEM_STRATEGIES if not only or key in only]

    report = {"k": k, "folds": folds, "seed": seed, "horizon": short_horizon, "datasets": {}, "targets": []}
    for name in names:
        _, _, threshold, has_demographics = DATASETS[name]
        dataset = convert(name, bundle_root)
        print(f"\n== {name}: {dataset!r}", flush=True)
        started = time.perf_counter()
        new_user = evaluate(dataset, new_user_keys, protocol="new-user", reveal=(0, 1, 3, 5), folds=folds, k=k,
                            positive_threshold=threshold, seed=seed, progress=True, horizons=(None, short_horizon))
        new_user_seconds = time.perf_counter() - started
        new_item_ids = dataset.meta.get("new_item_ids") or None  # empty: hold out 20% instead
        started = time.perf_counter()
        new_item = evaluate(dataset, new_item_keys, protocol="new-item", k=k, positive_threshold=threshold,
                            seed=seed, progress=True, new_item_ids=new_item_ids, holdout_items=0.2)
        new_item_seconds = time.perf_counter() - started
        report["datasets"][name] = {
            "counts": dataset.counts(), "positive_threshold": threshold, "has_demographics": has_demographics,
            "order": dataset.meta.get("order"),
            "new_item_split": "given (new_items.csv)" if new_item_ids else "20% of items held out (seeded)",
            "new_user": new_user, "new_item": new_item,
            "seconds": {"new_user": round(new_user_seconds, 1), "new_item": round(new_item_seconds, 1)},
        }
        report["targets"] += check_targets(name, has_demographics, new_user, new_item, short_horizon)
        print(_table(new_user, new_item), flush=True)
    return report


def _table(new_user, new_item):
    """Accuracy and catalogue coverage: each strategy's long- and short-horizon rows side by side."""
    lines = ["| strategy | reveal | horizon | NDCG@10 | recall | HR | MRR | coverage | users | fit s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    rows = [r for r in new_user if r["regime"] == "all"]
    order = {key: number for number, key in enumerate(dict.fromkeys(r["strategy"] for r in rows))}
    rows.sort(key=lambda r: (order[r["strategy"]], r["reveal"], r.get("horizon") is not None, r.get("horizon") or 0))
    for row in rows + [r for r in new_item if r["regime"] == "all"]:
        reveal = "new items" if row["reveal"] is None else row["reveal"]
        horizon = "—" if row["reveal"] is None else horizon_name(row.get("horizon"))
        lines.append(f"| {row['strategy']} | {reveal} | {horizon} | {row['ndcg']:.4f} | {row['recall']:.4f} | "
                     f"{row['hr']:.4f} | {row['mrr']:.4f} | {row['coverage']:.3f} | {row['users']} | "
                     f"{row['fit_seconds']:.1f} |")
    return "\n".join(lines)


def chart(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["datasets"])
    fig, axes = plt.subplots(1, len(names), figsize=(6.5 * len(names), 4.2), squeeze=False)
    for axis, name in zip(axes[0], names):
        rows = [r for r in report["datasets"][name]["new_user"] if r["regime"] == "all" and r.get("horizon") is None]
        reveals = sorted({r["reveal"] for r in rows})
        for strategy in NEW_USER_STRATEGIES:
            values = [next((r["ndcg"] for r in rows if r["strategy"] == strategy and r["reveal"] == n), None) for n in reveals]
            if any(v is not None for v in values):
                axis.plot(reveals, values, marker="o", label=strategy, linewidth=2.4 if strategy == "hybrid" else 1.2)
        axis.set_title(f"{name}: new users, NDCG@{report['k']}, long horizon")
        axis.set_xlabel("events revealed")
        axis.set_xticks(reveals)
        axis.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def write_report(report, command):
    parts = [START, "## Quality (offline, cold start)", "",
             f"Reproduce: `{command}` (this run took {report.get('total_minutes', '?')} minutes on the 2-core machine).",
             f"K = {report['k']}, {report['folds']} folds of cold users (seed {report['seed']}); hyper-parameters "
             "tuned only inside each fold's training users. Relevant: Book-Crossing ratings ≥ 8, every Amazon "
             "purchase. Headline rows pool all cold users of all folds. Two horizons: *long*, every later "
             f"positive of the cold user; *next {report.get('horizon')}*, the positives among the next "
             f"{report.get('horizon')} events after the revealed ones. Book-Crossing has no timestamps "
             "(order `none`): its few-shot rows reveal a seeded random order per user. Coverage: the share of "
             "the catalogue in at least one cold user's top 10.", "",
             "![NDCG@10 by events revealed](quality.png)", "", "### Targets", "",
             "| data set | target | value | baseline | ratio | met |", "|---|---|---|---|---|---|"]
    for t in report["targets"]:
        parts.append(f"| {t['dataset']} | {t['target']} | {t['value']:.4f} | {t['baseline']:.4f} | "
                     f"{(t['ratio'] or 0):.3f} (need {t['required']:.2f}) | {'yes' if t['met'] else '**no**'} |")
    for name, data in report["datasets"].items():
        c = data["counts"]
        parts += ["", f"### {name} — {c['users']:,} users, {c['items']:,} items, {c['interactions']:,} interactions",
                  f"Event order: {data.get('order') or '?'}. New-item split: {data['new_item_split']}. "
                  f"Run time: new-user {data['seconds']['new_user']} s, "
                  f"new-item {data['seconds']['new_item']} s.", "", _table(data["new_user"], data["new_item"])]
    parts += ["", END]
    section = "\n".join(parts)
    text = REPORT.read_text() if REPORT.exists() else "# Benchmarks\n\nFigures from real runs of the code as committed.\n"
    if START in text and END in text:
        before, rest = text.split(START, 1)
        text = before + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    REPORT.write_text(text)


def merge(reports, paths):
    """One report from runs made separately (one per data set): their data sets and targets, side by side."""
    first = reports[0]
    for other in reports[1:]:
        for key in ("k", "folds", "seed", "horizon"):
            if other.get(key) != first.get(key):
                raise SystemExit(f"--merge: runs differ in {key}: {first.get(key)} vs {other.get(key)}")
    return {
        **{key: first.get(key) for key in ("k", "folds", "seed", "horizon")},
        "datasets": {name: data for report in reports for name, data in report["datasets"].items()},
        "targets": [target for report in reports for target in report["targets"]],
        # Run side by side, so the wall time is the longest run's.
        "total_minutes": max(report.get("total_minutes", 0) for report in reports),
        "command": " & ".join(report.get("command", "?") for report in reports)
                   + "; then python benchmarks/quality.py --merge " + " ".join(paths),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bundles", default=None, help="where converted bundles are cached (default: a temp dir)")
    parser.add_argument("--strategies", default="", help="only these strategy keys (default: all of the report)")
    parser.add_argument("--json", default=str(RESULTS))
    parser.add_argument("--horizon", type=int, default=None, metavar="N",
                        help="short horizon: positives among the next N events (default: the hybrid's SHORT_HORIZON)")
    parser.add_argument("--no-report", action="store_true", help="don't rewrite docs/benchmarks.md and the chart")
    parser.add_argument("--merge", nargs="+", metavar="JSON", default=None,
                        help="write the report from these runs' JSON (one per data set, same k, folds, seed, horizon)")
    args = parser.parse_args(argv)
    if args.merge:
        report = merge([json.loads(Path(path).read_text()) for path in args.merge], args.merge)
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
        chart(report, CHART)
        write_report(report, report["command"])
        print(f"wrote {args.json}, {CHART} and the Quality section of {REPORT}")
        return
    if not SHARED.is_dir():
        sys.exit(f"The shared data sets are not at {SHARED}; set RECOMMENDER_SHARED_DATA.")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import django

    django.setup()
    started = time.perf_counter()
    bundle_root = args.bundles or tempfile.mkdtemp(prefix="quality-bundles-")
    only = {key for key in args.strategies.split(",") if key}
    if args.horizon is None:
        from recommender.strategies.hybrid import SHORT_HORIZON  # the horizon mid-session blends are judged on

        args.horizon = SHORT_HORIZON
    report = run([n for n in args.datasets.split(",") if n], args.folds, args.k, args.seed, bundle_root, only,
                 args.horizon)
    report["total_minutes"] = round((time.perf_counter() - started) / 60, 1)
    report["command"] = ("python benchmarks/quality.py " + " ".join(argv if argv is not None else sys.argv[1:])).strip()
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    print("\nTargets:")
    for t in report["targets"]:
        print(f"  [{'met' if t['met'] else 'MISSED'}] {t['dataset']}: {t['target']}: {t['value']:.4f} vs "
              f"{t['baseline']:.4f} (×{(t['ratio'] or 0):.3f}, need ×{t['required']:.2f})")
    if not args.no_report:
        chart(report, CHART)
        write_report(report, report["command"])
        print(f"wrote {out}, {CHART} and the Quality section of {REPORT}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
