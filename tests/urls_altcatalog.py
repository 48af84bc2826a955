"""URLs for the alternative-catalog settings: the reusable app's routes only."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("recommender.urls")),
]
