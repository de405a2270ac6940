"""Webhook figures for /metrics, read from the database: the workers that send share it."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Count
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .models import WebhookAttempt, WebhookDelivery, WebhookEndpoint


class WebhookCollector:
    """Deliveries by status, attempts by outcome, and disabled endpoints."""

    def describe(self) -> list[Metric]:
        """Nothing up front: collecting needs the database."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Yield the metric families."""
        deliveries = GaugeMetricFamily("webhook_deliveries", "Webhook deliveries by status.", labels=["status"])
        counts = dict(WebhookDelivery.objects.order_by().values_list("status").annotate(n=Count("pk")))
        for status in WebhookDelivery.Status.values:
            deliveries.add_metric([status], counts.get(status, 0))
        yield deliveries
        attempts = CounterMetricFamily(
            "webhook_delivery_attempts", "Webhook requests made, by outcome.", labels=["outcome"]
        )
        outcomes = dict(WebhookAttempt.objects.order_by().values_list("succeeded").annotate(n=Count("pk")))
        attempts.add_metric(["succeeded"], outcomes.get(True, 0))
        attempts.add_metric(["failed"], outcomes.get(False, 0))
        yield attempts
        yield GaugeMetricFamily(
            "webhook_endpoints_disabled",
            "Endpoints disabled after failing for WEBHOOK_DISABLE_AFTER_DAYS.",
            value=WebhookEndpoint.objects.filter(is_active=False).exclude(disabled_reason="").count(),
        )
