"""WSGI entry point of the benchmark's gunicorn server (settings: benchmarks.settings_serving)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings_serving")
application = get_wsgi_application()

# Load the active models before gunicorn forks its workers (run with --preload).
from recommender.conf import settings  # noqa: E402
from recommender.serving import loaded_models  # noqa: E402

for key in dict.fromkeys([settings.DEFAULT_STRATEGY, *settings.FALLBACK_STRATEGIES, "content"]):
    loaded_models.get_active_strategy(key)
