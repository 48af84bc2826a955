"""WSGI entry point of the benchmark's gunicorn server (settings: benchmarks.settings_serving)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings_serving")
application = get_wsgi_application()

# Load the active models before gunicorn forks its workers (run with --preload).
from recommender import service  # noqa: E402

for key in service.FALLBACK_CHAIN:
    service.active_strategy(key)
