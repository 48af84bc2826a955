"""Train strategies now: in this process (--sync) or on the Celery workers, with progress bars."""

import contextlib
import logging
import time

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from recommender import jobs
from recommender.data.snapshot import build_dataset_from_db
from recommender.models import ModelVersion
from recommender.versions import records, run, specs

POLL_SECONDS = 1.0


class Command(BaseCommand):
    help = (
        "Train, evaluate and (guardedly) activate recommendation strategies. Without --strategy, "
        "every registered strategy whose dependencies are installed, the hybrid last."
    )

    def add_arguments(self, parser):
        parser.add_argument("--strategy", action="append", dest="strategies", metavar="KEY",
                            help="Strategy key to train; repeat for several.")
        parser.add_argument("--sync", action="store_true",
                            help="Train in this process, one strategy after another, on one database snapshot.")
        parser.add_argument("--no-progress", action="store_true", help="No progress bars.")

    def handle(self, *args, strategies=None, sync=False, no_progress=False, **options):
        try:
            keys = specs.trainable_strategy_keys(strategies)
        except Exception as exc:
            raise CommandError(str(exc))
        if not keys:
            raise CommandError("No strategy can be trained: none is registered or none imports.")
        started = time.monotonic()
        # Log lines (e.g. "activated") are printed above the bars instead of through them.
        with logging_redirect_tqdm(loggers=[logging.getLogger("recommender")]):
            summaries = self._train_here(keys, no_progress) if sync else self._train_on_workers(keys, no_progress)
        self._print_table(summaries)
        self.stdout.write(f"Total: {time.monotonic() - started:.1f} s")

    # --- in this process ------------------------------------------------------------------------
    def _train_here(self, keys, no_progress):
        self.stdout.write("Reading the database…")
        dataset = build_dataset_from_db()
        try:
            run.check_trainable(dataset)
        except run.NothingToTrain as exc:
            raise CommandError(str(exc)) from exc
        counts = dataset.meta["counts"]
        self.stdout.write(f"Snapshot: {counts['users']} users, {counts['items']} products, "
                          f"{counts['interactions']} events")
        return run.train_here(keys, dataset, progress_for=lambda key: self._progress(key, no_progress))

    @contextlib.contextmanager
    def _progress(self, key, no_progress):
        with self._bar(key, no_progress) as bar:
            yield self._updater(bar)

    # --- on the workers -------------------------------------------------------------------------
    def _train_on_workers(self, keys, no_progress):
        """Queue a train-all of ``keys`` (rows first) and follow the rows' progress until each ends."""
        started = jobs.train_all(keys)
        summaries = [run.refused_summary(key, reason) for key, reason in started.refused.items()]
        versions = {key: version.pk for key, version in started.versions.items()}
        bars = {key: self._bar(key, no_progress, position) for position, key in enumerate(versions)}
        pending = dict(versions)
        while pending:
            # Rows no worker ever picked up (or whose worker died) are given up after
            # TRAINING_STALE_SECONDS, so the wait always ends.
            records.cleanup_stale_trainings()
            rows = ModelVersion.objects.in_bulk(list(pending.values()))
            for key, pk in list(pending.items()):
                row = rows[pk]
                bars[key].set_postfix_str(row.stage)
                bars[key].update(round(row.progress * 100) - bars[key].n)
                if row.status != ModelVersion.Status.TRAINING:
                    bars[key].close()
                    summaries.append(run.run_summary(row))
                    del pending[key]
            if pending:
                time.sleep(POLL_SECONDS)
        return summaries

    # --- output ---------------------------------------------------------------------------------
    def _bar(self, key, no_progress, position=0):
        return tqdm(total=100, desc=f"{key:<18}", position=position, leave=True, disable=no_progress,
                    bar_format="{desc} {bar} {n_fmt}% {postfix}", file=self.stderr._out)

    @staticmethod
    def _updater(bar):
        def update(stage, fraction):
            bar.set_postfix_str(stage)
            bar.update(round(fraction * 100) - bar.n)

        return update

    def _print_table(self, summaries):
        headers = ("strategy", "version", "seconds", "ndcg@10 (new users)", "result")
        rows = [
            (
                summary["strategy"],
                f"v{summary['version']}" if summary.get("version") else "-",
                f"{summary['seconds']:.1f}" if summary.get("seconds") is not None else "-",
                f"{summary['key_value']:.4f}" if summary.get("key_value") is not None else "-",
                summary["outcome"],
            )
            for summary in summaries
        ]
        widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
        line = "  ".join("{:<%d}" % width for width in widths)
        self.stdout.write("")
        self.stdout.write(line.format(*headers))
        self.stdout.write(line.format(*("-" * width for width in widths)))
        for row in rows:
            style = self.style.SUCCESS if row[-1] == "activated" else (
                self.style.ERROR if row[-1].startswith("failed") else self.style.WARNING)
            self.stdout.write(style(line.format(*row)))
