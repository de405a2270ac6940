"""SSE channels: publishing task changes, and how a stream opens (auth, snapshot, resume point).

A task's channel (`streams.names`) carries its events and is readable by its owner and staff;
a user's channel carries every task of one user (and the user's revocation) and is readable
by that user only. Every event is stored in the log (`streams.log`) inside the transaction of
the change it reports; streams are told only after commit (`streams.publish.notify`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken

from .api.authentication import JWTAuthentication
from .api.exceptions import describe
from .exceptions import NotFound, Unauthenticated
from .metrics import SSE_EVENTS_PUBLISHED
from .models import Task
from .progress import task_progress
from .selectors import task_for_stream
from .streams import log
from .streams.log import COMPLETE, DELETED, ERROR, PROGRESS, LogEvent
from .streams.names import task_channel, user_channel
from .streams.publish import notify
from .tickets import redeem_ticket

TOKEN_COOKIE = "sse_token"


# ----------------------------------------------------------------- publishing


def _publish(events: list[LogEvent]) -> None:
    events = list(events)
    SSE_EVENTS_PUBLISHED.inc(len(events))
    transaction.on_commit(lambda: notify(events))


def publish_task(task: Task, *, created: bool = False) -> None:
    """Store the task's TaskProgress (and `complete` when terminal) on its channels.

    The events are written inside the caller's transaction: the channel counter row stays
    locked until commit, so event ids follow commit order, and a rollback takes the events
    with it. Live subscribers are told only after commit.
    """
    data = _json(task_progress(task))
    events: list[LogEvent] = []
    with transaction.atomic(savepoint=False):  # one transaction with the change, no savepoint
        for channel in (task.channel, user_channel(task.owner_id)):
            events.append(log.append(channel, PROGRESS, data))
            if task.is_terminal:
                events.append(log.append(channel, COMPLETE, data))
    _publish(events)


def publish_task_deleted(task_id: str, owner_id: int) -> None:
    """End the task's streams with a final `error` (code `deleted`); tell the owner's stream."""
    channel = task_channel(task_id)
    with transaction.atomic():
        events = [
            log.append(channel, ERROR, _json({"code": "deleted", "message": f"Task {task_id} was deleted."})),
            log.append(user_channel(owner_id), DELETED, _json({"task_id": task_id})),
        ]
    _publish(events)


def publish_user_revoked(user_id: int, message: str = "The user was deactivated or deleted. Sign in again.") -> None:
    """End every stream of a user whose credentials were revoked with `error` (`unauthenticated`)."""
    with transaction.atomic():
        # `at` lets every hub tell streams opened before the revocation from those opened after it.
        payload = {"code": "unauthenticated", "message": message, "at": round(time.time(), 3)}
        event = log.append(user_channel(user_id), ERROR, _json(payload))
    _publish([event])


def _json(data: Any) -> str:
    return json.dumps(data, cls=DjangoJSONEncoder, separators=(",", ":"))


# --------------------------------------------------------------- opening streams


@dataclass
class Credentials:
    """What a stream request carries to prove who it is."""

    bearer: str | None = None
    cookie_token: str | None = None
    ticket: str | None = None


@dataclass
class Caller:
    """Who opened a stream, and until when their credentials hold (epoch seconds)."""

    user: Any
    expires_at: float | None


@dataclass
class StreamOpening:
    """Everything a stream needs before its first byte."""

    caller: Caller
    channel: str
    # The channel's newest id when the stream opened, and the id the client has.
    current: int
    last_id: int
    head: bytes = b""
    status: int = 200
    # A finished task: send stored events up to `current - 1`, then `tail`, then end.
    finished: bool = False
    tail: bytes = b""


def authenticate(credentials: Credentials, *, task_id: str | None) -> Caller:
    """Return who the credentials name and until when, or raise Unauthenticated (401)."""
    if credentials.ticket:
        user = redeem_ticket(credentials.ticket, task_id=task_id)
        # A ticket opens a stream once; the stream then lives as long as an access token.
        lifetime = settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"].total_seconds()
        return Caller(user, time.time() + lifetime)
    raw = credentials.bearer or credentials.cookie_token
    if not raw:
        raise Unauthenticated()
    auth = JWTAuthentication()
    try:
        token = auth.get_validated_token(raw.encode())
        user = auth.get_user(token)
    except (InvalidToken, AuthenticationFailed) as exc:
        # The API's words for the same token (its exception handler reads them the same way).
        code, message, _ = describe(exc)
        raise Unauthenticated(message, code=code) from exc
    expires = token.get("exp")
    return Caller(user, float(expires) if isinstance(expires, int | float) else None)


def parse_last_event_id(raw: str | None, channel: str) -> int | None:
    """Read a Last-Event-ID in django-eventstream's `channel:id` form (or a bare number)."""
    if not raw:
        return None
    for part in raw.split(","):
        name, _, value = part.rpartition(":")
        value = value.strip()
        if (not name or unquote(name) == channel) and value.isascii() and value.isdigit():
            return int(value)
    return None


def open_task_stream(credentials: Credentials, task_id: str, last_event_raw: str | None) -> StreamOpening:
    """Authorize a per-task stream and decide what it sends first and where it resumes."""
    caller = authenticate(credentials, task_id=task_id)
    channel = task_channel(task_id)
    last_seen = parse_last_event_id(last_event_raw, channel)
    # The task and its channel's newest id in one statement, so from one snapshot of the
    # database: every event after `current` is sent live, so nothing committed is missed.
    task = task_for_stream(caller.user, task_id, channel)
    if task is None:
        raise NotFound(f"Task {task_id} not found.", field="task_id")
    current = task.current or 0
    resuming = last_seen is not None and last_seen <= current
    snapshot = _json(task_progress(task))
    opening = StreamOpening(caller, channel, current, last_seen if resuming else current)
    if task.is_terminal:
        if resuming and last_seen >= current:
            opening.status = 204  # the client already has the final `complete`
            return opening
        # The final `complete` comes from the task itself, not from the log, so a stream
        # ends honestly however long ago the task finished and whatever was trimmed.
        opening.finished = True
        # As on a live task, a new client's snapshot carries the id to resume from (a resuming
        # client keeps its own): short of the final `complete`, so a reconnect still gets it.
        opening.head = log.frame(PROGRESS, snapshot, None if resuming else f"{channel}:{max(0, current - 1)}")
        opening.tail = log.frame(COMPLETE, snapshot, f"{channel}:{current}")
        return opening
    opening.head = log.frame(PROGRESS, snapshot, None if resuming else f"{channel}:{current}")
    return opening


def authenticate_user_stream(credentials: Credentials) -> Caller:
    """Who opens the all-tasks stream (its channel depends on the answer)."""
    return authenticate(credentials, task_id=None)


def open_user_stream(caller: Caller, last_event_raw: str | None) -> StreamOpening:
    """Snapshot every unfinished task of the caller and decide where the stream resumes."""
    channel = user_channel(caller.user.pk)
    last_seen = parse_last_event_id(last_event_raw, channel)
    current = log.current_id(channel)
    resuming = last_seen is not None and last_seen <= current
    event_id = None if resuming else f"{channel}:{current}"
    tasks = Task.objects.filter(owner_id=caller.user.pk).exclude(state__in=Task.TERMINAL).order_by("created_at")
    head = b"".join(log.frame(PROGRESS, _json(task_progress(t)), event_id) for t in tasks)
    return StreamOpening(caller, channel, current, last_seen if resuming else current, head=head)
