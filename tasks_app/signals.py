"""Signal receivers: every saved or deleted Task, and every revoked user, reaches the streams."""

from __future__ import annotations

from typing import Any

from .accounts import revoke_tokens
from .models import Task
from .sse import publish_task, publish_task_deleted, publish_user_revoked


def task_saved(sender: type[Task], instance: Task, created: bool, **kwargs: Any) -> None:
    """Publish the task's TaskProgress; subscribers are told once the change commits."""
    publish_task(instance, created=created)


def task_deleted(sender: type[Task], instance: Task, **kwargs: Any) -> None:
    """End the task's open streams with a final `deleted` error (after commit)."""
    publish_task_deleted(instance.pk, instance.owner_id)


def user_saving(sender: type, instance: Any, update_fields: Any = None, **kwargs: Any) -> None:
    """Note whether this save changes the user's password (`user_saved` revokes on it)."""
    instance.password_changed_on_save = (
        instance.pk is not None
        and (update_fields is None or "password" in update_fields)
        and sender.objects.filter(pk=instance.pk).exclude(password=instance.password).exists()
    )


def user_saved(sender: type, instance: Any, created: bool, **kwargs: Any) -> None:
    """A deactivated user, or one whose password changed, loses every refresh token and stream."""
    if created:
        return
    if not instance.is_active:
        revoke_tokens(user_id=instance.pk, reason="The user was deactivated. Sign in again.")
    elif getattr(instance, "password_changed_on_save", False):
        revoke_tokens(user_id=instance.pk, reason="The user's password was changed. Sign in again.")


def user_deleted(sender: type, instance: Any, **kwargs: Any) -> None:
    """A deleted user's open streams end with `unauthenticated`."""
    publish_user_revoked(instance.pk)
