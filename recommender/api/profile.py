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
from ..conf import declared_profile_attributes
from ..events import visitor_key_for
from ..models import UserProfile
from .parsers import PARSER_CLASSES
from .throttles import ProfileWriteRateThrottle

OLDEST_BIRTH_YEAR = 1900
MAX_ATTRIBUTES = 20
MAX_ATTRIBUTES_BYTES = 2048
MAX_ATTRIBUTE_VALUE_LENGTH = 64


class ProfileSerializer(serializers.ModelSerializer):
    birth_year = serializers.IntegerField(required=False, allow_null=True,
                                          help_text=f"{OLDEST_BIRTH_YEAR} to the current year.")
    attributes = serializers.DictField(required=False, help_text=(
        "Extra attributes strategies may use: only the names the shop declares in "
        f"RECOMMENDER['PROFILE_ATTRIBUTES'] (at most {MAX_ATTRIBUTES} keys, {MAX_ATTRIBUTES_BYTES} bytes)."))
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
        declared = declared_profile_attributes()
        unknown = sorted(str(key) for key in value if key not in declared)
        if unknown:
            shown = ", ".join(repr(key[:40]) for key in unknown[:10]) + (", ..." if len(unknown) > 10 else "")
            known = ", ".join(sorted(declared)) or "none"
            raise serializers.ValidationError(
                f"Unknown attribute(s) {shown}; this shop accepts: {known} (RECOMMENDER['PROFILE_ATTRIBUTES']).")
        for key, item in value.items():
            allowed = declared[key]
            if allowed is not None and item not in allowed:
                raise serializers.ValidationError(
                    f"{key!r} must be one of {', '.join(map(str, allowed))}, not {str(item)[:40]!r}.")
            if isinstance(item, str) and len(item) > MAX_ATTRIBUTE_VALUE_LENGTH:
                raise serializers.ValidationError(
                    f"{key!r}: at most {MAX_ATTRIBUTE_VALUE_LENGTH} characters, not {len(item)}.")
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
    parser_classes = PARSER_CLASSES
    throttle_classes = [*APIView.throttle_classes, ProfileWriteRateThrottle]

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
