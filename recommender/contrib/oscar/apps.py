from django.apps import AppConfig


class RecommenderOscarConfig(AppConfig):
    name = "recommender.contrib.oscar"
    label = "recommender_oscar"
    verbose_name = "Recommendations for django-oscar"

    def ready(self):
        from . import checks, receivers  # noqa: F401  (registers checks and signal receivers)
