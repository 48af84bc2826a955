"""Routes of the app's HTTP API, included under ``api/`` by ``recommender.urls``.

Reverse them as ``recommender:api:<name>``.
"""

from django.urls import path

from . import views

app_name = "api"
urlpatterns = [
    path("events/", views.EventBatchView.as_view(), name="events"),
]
