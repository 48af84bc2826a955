"""Does generative augmentation help the profile-based strategies for new users?

For each bundle, runs the new-user protocol (``recommender.evaluation.runner.evaluate``) on
``segment_popularity`` and ``demographic`` twice: trained on the fold's training data as it
is, and trained on it plus virtual users that ``GenerativeStrategy.augment`` synthesises for
the sparse segments (the generative model is fitted on the same fold's training data only, so
no cold user leaks in). Both variants see the same folds and seeds.

    python benchmarks/augmentation.py /tmp/bx --positive-threshold 8 --folds 2 --reveal 0,3

Prints NDGC@10 per strategy and variant and writes ``benchmarks/results/augmentation.json``.
Keep augmentation only where the augmented row beats the plain one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "augmentation.json"
BASE_STRATEGIES = ("segment_popularity", "demographic")


def setup_django():
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()


def augmented_class(inner_key: str):
    """A strategy that fits ``generative`` on its training data, augments it, then fits ``inner_key``."""
    from recommender.strategies.base import Strategy
    from recommender.strategies.generative import GenerativeStrategy
    from recommender.strategies.registry import get_strategy_class

    inner_class = get_strategy_class(inner_key)

    class Augmented(Strategy):
        key = f"{inner_key}+augment"
        default_params = {"positive_threshold": None, "generative": {}, "n_per_segment": None}

        def _fit(self, dataset):
            generator = GenerativeStrategy(seed=self.seed, **self.params["generative"]).fit(dataset)
            augmented = generator.augment(dataset, n_per_segment=self.params["n_per_segment"])
            self.virtual_users = augmented.meta.get("virtual_users", 0)
            inner_params = {"positive_threshold": self.params["positive_threshold"]} \
                if "positive_threshold" in inner_class.default_params else {}
            self.inner = inner_class(seed=self.seed, **inner_params).fit(augmented)

        def _score_batch(self, contexts):
            return self.inner.score_batch(contexts)

        def _explain(self, context, positions):
            return self.inner._explain(context, positions)

    Augmented.__name__ = Augmented.__qualname__ = f"Augmented_{inner_key}"
    return Augmented


def run(bundle: Path, reveal, folds, positive_threshold, seed) -> list[dict]:
    from django.test import override_settings

    from recommender.data.dataset import Dataset
    from recommender.evaluation.runner import evaluate

    dataset = Dataset.read_bundle(bundle)
    classes = {f"{key}+augment": augmented_class(key) for key in BASE_STRATEGIES}
    module = sys.modules[__name__]
    for klass in classes.values():
        setattr(module, klass.__name__, klass)
    paths = {key: f"{__name__}.{klass.__name__}" for key, klass in classes.items()}
    with override_settings(RECOMMENDER={"STRATEGIES": paths}):
        rows = evaluate(dataset, [*BASE_STRATEGIES, *classes], protocol="new-user", reveal=reveal, folds=folds,
                        k=10, positive_threshold=positive_threshold, seed=seed, progress=True)
    return [{**row, "dataset": bundle.name} for row in rows if row.get("regime", "all") == "all"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs="+", type=Path)
    parser.add_argument("--reveal", default="0,3")
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--positive-threshold", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    setup_django()
    reveal = [int(n) for n in args.reveal.split(",")]
    started = time.perf_counter()
    results = []
    for bundle in args.bundles:
        results.extend(run(bundle, reveal, args.folds, args.positive_threshold, args.seed))
    print(f"{'dataset':<14}{'strategy':<30}{'reveal':>7}{'ndcg@10':>10}{'recall':>9}{'users':>8}{'fit s':>8}")
    for row in results:
        print(f"{row['dataset']:<14}{row['strategy']:<30}{row['reveal']:>7}{row['ndcg']:>10.4f}"
              f"{row['recall']:>9.4f}{row['users']:>8}{row['fit_seconds']:>8.1f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"protocol": "new-user", "k": 10, "folds": args.folds, "seed": args.seed,
                                     "seconds": time.perf_counter() - started, "results": results},
                                    indent=2, default=float))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
