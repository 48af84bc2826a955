"""API views serving recommendations: the current visitor's and "similar products".

Thin: parameters are validated by serializers, the work is ``service.recommend``. Nobody can
ask for another visitor's recommendations: the visitor is always the one making the request.
"""

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import service
from ..catalog import get_adapter
from .throttles import RecommendationsRateThrottle

MAX_K = 100
PLACEMENT_PATTERN = r"^[a-z0-9_-]{1,64}$"


def product_or_none(value):
    """The product with the outside-world id ``value``, or None if there is no such product."""
    adapter = get_adapter()
    try:
        pk = adapter.pk_from_string(value)
    except (DjangoValidationError, ValueError, TypeError):
        return None
    return adapter.queryset().filter(pk=pk).first()


class RecommendationQuerySerializer(serializers.Serializer):
    k = serializers.IntegerField(required=False, default=8, min_value=1, max_value=MAX_K,
                                 help_text=f"How many products (1 to {MAX_K}).")
    placement = serializers.RegexField(
        PLACEMENT_PATTERN, required=False, default="home",
        error_messages={"invalid": "Use 1 to 64 lowercase letters, digits, '_' or '-'."},
        help_text="Where the list is shown: home, similar, also_bought, cart or your own.",
    )
    product = serializers.CharField(required=False, max_length=64, help_text="Id of the product in view.")

    def validate_product(self, value):
        product = product_or_none(value)
        if product is None:
            raise serializers.ValidationError(f"No product with id {value[:40]!r}.")
        return product


class SimilarQuerySerializer(serializers.Serializer):
    k = serializers.IntegerField(required=False, default=8, min_value=1, max_value=MAX_K,
                                 help_text=f"How many products (1 to {MAX_K}).")


class RecommendedItemSerializer(serializers.Serializer):
    id = serializers.CharField(source="item_id")
    title = serializers.CharField()
    price = serializers.FloatField(allow_null=True)
    url = serializers.CharField(help_text="The product page; empty when the catalog has none.")
    score = serializers.FloatField()
    reason = serializers.CharField()


class RecommendationsSerializer(serializers.Serializer):
    placement = serializers.CharField()
    title = serializers.CharField()
    strategy = serializers.CharField(help_text="Key of the strategy that served the list.")
    arm = serializers.CharField(help_text="The visitor's A/B arm; empty without a running test.")
    token = serializers.CharField(help_text=(
        "Signed attribution of this list: send it as the 'token' of each impression and click of its items "
        "(POST /api/events/), so they count for this placement, strategy and arm. Empty for an empty list."))
    items = RecommendedItemSerializer(many=True)


def served_response(served):
    """The response body described by ``RecommendationsSerializer``, built directly: this
    endpoint is on every page view, and plain dicts cost a fraction of nested serializers."""
    return Response({
        "placement": served.placement,
        "title": served.title,
        "strategy": served.strategy,
        "arm": served.arm,
        "token": served.token,
        "items": [
            {"id": item.item_id, "title": item.title, "price": None if item.price is None else float(item.price),
             "url": item.url, "score": item.score, "reason": item.reason}
            for item in served
        ],
    })


class RecommendationsView(APIView):
    """Recommendations for the signed-in user or the session's anonymous visitor."""

    permission_classes = [AllowAny]
    throttle_classes = [*APIView.throttle_classes, RecommendationsRateThrottle]

    @extend_schema(
        operation_id="recommendations_list",
        summary="Recommendations for the current visitor",
        parameters=[RecommendationQuerySerializer],
        responses={200: RecommendationsSerializer},
        tags=["recommendations"],
    )
    def get(self, request):
        query = RecommendationQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        served = service.recommend(
            visitor=service.visitor_from(request=request, create=False), placement=query.validated_data["placement"],
            product=query.validated_data.get("product"), k=query.validated_data["k"],
        )
        return served_response(served)


class SimilarProductsView(APIView):
    """Products similar to one product ("Similar products" on a product page)."""

    permission_classes = [AllowAny]
    throttle_classes = [*APIView.throttle_classes, RecommendationsRateThrottle]

    @extend_schema(
        operation_id="products_similar",
        summary="Products similar to a product",
        parameters=[SimilarQuerySerializer, OpenApiParameter("product_id", str, OpenApiParameter.PATH)],
        responses={200: RecommendationsSerializer},
        tags=["recommendations"],
    )
    def get(self, request, product_id):
        query = SimilarQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        product = product_or_none(product_id)
        if product is None:
            raise Http404(f"No product with id {product_id[:40]!r}.")
        served = service.similar(product, k=query.validated_data["k"],
                                 visitor=service.visitor_from(request=request, create=False))
        return served_response(served)
