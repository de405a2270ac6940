"""Audio files and processing tasks, with the task state machine written once."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models

from .streams.names import task_channel

# The webhook models live in their package; imported here so Django registers them.
from .webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint  # noqa: F401


def new_task_id() -> str:
    """Return a fresh opaque public task id."""
    return f"task_{secrets.token_hex(10)}"


def audio_upload_to(instance: AudioFile, filename: str) -> str:
    """Store uploads per owner under a random name, keeping the extension."""
    ext = filename.rsplit(".", 1)[-1].lower()[:8] if "." in filename else "bin"
    return f"audio/{instance.owner_id}/{secrets.token_hex(12)}.{ext}"


class AudioFile(models.Model):
    """An uploaded audio file and the facts probed from it."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="audio_files")
    file = models.FileField(upload_to=audio_upload_to, max_length=255)
    original_name = models.CharField(max_length=255)
    size = models.BigIntegerField()
    format = models.CharField(max_length=32)
    codec = models.CharField(max_length=32, blank=True)
    duration = models.FloatField(help_text="Seconds.")
    sample_rate = models.PositiveIntegerField()
    channels = models.PositiveSmallIntegerField()
    bit_rate = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.original_name} ({self.duration:.1f} s)"


class Task(models.Model):
    """A processing job on one audio file, observed live through its SSE channel."""

    class State(models.TextChoices):
        PENDING = "pending"
        PROCESSING = "processing"
        COMPLETED = "completed"
        FAILED = "failed"
        CANCELLED = "cancelled"

    # The one table of allowed transitions; services refuse anything else.
    TRANSITIONS: dict[str, frozenset[str]] = {
        State.PENDING: frozenset({State.PROCESSING, State.CANCELLED}),
        State.PROCESSING: frozenset({State.COMPLETED, State.FAILED, State.CANCELLED}),
        State.FAILED: frozenset({State.PENDING}),
        State.CANCELLED: frozenset({State.PENDING}),
        State.COMPLETED: frozenset(),
    }
    # Recovery only (a worker died or handed its task back), never through the API: a
    # processing task goes back to pending for another attempt.
    RECOVERY_TRANSITIONS: dict[str, frozenset[str]] = {State.PROCESSING: frozenset({State.PENDING})}
    TERMINAL: frozenset[str] = frozenset({State.COMPLETED, State.FAILED, State.CANCELLED})

    id = models.CharField(primary_key=True, max_length=40, default=new_task_id, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="tasks")
    # RESTRICT, not PROTECT: an audio file in use cannot be deleted on its own, but deleting
    # its owner (which cascades to both) deletes the tasks along with it.
    audio_file = models.ForeignKey(AudioFile, on_delete=models.RESTRICT, related_name="tasks")
    kind = models.CharField(max_length=32, default="analyze")
    options = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING, db_index=True)
    progress = models.FloatField(default=0.0)
    stage = models.CharField(max_length=32, blank=True, default="")
    estimated_time = models.FloatField(null=True, blank=True, help_text="Seconds left.")
    result = models.JSONField(null=True, blank=True)
    # Bytes its artifacts take in storage: counted against the owner's quota (`quota.py`).
    output_bytes = models.BigIntegerField(default=0)
    # The contract's TaskProgress has `error: null` until a task fails, not an empty string.
    error = models.TextField(null=True, blank=True)  # noqa: DJ001
    attempts = models.PositiveIntegerField(default=0)
    job_id = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["owner", "state"])]

    def __str__(self) -> str:
        return f"{self.id} {self.kind} {self.state}"

    @property
    def is_terminal(self) -> bool:
        """True once the task can change no further (until a retry)."""
        return self.state in self.TERMINAL

    @classmethod
    def can_transition(cls, old: str, new: str) -> bool:
        """Whether the state machine allows `old` → `new`."""
        return new in cls.TRANSITIONS.get(old, frozenset())

    @classmethod
    def can_recover(cls, old: str, new: str) -> bool:
        """Whether recovery (not the API) may move a task from `old` to `new`."""
        return new in cls.RECOVERY_TRANSITIONS.get(old, frozenset())

    @property
    def channel(self) -> str:
        """Name of this task's SSE channel."""
        return task_channel(self.id)


class StreamTicket(models.Model):
    """A one-time pass to open one task's stream (or the user's stream) without a header."""

    key = models.CharField(primary_key=True, max_length=64)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    task_id = models.CharField(max_length=40, blank=True, default="")
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"ticket for {self.task_id or 'all tasks'} of user {self.user_id}"
