"""Routes of the reusable app; a host includes them with ``path("", include("recommender.urls"))``."""

from django.urls import include, path

from . import views

app_name = "recommender"
urlpatterns = [
    path("api/", include("recommender.api.urls")),
    path("recommendations/onboarding/", views.onboarding, name="onboarding"),
]
