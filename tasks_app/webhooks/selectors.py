"""Reads of webhook endpoints and deliveries, scoped to their owner (staff see everything)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from ..exceptions import NotFound
from ..selectors import task_for_user
from .models import WebhookDelivery, WebhookEndpoint


def endpoints_visible_to(user: Any) -> QuerySet[WebhookEndpoint]:
    """Endpoints the user owns; every endpoint for staff."""
    queryset = WebhookEndpoint.objects.all()
    return queryset if user.is_staff else queryset.filter(owner_id=user.pk)


def endpoint_for_user(user: Any, endpoint_id: str) -> WebhookEndpoint:
    """One visible endpoint; NotFound when missing or someone else's (never a 403)."""
    endpoint = endpoints_visible_to(user).filter(pk=endpoint_id).first()
    if endpoint is None:
        raise NotFound(f"Webhook endpoint {endpoint_id} not found.", field="id")
    return endpoint


def deliveries_of(endpoint: WebhookEndpoint, *, task_id: str | None = None) -> QuerySet[WebhookDelivery]:
    """An endpoint's deliveries, newest first, each with its attempts."""
    queryset = endpoint.deliveries.prefetch_related("attempt_log").order_by("-id")
    return queryset.filter(task_id=task_id) if task_id else queryset


def deliveries_of_task(user: Any, task_id: str) -> QuerySet[WebhookDelivery]:
    """A visible task's deliveries to the user's endpoints (every endpoint for staff), newest first."""
    task = task_for_user(user, task_id)
    queryset = WebhookDelivery.objects.filter(task_id=task.id).select_related("endpoint")
    if not user.is_staff:
        queryset = queryset.filter(endpoint__owner_id=user.pk)
    return queryset.prefetch_related("attempt_log").order_by("-id")


def delivery_for_user(user: Any, endpoint_id: str, message_id: str) -> WebhookDelivery:
    """One delivery of a visible endpoint, by its `webhook-id`; NotFound otherwise."""
    endpoint = endpoint_for_user(user, endpoint_id)
    delivery = endpoint.deliveries.filter(message_id=message_id).first()
    if delivery is None:
        raise NotFound(f"Delivery {message_id} not found.", field="delivery_id")
    return delivery
