"""Where a stream's bytes go: the outlet, over a server's wire or ASGI `send`.

Server-neutral: the seam builds outlets (`seam.outlet`) and the hub writes to them, so the
hub never imports a server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..wire_gzip import GzipStream, Lane

logger = logging.getLogger(__name__)


class Wire(Protocol):
    """A direct, synchronous way to a client's connection (`seam.Wire` under Daphne)."""

    writable: asyncio.Event

    @property
    def ready(self) -> bool:
        """Whether the client is connected and reading."""

    def write(self, data: bytes) -> bool:
        """Hand all of `data` to the connection; False when it did not take all of it."""

    def abort(self) -> None:
        """Drop the connection at once, without ending the response."""

    def close(self) -> None:
        """Let go of the connection."""


Send = Callable[[dict], Awaitable[None]]
# A channel's lane and the ids of the first and last events in a write.
Shared = tuple["Lane", int, int]


class Outlet:
    """Where one stream's bytes go: framed events and keep-alives, one write call each.

    Through the server's wire when there is one (the hub may then write without waking the
    stream), else through ASGI `send`. Every byte a stream sends passes `_out`, the one
    place a per-stream encoding applies: `shared` names a channel's events by their ids, so
    that streams at the same position share their encoding (`wire_gzip.Lane`); `alone` is a
    part sent on its own (a first snapshot, a keep-alive). A write that fails, or takes part
    of its bytes only, drops the connection: the client must not read on past a gap.
    """

    __slots__ = ("wire", "send", "encoder")

    def __init__(self, send: Send, wire: Wire | None = None) -> None:
        self.send = send
        self.wire = wire
        self.encoder: GzipStream | None = None

    @property
    def direct(self) -> bool:
        """Whether the hub may write now, without the stream's task."""
        return self.wire is not None and self.wire.ready

    def _out(self, data: bytes, shared: Shared | None, alone: bool) -> bytes:
        encoder = self.encoder
        if encoder is None:
            return data
        if shared is not None:
            return encoder.encode_shared(data, *shared)
        return encoder.encode(data, alone=alone)

    def write_now(self, data: bytes, shared: Shared | None = None, *, alone: bool = False) -> bool:
        """Write through the wire, now; False (and the connection dropped) when it failed."""
        if self.wire.write(self._out(data, shared, alone)):
            return True
        self.wire.abort()
        return False

    async def write(self, data: bytes, shared: Shared | None = None, *, alone: bool = False) -> bool:
        """Write from the stream's task once the client reads; False (and the connection
        dropped) when it failed."""
        if self.wire is not None:
            await self.drained()
            return self.write_now(data, shared, alone=alone)
        try:
            body = self._out(data, shared, alone)
            await self.send({"type": "http.response.body", "body": body, "more_body": True})
        except Exception:  # noqa: BLE001 - the stream ends; the client resumes from its own id
            logger.info("Writing to a stream failed; ending it", exc_info=True)
            return False
        return True

    async def drained(self) -> None:
        """Wait while the client is not reading (it holds nothing here meanwhile)."""
        while self.wire is not None and not self.wire.writable.is_set():  # paused again meanwhile
            await self.wire.writable.wait()

    def close(self) -> None:
        """Let go of the connection."""
        if self.wire is not None:
            self.wire.close()
