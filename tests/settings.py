"""Minimal settings for the test suite (not the demo's).

SQLite and eager Celery by default; PostgreSQL, Redis and real workers when DATABASE_URL,
CELERY_BROKER_URL and REDIS_URL are set (see .ci/run).
"""

import os
import tempfile
from pathlib import Path

from shop_demo import environment

BASE_DIR = Path(__file__).resolve().parent.parent
# setdefault: worker processes a test starts inherit the same folder and cache prefix.
TEST_VAR_DIR = Path(os.environ.setdefault("RECOMMENDER_TEST_VAR_DIR", tempfile.mkdtemp(prefix="recommender-tests-")))

SECRET_KEY = "tests-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "recommender",
    "shop_demo.catalog",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "recommender.middleware.DatabaseUnavailableMiddleware",
]
ROOT_URLCONF = "shop_demo.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "shop_demo" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "shop_demo.catalog.context_processors.shop",
            ],
        },
    },
]
DATABASES = environment.database(TEST_VAR_DIR / "tests.sqlite3")
CACHES = environment.caches()
# A shared Redis keeps keys between runs: each run (and its workers) gets its own prefix.
CACHES["default"]["KEY_PREFIX"] = os.environ.setdefault("RECOMMENDER_TEST_CACHE_PREFIX", f"test-{os.getpid()}")
globals().update(environment.celery())

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "shop_demo" / "static"]
STATIC_ROOT = TEST_VAR_DIR / "static"
MEDIA_ROOT = TEST_VAR_DIR / "media"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGIN_URL = "login"

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
}

RECOMMENDER_PRODUCT_MODEL = "catalog.Product"
RECOMMENDER = {"CATALOG_ADAPTER": "shop_demo.catalog.adapter.ShopCatalogAdapter"}
