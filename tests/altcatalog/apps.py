from django.apps import AppConfig


class AltCatalogConfig(AppConfig):
    """A host catalog shaped unlike the demo's: UUID keys, other field names, no FK category."""

    name = "tests.altcatalog"
    label = "altcatalog"
    default_auto_field = "django.db.models.BigAutoField"
