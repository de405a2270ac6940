"""ASGI plumbing for long-lived responses: no thread per stream, and backpressure.

Django's ASGI handler gives every request its own thread-sensitive context, so the sync
receivers of `request_started` start a thread that lives as long as the request: for a
stream, as long as the stream. `StreamingASGIHandler` serves the views marked `sse_stream`
without that context (their few sync calls go to asgiref's shared thread); every other view
is served exactly as Django does.

ASGI has no way to say "the client's socket is full", and Daphne's `send` never waits: it
hands every body chunk to Twisted, which buffers it without limit. Twisted itself does say
it, through the public producer interface of its HTTP request (`registerProducer`): it calls
`pauseProducing` once its buffer is full and `resumeProducing` when it has drained. The
middleware below keeps the server's `send` in the scope; `Backpressure.of` finds Daphne's
request behind it (Daphne passes `partial(server.handle_reply, request)`) and registers.
Under any other server it returns None, and streams simply write.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from django.core.handlers.asgi import ASGIHandler
from django.urls import Resolver404, resolve

logger = logging.getLogger(__name__)

SCOPE_KEY = "tasks_app.send"


class Backpressure:
    """A Twisted push producer whose `writable` event is clear while the client is full."""

    __slots__ = ("request", "writable")

    def __init__(self, request: Any) -> None:
        self.request = request
        self.writable = asyncio.Event()
        self.writable.set()

    @classmethod
    def of(cls, scope: dict) -> Backpressure | None:
        """Register on the response behind this scope, when the server allows it."""
        request = (getattr(scope.get(SCOPE_KEY), "args", None) or (None,))[0]
        if not callable(getattr(request, "registerProducer", None)):
            return None
        producer = cls(request)
        try:
            request.registerProducer(producer, True)
        except (ValueError, RuntimeError, AttributeError):
            return None  # another producer is registered, or the connection is gone
        return producer

    def pauseProducing(self) -> None:  # noqa: N802 - Twisted's interface
        """The client's buffer is full: hold writes."""
        self.writable.clear()

    def resumeProducing(self) -> None:  # noqa: N802 - Twisted's interface
        """The buffer drained: writes may go on."""
        self.writable.set()

    def stopProducing(self) -> None:  # noqa: N802 - Twisted's interface
        """The connection is closing: release any waiting writer (it is cancelled anyway)."""
        self.writable.set()

    def close(self) -> None:
        """Unregister before the response ends."""
        try:
            self.request.unregisterProducer()
        except Exception:  # noqa: BLE001 - the connection may be gone already
            logger.debug("unregisterProducer failed", exc_info=True)


def sse_stream(view: Callable) -> Callable:
    """Mark a view as a long-lived stream (see `StreamingASGIHandler`)."""
    view.sse_stream = True
    return view


class StreamingASGIHandler(ASGIHandler):
    """Django's ASGI handler, minus the per-request thread for stream views."""

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        """Serve streams in the shared context; everything else as Django does."""
        if scope["type"] == "http":
            scope[SCOPE_KEY] = send
            try:
                match = resolve(scope["path"])
            except Resolver404:
                match = None
            if match is not None and getattr(match.func, "sse_stream", False):
                await self.handle(scope, receive, send)
                return
        await super().__call__(scope, receive, send)
