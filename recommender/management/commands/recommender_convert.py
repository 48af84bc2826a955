from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from recommender.data.bundle import BundleError
from recommender.data.converters import CONVERTERS, ConversionError, convert


class Command(BaseCommand):
    help = "Convert a published data set (MovieLens, Book-Crossing, RecBole atomic files) to a canonical bundle."
    # Pure file work: it needs neither the database nor a loadable strategy.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("kind", choices=sorted(CONVERTERS), help="layout of the source files")
        parser.add_argument("src", type=Path, help="directory holding the published files")
        parser.add_argument("--out", type=Path, required=True, help="bundle directory to write (replaced)")

    def handle(self, *args, kind, src, out, **options):
        try:
            dataset = convert(kind, src)
            dataset.write_bundle(out)
        except (ConversionError, BundleError) as exc:
            raise CommandError(str(exc)) from exc
        counts = dataset.counts()
        new_items = len(dataset.meta.get("new_item_ids") or ())
        self.stdout.write(
            f"Wrote {out}: {counts['users']:,} users ({len(dataset.users):,} listed in users.csv), "
            f"{counts['items']:,} items ({new_items:,} held out as new), "
            f"{counts['interactions']:,} interactions; event order: {dataset.meta.get('order', 'time')}."
        )
