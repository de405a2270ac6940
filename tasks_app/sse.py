"""SSE channels: who may read them, how a stream opens (auth, snapshot, replay), publishing."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django_eventstream.channelmanager import ChannelManagerBase
from django_eventstream.event import Event
from django_eventstream.models import Event as StoredEvent
from django_eventstream.models import EventCounter
from django_eventstream.utils import get_storage, make_id
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken

from .api.progress import task_progress
from .exceptions import NotFound, Unauthenticated
from .models import Task, user_channel
from .selectors import tasks_visible_to

logger = logging.getLogger(__name__)

PROGRESS = "progress"
COMPLETE = "complete"
TOKEN_COOKIE = "sse_token"


class TaskChannelManager(ChannelManagerBase):
    """Channel `task-<id>` is readable by the task's owner and staff; `user-<id>` by that user."""

    def get_channels_for_request(self, request: Any, view_kwargs: dict) -> set[str]:
        """Channels named by the URL."""
        if "task_id" in view_kwargs:
            return {f"task-{view_kwargs['task_id']}"}
        user = getattr(request, "user", None)
        return {user_channel(user.pk)} if user and user.is_authenticated else set()

    def can_read_channel(self, user: Any, channel: str) -> bool:
        """Deny unless the user owns what the channel carries (staff read every task)."""
        if user is None or not user.is_authenticated:
            return False
        if channel.startswith("task-"):
            return tasks_visible_to(user).filter(pk=channel[len("task-"):]).exists()
        if channel.startswith("user-"):
            return channel == user_channel(user.pk)
        return False

    def is_channel_reliable(self, channel: str) -> bool:
        """Every channel is stored, so reconnects can replay."""
        return True


# ----------------------------------------------------------------- publishing


def publish_task(task: Task, *, created: bool = False) -> None:
    """Store the task's TaskProgress (and `complete` when terminal) on its channels.

    The events are written inside the caller's transaction: the channel counter row stays
    locked until commit, so event ids follow commit order, and a rollback takes the events
    with it. Live subscribers are woken only after commit.
    """
    payload = task_progress(task)
    storage = get_storage()
    events: list[Event] = []
    with transaction.atomic():
        for channel in (task.channel, user_channel(task.owner_id)):
            if created:
                # A new task's channels may have no counter yet: create it in its own
                # savepoint, so a concurrent first insert cannot break the outer
                # transaction with an IntegrityError. Later saves find it in place.
                EventCounter.objects.get_or_create(name=channel)
            events.append(storage.append_event(channel, PROGRESS, payload))
            if task.is_terminal:
                events.append(storage.append_event(channel, COMPLETE, payload))
    transaction.on_commit(lambda: notify(events))


def notify(events: list[Event]) -> None:
    """Tell stream hubs that events were committed: over Redis when set, else in-process."""
    from django_eventstream.eventstream import redis_client

    if redis_client is not None:
        try:
            for event in events:
                message = {"channel": event.channel, "event_type": event.type,
                           "data": json.dumps(event.data, cls=DjangoJSONEncoder),
                           "pub_id": str(event.id)}
                redis_client.publish(settings.SSE_REDIS_CHANNEL, json.dumps(message))
        except Exception:  # noqa: BLE001 - hubs still find the events by polling storage
            logger.warning("Redis publish failed; streams fall back to polling", exc_info=True)
        return
    from .fanout import local_hub_wake

    local_hub_wake({event.channel for event in events})


# --------------------------------------------------------------- opening streams


@dataclass
class Credentials:
    """What a stream request carries to prove who it is."""

    bearer: str | None = None
    cookie_token: str | None = None
    ticket: str | None = None


@dataclass
class StreamOpening:
    """Everything a stream needs before its first byte: who, what, and what to send first."""

    user_id: int
    channel: str
    status: int = 200
    snapshot: list[dict] = field(default_factory=list)
    snapshot_id: str | None = None
    # Events to send after the snapshot; all have ids above `last_id`, the id the client
    # is known to have (or, on a fresh connect, the id the snapshot stands for).
    replay: list[Event] = field(default_factory=list)
    last_id: int = 0
    finished: bool = False


def authenticate(credentials: Credentials, *, task_id: str | None) -> Any:
    """Return the user the credentials name, or raise Unauthenticated (401)."""
    if credentials.ticket:
        from .tickets import redeem_ticket

        return redeem_ticket(credentials.ticket, task_id=task_id)
    raw = credentials.bearer or credentials.cookie_token
    if not raw:
        raise Unauthenticated()
    auth = JWTAuthentication()
    try:
        token = auth.get_validated_token(raw.encode())
        user = auth.get_user(token)
    except (InvalidToken, AuthenticationFailed) as exc:
        raise Unauthenticated("Token is invalid or expired.", code="token_not_valid") from exc
    return user


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


def events_after(channel: str, last_id: int, limit: int = 1000) -> list[Event]:
    """Stored events of a channel with ids above `last_id`, oldest first."""
    rows = (StoredEvent.objects.filter(channel=channel, eid__gt=last_id)
            .order_by("eid")[:limit])
    return [Event(row.channel, row.type, json.loads(row.data), id=row.eid) for row in rows]


def current_event_id(channel: str) -> int:
    """Id of the newest stored event of a channel (0 when none)."""
    counter = EventCounter.objects.filter(name=channel).values_list("value", flat=True).first()
    return counter or 0


def open_task_stream(credentials: Credentials, task_id: str,
                     last_event_raw: str | None) -> StreamOpening:
    """Authorize a per-task stream and read its snapshot and the events the client missed."""
    user = authenticate(credentials, task_id=task_id)
    channel = f"task-{task_id}"
    last_seen = parse_last_event_id(last_event_raw, channel)
    # Read the counter before the task: the snapshot is then at least as new as the
    # counter, and every event after it is sent live, so nothing committed is missed.
    # (The counter reveals nothing: an unreadable task is refused right after.)
    current = current_event_id(channel)
    task = tasks_visible_to(user).filter(pk=task_id).first()
    if task is None:
        raise NotFound(f"Task {task_id} not found.", field="task_id")
    opening = StreamOpening(user_id=user.pk, channel=channel, last_id=current,
                            snapshot=[task_progress(task)])
    if last_seen is not None and last_seen <= current:
        opening.replay = events_after(channel, last_seen)
        if task.is_terminal and not opening.replay:
            last = StoredEvent.objects.filter(channel=channel).order_by("-eid").first()
            if last is not None and last.type == COMPLETE:
                opening.status = 204  # the client already saw `complete`
                return opening
        opening.last_id = last_seen
        return opening
    if task.is_terminal:
        # A finished task: send the stored `complete` (with its id) after the snapshot.
        last_complete = (StoredEvent.objects.filter(channel=channel, type=COMPLETE)
                         .order_by("-eid").first())
        if last_complete is not None:
            opening.replay = [Event(channel, COMPLETE, json.loads(last_complete.data),
                                    id=last_complete.eid)]
            opening.last_id = last_complete.eid - 1
            return opening
    opening.snapshot_id = make_id({channel: current})
    return opening


def open_user_stream(credentials: Credentials, last_event_raw: str | None) -> StreamOpening:
    """Authorize the caller's all-tasks stream; snapshot every unfinished task."""
    user = authenticate(credentials, task_id=None)
    channel = user_channel(user.pk)
    last_seen = parse_last_event_id(last_event_raw, channel)
    current = current_event_id(channel)
    tasks = Task.objects.filter(owner_id=user.pk).exclude(state__in=Task.TERMINAL)
    opening = StreamOpening(user_id=user.pk, channel=channel, last_id=current,
                            snapshot=[task_progress(t) for t in tasks.order_by("created_at")])
    if last_seen is not None and last_seen <= current:
        opening.replay = events_after(channel, last_seen)
        opening.last_id = last_seen
    else:
        opening.snapshot_id = make_id({channel: current})
    return opening

