"""Serializers of the API: request envelopes and, for the schema, the shape of their contents.

Events themselves are validated by ``recommender.events`` (the one way in); the serializers
here check the envelope and describe an event for the OpenAPI schema.
"""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..models import EventType


class EventSerializer(serializers.Serializer):
    """One event as a client sends it (documentation of ``events.record``'s input)."""

    product = serializers.CharField(help_text="The product's id (string or integer).")
    event = serializers.ChoiceField(choices=EventType.choices, help_text=(
        "impression, view, click; rating when signed in. cart and purchase come from the shop's server code "
        "and are refused here unless ACCEPT_CLIENT_CART_AND_PURCHASE."))
    value = serializers.FloatField(
        required=False, allow_null=True, help_text="Required for a rating (the score); a quantity for cart and purchase."
    )
    dwell_seconds = serializers.FloatField(
        required=False, allow_null=True, min_value=0, help_text="Seconds spent on the product (0 to MAX_DWELL_SECONDS)."
    )
    timestamp = serializers.DateTimeField(
        required=False,
        allow_null=True,
        help_text="ISO 8601 (UTC when no zone is given) or epoch seconds; default now; "
        "at most MAX_CLOCK_SKEW_SECONDS in the future.",
    )
    token = serializers.CharField(required=False, allow_blank=True, max_length=4096, help_text=(
        "Impressions and clicks: the 'token' of the served list the product was shown in (widget markup "
        "data-rec-token, or the recommendations response). A valid token attributes the event to that list's "
        "placement, strategy and A/B arm; without one, or with an expired, altered or another visitor's token, "
        "or for a product the list did not hold, the event is stored unattributed."))
    placement = serializers.CharField(required=False, allow_blank=True, max_length=64, help_text=(
        "Server code only (events.record); refused from browsers, who attribute through 'token'."))
    strategy = serializers.CharField(required=False, allow_blank=True, max_length=64, help_text="As placement.")
    arm = serializers.CharField(required=False, allow_blank=True, max_length=64, help_text="As placement.")
    context = serializers.DictField(required=False, help_text="Small JSON object (at most MAX_EVENT_CONTEXT_BYTES).")


@extend_schema_field(EventSerializer(many=True))
class EventListField(serializers.Field):
    """A list of raw events, passed on untouched for ``events.record`` to validate as a batch."""

    default_error_messages = {"not_a_list": "Expected a list of events, not {input_type}."}

    def to_internal_value(self, data):
        if not isinstance(data, list):
            self.fail("not_a_list", input_type=type(data).__name__)
        return data

    def to_representation(self, value):
        return value


class EventBatchSerializer(serializers.Serializer):
    batch_id = serializers.CharField(
        required=False,
        max_length=100,
        help_text="Idempotency key of this batch: a batch retried with the same id is stored once.",
    )
    events = EventListField(help_text="At most MAX_EVENTS_PER_BATCH events; a larger batch is refused whole.")


class StoredEventsSerializer(serializers.Serializer):
    stored = serializers.IntegerField(help_text="How many events of the batch are stored.")


class EventErrorSerializer(serializers.Serializer):
    index = serializers.IntegerField(allow_null=True, help_text="Position of the event in the batch; null: the batch.")
    field = serializers.CharField(allow_null=True)
    message = serializers.CharField()


class EventErrorsSerializer(serializers.Serializer):
    errors = EventErrorSerializer(many=True)
