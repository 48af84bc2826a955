"""API view of the current visitor's own profile (demographics and consent).

There is no id in the URL: a request only ever reads or changes the profile of whoever makes
it (the signed-in user, else the session's anonymous visitor).
"""

import datetime
import json

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import service
from ..events import visitor_key_for
from ..models import UserProfile

OLDEST_BIRTH_YEAR = 1900
MAX_ATTRIBUTES = 20
MAX_ATTRIBUTES_BYTES = 2048


class ProfileSerializer(serializers.ModelSerializer):
    birth_year = serializers.IntegerField(required=False, allow_null=True,
                                          help_text=f"{OLDEST_BIRTH_YEAR} to the current year.")
    attributes = serializers.DictField(required=False, help_text=(
        f"Extra attributes strategies may use (at most {MAX_ATTRIBUTES} keys, {MAX_ATTRIBUTES_BYTES} bytes)."))
    # Null until the visitor's first change: a visitor without a profile gets the empty one.
    updated_at = serializers.DateTimeField(read_only=True, allow_null=True)

    class Meta:
        model = UserProfile
        fields = ["birth_year", "gender", "country", "region", "city", "language", "attributes",
                  "personalization_consent", "updated_at"]
        read_only_fields = ["updated_at"]

    def validate_birth_year(self, value):
        this_year = datetime.date.today().year
        if value is not None and not OLDEST_BIRTH_YEAR <= value <= this_year:
            raise serializers.ValidationError(f"Must be between {OLDEST_BIRTH_YEAR} and {this_year}.")
        return value

    def validate_attributes(self, value):
        if len(value) > MAX_ATTRIBUTES:
            raise serializers.ValidationError(f"At most {MAX_ATTRIBUTES} attributes, not {len(value)}.")
        if any(not isinstance(item, (str, int, float, bool)) or item is None for item in value.values()):
            raise serializers.ValidationError("Values must be strings, numbers or booleans.")
        if "\\u0000" in json.dumps(value):  # PostgreSQL's jsonb cannot hold it
            raise serializers.ValidationError("Keys and values must not contain NUL characters.")
        if len(json.dumps(value).encode()) > MAX_ATTRIBUTES_BYTES:
            raise serializers.ValidationError(f"At most {MAX_ATTRIBUTES_BYTES} bytes as JSON.")
        return value


class ProfileView(APIView):
    """The current visitor's profile; created on the first PATCH."""

    permission_classes = [AllowAny]

    @extend_schema(operation_id="profile_retrieve", summary="Your profile", responses={200: ProfileSerializer},
                   tags=["profile"])
    def get(self, request):
        visitor = service.visitor_from(request=request, create=False)
        return Response(ProfileSerializer(visitor.profile() or UserProfile()).data)

    @extend_schema(operation_id="profile_partial_update", summary="Change your profile",
                   request=ProfileSerializer, responses={200: ProfileSerializer}, tags=["profile"])
    def patch(self, request):
        if request.user.is_authenticated:
            visitor = service.Visitor(user=request.user)
            owner = {"user": request.user}
        else:
            visitor = service.Visitor(visitor_key=visitor_key_for(request, create=True))
            owner = {"visitor_key": visitor.visitor_key}
        serializer = ProfileSerializer(visitor.profile() or UserProfile(**owner), data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        serializer.save()
        return Response(serializer.data)
