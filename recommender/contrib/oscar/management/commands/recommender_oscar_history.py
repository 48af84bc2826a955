"""Load the Oscar shop's past orders as purchase history (safe to run again: each order is stored once)."""

import datetime

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from recommender.contrib.oscar.orders import OrderHistoryError, load_order_history


def _moment(value):
    parsed = parse_datetime(value)
    if parsed is None:
        day = parse_date(value)
        if day is None:
            raise ValueError(value)
        parsed = datetime.datetime.combine(day, datetime.time.min)
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed)


class Command(BaseCommand):
    help = (
        "Record the shop's past Oscar orders as purchase events (an account's, or a guest's keyed by "
        "e-mail), dated when they were placed. Orders already recorded are skipped."
    )

    def add_arguments(self, parser):
        parser.add_argument("--since", metavar="DATE",
                            help="Only orders placed at or after this date (YYYY-MM-DD or an ISO datetime).")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")

    def handle(self, *args, since=None, no_progress=False, **options):
        try:
            since = _moment(since) if since else None
        except ValueError:
            raise CommandError(f"--since {since!r} is not a date (YYYY-MM-DD) or an ISO datetime")
        try:
            counts = load_order_history(since=since, progress=not no_progress)
        except OrderHistoryError as exc:
            raise CommandError(f"{exc}. The orders before it are stored; run the command again once it is fixed.")
        self.stdout.write(
            f"{counts['orders']} orders read: {counts['events_added']} purchase events added, "
            f"{counts['already_recorded']} orders already recorded, {counts['without_products']} without "
            f"a listed product, {counts['without_owner']} without an account or guest e-mail."
        )
        if counts["events_added"]:
            self.stdout.write("Train to use them: python manage.py recommender_train")
