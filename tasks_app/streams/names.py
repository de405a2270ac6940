"""Channel names: `task-<id>` carries one task's events, `user-<id>` every task of one user."""

from __future__ import annotations

TASK_PREFIX = "task-"
USER_PREFIX = "user-"


def task_channel(task_id: object) -> str:
    """Name of one task's channel."""
    return f"{TASK_PREFIX}{task_id}"


def user_channel(user_id: int) -> str:
    """Name of the channel that carries every task of one user (and the user's revocation)."""
    return f"{USER_PREFIX}{user_id}"


def task_of(channel: str) -> str | None:
    """The task id a task channel names, or None for any other channel."""
    return channel[len(TASK_PREFIX) :] if channel.startswith(TASK_PREFIX) else None


def user_of(channel: str) -> int | None:
    """The user id a user channel names, or None for any other channel."""
    if not channel.startswith(USER_PREFIX):
        return None
    try:
        return int(channel[len(USER_PREFIX) :])
    except ValueError:
        return None
