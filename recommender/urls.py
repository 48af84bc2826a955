"""Routes of the reusable app; a host includes them with ``path("", include("recommender.urls"))``."""

from django.urls import path  # noqa: F401

app_name = "recommender"
urlpatterns = []
