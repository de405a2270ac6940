"""The one TaskProgress serializer: polling endpoint, stream snapshot and every event."""

from __future__ import annotations

from functools import cache
from typing import Any

from rest_framework import serializers

from .models import Task

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


class TaskProgressSerializer(serializers.ModelSerializer):
    """Where a task stands: state, progress 0–100, stage, ETA in seconds, error."""

    task_id = serializers.CharField(source="id", read_only=True)
    updated_at = serializers.DateTimeField(format=TIMESTAMP_FORMAT, read_only=True)
    estimated_time = serializers.FloatField(allow_null=True, read_only=True)
    error = serializers.CharField(allow_null=True, read_only=True)
    warnings = serializers.SerializerMethodField(
        help_text="A completed task's result warnings ({code, message}): what was repaired, or how "
        "far the result is from what was asked. Empty otherwise."
    )

    class Meta:
        model = Task
        fields = [
            "task_id",
            "state",
            "progress",
            "estimated_time",
            "updated_at",
            "stage",
            "error",
            "attempts",
            "warnings",
        ]
        read_only_fields = fields

    def get_warnings(self, task: Task) -> list[dict[str, str]]:
        """The result's warnings once completed, so a client that only follows the stream sees them."""
        if task.state != Task.State.COMPLETED or not isinstance(task.result, dict):
            return []
        return list(task.result.get("warnings") or [])


@cache
def _serializer() -> TaskProgressSerializer:
    # Built once: a serializer's fields are deep-copied per instance, a cost paid on every
    # stream connect and every progress event otherwise. `to_representation` only reads them.
    serializer = TaskProgressSerializer()
    serializer.fields  # noqa: B018 - built now, before threads share it
    return serializer


def task_progress(task: Task) -> dict[str, Any]:
    """TaskProgress payload of a task, as a plain dict."""
    data = dict(_serializer().to_representation(task))
    if task.state not in (Task.State.PROCESSING,):
        data["estimated_time"] = None
    return data
