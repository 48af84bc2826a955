"""API views: thin wrappers over the service modules."""

from django.core.exceptions import RequestDataTooBig
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import ParseError
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import events
from .serializers import EventBatchSerializer, EventErrorsSerializer, StoredEventsSerializer
from .throttles import EventsRateThrottle


def _envelope_errors(serializer_errors):
    """DRF's {field: [messages]} as the event API's list of {index, field, message}."""
    return [
        {"index": None, "field": None if field == "non_field_errors" else field, "message": str(message)}
        for field, messages in serializer_errors.items()
        for message in messages
    ]


class EventBatchView(APIView):
    """Record a batch of events for the signed-in user or the session's anonymous visitor."""

    permission_classes = [AllowAny]
    throttle_classes = [*APIView.throttle_classes, EventsRateThrottle]

    @extend_schema(
        operation_id="events_create",
        summary="Record a batch of events",
        description=(
            "Impressions, views, clicks, cart additions, purchases and ratings of the current visitor "
            "(the signed-in user, else the anonymous session). The whole batch is validated first: any "
            "bad event refuses the batch and nothing is stored. Session-authenticated writes need the "
            "X-CSRFToken header."
        ),
        request=EventBatchSerializer,
        responses={201: StoredEventsSerializer, 400: EventErrorsSerializer, 413: EventErrorsSerializer},
        tags=["events"],
    )
    def post(self, request):
        try:
            envelope = EventBatchSerializer(data=request.data)
        except ParseError as exc:
            return Response({"errors": [{"index": None, "field": None, "message": str(exc.detail)}]}, status=400)
        except RequestDataTooBig:
            message = "request body too large (DATA_UPLOAD_MAX_MEMORY_SIZE); send fewer events per batch"
            return Response({"errors": [{"index": None, "field": None, "message": message}]}, status=413)
        if not envelope.is_valid():
            return Response({"errors": _envelope_errors(envelope.errors)}, status=status.HTTP_400_BAD_REQUEST)
        try:
            stored = events.record_for_request(
                request, envelope.validated_data["events"], batch_key=envelope.validated_data.get("batch_id")
            )
        except events.EventValidationError as exc:
            return Response({"errors": exc.errors}, status=status.HTTP_400_BAD_REQUEST)
        return Response({"stored": len(stored)}, status=status.HTTP_201_CREATED)
