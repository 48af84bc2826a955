"""The demo's URLs plus a trivial DRF JSON endpoint, the baseline of the HTTP benchmark."""

from django.urls import path
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from shop_demo.urls import urlpatterns as shop_urlpatterns


class PingView(APIView):
    """Answers {"ok": true}: the cost of DRF itself, with the same middleware and authentication."""

    permission_classes = [AllowAny]

    def get(self, request):
        return Response({"ok": True})


urlpatterns = [path("bench/ping/", PingView.as_view()), *shop_urlpatterns]
