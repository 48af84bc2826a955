import json
from pathlib import Path

import pandas as pd
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from recommender.conf import settings
from recommender.data.dataset import EVENT_ORDERS, Dataset
from recommender.evaluation.runner import PROTOCOLS, evaluate
from recommender.strategies.registry import get_strategy_class

JSON_KEYS = ("strategy", "reveal", "horizon", "ndcg", "recall", "precision", "hr", "mrr", "coverage", "users",
             "fit_seconds")


def _int_list(text):
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise CommandError(f"--reveal takes comma-separated integers like 0,1,3,5, got {text!r}")
    if not values or min(values) < 0:
        raise CommandError(f"--reveal needs non-negative integers, got {text!r}")
    return values


class Command(BaseCommand):
    help = "Evaluate strategies offline on a canonical bundle (new-user, new-item or warm protocol); no database needed."
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("bundle", type=Path, help="canonical bundle directory (users.csv, items.csv, interactions.csv)")
        parser.add_argument("--protocol", choices=PROTOCOLS, default="new-user")
        parser.add_argument("--reveal", default="0,1,3,5", help="events given to new users, e.g. 0,1,3,5")
        parser.add_argument("--folds", type=int, default=5)
        parser.add_argument("--k", type=int, default=10)
        parser.add_argument("--positive-threshold", type=float, default=None,
                            help="ratings at or above this are relevant (carts and purchases always are)")
        parser.add_argument("--strategies", default="popularity,segment_popularity,item_knn,demographic")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--holdout-items", type=float, default=0.2, help="new-item protocol: share of items held out")
        parser.add_argument("--new-items", type=Path, default=None,
                            help="new-item protocol: CSV of held-out item ids (column item_id, or the first column)")
        parser.add_argument("--horizon", type=int, default=None, metavar="N",
                            help="new-user protocol: also report the short horizon, where relevant = positives "
                                 "among the next N events after the revealed ones (beside the long horizon: every "
                                 "later positive)")
        parser.add_argument("--order", choices=EVENT_ORDERS, default=None,
                            help="whether the bundle's row order is real time; default: its bundle.json "
                                 "(none: few-shot protocols reveal a seeded random order per user)")
        parser.add_argument("--json", type=Path, default=None, help="write the results here")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, **options):
        keys = [key.strip() for key in options["strategies"].split(",") if key.strip()]
        for key in keys:
            try:
                get_strategy_class(key, settings.STRATEGIES)
            except (ImportError, ImproperlyConfigured) as exc:
                raise CommandError(f"Strategy {key!r} cannot be loaded: {exc}") from exc
        if options["folds"] < 2 or options["k"] < 1:
            raise CommandError("--folds must be at least 2 and --k at least 1")
        horizon = options["horizon"]
        if horizon is not None and horizon < 1:
            raise CommandError(f"--horizon takes a positive number of events, got {horizon}")
        if horizon is not None and options["protocol"] != "new-user":
            raise CommandError("--horizon applies to the new-user protocol only")
        bundle = options["bundle"]
        if not bundle.is_dir():
            raise CommandError(f"{bundle} is not a directory; pass a canonical bundle (see recommender_convert)")
        try:
            dataset = Dataset.read_bundle(bundle)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if options["order"]:
            dataset.meta.update(order=options["order"], order_source="--order")
        self.stdout.write(f"Event order: {dataset.meta['order']} ({dataset.meta.get('order_source', 'bundle')})"
                          + ("; few-shot protocols reveal a seeded random order per user" if dataset.meta["order"] == "none"
                             else ""))
        new_item_ids = self._new_item_ids(options["new_items"], dataset) if options["protocol"] == "new-item" else None
        try:
            results = evaluate(
                dataset, keys, protocol=options["protocol"], reveal=_int_list(options["reveal"]), folds=options["folds"],
                k=options["k"], positive_threshold=options["positive_threshold"], seed=options["seed"],
                progress=not options["no_progress"], holdout_items=options["holdout_items"], new_item_ids=new_item_ids,
                horizons=(None,) if horizon is None else (None, horizon), host_strategies=settings.STRATEGIES,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        headline = [row for row in results if row["regime"] == "all"]
        self.stdout.write(self._table(headline, options["k"]))
        if options["json"]:
            report = {
                "dataset": dataset.name or bundle.name,
                "protocol": options["protocol"],
                "k": options["k"],
                "positive_threshold": options["positive_threshold"],
                "folds": options["folds"] if options["protocol"] == "new-user" else None,
                "seed": options["seed"],
                "order": dataset.meta["order"],
                "horizon": horizon,
                "results": [{key: row[key] for key in JSON_KEYS} for row in headline],
                "by_regime": [row for row in results if row["regime"] != "all"],
            }
            options["json"].parent.mkdir(parents=True, exist_ok=True)
            options["json"].write_text(json.dumps(report, indent=2))
            self.stdout.write(f"Wrote {options['json']}")

    def _new_item_ids(self, path, dataset):
        if path is None:
            return dataset.meta.get("new_item_ids") or None
        if not path.is_file():
            raise CommandError(f"--new-items {path} does not exist")
        frame = pd.read_csv(path, dtype=str)
        column = "item_id" if "item_id" in frame.columns else frame.columns[0]
        return frame[column].dropna().str.strip().tolist()

    def _table(self, rows, k):
        frame = pd.DataFrame(rows, columns=JSON_KEYS)
        frame["horizon"] = [("long" if horizon is None else f"next {horizon}") for horizon in
                            (row["horizon"] for row in rows)]
        frame = frame.rename(columns={name: f"{name}@{k}" for name in ("ndcg", "recall", "precision", "hr", "mrr")})
        return frame.to_string(index=False, float_format=lambda value: f"{value:.4f}")
