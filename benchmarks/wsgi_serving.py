"""WSGI entry point of the benchmark's gunicorn server (settings: benchmarks.settings_serving)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings_serving")
application = get_wsgi_application()
