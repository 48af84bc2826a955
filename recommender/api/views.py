"""API views: thin wrappers over the service modules."""

from django.core.exceptions import RequestDataTooBig
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import ParseError
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import events
from .parsers import PARSER_CLASSES
from .serializers import EventBatchSerializer, EventErrorsSerializer, StoredEventsSerializer
from .throttles import EventsRateThrottle


def _envelope_errors(serializer_errors):
    """DRF's {field: [messages]} as the event API's list of {index, field, message}."""
    return [
        {"index": None, "field": None if field == "non_field_errors" else field, "message": str(message)}
        for field, messages in serializer_errors.items()
        for message in messages
    ]


def _errors(message, status_code, **headers):
    response = Response({"errors": [{"index": None, "field": None, "message": message}]}, status=status_code)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


class EventBatchView(APIView):
    """Record a batch of events for the signed-in user or the session's anonymous visitor."""

    permission_classes = [AllowAny]
    parser_classes = PARSER_CLASSES

    @extend_schema(
        operation_id="events_create",
        summary="Record a batch of events",
        description=(
            "Impressions, views (with dwell time), clicks and, for signed-in users, ratings of the current "
            "visitor (the signed-in user, else the anonymous session). Cart and purchase events come from "
            "the shop's own server code and are refused here (unless the shop sets "
            "ACCEPT_CLIENT_CART_AND_PURCHASE). The server's clock stamps the events. The whole batch is "
            "validated first: any bad event refuses the batch and nothing is stored. The rate limit counts "
            "events, not requests. Session-authenticated writes need the X-CSRFToken header."
        ),
        request=EventBatchSerializer,
        responses={201: StoredEventsSerializer, 400: EventErrorsSerializer, 413: EventErrorsSerializer,
                   429: EventErrorsSerializer},
        tags=["events"],
    )
    def post(self, request):
        try:
            envelope = EventBatchSerializer(data=request.data)
        except ParseError as exc:
            self._charge(request, 1)
            return _errors(str(exc.detail), status.HTTP_400_BAD_REQUEST)
        except RequestDataTooBig:
            self._charge(request, 1)
            return _errors("request body too large (DATA_UPLOAD_MAX_MEMORY_SIZE); send fewer events per batch",
                           status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
        valid = envelope.is_valid()
        self._charge(request, max(1, len(envelope.validated_data["events"])) if valid else 1)
        if not valid:
            return Response({"errors": _envelope_errors(envelope.errors)}, status=status.HTTP_400_BAD_REQUEST)
        try:
            stored = events.record_for_request(request, envelope.validated_data["events"], trust=events.CLIENT,
                                               batch_key=envelope.validated_data.get("batch_id"))
        except events.EventValidationError as exc:
            return Response({"errors": exc.errors}, status=status.HTTP_400_BAD_REQUEST)
        except events.EventQuotaExceeded as exc:
            return _errors(str(exc), status.HTTP_429_TOO_MANY_REQUESTS, Retry_After=str(exc.retry_after))
        return Response({"stored": len(stored)}, status=status.HTTP_201_CREATED)

    def _charge(self, request, cost):
        """Count ``cost`` events against the caller's rate; over it, DRF answers 429 with Retry-After."""
        throttle = EventsRateThrottle()
        if not throttle.allow_request(request, self, cost=cost):
            self.throttled(request, throttle.wait())
