"""Per-process stream hub: it owns every open stream's loop and feeds it committed events.

The hub hears of committed events three ways, each carrying the whole event (see `follow`):
in-process from the publisher (`notify`), from Redis pub/sub, and from a poll of the log's
newest rows. Each watched channel keeps a short ring of recent events, framed once.

Every stream runs `Hub.serve`: its first bytes, then every event after its position, until
the end-of-stream rule (`log.ends_stream`) or a final frame ends it. While a stream is caught
up and its client reads, the hub writes new events straight to its `Outlet` (`Hub.push`),
the same bytes for every client, with no task to wake; the stream's own task reads storage
only when it is behind the ring. A stream's position moves only past bytes its outlet took
whole: a failed or partial write ends the stream (and drops its connection), and the client
resumes with its own Last-Event-ID.

The hub's background loops run supervised: an exception is logged and the loop restarts
with back-off; each loop records a heartbeat that `/healthz` reads (`Hub.stalled`).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from typing import NamedTuple

from django.conf import settings

from ..exceptions import TooManyStreams
from ..metrics import SSE_EVENTS_DELIVERED, SSE_OPEN_STREAMS
from ..wire_gzip import Lane
from . import follow
from .collector import collector, release_free_memory
from .log import ERROR, LogEvent, ends_stream, events_after, frame
from .names import user_of
from .outlet import Outlet
from .pool import run_db

logger = logging.getLogger(__name__)

RING_SIZE = 256
# Events a stream writes at once: small writes let a slow client's buffer stay small.
BATCH = 32
KEEPALIVE = b": keep-alive\n\n"
# Users revoked this recently are refused by streams still opening (see `subscribe`).
REVOKED_SECONDS = 60.0
# Back-off of a loop that failed: doubled on each failure in a row, up to the maximum.
RESTART_SECONDS = 0.1
RESTART_MAX_SECONDS = 5.0
# How often freed memory goes back to the system (`collector.release_free_memory`).
RELEASE_MEMORY_SECONDS = 30.0


# -------------------------------------------------------------------- the hub


class Channel:
    """A watched channel: its subscriptions, a ring of its newest events, and the lane its
    caught-up compressed streams share (`wire_gzip.Lane`)."""

    __slots__ = ("name", "subs", "holders", "ring", "last", "pending", "filling", "batch", "lane")

    def __init__(self, name: str) -> None:
        self.name = name
        self.subs: set[Subscription] = set()
        self.holders = 0
        # (eid, type, frame) of contiguous ids ending at `last`.
        self.ring: deque[tuple[int, str, bytes]] = deque(maxlen=RING_SIZE)
        self.last: int | None = None
        self.pending: list[LogEvent] = []
        self.filling = False
        # The last batch `take` built, by what decides its bytes: the streams of a channel are
        # mostly at the same position, so a burst is joined once, not once per stream.
        self.batch: tuple[tuple[int, int, int, bool], Batch | None] | None = None
        self.lane = Lane(self.ring)


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
        "broken",
        "keepalive",
        "last_write",
        "outlet",
        "opened_wall",
    )

    def __init__(
        self, channel: Channel, user_id: int, last_id: int, ends_on_complete: bool, opened_wall: float = 0.0
    ) -> None:
        self.channel = channel
        self.user_id = user_id
        # Wall-clock time (Unix seconds) when the stream began reading who its user is: a
        # revocation committed before then was already seen by that read.
        self.opened_wall = opened_wall
        # The id of the last event handed whole to the client's connection.
        self.last_id = last_id
        self.ends_on_complete = ends_on_complete
        self.wake = asyncio.Event()
        self.final: bytes | None = None
        # Set when the hub wrote the stream's last event itself: the stream just ends.
        self.ended = False
        # Set when a write failed: the connection is dropped and the stream just ends.
        self.broken = False
        self.keepalive = False
        self.last_write = time.monotonic()
        # Set while the stream is caught up and waiting: the hub may write to its client
        # directly (see `Hub.push`) until it wakes the stream.
        self.outlet: Outlet | None = None


def revoked_at(event: LogEvent) -> float:
    """When a user's revocation was committed (Unix seconds); now for an event that does not say."""
    try:
        at = json.loads(event.data).get("at")
    except (ValueError, AttributeError):
        at = None
    return float(at) if isinstance(at, (int, float)) else time.time()


class Batch(NamedTuple):
    """Framed events to send in one write, the id of the last, and whether the stream ends."""

    data: bytes
    count: int
    upto: int
    ended: bool

    def shared(self, channel: Channel) -> tuple[Lane, int, int]:
        """How streams share this batch's encoding: its channel's lane and its ids (a batch
        from the ring holds consecutive ids)."""
        return channel.lane, self.upto - self.count + 1, self.upto


def error_frame(code: str, message: str) -> bytes:
    """A final `error` event (no id: the client resumes after the last event it had)."""
    return frame(ERROR, json.dumps({"code": code, "message": message}))


EXPIRED = error_frame(
    "unauthenticated", "The credentials of this stream expired. Reconnect with fresh credentials and Last-Event-ID."
)
REVOKED = error_frame("unauthenticated", "The user of this stream was deactivated or deleted.")


def batch_of(events: Iterable[tuple[int, str, bytes]], ends_on_complete: bool) -> Batch | None:
    """Frames of consecutive events as one write, stopping after the one that ends the stream."""
    frames: list[bytes] = []
    upto, ended = 0, False
    for eid, kind, data in events:
        frames.append(data)
        upto = eid
        if ends_stream(kind, ends_on_complete):
            ended = True
            break
    if not frames:
        return None
    return Batch(frames[0] if len(frames) == 1 else b"".join(frames), len(frames), upto, ended)


class Loop:
    """A supervised background loop of the hub: its task and its last sign of life."""

    __slots__ = ("name", "task", "beat", "period", "failures")

    def __init__(self, name: str, period: float) -> None:
        self.name = name
        self.task: asyncio.Task | None = None
        self.beat = time.monotonic()
        self.period = period
        self.failures = 0


class Hub:
    """Feeds the open streams of this process from committed events."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.channels: dict[str, Channel] = {}
        self.by_user: dict[int, set[Subscription]] = {}
        self.expiries: list[tuple[float, int, Subscription]] = []
        self.revoked: dict[int, float] = {}
        self.counter = itertools.count()
        self.loops: dict[str, Loop] = {}
        # Tasks the hub started besides its loops (fills, trims): kept until they finish.
        self.chores: set[asyncio.Task] = set()
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
        opened_wall = time.time() - (time.monotonic() - opened_at)
        sub = Subscription(channel, user_id, last_id, ends_on_complete, opened_wall)
        streams.add(sub)
        channel.subs.add(sub)
        self.open_streams += 1
        collector.streams_changed(self.open_streams)
        if expires_at is not None:
            heapq.heappush(self.expiries, (expires_at, next(self.counter), sub))
        revoked_at = self.revoked.get(user_id)
        if revoked_at is not None and revoked_at > opened_wall:
            # Revoked while this stream was opening (`opened_at`: before it read the user).
            # A revocation committed earlier was seen by that read, which then decided.
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
        collector.streams_changed(self.open_streams)

    def take(self, sub: Subscription, most: int = BATCH) -> Batch | None:
        """Up to `most` events after the stream's position, from the ring, as one write.

        An empty batch when there is nothing new; None when the ring no longer reaches back
        to the stream's position (read storage). The position is not moved here: only once
        the bytes were written (`sent`).
        """
        channel = sub.channel
        if channel.last is None or sub.last_id >= channel.last:
            return Batch(b"", 0, sub.last_id, False)
        ring = channel.ring
        if not ring or ring[0][0] > sub.last_id + 1:
            return None
        key = (sub.last_id, channel.last, most, sub.ends_on_complete)
        cached = channel.batch
        if cached is not None and cached[0] == key:
            return cached[1]  # events are immutable: the same ids make the same bytes
        start = sub.last_id + 1 - ring[0][0]
        batch = batch_of(itertools.islice(ring, start, start + most), sub.ends_on_complete)
        channel.batch = (key, batch)
        return batch

    async def _page(self, sub: Subscription) -> Batch:
        """The next page of stored events after the stream's position."""
        page = await run_db(events_after, sub.channel.name, sub.last_id, limit=BATCH)
        if not page:
            # Nothing stored where the ring says there are newer events: they were trimmed.
            ring = sub.channel.ring
            sub.last_id = max(sub.last_id, ring[0][0] - 1 if ring else sub.channel.last or 0)
            return Batch(b"", 0, sub.last_id, False)
        return batch_of(((e.eid, e.type, e.frame()) for e in page), sub.ends_on_complete)

    @staticmethod
    def sent(sub: Subscription, batch: Batch) -> None:
        """Move a stream's position past a batch its outlet took whole."""
        sub.last_id = batch.upto
        sub.last_write = time.monotonic()
        SSE_EVENTS_DELIVERED.inc(batch.count)

    async def serve(self, sub: Subscription, outlet: Outlet, head: bytes) -> None:
        """A stream's whole life: `head`, then every event after its position, live, until it ends.

        While the stream is caught up it waits, and the hub writes new events to its client
        itself (`push`); it wakes the stream for what it cannot do: a page from storage, a
        client that stopped reading, a keep-alive, the end.
        """
        try:
            if not await outlet.write(head or KEEPALIVE, alone=True):
                return
            while not sub.broken:
                # A client that stopped reading is held nothing: its events stay in the log,
                # and it catches up from there once it reads again.
                await outlet.drained()
                if sub.final is not None:
                    await outlet.write(sub.final)
                    return
                if sub.ended:
                    return
                batch = self.take(sub)
                shared = None
                if batch is None:  # behind the ring: catch up from storage, a page at a time
                    batch = await self._page(sub)
                elif batch.count:
                    shared = batch.shared(sub.channel)
                if batch.count:
                    if not await outlet.write(batch.data, shared):
                        return
                    self.sent(sub, batch)
                    if batch.ended:
                        return
                    continue
                if sub.keepalive:
                    sub.keepalive = False
                    if not await outlet.write(KEEPALIVE, alone=True):
                        return
                    sub.last_write = time.monotonic()
                    continue
                sub.outlet = outlet
                await sub.wake.wait()
                sub.wake.clear()
                sub.outlet = None
        except Exception:  # noqa: BLE001 - end the response; the client resumes with its last id
            logger.exception("Stream of %s failed", sub.channel.name)
        finally:
            sub.outlet = None
            self.unsubscribe(sub)
            outlet.close()

    async def replay(self, outlet: Outlet, channel: str, last: int, upto: int, head: bytes, tail: bytes) -> None:
        """A finished task's stream: `head`, its stored events after `last` up to `upto`, `tail`."""
        try:
            if not await outlet.write(head):
                return
            while last < upto:
                page = await run_db(events_after, channel, last, upto=upto)
                batch = batch_of(((e.eid, e.type, e.frame()) for e in page), True)
                if batch is None:
                    break
                if not await outlet.write(batch.data):
                    return
                last = batch.upto
                if batch.ended:  # an earlier attempt ended here: so does this stream
                    return
            await outlet.write(tail)
        finally:
            outlet.close()

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
            if event.type == ERROR:
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
                self.chore(self._fill(channel))
        for channel in woken:
            self._feed(channel)

    def chore(self, work: Awaitable[None]) -> None:
        """Run a one-off task, kept referenced until it finishes."""
        task = asyncio.ensure_future(work)
        self.chores.add(task)
        task.add_done_callback(self.chores.discard)

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
        outlet = sub.outlet
        if outlet is None or sub.final is not None or not outlet.direct:
            return False
        while True:
            batch = self.take(sub)
            if batch is None:
                return False
            if not batch.count:
                return True
            if not outlet.write_now(batch.data, batch.shared(sub.channel)):
                sub.broken = True
                return False
            self.sent(sub, batch)
            if batch.ended:
                sub.ended = True
                return False
            if not outlet.direct:  # the client's buffer filled up: the stream waits for it
                return False

    def _revoke(self, event: LogEvent) -> None:
        """End every stream of a deactivated or deleted user (their own channel ends itself)."""
        user_id = user_of(event.channel)
        if user_id is None:
            return
        # When it was committed: the log poll hands over recent rows again after a quiet spell,
        # and an old revocation (a sign-out before this sign-in) must not end newer streams.
        at = revoked_at(event)
        self.revoked[user_id] = max(self.revoked.get(user_id, 0.0), at)
        for sub in self.by_user.get(user_id, ()):
            if sub.channel.name != event.channel and sub.opened_wall < at:
                sub.final = REVOKED
                sub.wake.set()

    # -- background work

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.loops and self.loop is loop:
            return
        self.loop = loop
        self.loops = {}
        self.supervise("tick", self.tick_period(), self._tick)
        self.supervise("log", follow.poll_interval(), partial(follow.follow_log, self))
        if getattr(settings, "EVENTSTREAM_REDIS", None):
            self.supervise("redis", 0.0, partial(follow.listen_redis, self))

    def supervise(self, name: str, period: float, run: Callable[[Loop], Awaitable[None]]) -> None:
        """Run a background loop that survives any exception: logged, restarted with back-off.

        `period` is how often the loop shows a sign of life (`Loop.beat`); 0 for a loop that
        waits on something else (the Redis listener).
        """
        state = self.loops[name] = Loop(name, period)

        async def supervised() -> None:
            delay = RESTART_SECONDS
            while True:
                try:
                    await run(state)
                    return
                except asyncio.CancelledError:
                    raise
                except Exception:  # noqa: BLE001 - the hub must outlive any one failure
                    state.failures += 1
                    logger.exception("The stream hub's %s loop failed; restarting it in %.1f s", name, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RESTART_MAX_SECONDS)

        state.task = self.loop.create_task(supervised(), name=f"stream-hub-{name}")

    def stalled(self, now: float | None = None) -> dict[str, float]:
        """The loops that showed no sign of life for too long: name → seconds since."""
        now = time.monotonic() if now is None else now
        limit = settings.SSE_HUB_STALL_SECONDS
        out: dict[str, float] = {}
        for name, state in self.loops.items():
            quiet = now - state.beat
            if (state.task is not None and state.task.done()) or (state.period and quiet > limit + state.period):
                out[name] = round(quiet, 1)
        return out

    @staticmethod
    def tick_period() -> float:
        """How often the tick runs: often enough to keep every stream alive."""
        return min(1.0, settings.SSE_KEEPALIVE_SECONDS / 2)

    async def _tick(self, state: Loop) -> None:
        """One timer for all streams: keep-alives, credential expiry, log and memory housekeeping."""
        period = self.tick_period()
        next_trim = time.monotonic() + settings.EVENT_TRIM_INTERVAL_SECONDS
        next_release = time.monotonic() + RELEASE_MEMORY_SECONDS
        while True:
            state.beat = time.monotonic()
            await asyncio.sleep(period)
            self.tick_once(period)
            if time.monotonic() >= next_trim:
                next_trim = time.monotonic() + settings.EVENT_TRIM_INTERVAL_SECONDS
                self.chore(_trim_log())
            if time.monotonic() >= next_release:
                next_release = time.monotonic() + RELEASE_MEMORY_SECONDS
                self.chore(asyncio.to_thread(release_free_memory))

    def tick_once(self, period: float) -> None:
        """Expire credentials, send keep-alives, forget old revocations."""
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
        # An idle stream gets a keep-alive at most `SSE_KEEPALIVE_SECONDS` apart, and not
        # much more often: each one is a write to every idle client.
        due = settings.SSE_KEEPALIVE_SECONDS - period
        for streams in self.by_user.values():
            for sub in streams:
                if now - sub.last_write < due:
                    continue
                outlet = sub.outlet
                if outlet is not None and sub.final is None and outlet.direct:
                    if outlet.write_now(KEEPALIVE, alone=True):
                        sub.last_write = now
                        continue
                    sub.broken = True
                else:
                    sub.keepalive = True
                sub.wake.set()
        cutoff = time.time() - REVOKED_SECONDS
        for user_id in [u for u, at in self.revoked.items() if at < cutoff]:
            del self.revoked[user_id]


async def _trim_log() -> None:
    from datetime import timedelta

    from .log import trim

    try:
        removed = await run_db(trim, older_than=timedelta(hours=settings.EVENT_RETENTION_HOURS))
        if removed:
            logger.info("Trimmed %d rows from the event log", removed)
    except Exception:  # noqa: BLE001 - housekeeping retries on its next turn
        logger.warning("Trimming the event log failed", exc_info=True)


_hub: Hub | None = None


def get_hub() -> Hub:
    """The hub of this process."""
    global _hub
    if _hub is None:
        _hub = Hub()
        SSE_OPEN_STREAMS.set_function(lambda: _hub.open_streams)
    return _hub


def current_hub() -> Hub | None:
    """The hub of this process if it was ever needed (the health check reads it)."""
    return _hub
