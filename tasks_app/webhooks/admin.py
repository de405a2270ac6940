"""Admin pages of webhook endpoints and deliveries (deliveries read-only: workers write them)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest

from ..exceptions import DomainError
from . import services
from .models import WebhookAttempt, WebhookDelivery, WebhookEndpoint


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    """Endpoints by owner, with why a disabled one stopped."""

    list_display = ["id", "owner", "url", "is_active", "failing_since", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["id", "url", "owner__username"]
    fields = ["id", "owner", "url", "events", "description", "is_active", "disabled_reason", "failing_since"]
    readonly_fields = ["id", "owner", "disabled_reason", "failing_since"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Endpoints are registered by their owners through the API (which shows the secret)."""
        return False

    def save_model(self, request: HttpRequest, obj: WebhookEndpoint, form: Any, change: bool) -> None:
        """Save through the service, which checks the URL and re-enables cleanly."""
        try:
            services.endpoint_update(endpoint=obj, **{name: form.cleaned_data[name] for name in form.changed_data})
        except DomainError as exc:
            self.message_user(request, exc.message, messages.ERROR)


class WebhookAttemptInline(admin.TabularInline):
    """The requests made for one delivery."""

    model = WebhookAttempt
    extra = 0
    can_delete = False
    readonly_fields = ["number", "started_at", "succeeded", "status_code", "response_ms", "error", "response_excerpt"]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    """Deliveries with their attempts; read-only."""

    list_display = ["message_id", "endpoint", "task_id", "event_type", "status", "attempts", "next_attempt_at"]
    list_filter = ["status", "event_type"]
    search_fields = ["message_id", "task_id", "endpoint__url"]
    inlines = [WebhookAttemptInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Deliveries come from task events only."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        """Read-only: the workers write deliveries."""
        return False
