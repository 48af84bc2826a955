"""Routes of the app's HTTP API, included under ``api/`` by ``recommender.urls``.

Reverse them as ``recommender:api:<name>``.
"""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView

from . import docs, model_versions, privacy, profile, recommendations, views

app_name = "api"
urlpatterns = [
    path("events/", views.EventBatchView.as_view(), name="events"),
    path("recommendations/", recommendations.RecommendationsView.as_view(), name="recommendations"),
    path("products/<str:product_id>/similar/", recommendations.SimilarProductsView.as_view(), name="similar"),
    path("profile/", profile.ProfileView.as_view(), name="profile"),
    path("profile/export/", privacy.ExportView.as_view(), name="profile_export"),
    path("profile/erase/", privacy.EraseView.as_view(), name="profile_erase"),
    path("models/", model_versions.ModelVersionListView.as_view(), name="models"),
    path("models/train/", model_versions.TrainModelView.as_view(), name="train"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", docs.api_docs, name="docs"),
]
