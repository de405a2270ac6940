"""Signal receivers: every saved or deleted Task, and every revoked user, reaches the streams."""

from __future__ import annotations

from typing import Any

from .models import Task
from .sse import publish_task, publish_task_deleted, publish_user_revoked


def task_saved(sender: type[Task], instance: Task, created: bool, **kwargs: Any) -> None:
    """Publish the task's TaskProgress; subscribers are told once the change commits."""
    publish_task(instance, created=created)


def task_deleted(sender: type[Task], instance: Task, **kwargs: Any) -> None:
    """End the task's open streams with a final `deleted` error (after commit)."""
    publish_task_deleted(instance.pk, instance.owner_id)


def user_saved(sender: type, instance: Any, created: bool, **kwargs: Any) -> None:
    """A deactivated user's open streams end with `unauthenticated`."""
    if not created and not instance.is_active:
        publish_user_revoked(instance.pk)


def user_deleted(sender: type, instance: Any, **kwargs: Any) -> None:
    """A deleted user's open streams end with `unauthenticated`."""
    publish_user_revoked(instance.pk)
