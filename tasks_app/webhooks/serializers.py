"""Request and response shapes of the webhook endpoints and their deliveries."""

from __future__ import annotations

from rest_framework import serializers

from ..api.serializers import StrictSerializer
from .models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

EVENTS_HELP = (
    "Events to receive: `task.completed`, `task.failed`, `task.cancelled`, `task.progress` "
    "(at most one per task every WEBHOOK_PROGRESS_INTERVAL_SECONDS)."
)
URL_HELP = (
    "Where deliveries are POSTed. Hosts that are or resolve to loopback, private, link-local or "
    "multicast addresses are refused (`unsafe_url`); `https` only in production mode."
)


class StrictBooleanField(serializers.BooleanField):
    """A JSON `true` or `false` only: DRF's field also takes `"yes"`, `1` or `"on"`, which the schema does not."""

    def to_internal_value(self, data: object) -> bool:
        """The boolean itself, or a 400 naming the field."""
        if isinstance(data, bool):
            return data
        self.fail("invalid", input=data)


class StrictCharField(serializers.CharField):
    """A JSON string only: DRF's field also turns numbers into text, which the schema does not allow."""

    def to_internal_value(self, data: object) -> str:
        """The text, or a 400 naming the field."""
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class WebhookEndpointSerializer(serializers.ModelSerializer):
    """A webhook endpoint; `disabled_reason` says why it stopped receiving, when it did."""

    events = serializers.ListField(child=serializers.ChoiceField(choices=WebhookEndpoint.Event.choices))

    class Meta:
        model = WebhookEndpoint
        fields = [
            "id",
            "url",
            "events",
            "description",
            "is_active",
            "disabled_reason",
            "failing_since",
            "previous_secret_expires_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class WebhookEndpointSecretSerializer(WebhookEndpointSerializer):
    """An endpoint with its signing secret, shown once: when it is created or its secret rotated."""

    class Meta(WebhookEndpointSerializer.Meta):
        fields = [*WebhookEndpointSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class WebhookEndpointCreateSerializer(StrictSerializer):
    """Input of `POST webhooks/`."""

    url = serializers.URLField(max_length=2000, help_text=URL_HELP)
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=WebhookEndpoint.Event.choices), min_length=1, help_text=EVENTS_HELP
    )
    description = StrictCharField(max_length=200, required=False, allow_blank=True, default="")


class WebhookEndpointUpdateSerializer(StrictSerializer):
    """Input of `PATCH webhooks/{id}/`: any of the fields; `is_active: true` re-enables."""

    url = serializers.URLField(max_length=2000, required=False, help_text=URL_HELP)
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=WebhookEndpoint.Event.choices),
        min_length=1,
        required=False,
        help_text=EVENTS_HELP,
    )
    description = StrictCharField(max_length=200, required=False, allow_blank=True)
    is_active = StrictBooleanField(required=False)


class WebhookAttemptSerializer(serializers.ModelSerializer):
    """One request made for a delivery."""

    class Meta:
        model = WebhookAttempt
        fields = ["number", "started_at", "succeeded", "status_code", "response_ms", "error"]
        read_only_fields = fields


class WebhookDeliverySerializer(serializers.ModelSerializer):
    """One event owed to an endpoint: where it stands, when it is tried next, and every attempt."""

    id = serializers.CharField(source="message_id", help_text="The `webhook-id` header of every attempt.")
    type = serializers.CharField(source="event_type")
    next_attempt_at = serializers.DateTimeField(allow_null=True, help_text="Next retry; null once finished.")
    attempt_log = WebhookAttemptSerializer(many=True)

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "type",
            "task_id",
            "status",
            "attempts",
            "created_at",
            "last_attempt_at",
            "last_status_code",
            "last_response_ms",
            "last_error",
            "next_attempt_at",
            "retry_until",
            "attempt_log",
        ]
        read_only_fields = fields


class TaskDeliverySerializer(WebhookDeliverySerializer):
    """A delivery about one task, naming the endpoint it goes to."""

    endpoint = serializers.CharField(source="endpoint_id", help_text="The endpoint id.")
    endpoint_url = serializers.CharField(source="endpoint.url")

    class Meta(WebhookDeliverySerializer.Meta):
        fields = ["endpoint", "endpoint_url", *WebhookDeliverySerializer.Meta.fields]
        read_only_fields = fields


class DeliveryListQuerySerializer(serializers.Serializer):
    """Query parameters of `GET webhooks/{id}/deliveries/`."""

    task_id = serializers.CharField(
        required=False, allow_blank=True, help_text="Only the deliveries about this task (blank: all)."
    )
