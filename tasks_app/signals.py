"""Signal receivers: every saved Task change is published to its SSE channels."""

from __future__ import annotations

from typing import Any

from .models import Task
from .sse import publish_task


def task_saved(sender: type[Task], instance: Task, created: bool, **kwargs: Any) -> None:
    """Publish the task's TaskProgress; subscribers are woken once the change commits."""
    publish_task(instance, created=created)
