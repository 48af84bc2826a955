"""Quality report: the evaluation protocols on both shared data sets, against the baselines.

    python benchmarks/quality.py                    # both data sets, 5 folds (long: see docs)
    python benchmarks/quality.py --folds 3 --datasets amazon

Converts ``../shared/data`` into canonical bundles (in a temporary directory; data never
enters the repository), runs the new-user protocol (reveal 0, 1, 3, 5) and the new-item
protocol on each, writes ``benchmarks/results/quality.json``, a chart
``docs/quality.png`` and the "Quality" section of ``docs/benchmarks.md`` with the targets of
issue 3 checked from the same run:

- hybrid NDCG@10 ≥ 1.05 × segment_popularity for new users at reveal 0 (data with demographics);
- hybrid NDCG@10 ≥ 1.10 × the best of popularity, segment_popularity, item_knn at reveal 3;
- NDCG@10 on new items ≥ 1.20 × TF-IDF content (``content_tfidf``), for hybrid and content.

Hyper-parameters are chosen inside each fold's training users (strategies tune on their own
validation split); the cold users scored are never seen by any fit.
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


def headline(rows, strategy, reveal=None):
    for row in rows:
        if row["strategy"] == strategy and row["regime"] == "all" and row["reveal"] == reveal:
            return row
    return None


def ratio(a, b):
    return None if not b else a / b


def check_targets(name, has_demographics, new_user_rows, new_item_rows):
    """Return the target checks of issue 3 for one data set, from one run."""
    checks = []
    hybrid0, seg0 = headline(new_user_rows, "hybrid", 0), headline(new_user_rows, "segment_popularity", 0)
    if hybrid0 and seg0 and has_demographics:
        checks.append(("hybrid ≥ 1.05 × segment_popularity, new users, reveal 0", hybrid0["ndcg"], seg0["ndcg"], 1.05))
    hybrid3 = headline(new_user_rows, "hybrid", 3)
    baselines3 = [headline(new_user_rows, key, 3) for key in ("popularity", "segment_popularity", "item_knn")]
    baselines3 = [row for row in baselines3 if row]
    if hybrid3 and baselines3:
        best = max(baselines3, key=lambda row: row["ndcg"])
        checks.append((f"hybrid ≥ 1.10 × best baseline ({best['strategy']}), reveal 3", hybrid3["ndcg"], best["ndcg"], 1.10))
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


def run(names, folds, k, seed, bundle_root, only=None):
    from recommender.evaluation.runner import evaluate

    new_user_keys = [key for key in NEW_USER_STRATEGIES if not only or key in only]
    new_item_keys = [key for key in NEW_ITEM_STRATEGIES if not only or key in only]

    report = {"k": k, "folds": folds, "seed": seed, "datasets": {}, "targets": []}
    for name in names:
        _, _, threshold, has_demographics = DATASETS[name]
        dataset = convert(name, bundle_root)
        print(f"\n== {name}: {dataset!r}", flush=True)
        started = time.perf_counter()
        new_user = evaluate(dataset, new_user_keys, protocol="new-user", reveal=(0, 1, 3, 5), folds=folds, k=k,
                            positive_threshold=threshold, seed=seed, progress=True)
        new_user_seconds = time.perf_counter() - started
        new_item_ids = dataset.meta.get("new_item_ids") or None  # empty: hold out 20% instead
        started = time.perf_counter()
        new_item = evaluate(dataset, new_item_keys, protocol="new-item", k=k, positive_threshold=threshold,
                            seed=seed, progress=True, new_item_ids=new_item_ids, holdout_items=0.2)
        new_item_seconds = time.perf_counter() - started
        report["datasets"][name] = {
            "counts": dataset.counts(), "positive_threshold": threshold, "has_demographics": has_demographics,
            "new_item_split": "given (new_items.csv)" if new_item_ids else "20% of items held out (seeded)",
            "new_user": new_user, "new_item": new_item,
            "seconds": {"new_user": round(new_user_seconds, 1), "new_item": round(new_item_seconds, 1)},
        }
        report["targets"] += check_targets(name, has_demographics, new_user, new_item)
        print(_table(new_user, new_item), flush=True)
    return report


def _table(new_user, new_item):
    lines = ["| strategy | reveal | NDCG@10 | recall | HR | MRR | coverage | users | fit s |", "|---|---|---|---|---|---|---|---|---|"]
    for row in [r for r in new_user + new_item if r["regime"] == "all"]:
        reveal = "new items" if row["reveal"] is None else row["reveal"]
        lines.append(f"| {row['strategy']} | {reveal} | {row['ndcg']:.4f} | {row['recall']:.4f} | {row['hr']:.4f} | "
                     f"{row['mrr']:.4f} | {row['coverage']:.3f} | {row['users']} | {row['fit_seconds']:.1f} |")
    return "\n".join(lines)


def chart(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["datasets"])
    fig, axes = plt.subplots(1, len(names), figsize=(6.5 * len(names), 4.2), squeeze=False)
    for axis, name in zip(axes[0], names):
        rows = [r for r in report["datasets"][name]["new_user"] if r["regime"] == "all"]
        reveals = sorted({r["reveal"] for r in rows})
        for strategy in NEW_USER_STRATEGIES:
            values = [next((r["ndcg"] for r in rows if r["strategy"] == strategy and r["reveal"] == n), None) for n in reveals]
            if any(v is not None for v in values):
                axis.plot(reveals, values, marker="o", label=strategy, linewidth=2.4 if strategy == "hybrid" else 1.2)
        axis.set_title(f"{name}: new users, NDCG@{report['k']}")
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
             "purchase. Headline rows pool all cold users of all folds.", "",
             "![NDCG@10 by events revealed](quality.png)", "", "### Targets", "",
             "| data set | target | value | baseline | ratio | met |", "|---|---|---|---|---|---|"]
    for t in report["targets"]:
        parts.append(f"| {t['dataset']} | {t['target']} | {t['value']:.4f} | {t['baseline']:.4f} | "
                     f"{(t['ratio'] or 0):.3f} (need {t['required']:.2f}) | {'yes' if t['met'] else '**no**'} |")
    for name, data in report["datasets"].items():
        c = data["counts"]
        parts += ["", f"### {name} — {c['users']:,} users, {c['items']:,} items, {c['interactions']:,} interactions",
                  f"New-item split: {data['new_item_split']}. Run time: new-user {data['seconds']['new_user']} s, "
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bundles", default=None, help="where converted bundles are cached (default: a temp dir)")
    parser.add_argument("--strategies", default="", help="only these strategy keys (default: all of the report)")
    parser.add_argument("--json", default=str(RESULTS))
    parser.add_argument("--no-report", action="store_true", help="don't rewrite docs/benchmarks.md and the chart")
    args = parser.parse_args(argv)
    if not SHARED.is_dir():
        sys.exit(f"The shared data sets are not at {SHARED}; set RECOMMENDER_SHARED_DATA.")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import django

    django.setup()
    started = time.perf_counter()
    bundle_root = args.bundles or tempfile.mkdtemp(prefix="quality-bundles-")
    only = {key for key in args.strategies.split(",") if key}
    report = run([n for n in args.datasets.split(",") if n], args.folds, args.k, args.seed, bundle_root, only)
    report["total_minutes"] = round((time.perf_counter() - started) / 60, 1)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    print("\nTargets:")
    for t in report["targets"]:
        print(f"  [{'met' if t['met'] else 'MISSED'}] {t['dataset']}: {t['target']}: {t['value']:.4f} vs "
              f"{t['baseline']:.4f} (×{(t['ratio'] or 0):.3f}, need ×{t['required']:.2f})")
    if not args.no_report:
        chart(report, CHART)
        command = "python benchmarks/quality.py " + " ".join(argv if argv is not None else sys.argv[1:])
        write_report(report, command.strip())
        print(f"wrote {out}, {CHART} and the Quality section of {REPORT}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
