"""Gzip for SSE streams: every event compressed and flushed at once, once per channel.

A stream repeats itself: each event is the one before with a few digits changed, so a deflate
context flushed after every event (`Z_SYNC_FLUSH`, which ends the output on a byte boundary so
the client can decode the event now) sends an event in about 40 bytes instead of about 280.
The window only has to reach back one event, so it is 1 KiB (`WBITS`) instead of 32 KiB, and
the hash table is the smallest (`MEM_LEVEL`): about 11 KB per context instead of about 270 KB.

A channel's caught-up streams are at the same position and send the same events, so they share
one context, the channel's `Lane`: each event is compressed once, however many streams follow
the channel, and every stream that sent the lane's pieces since it joined has the same history
as the lane. A stream joins at a piece that refers to nothing before it (the lane's first, or
one made after a full flush, which empties the lane's history), so what it wrote before does not
matter; anything it writes outside the lane (its first snapshot, a page from storage, a
keep-alive) makes it leave, and it joins again at the next fresh piece. Each stream keeps only
the gzip trailer's sums (CRC-32 and length of what it sent), and its own context only while it
writes outside the lane: an idle stream holds none.
"""

from __future__ import annotations

import itertools
import zlib
from collections import deque
from collections.abc import AsyncIterator
from contextlib import aclosing

# 2**10 bytes of history: several events' worth. A larger window compresses no better (an
# event only refers back to the previous one) and costs memory on every context.
WBITS = 10
MEM_LEVEL = 1
LEVEL = 6
CONTENT_ENCODING = "gzip"
# RFC 1952: deflate, no file name, no time, unknown system. The body is raw deflate after it.
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


def _context() -> zlib._Compress:
    return zlib.compressobj(LEVEL, zlib.DEFLATED, -WBITS, MEM_LEVEL)


# The empty last block that ends a deflate stream at a byte boundary, before the trailer.
LAST_BLOCK = _context().flush(zlib.Z_FINISH)
# Parts sent alone (a keep-alive) compressed once, by their bytes.
_ALONE: dict[bytes, bytes] = {}
_ALONE_MAX = 64


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


class Lane:
    """One deflate context that a channel's caught-up gzip streams share (see the module).

    It compresses the channel's events in order, each flushed on its own, as streams ask for
    them, and keeps as many as the channel's ring: a stream served from the ring stays in the
    lane however far behind it is. A stream whose bytes so far end with the lane's
    pieces up to event `p` may send any of the lane's pieces after `p`, joined: they decode
    against its history byte for byte. A fresh piece (the lane's first, or one after a full
    flush) refers to nothing before it, so any stream may start there.
    """

    __slots__ = ("_ring", "_deflate", "_pieces", "_fresh", "_first", "_joined", "joiners")

    def __init__(self, ring: deque[tuple[int, str, bytes]]) -> None:
        # The channel's ring: (id, kind, framed event) of consecutive ids.
        self._ring = ring
        self._deflate: zlib._Compress | None = None
        # The compressed pieces of consecutive ids from `_first`, and whether each is fresh;
        # made when a stream first asks, since most channels never have a compressed stream.
        self._pieces: deque[bytes] | None = None
        self._fresh: deque[bool] | None = None
        self._first = 0
        # The last span joined, by its ids: the streams of a channel mostly ask for the same.
        self._joined: tuple[int, int, bytes] | None = None
        # A stream at the newest event could not join: the next piece starts afresh.
        self.joiners = False

    def span(self, first: int, upto: int) -> tuple[bytes, bool] | None:
        """Events `first`..`upto` compressed in the lane, and whether that refers to nothing
        before `first`; None when the lane cannot give them (the ring has moved on)."""
        pieces = self._pieces
        if pieces is None:
            pieces = self._pieces = deque(maxlen=self._ring.maxlen)
            self._fresh = deque(maxlen=self._ring.maxlen)
        if self.newest() < upto and not self._extend(first, upto):
            return None
        start = first - self._first
        if start < 0:
            return None
        fresh = self._fresh[start]
        if first == upto:
            return pieces[start], fresh
        joined = self._joined
        if joined is None or joined[0] != first or joined[1] != upto:
            joined = self._joined = (first, upto, b"".join(itertools.islice(pieces, start, start + upto - first + 1)))
        return joined[2], fresh

    def newest(self) -> int:
        """The id of the newest event the lane compressed (0 before any)."""
        pieces = self._pieces
        return self._first + len(pieces) - 1 if pieces else 0

    def _extend(self, first: int, upto: int) -> bool:
        """Compress the ring's events after the lane's newest, up to `upto`."""
        ring, pieces, fresh_ones = self._ring, self._pieces, self._fresh
        if not ring or ring[-1][0] < upto:
            return False
        start = self.newest() + 1 if pieces else first
        # Nothing kept yet, or the lane fell behind the ring or this stream: it starts again here.
        restart = not pieces or start < ring[0][0] or start < first
        if restart:
            start = first
        if start < ring[0][0]:
            return False
        if restart:
            pieces.clear()
            fresh_ones.clear()
            self._first = start
            self._joined = None
        deflate = self._deflate
        for _, _, framed in itertools.islice(ring, start - ring[0][0], upto - ring[0][0] + 1):
            fresh = deflate is None or restart or self.joiners
            if deflate is None:
                deflate = self._deflate = _context()
                prefix = b""
            else:  # a full flush empties the history: what follows refers to nothing before
                prefix = deflate.flush(zlib.Z_FULL_FLUSH) if fresh else b""
            if len(pieces) == pieces.maxlen:  # the oldest piece goes
                self._first += 1
            pieces.append(prefix + deflate.compress(framed) + deflate.flush(zlib.Z_SYNC_FLUSH))
            fresh_ones.append(fresh)
            restart = self.joiners = False
        return True


class GzipStream:
    """The gzip encoder of one response: `encode` each part as it is written, `finish` at its end."""

    __slots__ = ("_deflate", "_crc", "_size", "_lane", "_joined", "_started")

    headers = {"Content-Encoding": CONTENT_ENCODING, "Vary": "Accept-Encoding"}

    def __init__(self) -> None:
        self._deflate: zlib._Compress | None = None
        self._crc = 0
        self._size = 0
        # The id of the last event it sent through its lane; -1 when it is not in the lane.
        self._lane = -1
        # The lane it joined last: a keep-alive takes it out, and the lane's next event lets it in.
        self._joined: Lane | None = None
        self._started = False

    def _sent(self, plain: bytes, encoded: bytes) -> bytes:
        self._crc = zlib.crc32(plain, self._crc)
        self._size += len(plain)
        if self._started:
            return encoded
        self._started = True
        return GZIP_HEADER + encoded

    def encode(self, data: bytes, *, alone: bool = False) -> bytes:
        """`data` compressed and flushed: the client can decode all of it from these bytes alone.

        `alone`: compressed without history and none kept (a stream's first snapshot, a
        keep-alive), so that the stream holds no context of its own while it waits.
        """
        self._lane = -1
        if alone:
            if self._joined is not None:  # caught up and idle: back in at the lane's next event
                self._joined.joiners = True
            self._deflate = None
            encoded = _ALONE.get(data)
            if encoded is None:
                deflate = _context()
                encoded = deflate.compress(data) + deflate.flush(zlib.Z_SYNC_FLUSH)
                if len(data) <= _ALONE_MAX and len(_ALONE) < 16:
                    _ALONE[data] = encoded
            return self._sent(data, encoded)
        deflate = self._deflate
        if deflate is None:
            deflate = self._deflate = _context()
        return self._sent(data, deflate.compress(data) + deflate.flush(zlib.Z_SYNC_FLUSH))

    def encode_shared(self, data: bytes, lane: Lane, first: int, upto: int) -> bytes:
        """Events `first`..`upto` of the lane's channel (`data`), through the lane when the stream
        is in it or may join it, else through the stream's own context."""
        got = lane.span(first, upto)
        if got is not None:
            encoded, fresh = got
            if fresh or self._lane == first - 1:
                self._lane = upto
                self._joined = lane
                self._deflate = None
                return self._sent(data, encoded)
            if upto == lane.newest():
                lane.joiners = True  # caught up, a moment too late: the next event lets it in
        return self.encode(data)

    async def wrap(self, body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """A response body encoded part by part, ended with the trailer when it ends."""
        # aclosing: a client that leaves closes this body, and the stream's own must close too.
        async with aclosing(body):
            async for part in body:
                yield self.encode(part)
        yield self.finish()

    def finish(self) -> bytes:
        """The end of the gzip stream (its last block and trailer); nothing may be encoded after it."""
        end = LAST_BLOCK + self._crc.to_bytes(4, "little") + (self._size & 0xFFFFFFFF).to_bytes(4, "little")
        return end if self._started else GZIP_HEADER + end


def for_request(accept_encoding: str | None) -> GzipStream | None:
    """An encoder when the client accepts gzip, else None (the stream goes out as plain text)."""
    return GzipStream() if accepts_gzip(accept_encoding) else None
