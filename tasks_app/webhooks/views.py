"""REST views of webhook endpoints and their deliveries: validate, call a service, serialize."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import generics, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from ..api.parsers import JSONParser
from ..api.views import PAGE_NOT_FOUND, TASK_ID, errors
from . import selectors, services
from .models import WebhookEndpoint
from .serializers import (
    DeliveryListQuerySerializer,
    TaskDeliverySerializer,
    WebhookDeliverySerializer,
    WebhookEndpointCreateSerializer,
    WebhookEndpointSecretSerializer,
    WebhookEndpointSerializer,
    WebhookEndpointUpdateSerializer,
)

ENDPOINT_ID = OpenApiParameter(
    "id", OpenApiTypes.STR, OpenApiParameter.PATH, description="The endpoint id (starts with `wh_`)."
)
DELIVERY_ID = OpenApiParameter(
    "delivery_id",
    OpenApiTypes.STR,
    OpenApiParameter.PATH,
    description="The delivery id (its `webhook-id`, starts with `msg_`).",
)
TAG = ["webhooks"]


@extend_schema_view(
    list=extend_schema(
        summary="List your webhook endpoints",
        tags=TAG,
        responses={200: WebhookEndpointSerializer, **errors(400, 401), 404: PAGE_NOT_FOUND},
    ),
    create=extend_schema(
        summary="Register a webhook endpoint",
        description=(
            "Task events are POSTed to `url` as JSON `{type, timestamp, data}` signed per the Standard "
            "Webhooks spec (`webhook-id`, `webhook-timestamp`, `webhook-signature`). The answer holds the "
            "signing `secret`; it is not shown again."
        ),
        tags=TAG,
        request=WebhookEndpointCreateSerializer,
        responses={201: WebhookEndpointSecretSerializer, **errors(400, 401)},
    ),
    retrieve=extend_schema(
        summary="Show a webhook endpoint",
        tags=TAG,
        parameters=[ENDPOINT_ID],
        responses={200: WebhookEndpointSerializer, **errors(401, 404)},
    ),
    partial_update=extend_schema(
        summary="Change a webhook endpoint (or re-enable it with `is_active: true`)",
        tags=TAG,
        parameters=[ENDPOINT_ID],
        request=WebhookEndpointUpdateSerializer,
        responses={200: WebhookEndpointSerializer, **errors(400, 401, 404)},
    ),
    destroy=extend_schema(
        summary="Delete a webhook endpoint and its deliveries",
        tags=TAG,
        parameters=[ENDPOINT_ID],
        responses={204: None, **errors(401, 404)},
    ),
)
class WebhookEndpointViewSet(viewsets.GenericViewSet):
    """Register, list, show, change and delete the caller's webhook endpoints."""

    serializer_class = WebhookEndpointSerializer
    # JSON only: in a form an empty field counts as left out, so `url=` would change nothing
    # instead of being refused.
    parser_classes = [JSONParser]
    lookup_url_kwarg = "id"
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[WebhookEndpoint]:
        """Endpoints the caller may see."""
        return selectors.endpoints_visible_to(self.request.user)

    def get_serializer_class(self) -> type:
        """The input shape of create and update, the read shape otherwise."""
        return {
            "create": WebhookEndpointCreateSerializer,
            "partial_update": WebhookEndpointUpdateSerializer,
            "deliveries": WebhookDeliverySerializer,
        }.get(self.action, WebhookEndpointSerializer)

    def list(self, request: Request) -> Response:
        """Page through the caller's endpoints."""
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(WebhookEndpointSerializer(page, many=True).data)

    def create(self, request: Request) -> Response:
        """Register an endpoint; the answer holds its secret."""
        data = WebhookEndpointCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        endpoint = services.endpoint_create(owner=request.user, **data.validated_data)
        return Response(WebhookEndpointSecretSerializer(endpoint).data, status=status.HTTP_201_CREATED)

    def retrieve(self, request: Request, id: str) -> Response:
        """One endpoint (without its secret)."""
        return Response(WebhookEndpointSerializer(selectors.endpoint_for_user(request.user, id)).data)

    def partial_update(self, request: Request, id: str) -> Response:
        """Change the fields given."""
        endpoint = selectors.endpoint_for_user(request.user, id)
        data = WebhookEndpointUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        endpoint = services.endpoint_update(endpoint=endpoint, **data.validated_data)
        return Response(WebhookEndpointSerializer(endpoint).data)

    def destroy(self, request: Request, id: str) -> Response:
        """Delete the endpoint; nothing more is sent to it."""
        services.endpoint_delete(endpoint=selectors.endpoint_for_user(request.user, id))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Rotate the signing secret",
        description=(
            "Makes a new secret (in the answer, shown once). For WEBHOOK_SECRET_GRACE_HOURS every delivery "
            "carries two signatures, by the new and the old secret, so receivers can switch without losing any."
        ),
        tags=TAG,
        request=None,
        parameters=[ENDPOINT_ID],
        responses={200: WebhookEndpointSecretSerializer, **errors(401, 404)},
    )
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request: Request, id: str) -> Response:
        """Replace the secret, keeping the old one valid for the grace period."""
        endpoint = services.endpoint_rotate_secret(endpoint=selectors.endpoint_for_user(request.user, id))
        return Response(WebhookEndpointSecretSerializer(endpoint).data)

    @extend_schema(
        summary="List an endpoint's deliveries and their attempts",
        tags=TAG,
        parameters=[ENDPOINT_ID, DeliveryListQuerySerializer],
        responses={200: WebhookDeliverySerializer(many=True), **errors(400, 401), 404: PAGE_NOT_FOUND},
    )
    @action(detail=True, methods=["get"])
    def deliveries(self, request: Request, id: str) -> Response:
        """Newest first: status, attempts (time, status code, response time) and the next retry."""
        endpoint = selectors.endpoint_for_user(request.user, id)
        query = DeliveryListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        page = self.paginate_queryset(
            selectors.deliveries_of(endpoint, task_id=query.validated_data.get("task_id") or None)
        )
        return self.get_paginated_response(WebhookDeliverySerializer(page, many=True).data)

    @extend_schema(
        summary="Send a delivery again",
        description="The same body and `webhook-id`, freshly signed, as soon as a worker is free.",
        tags=TAG,
        request=None,
        parameters=[ENDPOINT_ID, DELIVERY_ID],
        responses={202: WebhookDeliverySerializer, **errors(401, 404, 409)},
    )
    @action(detail=True, methods=["post"], url_path=r"deliveries/(?P<delivery_id>[^/]+)/redeliver")
    def redeliver(self, request: Request, id: str, delivery_id: str) -> Response:
        """Queue the delivery for one more attempt (retried like a new one if it fails)."""
        delivery = selectors.delivery_for_user(request.user, id, delivery_id)
        delivery = services.delivery_redeliver(delivery=delivery)
        return Response(WebhookDeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)


@extend_schema(
    summary="List the webhook deliveries about a task",
    description="Deliveries to the caller's endpoints, newest first, each with its attempts.",
    tags=TAG,
    parameters=[TASK_ID],
    responses={200: TaskDeliverySerializer(many=True), **errors(400, 401, 404)},
)
class TaskDeliveriesView(generics.ListAPIView):
    """`GET tasks/{task_id}/webhook-deliveries/`: what was sent about one task, and how it went."""

    serializer_class = TaskDeliverySerializer

    def get_queryset(self) -> QuerySet:
        """The task's deliveries the caller may see; 404 for someone else's task."""
        return selectors.deliveries_of_task(self.request.user, self.kwargs["task_id"])
