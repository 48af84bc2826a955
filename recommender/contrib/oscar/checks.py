"""System checks of the Oscar integration: the app must read Oscar's catalogue through its adapter."""

from django.apps import apps
from django.core.checks import Error, register
from oscar.core.loading import get_model

from ...conf import settings
from .catalog import OscarCatalogAdapter

ADAPTER_PATH = "recommender.contrib.oscar.catalog.OscarCatalogAdapter"


@register()
def check_oscar_catalog(app_configs, **kwargs):
    errors = []
    if not apps.is_installed("recommender"):
        errors.append(Error(
            "recommender.contrib.oscar needs the recommender app itself.",
            hint='Add "recommender" to INSTALLED_APPS before "recommender.contrib.oscar".',
            id="recommender_oscar.E001",
        ))
    oscar_product = get_model("catalogue", "Product")._meta.label
    if settings.PRODUCT_MODEL != oscar_product:
        errors.append(Error(
            f"RECOMMENDER_PRODUCT_MODEL is {settings.PRODUCT_MODEL!r}, not Oscar's product model.",
            hint=f'Set RECOMMENDER_PRODUCT_MODEL = "{oscar_product}" before the first migrate.',
            id="recommender_oscar.E002",
        ))
    try:
        adapter = settings.CATALOG_ADAPTER
    except ImportError:
        return errors  # recommender.E004 says what cannot be imported
    if not (isinstance(adapter, type) and issubclass(adapter, OscarCatalogAdapter)):
        errors.append(Error(
            "RECOMMENDER['CATALOG_ADAPTER'] is not the Oscar catalog adapter: stock, prices, categories "
            "and variants would be read wrongly.",
            hint=f'Set RECOMMENDER["CATALOG_ADAPTER"] = "{ADAPTER_PATH}" (or a subclass of it).',
            id="recommender_oscar.E003",
        ))
    return errors
