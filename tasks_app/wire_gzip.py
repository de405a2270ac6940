"""Gzip for one SSE stream: every event compressed and flushed at once, a few KB per stream.

A stream repeats itself: each event is the one before with a few digits changed, so one deflate
context per stream, flushed after every event (`Z_SYNC_FLUSH`, which ends the output on a byte
boundary so the client can decode the event now), sends an event in about 40 bytes instead of
about 280. The window only has to reach back one event, so it is 1 KiB (`WBITS`) instead of
32 KiB, and the hash table is the smallest (`MEM_LEVEL`): about 11 KB per stream instead of
about 270 KB, which is what keeps an idle compressed stream cheap.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator
from contextlib import aclosing

# 2**10 bytes of history: several events' worth. A larger window compresses no better (an
# event only refers back to the previous one) and costs memory on every open stream.
WBITS = 10
MEM_LEVEL = 1
LEVEL = 6
CONTENT_ENCODING = "gzip"


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an `Accept-Encoding` header value allows gzip (`gzip` or `*`, not at q=0)."""
    for item in (accept_encoding or "").split(","):
        coding, _, params = item.partition(";")
        if coding.strip().lower() not in ("gzip", "x-gzip", "*"):
            continue
        quality = params.strip().lower()
        if quality.startswith("q="):
            try:
                return float(quality[2:]) > 0
            except ValueError:
                return False
        return True
    return False


class GzipStream:
    """The gzip encoder of one response: `encode` each part as it is written, `finish` at its end."""

    __slots__ = ("_deflate",)

    headers = {"Content-Encoding": CONTENT_ENCODING, "Vary": "Accept-Encoding"}

    def __init__(self) -> None:
        self._deflate = zlib.compressobj(LEVEL, zlib.DEFLATED, 16 + WBITS, MEM_LEVEL)

    def encode(self, data: bytes) -> bytes:
        """`data` compressed and flushed: the client can decode all of it from these bytes alone."""
        return self._deflate.compress(data) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    async def wrap(self, body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """A response body encoded part by part, ended with the trailer when it ends."""
        # aclosing: a client that leaves closes this body, and the stream's own must close too.
        async with aclosing(body):
            async for part in body:
                yield self.encode(part)
        yield self.finish()

    def finish(self) -> bytes:
        """The end of the gzip stream (its trailer); nothing may be encoded after it."""
        return self._deflate.flush(zlib.Z_FINISH)


def for_request(accept_encoding: str | None) -> GzipStream | None:
    """An encoder when the client accepts gzip, else None (the stream goes out as plain text)."""
    return GzipStream() if accepts_gzip(accept_encoding) else None
