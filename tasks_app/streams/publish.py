"""Publishing: telling every process's streams that events were committed.

Stored events reach streams three ways: this process's hub directly, Redis pub/sub when
`EVENTSTREAM_REDIS` is set, and the hub's poll of the log (see `follow`). Publishing needs no
web server: the worker, the admin and a shell import this without Twisted or Daphne.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time

import redis
from django.conf import settings

from .hub import get_hub
from .log import LogEvent, encode_events

logger = logging.getLogger(__name__)


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
