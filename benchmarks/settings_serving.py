"""Settings for benchmarks/serving.py: the demo shop on a throw-away SQLite file, quiet, DEBUG off."""

import os
import tempfile
from pathlib import Path

from shop_demo.settings import *  # noqa: F401,F403

BENCH_DIR = Path(os.environ.get("RECOMMENDER_BENCH_DIR") or tempfile.mkdtemp(prefix="recommender-bench-"))
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "benchmarks.urls_serving"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(BENCH_DIR / "bench.sqlite3"),
                         "OPTIONS": {"timeout": 30}}}
MEDIA_ROOT = BENCH_DIR / "media"
LOGGING = {"version": 1, "disable_existing_loggers": False,
           "loggers": {"recommender": {"level": "ERROR"}, "django": {"level": "ERROR"}}}
# The benchmark measures serving from one address, not the rate limits.
RECOMMENDER = {**RECOMMENDER, "EVENTS_THROTTLE_RATE": None, "RECOMMENDATIONS_THROTTLE_RATE": None}  # noqa: F405
# Room for every warm user's precomputed list (the local-memory cache keeps 300 entries by default;
# a shop shares one Redis between its processes).
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "OPTIONS": {"MAX_ENTRIES": 1_000_000}}}
