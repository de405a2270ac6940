"""Webhook endpoints, the deliveries owed to them, and each attempt at sending one."""

from __future__ import annotations

import base64
import secrets

from django.conf import settings
from django.db import models

SECRET_PREFIX = "whsec_"


def new_endpoint_id() -> str:
    """Return a fresh opaque public endpoint id."""
    return f"wh_{secrets.token_hex(10)}"


def new_message_id() -> str:
    """Return a fresh `webhook-id`: the same for one event across all its retries."""
    return f"msg_{secrets.token_hex(12)}"


def new_secret() -> str:
    """A signing secret as the Standard Webhooks spec writes it: `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


class WebhookEndpoint(models.Model):
    """A URL of a user's backend that receives the task events it subscribed to."""

    class Event(models.TextChoices):
        COMPLETED = "task.completed"
        FAILED = "task.failed"
        CANCELLED = "task.cancelled"
        PROGRESS = "task.progress"

    id = models.CharField(primary_key=True, max_length=40, default=new_endpoint_id, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=2000)
    events = models.JSONField(default=list)
    description = models.CharField(max_length=200, blank=True, default="")
    secret = models.CharField(max_length=100, default=new_secret)
    # After a rotation the old secret still signs (a second signature) until it expires.
    previous_secret = models.CharField(max_length=100, blank=True, default="")
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    is_active = models.BooleanField(default=True)
    disabled_reason = models.TextField(blank=True, default="")
    # Start of the current run of failed attempts; cleared by any success.
    failing_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.id} {self.url}"


class WebhookDelivery(models.Model):
    """One event owed to one endpoint: its body is fixed when the event happens."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SENDING = "sending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        # A progress event overtaken by the task's final event before it could be sent.
        SKIPPED = "skipped"

    # The integer key orders a task's deliveries; `message_id` is the public id.
    message_id = models.CharField(max_length=40, unique=True, default=new_message_id, editable=False)
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    # Not a foreign key: a delivery outlives its task (a deleted task's events are still owed).
    task_id = models.CharField(max_length=40, db_index=True)
    event_type = models.CharField(max_length=32, choices=WebhookEndpoint.Event.choices)
    body = models.TextField(help_text="The JSON sent, exactly as signed.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # While `sending`: until when the claiming worker owns this attempt; past it, another may.
    claimed_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()
    # Failed attempts are retried until this time, then the delivery is `failed`.
    retry_until = models.DateTimeField()
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_response_ms = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"]),
            models.Index(fields=["endpoint", "task_id", "status"]),
        ]
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"{self.message_id} {self.event_type} {self.status}"


class WebhookAttempt(models.Model):
    """One HTTP request made for a delivery, and how it ended."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    succeeded = models.BooleanField(default=False)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    response_ms = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    response_excerpt = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["delivery", "number"]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.delivery_id}"
