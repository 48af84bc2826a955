"""Settings of the demo shop: SQLite and eager Celery by default (see environment.py).

DEBUG is off unless ``DJANGO_DEBUG=1`` (``make demo`` sets it): a debug page lists every URL
pattern and setting to whoever asks for a page that does not exist. Production reads its
secrets and hosts from the environment; see "Running in production" in the README, whose
environment makes ``manage.py check --deploy`` pass.
"""

import os
from pathlib import Path

from . import environment

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("SHOP_DEMO_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "demo-only-not-secret-change-me")
DEBUG = os.environ.get("DJANGO_DEBUG", "0") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")

# Served over HTTPS (DJANGO_HTTPS=1): cookies only over TLS, plain HTTP redirected, browsers told
# to stay on HTTPS (HSTS). Behind a proxy that terminates TLS, DJANGO_SECURE_PROXY_SSL_HEADER=1
# trusts its X-Forwarded-Proto (only if the proxy always sets it).
if os.environ.get("DJANGO_HTTPS") == "1":
    SECURE_SSL_REDIRECT = True
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", 365 * 24 * 60 * 60))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = os.environ.get("DJANGO_HSTS_INCLUDE_SUBDOMAINS", "1") == "1"
    SECURE_HSTS_PRELOAD = os.environ.get("DJANGO_HSTS_PRELOAD", "1") == "1"
if os.environ.get("DJANGO_SECURE_PROXY_SSL_HEADER") == "1":
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

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
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # A clean 503 with Retry-After while the database cannot be reached.
    "recommender.middleware.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "shop_demo.urls"
WSGI_APPLICATION = "shop_demo.wsgi.application"

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

DATABASES = environment.database(VAR_DIR / "demo.sqlite3")
CACHES = environment.caches()
globals().update(environment.celery())

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "shop_demo" / "static"]
STATIC_ROOT = VAR_DIR / "static"
MEDIA_URL = "media/"
MEDIA_ROOT = VAR_DIR / "media"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Recommender API",
    "DESCRIPTION": "Product recommendations, events and profiles of the demo shop.",
    "VERSION": "0.1.0",
}

RECOMMENDER_PRODUCT_MODEL = "catalog.Product"
RECOMMENDER = {
    "CATALOG_ADAPTER": "shop_demo.catalog.adapter.ShopCatalogAdapter",
    # `make demo` trains every strategy on one small machine before the shop opens: save the
    # model that passed the held-out check instead of fitting it a second time on all data,
    # and give the session Transformer fewer epochs. A real shop keeps the defaults.
    "TRAINING_REFIT_ON_ALL_DATA": False,
    # Item-to-item co-occurrence within a visit (30 minutes without an event end it), so "also
    # bought" and the session shelves follow what shoppers look at together, not across visits.
    "TRAINING_PARAMS": {"behavior": {"epochs": 4}, "item_knn": {"session_gap_seconds": 1800}},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"recommender": {"handlers": ["console"], "level": "INFO"}},
}
