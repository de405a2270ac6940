"""Per-process stream hub: one watcher of the stored events fans them out to open streams.

Every change is stored (django-eventstream's DjangoModelStorage) before anyone is told, so
the database is the source of truth and a stream can always catch up from it. The hub
learns that a channel moved in one of three ways: an in-process wake (the change was made
by this process), a Redis pub/sub message (EVENTSTREAM_REDIS set: any process, any
machine), or a short poll of the channel counters (the embedded default, and a safety net
for lost pub/sub messages). Each poll is one short query on a pooled thread that gives its
connection back, so open streams hold neither a thread nor a database connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field

from channels.db import database_sync_to_async
from django.conf import settings
from django.db.models import Q
from django_eventstream.event import Event
from django_eventstream.models import Event as StoredEvent
from django_eventstream.models import EventCounter

from .exceptions import TooManyStreams

logger = logging.getLogger(__name__)

# A marker put on a subscription's queue: "read the storage, you may have missed something".
CATCH_UP = None


@dataclass(eq=False)
class Subscription:
    """One open stream's place in the hub: its channel, user, and the last id it sent."""

    channel: str
    user_id: int
    last_id: int
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)


class Hub:
    """Watches the channels that have open streams in this process and feeds them."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.subscriptions: dict[str, set[Subscription]] = defaultdict(set)
        self.seen: dict[str, int] = {}
        self.per_user: dict[int, int] = defaultdict(int)
        self.wake = asyncio.Event()
        self.tasks: list[asyncio.Task] = []

    def subscribe(self, channel: str, user_id: int, last_id: int) -> Subscription:
        """Register a stream; raise TooManyStreams past the per-user limit."""
        if self.per_user[user_id] >= settings.SSE_MAX_STREAMS_PER_USER:
            raise TooManyStreams(
                f"At most {settings.SSE_MAX_STREAMS_PER_USER} open streams per user.")
        self._start()
        sub = Subscription(channel, user_id, last_id)
        self.per_user[user_id] += 1
        self.subscriptions[channel].add(sub)
        seen = self.seen.setdefault(channel, last_id)
        if seen > last_id:
            # The hub already dispatched events this stream has not sent yet.
            sub.queue.put_nowait(CATCH_UP)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Forget a closed stream."""
        subs = self.subscriptions.get(sub.channel)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self.subscriptions[sub.channel]
                self.seen.pop(sub.channel, None)
        self.per_user[sub.user_id] -= 1
        if self.per_user[sub.user_id] <= 0:
            del self.per_user[sub.user_id]

    def _start(self) -> None:
        if self.tasks and self.loop is asyncio.get_running_loop():
            return
        self.loop = asyncio.get_running_loop()
        self.wake = asyncio.Event()
        self.tasks = [self.loop.create_task(self._watch())]
        if getattr(settings, "EVENTSTREAM_REDIS", None):
            self.tasks.append(self.loop.create_task(self._listen_redis()))

    async def _watch(self) -> None:
        interval = settings.SSE_POLL_SECONDS
        if getattr(settings, "EVENTSTREAM_REDIS", None):
            interval = max(interval, 2.0)  # Redis wakes us; polling is only the safety net
        while True:
            try:
                await asyncio.wait_for(self.wake.wait(), timeout=interval)
            except asyncio.TimeoutError:
                pass
            self.wake.clear()
            if not self.subscriptions:
                continue
            try:
                await self._poll()
            except Exception:  # noqa: BLE001 - a failed poll is retried on the next tick
                logger.exception("Polling stored events failed")

    async def _poll(self) -> None:
        watched = dict(self.seen)
        fresh = await _read_new_events(watched)
        for channel, events in fresh.items():
            if channel not in self.seen or not events:
                continue
            self.seen[channel] = max(self.seen[channel], events[-1].id)
            for sub in list(self.subscriptions.get(channel, ())):
                sub.queue.put_nowait(events)

    async def _listen_redis(self) -> None:
        from redis.asyncio import Redis

        while True:
            try:
                client = Redis(**settings.EVENTSTREAM_REDIS)
                pubsub = client.pubsub()
                await pubsub.subscribe(settings.SSE_REDIS_CHANNEL)
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    channel = json.loads(message["data"]).get("channel")
                    if channel in self.subscriptions:
                        self.wake.set()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - reconnect; polling covers the gap
                logger.warning("Redis listener lost its connection; retrying", exc_info=True)
                await asyncio.sleep(1.0)


@database_sync_to_async
def _read_new_events(seen: dict[str, int]) -> dict[str, list[Event]]:
    """One counter query for every watched channel, one event query for those that moved."""
    counters = dict(EventCounter.objects.filter(name__in=list(seen))
                    .values_list("name", "value"))
    moved = {name: seen[name] for name, value in counters.items() if value > seen[name]}
    if not moved:
        return {}
    query = Q()
    for name, last in moved.items():
        query |= Q(channel=name, eid__gt=last)
    out: dict[str, list[Event]] = defaultdict(list)
    for row in StoredEvent.objects.filter(query).order_by("channel", "eid")[:5000]:
        out[row.channel].append(Event(row.channel, row.type, json.loads(row.data), id=row.eid))
    return out


_hub: Hub | None = None


def get_hub() -> Hub:
    """The hub of this process."""
    global _hub
    if _hub is None:
        _hub = Hub()
    return _hub


def local_hub_wake(channels: set[str]) -> None:
    """Wake this process's hub (if it serves any of `channels`) from any thread."""
    hub = _hub
    if hub is None or hub.loop is None or hub.loop.is_closed():
        return
    if any(channel in hub.subscriptions for channel in channels):
        hub.loop.call_soon_threadsafe(hub.wake.set)
