"""Stock the demo shop with a synthetic catalogue, shoppers and their history."""

import time

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from recommender.data.importer import import_dataset
from recommender.data.synthetic import make_shop_dataset
from shop_demo.catalog.models import Product

ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "admin"


class Command(BaseCommand):
    help = (
        "Fill the demo shop with a believable synthetic shop (deterministic by --seed): products, "
        "shoppers with demographics and ~90 days of events with planted structure. Also creates "
        "the staff user admin/admin."
    )

    def add_arguments(self, parser):
        parser.add_argument("--seed", type=int, default=0, help="Random seed (default 0).")
        parser.add_argument("--users", type=int, default=5000, help="Number of shoppers (default 5000).")
        parser.add_argument("--products", type=int, default=2000, help="Number of products (default 2000).")
        parser.add_argument("--categories", type=int, default=24, help="Number of categories (default 24).")
        parser.add_argument("--events", type=int, default=200_000, help="Number of events (default 200000).")
        parser.add_argument("--if-empty", action="store_true", help="Do nothing when the shop already has products.")

    def handle(self, *args, **options):
        if options["if_empty"] and Product.objects.exists():
            self.stdout.write("The shop already has products; nothing seeded (--if-empty).")
            self._ensure_admin()
            return
        started = time.perf_counter()
        self.stdout.write(
            f"Generating a synthetic shop (seed {options['seed']}): {options['products']} products, "
            f"{options['users']} shoppers, {options['events']} events..."
        )
        try:
            # Events end now, so "recent" and "trending" mean something in the demo. Never later:
            # a training snapshot leaves out events after its own time, so a shop seeded up to the
            # end of today trained on a different share of its events at each hour of the day.
            seeded_until = float(int(timezone.now().timestamp()))
            dataset = make_shop_dataset(
                seed=options["seed"], n_users=options["users"], n_items=options["products"],
                n_categories=options["categories"], n_events=options["events"], end_time=seeded_until,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"  generated in {time.perf_counter() - started:.1f} s: {dataset!r}")
        # The importer also refreshes the planner's statistics of the tables it loaded.
        import_dataset(dataset, progress=True, stdout=self.stdout)
        self._ensure_admin()
        self.stdout.write(self.style.SUCCESS(f"Seeded the demo shop in {time.perf_counter() - started:.1f} s."))

    def _ensure_admin(self):
        User = get_user_model()
        if User.objects.filter(username=ADMIN_USERNAME).exists():
            return
        User.objects.create_superuser(ADMIN_USERNAME, "admin@example.com", ADMIN_PASSWORD)
        self.stdout.write(
            self.style.WARNING(
                f"Created the staff user {ADMIN_USERNAME!r} with password {ADMIN_PASSWORD!r} "
                "for /admin/ (demo only: change it anywhere else)."
            )
        )
