from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "shop_demo.catalog"
    label = "catalog"
    verbose_name = "Shop catalog"
    default_auto_field = "django.db.models.BigAutoField"
