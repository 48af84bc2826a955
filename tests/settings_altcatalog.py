"""The same suite against a differently shaped host catalog (UUID keys, other field names).

Tests of the demo shop's own pages are skipped here (marker ``shop``); everything in the
reusable app must pass.
"""

from .settings import *  # noqa: F401,F403
from .settings import INSTALLED_APPS

INSTALLED_APPS = [app for app in INSTALLED_APPS if app != "shop_demo.catalog"] + ["tests.altcatalog"]
ROOT_URLCONF = "tests.urls_altcatalog"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]
RECOMMENDER_PRODUCT_MODEL = "altcatalog.Article"
RECOMMENDER = {
    "PRODUCT_FIELDS": {
        "external_id": "code",
        "title": "label",
        "description": "blurb",
        "category": "section",
        "brand": "maker",
        "price": "cost",
        "in_stock": "available",
    },
}
