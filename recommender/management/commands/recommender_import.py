import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from recommender.data.bundle import BundleError, read_bundle
from recommender.data.importer import DatasetImportError, import_dataset


class Command(BaseCommand):
    help = (
        "Load a canonical bundle into the database: products (through the catalog adapter), users "
        "with profiles, interactions and ratings. Safe to run twice; all or nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("directory", type=Path, help="bundle directory (users.csv, items.csv, interactions.csv)")
        parser.add_argument("--batch-size", type=int, default=None, help="rows per bulk write (default: IMPORT_BATCH_SIZE)")
        parser.add_argument("--username-prefix", default=None, help="prefix of imported user names (default: IMPORT_USERNAME_PREFIX)")
        parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    def handle(self, *args, directory, batch_size, username_prefix, no_progress, **options):
        started = time.monotonic()
        try:
            dataset = read_bundle(directory)
            self.stdout.write(f"Read {directory}: {dataset!r}")
            counts = import_dataset(dataset, progress=not no_progress and options["verbosity"] > 0,
                                    batch_size=batch_size, username_prefix=username_prefix)
        except (BundleError, DatasetImportError) as exc:
            raise CommandError(f"{exc}. Nothing was imported.") from exc
        summary = ", ".join(f"{count:,} {table}" for table, count in counts.items())
        self.stdout.write(self.style.SUCCESS(f"Added {summary} in {time.monotonic() - started:.1f} s."))
