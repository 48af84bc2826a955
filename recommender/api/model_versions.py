"""Staff-only API views: trained model versions, and queueing a retrain.

They ask what the admin asks: a staff account that also holds the model permission
(``recommender.view_modelversion`` to list, ``recommender.change_modelversion`` to retrain, as
the admin's list and its retrain action do). ``is_staff`` alone opens nothing.
"""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import jobs
from ..conf import settings
from ..models import ModelVersion
from ..strategies.registry import available_keys
from .parsers import PARSER_CLASSES


class StaffWithModelPermissions(BasePermission):
    """Active staff holding every permission in the view's ``required_permissions``."""

    message = "Staff access with the matching model permission is required (as in the admin)."

    def has_permission(self, request, view):
        user = request.user
        return bool(user and user.is_authenticated and user.is_active and user.is_staff
                    and user.has_perms(view.required_permissions))


class ModelVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelVersion
        fields = ["id", "strategy", "status", "stage", "progress", "checksum", "artifact_bytes", "data_counts",
                  "params", "metrics", "timings", "error", "task_id", "created_at", "finished_at", "activated_at"]


class TrainRequestSerializer(serializers.Serializer):
    strategy = serializers.CharField(help_text="Key of the strategy to train.")

    def validate_strategy(self, value):
        keys = available_keys(settings.STRATEGIES)
        if value not in keys:
            raise serializers.ValidationError(f"Unknown strategy {value[:40]!r}; known: {', '.join(keys)}.")
        return value


class QueuedTrainingSerializer(serializers.Serializer):
    strategy = serializers.CharField()
    version = serializers.IntegerField()
    task_id = serializers.CharField()


class VersionPagination(LimitOffsetPagination):
    default_limit = 50
    max_limit = 500


class ModelVersionListView(generics.ListAPIView):
    """Every trained version of every strategy, newest first (staff only)."""

    permission_classes = [StaffWithModelPermissions]
    required_permissions = ("recommender.view_modelversion",)
    serializer_class = ModelVersionSerializer
    pagination_class = VersionPagination
    queryset = ModelVersion.objects.order_by("-created_at", "-pk")

    @extend_schema(operation_id="models_list", summary="Model versions", tags=["models"])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class TrainModelView(APIView):
    """Queue the training of one strategy (staff only); answers 202 with the task's id."""

    permission_classes = [StaffWithModelPermissions]
    required_permissions = ("recommender.change_modelversion",)
    parser_classes = PARSER_CLASSES

    @extend_schema(operation_id="models_train", summary="Queue a retrain", request=TrainRequestSerializer,
                   responses={202: QueuedTrainingSerializer, 409: OpenApiResponse(description="That strategy is training now")}, tags=["models"])
    def post(self, request):
        serializer = TrainRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        key = serializer.validated_data["strategy"]
        try:
            version = jobs.train(key)
        except jobs.TrainingRefused as refused:
            return Response({"detail": str(refused)}, status=status.HTTP_409_CONFLICT)
        return Response({"strategy": key, "version": version.pk, "task_id": version.task_id},
                        status=status.HTTP_202_ACCEPTED)
