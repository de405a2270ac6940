"""Keeping the garbage collector's pauses short however many streams are open.

A stream's objects live as long as it does. Python runs a full collection each time the
long-lived heap has grown by a quarter, and a full collection walks every object the collector
tracks while nothing else runs: with thousands of streams open that is hundreds of
milliseconds at a time, and the server stalls.

So each time `FREEZE_EVERY_STREAMS` more streams have opened, the collector looks once at what is
new (a full collection only walks what is not frozen, so this one is short) and then freezes
everything alive out of its sight. A closed stream leaves no reference cycle behind (see
`tests/test_stream_handler.py`), so its frozen objects are freed by reference counting when it
closes, and nothing needs unfreezing.

A freeze must not catch a request in flight: a Django or DRF request is a reference cycle, and
one frozen half-way (its view running on another thread) would never be freed. So this module
counts the requests in flight in this process, from the moment the ASGI app gets one until its
response is done, and freezes only at a moment when there is none: then, or as soon as the last
one ends. Streams do not count: their requests are built and served on the event loop's thread
and leave no cycle, whether they stream or are refused (`tests/test_stream_handler.py`,
`tests/test_stream_collector.py`), so a stream frozen while it opens is still freed by
reference counting; nor do the streams' own database calls, whose objects hold no cycle either.
The count is kept, and the freeze made, on the event loop's thread only, so it is exact when
read. On the public-APIs-only path (see `seam`) a stream is a Django request in flight for as
long as it lives, so nothing is frozen there.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)

FREEZE_EVERY_STREAMS = 50


class Collector:
    """What is in flight in this process, and the streams open at the last freeze."""

    def __init__(self, every: int = FREEZE_EVERY_STREAMS) -> None:
        self.every = every
        self.in_flight = 0
        self.shed = 0
        self.streams = 0
        self.frozen_for = 0
        self.freezes = 0
        # Off on the public-APIs-only path, where a stream is a Django request like any other,
        # in flight for as long as it lives (see `seam`).
        self.enabled = True

    @contextmanager
    def busy(self) -> Iterator[None]:
        """Count a request in flight for as long as the block runs (on the event loop's thread)."""
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self.maybe_freeze()

    def streams_changed(self, open_streams: int) -> None:
        """Note how many streams are open now (the hub calls this as streams start and end)."""
        self.streams = open_streams
        if open_streams < self.frozen_for:
            self.frozen_for = open_streams
        self.maybe_freeze()

    def maybe_freeze(self) -> bool:
        """Freeze the live heap if enough streams opened since the last freeze and nothing is in flight."""
        if not self.enabled or self.in_flight or self.streams - self.frozen_for < self.every:
            return False
        gc.collect()
        gc.freeze()
        self.frozen_for = self.streams
        self.freezes += 1
        return True


collector = Collector()


def _malloc_trim():
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to do
        return None


_trim = _malloc_trim()


def release_free_memory() -> bool:
    """Hand the C allocator's free pages back to the system; False where it cannot (not glibc).

    Objects over 512 bytes come from glibc's malloc, and each thread that allocates gets an
    arena of its own: what a burst of requests frees on the request threads stays resident, in
    the middle of those arenas, and the next burst does not always reuse it. `malloc_trim`
    gives every whole free page back. The call holds only the allocator's locks, not the GIL.
    """
    if _trim is None:
        return False
    _trim(0)
    return True


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
