"""A django-oscar shop with the recommender installed, for the ``oscar`` test pass.

Oscar's documented configuration ("Building your own shop": its apps, middleware, context
processors, auth backend, Haystack's simple backend, sorl-thumbnail) plus what docs/oscar.md tells
a shop owner to add. Services come from the same environment variables as the main suite
(SQLite and eager Celery by default; PostgreSQL, Redis and a broker in .ci/run).

Run: ``DJANGO_SETTINGS_MODULE=tests.oscar_site.settings python -m pytest tests/oscar_site -m oscar``
(``make test-oscar``), and ``python manage.py check --settings tests.oscar_site.settings``.
"""

import os
import tempfile
from pathlib import Path

from oscar.defaults import *  # noqa: F401,F403  (Oscar's OSCAR_* defaults, as its docs say)

from recommender.contrib.oscar import TEMPLATE_OVERRIDES_DIR
from shop_demo import environment

HERE = Path(__file__).resolve().parent
TEST_VAR_DIR = Path(os.environ.setdefault("RECOMMENDER_TEST_VAR_DIR", tempfile.mkdtemp(prefix="recommender-oscar-")))

SECRET_KEY = "oscar-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
SITE_ID = 1

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.sites",
    "django.contrib.flatpages",
    "oscar.config.Shop",
    "oscar.apps.analytics.apps.AnalyticsConfig",
    "oscar.apps.checkout.apps.CheckoutConfig",
    "oscar.apps.address.apps.AddressConfig",
    "oscar.apps.shipping.apps.ShippingConfig",
    "oscar.apps.catalogue.apps.CatalogueConfig",
    "oscar.apps.catalogue.reviews.apps.CatalogueReviewsConfig",
    "oscar.apps.communication.apps.CommunicationConfig",
    "oscar.apps.partner.apps.PartnerConfig",
    "oscar.apps.basket.apps.BasketConfig",
    "oscar.apps.payment.apps.PaymentConfig",
    "oscar.apps.offer.apps.OfferConfig",
    "oscar.apps.order.apps.OrderConfig",
    "oscar.apps.customer.apps.CustomerConfig",
    "oscar.apps.search.apps.SearchConfig",
    "oscar.apps.voucher.apps.VoucherConfig",
    "oscar.apps.wishlists.apps.WishlistsConfig",
    "oscar.apps.dashboard.apps.DashboardConfig",
    "oscar.apps.dashboard.reports.apps.ReportsDashboardConfig",
    "oscar.apps.dashboard.users.apps.UsersDashboardConfig",
    "oscar.apps.dashboard.orders.apps.OrdersDashboardConfig",
    "oscar.apps.dashboard.catalogue.apps.CatalogueDashboardConfig",
    "oscar.apps.dashboard.offers.apps.OffersDashboardConfig",
    "oscar.apps.dashboard.partners.apps.PartnersDashboardConfig",
    "oscar.apps.dashboard.pages.apps.PagesDashboardConfig",
    "oscar.apps.dashboard.ranges.apps.RangesDashboardConfig",
    "oscar.apps.dashboard.reviews.apps.ReviewsDashboardConfig",
    "oscar.apps.dashboard.vouchers.apps.VouchersDashboardConfig",
    "oscar.apps.dashboard.communications.apps.CommunicationsDashboardConfig",
    "oscar.apps.dashboard.shipping.apps.ShippingDashboardConfig",
    # Third-party apps Oscar depends on.
    "widget_tweaks",
    "haystack",
    "treebeard",
    "sorl.thumbnail",
    "django_tables2",
    # The recommender, after Oscar's apps (docs/oscar.md).
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "recommender",
    "recommender.contrib.oscar",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "oscar.apps.basket.middleware.BasketMiddleware",
    "django.contrib.flatpages.middleware.FlatpageFallbackMiddleware",
    "recommender.middleware.DatabaseUnavailableMiddleware",
]
ROOT_URLCONF = "tests.oscar_site.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # The recommender's overrides of Oscar's home, product and basket templates.
        "DIRS": [TEMPLATE_OVERRIDES_DIR],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.debug",
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.template.context_processors.i18n",
                "django.contrib.messages.context_processors.messages",
                "oscar.apps.search.context_processors.search_form",
                "oscar.apps.checkout.context_processors.checkout",
                "oscar.apps.communication.notifications.context_processors.notifications",
                "oscar.core.context_processors.metadata",
            ],
        },
    },
]
AUTHENTICATION_BACKENDS = (
    "oscar.apps.customer.auth_backends.EmailBackend",
    "django.contrib.auth.backends.ModelBackend",
)
HAYSTACK_CONNECTIONS = {"default": {"ENGINE": "haystack.backends.simple_backend.SimpleEngine"}}

DATABASES = environment.database(TEST_VAR_DIR / "oscar.sqlite3")
# Oscar recommends tying transactions to requests. On SQLite such a transaction must take the write
# lock when it begins (docs/oscar.md): a page view and a beacon batch would otherwise collide.
DATABASES["default"]["ATOMIC_REQUESTS"] = True
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"]["OPTIONS"]["transaction_mode"] = "IMMEDIATE"
CACHES = environment.caches()
CACHES["default"]["KEY_PREFIX"] = os.environ.setdefault("RECOMMENDER_TEST_CACHE_PREFIX", f"oscar-{os.getpid()}")
globals().update(environment.celery())

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-gb"
STATIC_URL = "/static/"
STATIC_ROOT = TEST_VAR_DIR / "static"
MEDIA_URL = "/media/"
MEDIA_ROOT = TEST_VAR_DIR / "media"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"

# A minimal shop: guests may check out (Oscar's default shipping is free, payment is the shop's own).
OSCAR_ALLOW_ANON_CHECKOUT = True
OSCAR_SHOP_NAME = "Oscar test shop"

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
}

RECOMMENDER_PRODUCT_MODEL = "catalogue.Product"
RECOMMENDER = {
    "CATALOG_ADAPTER": "recommender.contrib.oscar.catalog.OscarCatalogAdapter",
}
