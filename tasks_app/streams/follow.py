"""Following other processes' events: the hub's log poll and its Redis listener.

The log poll reads the log's newest rows by row id: one indexed range query per tick,
whatever the number of open streams. It is the embedded default's path from the worker to
the server (SQLite, no other server to run), and the safety net behind Redis. Both loops run
under the hub's supervision (`Hub.supervise`) and show a sign of life on `Loop.beat`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from django.conf import settings

from .log import LogEvent, decode_events, latest_row_id, rows_after
from .pool import run_db

if TYPE_CHECKING:
    from .hub import Hub, Loop

logger = logging.getLogger(__name__)

# How long a hole in the row ids (an insert not committed yet, on PostgreSQL) is looked for.
HOLE_SECONDS = 10.0
LOOKBACK_ROWS = 1000


def poll_interval() -> float:
    """Seconds between two reads of the log's newest rows."""
    interval = settings.SSE_POLL_SECONDS
    if getattr(settings, "EVENTSTREAM_REDIS", None):
        interval = max(interval, settings.SSE_REDIS_POLL_SECONDS)
    return interval


async def follow_log(hub: Hub, state: Loop) -> None:
    """Poll the log's newest rows: every process's events, one range query a tick."""
    interval = poll_interval()
    cursor: int | None = None
    holes: dict[int, float] = {}
    while True:
        state.beat = time.monotonic()
        try:
            if cursor is None or not hub.channels:
                # Start a little behind the newest row: a stream may have read its channel
                # just before this read (what it has already is skipped as a repeat).
                newest = await run_db(latest_row_id) - LOOKBACK_ROWS
                cursor, holes = max(cursor or 0, newest, 0), {}
            else:
                rows = await run_db(rows_after, cursor, list(holes))
                cursor = take_rows(hub, rows, cursor, holes)
        except Exception:  # noqa: BLE001 - the next tick tries again
            logger.warning("Reading the event log failed", exc_info=True)
        await asyncio.sleep(interval)


def take_rows(hub: Hub, rows: list[tuple[int, LogEvent]], cursor: int, holes: dict[int, float]) -> int:
    """Dispatch polled rows; return the new cursor, keeping track of ids not visible yet."""
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
    hub.dispatch(event for _row, event in rows)
    return cursor


async def listen_redis(hub: Hub, state: Loop) -> None:
    """Hand every event published on Redis to the hub; reconnect when the connection drops."""
    from redis.asyncio import Redis

    while True:
        state.beat = time.monotonic()
        client = Redis(**settings.EVENTSTREAM_REDIS, socket_connect_timeout=2, health_check_interval=10)
        try:
            pubsub = client.pubsub()
            await pubsub.subscribe(settings.SSE_REDIS_CHANNEL)
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    hub.dispatch(decode_events(message["data"]))
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - reconnect; the log poll covers the gap
            logger.warning("Redis listener lost its connection; retrying", exc_info=True)
            await asyncio.sleep(1.0)
        finally:
            await client.aclose()
