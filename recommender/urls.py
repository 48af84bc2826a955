"""Routes of the reusable app; a host includes them with ``path("", include("recommender.urls"))``."""

from django.urls import include, path

app_name = "recommender"
urlpatterns = [
    path("api/", include("recommender.api.urls")),
]
