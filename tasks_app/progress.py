"""The one TaskProgress serializer: polling endpoint, stream snapshot and every event."""

from __future__ import annotations

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

    class Meta:
        model = Task
        fields = ["task_id", "state", "progress", "estimated_time", "updated_at", "stage",
                  "error", "attempts"]
        read_only_fields = fields


def task_progress(task: Task) -> dict[str, Any]:
    """TaskProgress payload of a task, as a plain dict."""
    data = dict(TaskProgressSerializer(task).data)
    if task.state not in (Task.State.PROCESSING,):
        data["estimated_time"] = None
    return data
