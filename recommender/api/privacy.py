"""API views of the current visitor's own data: export it, erase it.

Like ``/api/profile/``, there is no id in the URL: a request only reaches the data of whoever
makes it (the signed-in user, else the session's anonymous visitor).
"""

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import privacy
from ..events import visitor_key_for
from .parsers import PARSER_CLASSES
from .throttles import ProfileWriteRateThrottle


def _owner(request):
    """(user, visitor_key) of the request; the visitor key is "" for a visitor the app never saw."""
    if request.user.is_authenticated:
        return request.user, ""
    return None, visitor_key_for(request, create=False)


class ExportView(APIView):
    """Download everything stored about you: profile, ratings and events."""

    permission_classes = [AllowAny]

    @extend_schema(operation_id="profile_export", summary="Export your data", tags=["profile"],
                   responses={200: inline_serializer("DataExport", {
                       "format": serializers.IntegerField(), "visitor_key": serializers.CharField(),
                       "user": serializers.DictField(allow_null=True), "profile": serializers.DictField(allow_null=True),
                       "ratings": serializers.ListField(child=serializers.DictField()),
                       "events": serializers.ListField(child=serializers.DictField())})})
    def get(self, request):
        user, visitor_key = _owner(request)
        if user is None and not visitor_key:
            data = {"format": privacy.EXPORT_FORMAT, "user": None, "visitor_key": "", "profile": None,
                    "ratings": [], "events": []}
        else:
            data = privacy.export_user_data(user, visitor_key)
        response = Response(data)
        response["Content-Disposition"] = 'attachment; filename="my-recommender-data.json"'
        return response


class EraseView(APIView):
    """Delete your profile, ratings and events (the account itself stays)."""

    permission_classes = [AllowAny]
    parser_classes = PARSER_CLASSES
    throttle_classes = [*APIView.throttle_classes, ProfileWriteRateThrottle]

    @extend_schema(operation_id="profile_erase", summary="Erase your data", tags=["profile"], request=None,
                   responses={200: inline_serializer("Erased", {
                       "events": serializers.IntegerField(), "ratings": serializers.IntegerField(),
                       "profiles": serializers.IntegerField()})})
    def post(self, request):
        # DRF checks CSRF for signed-in sessions only; an anonymous visitor's data deserves it too.
        SessionAuthentication().enforce_csrf(request)
        user, visitor_key = _owner(request)
        if user is None and not visitor_key:
            return Response({"events": 0, "ratings": 0, "profiles": 0})
        return Response(privacy.erase_user_data(user, visitor_key))
