"""Per-process stream hub: committed events reach open streams without a database read.

The hub hears of committed events three ways, each carrying the whole event:

- in-process, when this process made the change (the publisher calls `notify`);
- Redis pub/sub (`EVENTSTREAM_REDIS`), from any process on any machine;
- a poll of the log's newest rows by row id: one indexed range query per tick, whatever the
  number of open streams. It is the embedded default's path from the worker to the server
  (SQLite, no other server to run), and the safety net behind Redis.

Each watched channel keeps a short ring of recent events, framed once. The hub writes the
same bytes to every caught-up client itself (`Hub.push`, through `streaming.Wire`), so an
event costs no task wake-up per stream; a stream's own task reads storage only when it is
behind the ring: on connect, on replay, after a gap, or when its client stopped reading for a
while. Streams hold no buffer of their own, so a client that stops reading costs nothing here
while it is away.
"""

from __future__ import annotations

import asyncio
import gc
import heapq
import itertools
import json
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

import redis
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection

from .events import COMPLETE, ERROR, LogEvent, events_after, frame, latest_row_id, rows_after
from .exceptions import TooManyStreams
from .metrics import SSE_EVENTS_DELIVERED, SSE_OPEN_STREAMS
from .streaming import Wire

logger = logging.getLogger(__name__)

T = TypeVar("T")

RING_SIZE = 256
# Events a stream writes at once: small writes let a slow client's buffer stay small.
BATCH = 32
KEEPALIVE = b": keep-alive\n\n"
# How long a hole in the row ids (an insert not committed yet, on PostgreSQL) is looked for.
HOLE_SECONDS = 10.0
# Users revoked this recently are refused by streams still opening (see `subscribe`).
REVOKED_SECONDS = 60.0
FREEZE_EVERY_STREAMS = 50
LOOKBACK_ROWS = 1000


# ------------------------------------------------------------------ database work

_pool: ThreadPoolExecutor | None = None


def _call(fn: Callable[..., T], args: tuple, kwargs: dict) -> T:
    try:
        return fn(*args, **kwargs)
    except (OperationalError, InterfaceError):
        connection.close()  # a broken connection is reopened by the next call
        raise


async def run_db(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ORM code for streams on their own thread pool, each thread keeping its connection.

    Never on asgiref's single thread-sensitive executor: a reconnect storm must not queue
    behind one thread, nor delay every other request's database work.
    """
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(settings.SSE_DB_THREADS, thread_name_prefix="sse-db")
    return await asyncio.get_running_loop().run_in_executor(_pool, partial(_call, fn, args, kwargs))


# -------------------------------------------------------------------- the hub


class Channel:
    """A watched channel: its subscriptions and a ring of its newest events."""

    __slots__ = ("name", "subs", "holders", "ring", "last", "pending", "filling")

    def __init__(self, name: str) -> None:
        self.name = name
        self.subs: set[Subscription] = set()
        self.holders = 0
        # (eid, type, frame) of contiguous ids ending at `last`.
        self.ring: deque[tuple[int, str, bytes]] = deque(maxlen=RING_SIZE)
        self.last: int | None = None
        self.pending: list[LogEvent] = []
        self.filling = False


class Subscription:
    """One open stream: where it is in its channel, and how it must end."""

    __slots__ = (
        "channel",
        "user_id",
        "last_id",
        "ends_on_complete",
        "wake",
        "final",
        "ended",
        "keepalive",
        "last_write",
        "wire",
    )

    def __init__(self, channel: Channel, user_id: int, last_id: int, ends_on_complete: bool) -> None:
        self.channel = channel
        self.user_id = user_id
        self.last_id = last_id
        self.ends_on_complete = ends_on_complete
        self.wake = asyncio.Event()
        self.final: bytes | None = None
        # Set when the hub wrote the stream's last event itself: the stream just ends.
        self.ended = False
        self.keepalive = False
        self.last_write = time.monotonic()
        # Set while the stream is caught up and waiting: the hub may write to the client
        # directly (see `Hub.push`) until it wakes the stream.
        self.wire: Wire | None = None


def error_frame(code: str, message: str) -> bytes:
    """A final `error` event (no id: the client resumes after the last event it had)."""
    return frame(ERROR, json.dumps({"code": code, "message": message}))


EXPIRED = error_frame(
    "unauthenticated", "The credentials of this stream expired. Reconnect with fresh credentials and Last-Event-ID."
)
REVOKED = error_frame("unauthenticated", "The user of this stream was deactivated or deleted.")


class Hub:
    """Feeds the open streams of this process from committed events."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.channels: dict[str, Channel] = {}
        self.by_user: dict[int, set[Subscription]] = {}
        self.expiries: list[tuple[float, int, Subscription]] = []
        self.revoked: dict[int, float] = {}
        self.counter = itertools.count()
        self.tasks: list[asyncio.Task] = []
        self.frozen_for = 0
        # How many streams this process serves (read on every connect: kept, not summed).
        self.open_streams = 0

    # -- streams

    def acquire(self, name: str) -> Channel:
        """Start watching a channel before its log is read, so no event falls in between."""
        self._start()
        channel = self.channels.get(name)
        if channel is None:
            channel = self.channels[name] = Channel(name)
        channel.holders += 1
        return channel

    def release(self, channel: Channel) -> None:
        """Stop watching a channel acquired by a stream that did not start or has ended."""
        channel.holders -= 1
        if channel.holders <= 0 and self.channels.get(channel.name) is channel:
            del self.channels[channel.name]

    def subscribe(
        self,
        channel: Channel,
        *,
        user_id: int,
        last_id: int,
        current: int,
        expires_at: float | None,
        ends_on_complete: bool,
        opened_at: float,
    ) -> Subscription:
        """Register a stream on an acquired channel; raise TooManyStreams past the limit.

        `current` is the channel's newest id as the stream read it. When the hub knows of
        nothing newer, later events follow on from it. `opened_at` (monotonic) is when the
        stream began reading who its user is.
        """
        streams = self.by_user.setdefault(user_id, set())
        if len(streams) >= settings.SSE_MAX_STREAMS_PER_USER:
            raise TooManyStreams(f"At most {settings.SSE_MAX_STREAMS_PER_USER} open streams per user.")
        if channel.last is None or channel.last < current and not channel.ring:
            channel.last = current
        sub = Subscription(channel, user_id, last_id, ends_on_complete)
        streams.add(sub)
        channel.subs.add(sub)
        self.open_streams += 1
        self._tend_collector()
        if expires_at is not None:
            heapq.heappush(self.expiries, (expires_at, next(self.counter), sub))
        revoked_at = self.revoked.get(user_id)
        if revoked_at is not None and revoked_at > opened_at:
            # Revoked while this stream was opening (`opened_at`: before it read the user).
            # A revocation seen earlier was committed before that read, which then decided.
            sub.final = REVOKED
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Forget a closed stream."""
        sub.channel.subs.discard(sub)
        self.release(sub.channel)
        streams = self.by_user.get(sub.user_id)
        if streams is not None:
            streams.discard(sub)
            if not streams:
                del self.by_user[sub.user_id]
        sub.final = b""  # marks it closed for the expiry heap
        self.open_streams -= 1

    def take(self, sub: Subscription, most: int = BATCH) -> tuple[list[bytes] | None, bool]:
        """Up to `most` frames the stream has not sent, from the ring, and whether it must
        end after them.

        None when the ring no longer reaches back to the stream's position: read storage.
        """
        channel = sub.channel
        if channel.last is None or sub.last_id >= channel.last:
            return [], False
        ring = channel.ring
        if not ring or ring[0][0] > sub.last_id + 1:
            return None, False
        out: list[bytes] = []
        start = sub.last_id + 1 - ring[0][0]
        for eid, kind, data in itertools.islice(ring, start, start + most):
            out.append(data)
            sub.last_id = eid
            if kind == ERROR or (kind == COMPLETE and sub.ends_on_complete):
                return out, True
        return out, False

    # -- events

    def notify(self, events: list[LogEvent]) -> None:
        """Hand committed events to this process's streams (from any thread)."""
        loop = self.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.dispatch, events)

    def dispatch(self, events: Iterable[LogEvent]) -> None:
        """Add events to their channels' rings and wake the streams (on the loop)."""
        woken: set[Channel] = set()
        for event in events:
            if event.type == ERROR and event.channel.startswith("user-"):
                self._revoke(event)
            channel = self.channels.get(event.channel)
            if channel is None:
                continue
            if channel.filling:
                channel.pending.append(event)
            elif channel.last is None or event.eid == channel.last + 1:
                channel.ring.append((event.eid, event.type, event.frame()))
                channel.last = event.eid
                woken.add(channel)
            elif event.eid > channel.last + 1:
                # An event went missing on the way (or is still on it): fetch it once for
                # the whole channel rather than once per stream.
                channel.filling = True
                channel.pending.append(event)
                self.loop.create_task(self._fill(channel))
        for channel in woken:
            self._feed(channel)

    async def _fill(self, channel: Channel) -> None:
        try:
            while channel.pending:
                newest = max(event.eid for event in channel.pending)
                try:
                    stored = await run_db(events_after, channel.name, channel.last, upto=newest, limit=RING_SIZE)
                except Exception:  # noqa: BLE001 - streams fall back to reading storage
                    logger.warning("Could not read %s from the log", channel.name, exc_info=True)
                    stored = []
                merged = {event.eid: event for event in stored}
                merged.update((event.eid, event) for event in channel.pending)
                channel.pending.clear()
                for eid in sorted(merged):
                    if eid <= channel.last:
                        continue
                    if eid != channel.last + 1:
                        channel.ring.clear()  # still a hole: streams behind it read storage
                    event = merged[eid]
                    channel.ring.append((eid, event.type, event.frame()))
                    channel.last = eid
        finally:
            channel.filling = False
        self._feed(channel)

    def _feed(self, channel: Channel) -> None:
        """Give a channel's new events to its streams: written at once, or the stream woken."""
        for sub in channel.subs:
            if not self.push(sub):
                sub.wake.set()

    def push(self, sub: Subscription) -> bool:
        """Write a caught-up stream's new events straight to its client, the same bytes for
        every stream, with no task to wake. False when the stream must do it itself: it is
        not waiting, its client is not reading, it is behind the ring or it must end."""
        wire = sub.wire
        if wire is None or sub.final is not None or not wire.ready:
            return False
        while True:
            frames, ended = self.take(sub)
            if frames is None:
                return False
            if not frames:
                return True
            wire.write(frames[0] if len(frames) == 1 else b"".join(frames))
            sub.last_write = time.monotonic()
            SSE_EVENTS_DELIVERED.inc(len(frames))
            if ended:
                sub.ended = True
                return False
            if not wire.ready:  # the client's buffer filled up: the stream waits for it
                return False

    def _revoke(self, event: LogEvent) -> None:
        """End every stream of a deactivated or deleted user (their own channel ends itself)."""
        try:
            user_id = int(event.channel[len("user-") :])
        except ValueError:
            return
        self.revoked[user_id] = time.monotonic()
        for sub in self.by_user.get(user_id, ()):
            if sub.channel.name != event.channel:
                sub.final = REVOKED
                sub.wake.set()

    # -- background work

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.tasks and self.loop is loop:
            return
        self.loop = loop
        self.tasks = [loop.create_task(self._follow_log()), loop.create_task(self._tick())]
        if getattr(settings, "EVENTSTREAM_REDIS", None):
            self.tasks.append(loop.create_task(self._listen_redis()))

    async def _tick(self) -> None:
        """One timer for all streams: keep-alives, credential expiry, log housekeeping."""
        period = min(1.0, settings.SSE_KEEPALIVE_SECONDS / 2)
        # An idle stream gets a keep-alive at most `SSE_KEEPALIVE_SECONDS` apart, and not
        # much more often: each one is a write to every idle client.
        due = settings.SSE_KEEPALIVE_SECONDS - period
        next_trim = time.monotonic() + settings.EVENT_TRIM_INTERVAL_SECONDS
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            wall = time.time()
            while self.expiries and self.expiries[0][0] <= wall:
                sub = heapq.heappop(self.expiries)[2]
                if sub.final is None:
                    sub.final = EXPIRED
                    sub.wake.set()
            if len(self.expiries) > 2 * self.open_streams + 100:  # closed streams pile up
                self.expiries = [entry for entry in self.expiries if entry[2].final is None]
                heapq.heapify(self.expiries)
            for streams in self.by_user.values():
                for sub in streams:
                    if now - sub.last_write >= due:
                        if sub.wire is not None and sub.final is None and sub.wire.write(KEEPALIVE):
                            sub.last_write = now
                        else:
                            sub.keepalive = True
                            sub.wake.set()
            cutoff = now - REVOKED_SECONDS
            for user_id in [u for u, at in self.revoked.items() if at < cutoff]:
                del self.revoked[user_id]
            if now >= next_trim:
                next_trim = now + settings.EVENT_TRIM_INTERVAL_SECONDS
                self.loop.create_task(_trim_log())

    def _tend_collector(self) -> None:
        """Keep full collections short however many streams are open.

        A stream's objects live as long as it does; a full collection would walk all of
        them, thousands of streams' worth, while nothing else runs. So each time a few
        dozen streams have opened, the collector looks once at what is new since the last
        time (a full collection only walks what is not frozen) and then freezes everything
        alive out of its sight. A closed stream leaves no reference cycle behind (the
        stream path is built that way, see `streaming`), so its frozen objects are freed by
        reference counting as it closes: nothing is ever unfrozen, so no collection ever
        walks the whole heap.
        """
        streams = self.open_streams
        if streams - self.frozen_for >= FREEZE_EVERY_STREAMS:
            gc.collect()
            gc.freeze()
            self.frozen_for = streams
        elif streams < self.frozen_for:
            self.frozen_for = streams

    async def _follow_log(self) -> None:
        """Poll the log's newest rows: every process's events, one range query a tick."""
        interval = settings.SSE_POLL_SECONDS
        if getattr(settings, "EVENTSTREAM_REDIS", None):
            interval = max(interval, settings.SSE_REDIS_POLL_SECONDS)
        cursor: int | None = None
        holes: dict[int, float] = {}
        while True:
            try:
                if cursor is None or not self.channels:
                    # Start a little behind the newest row: a stream may have read its channel
                    # just before this read (what it has already is skipped as a repeat).
                    newest = await run_db(latest_row_id) - LOOKBACK_ROWS
                    cursor, holes = max(cursor or 0, newest, 0), {}
                else:
                    rows = await run_db(rows_after, cursor, list(holes))
                    cursor = self._take_rows(rows, cursor, holes)
            except Exception:  # noqa: BLE001 - the next tick tries again
                logger.warning("Reading the event log failed", exc_info=True)
            await asyncio.sleep(interval)

    def _take_rows(self, rows: list[tuple[int, LogEvent]], cursor: int, holes: dict[int, float]) -> int:
        now = time.monotonic()
        for row_id, _event in rows:
            holes.pop(row_id, None)
            # Row ids are handed out before commit: on PostgreSQL a lower id may become
            # visible after a higher one. Look again for the skipped ids for a while.
            for missing in range(cursor + 1, min(row_id, cursor + 1001)):
                holes.setdefault(missing, now)
            cursor = max(cursor, row_id)
        for row_id in [r for r, seen in holes.items() if now - seen > HOLE_SECONDS]:
            del holes[row_id]
        self.dispatch(event for _row, event in rows)
        return cursor

    async def _listen_redis(self) -> None:
        from redis.asyncio import Redis

        while True:
            client = Redis(**settings.EVENTSTREAM_REDIS, socket_connect_timeout=2, health_check_interval=10)
            try:
                pubsub = client.pubsub()
                await pubsub.subscribe(settings.SSE_REDIS_CHANNEL)
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self.dispatch(decode_events(message["data"]))
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - reconnect; the log poll covers the gap
                logger.warning("Redis listener lost its connection; retrying", exc_info=True)
                await asyncio.sleep(1.0)
            finally:
                await client.aclose()


async def _trim_log() -> None:
    from datetime import timedelta

    from .events import trim

    try:
        removed = await run_db(trim, older_than=timedelta(hours=settings.EVENT_RETENTION_HOURS))
        if removed:
            logger.info("Trimmed %d rows from the event log", removed)
    except Exception:  # noqa: BLE001 - housekeeping retries on its next turn
        logger.warning("Trimming the event log failed", exc_info=True)


def watch_collector(threshold_ms: float = 50.0) -> None:
    """Log every garbage collection that holds the server longer than `threshold_ms`.

    While the collector runs, no stream and no request moves; a long pause is worth a line
    in the log (the load bench counts them).
    """
    started = [0.0]

    def callback(phase: str, info: dict) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        paused = (time.perf_counter() - started[0]) * 1000
        if paused > threshold_ms:
            logger.warning(
                "A generation %d garbage collection paused the server for %.1f ms", info.get("generation", -1), paused
            )

    gc.callbacks.append(callback)


_hub: Hub | None = None


def get_hub() -> Hub:
    """The hub of this process."""
    global _hub
    if _hub is None:
        _hub = Hub()
        SSE_OPEN_STREAMS.set_function(lambda: _hub.open_streams)
    return _hub


# ----------------------------------------------------------------- publishing


def encode_events(events: list[LogEvent]) -> str:
    """One Redis message carrying whole events."""
    return json.dumps([[e.channel, e.eid, e.type, e.data] for e in events])


def decode_events(message: bytes | str) -> list[LogEvent]:
    """The events of a Redis message (malformed messages carry none)."""
    try:
        return [LogEvent(str(c), int(i), str(t), str(d)) for c, i, t, d in json.loads(message)]
    except (ValueError, TypeError):
        logger.warning("Ignoring a malformed event message")
        return []


class RedisPublisher:
    """Publishes committed events on Redis from a background thread.

    A slow, paused or dead Redis never holds a request or a job: messages wait in a bounded
    queue, each publish has a short timeout, and while Redis is down messages are dropped
    (the log poll still delivers those events, a little later).
    """

    def __init__(self) -> None:
        self.pid = -1
        self.queue: queue.Queue[list[LogEvent]] = queue.Queue(maxsize=10_000)
        self.down_until = 0.0

    def put(self, events: list[LogEvent]) -> None:
        """Queue events for publishing; never blocks."""
        if self.pid != os.getpid():  # first use, or a forked child: own thread and queue
            self.pid = os.getpid()
            self.queue = queue.Queue(maxsize=10_000)
            threading.Thread(target=self._run, name="redis-publisher", daemon=True).start()
        try:
            self.queue.put_nowait(events)
        except queue.Full:
            logger.warning("Redis publish queue full; dropping an event message")

    def _run(self) -> None:
        client = redis.Redis(**settings.EVENTSTREAM_REDIS, socket_timeout=0.5, socket_connect_timeout=0.5)
        while True:
            batch = [self.queue.get()]
            while len(batch) < 100:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            if time.monotonic() < self.down_until:
                continue
            try:
                pipe = client.pipeline(transaction=False)
                for events in batch:
                    pipe.publish(settings.SSE_REDIS_CHANNEL, encode_events(events))
                pipe.execute()
            except redis.RedisError:
                logger.warning("Redis publish failed; streams use the log poll for 2 s", exc_info=True)
                self.down_until = time.monotonic() + 2.0


_publisher = RedisPublisher()


def notify(events: list[LogEvent]) -> None:
    """Tell every process's streams that events were committed (call after commit)."""
    get_hub().notify(events)
    if getattr(settings, "EVENTSTREAM_REDIS", None):
        _publisher.put(events)
