"""ASGI plumbing for long-lived responses: a lean request path, and writes without a task.

A stream's connect must be cheap and its life must cost the server next to nothing. Django's
ASGI handler spends on every request what a stream does not need: each sync middleware hook
and each `request_started` / `request_finished` receiver is a hop to asgiref's one
thread-sensitive thread and back, and a disconnect leaves an exception, its traceback and
the whole request in reference cycles for the collector. `StreamingASGIHandler` serves the
views marked `sse_stream` on a path of its own, and every other view exactly as Django does:

- the same URLconf and the same middleware, minus `STREAM_SKIPPED_MIDDLEWARE` (sessions, the
  user, messages, CSRF: streams authenticate by token or ticket and only answer GET). The
  hooks of the rest (host validation, CORS, security and API headers) do no I/O and run in
  place, on the event loop, not on a thread;
- no `request_started` / `request_finished`: streams keep their database work on their own
  pool (`fanout.run_db`), whose threads keep their connections;
- a client's disconnect cancels its stream, which ends without an exception left behind.

ASGI has no way to say "the client's socket is full", and Daphne's `send` never waits: it
hands every body chunk to Twisted, which buffers it without limit. Twisted itself does say
it, through the public producer interface of its HTTP request (`registerProducer`): it calls
`pauseProducing` once its buffer is full and `resumeProducing` when it has drained. The
handler keeps the server's `send` in the scope; `Wire.of` finds Daphne's request behind it
(Daphne passes `partial(server.handle_reply, request)`) and registers, and fixes the socket's
kernel send buffer small, so a client that stops reading shows as full at once. The same
request lets the stream hub write an event's bytes to every caught-up client at once
(`Wire.write`), with no task to wake per stream. Under any other server `Wire.of` returns
None, and streams write through ASGI.
"""

from __future__ import annotations

import asyncio
import io
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import markcoroutinefunction
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.exception import convert_exception_to_response
from django.http import HttpRequest, HttpResponseBase
from django.urls import Resolver404, resolve, set_script_prefix
from django.utils.deprecation import MiddlewareMixin
from django.utils.module_loading import import_string
from twisted.internet import tcp
from twisted.web import http

from .wire_gzip import GzipStream

logger = logging.getLogger(__name__)

SCOPE_KEY = "tasks_app.send"
STREAM_BUFFER_BYTES = 16 * 1024
# Middleware a stream has no use for: it reads no session and no `request.user` (its
# credentials are a token or a ticket) and answers GET only, so CSRF has nothing to guard.
STREAM_SKIPPED_MIDDLEWARE = frozenset(
    {
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
    }
)

Handler = Callable[[HttpRequest], Awaitable[HttpResponseBase]]


class Wire:
    """A stream's Daphne request: a Twisted push producer, and a direct way to write.

    `writable` is clear while the client's socket is full; `write` sends bytes as the next
    part of the response body, as ASGI's `http.response.body` would.
    """

    __slots__ = ("request", "writable", "encoder")

    def __init__(self, request: Any, encoder: GzipStream | None = None) -> None:
        self.request = request
        self.writable = asyncio.Event()
        self.writable.set()
        # The stream's Content-Encoding, shared with its body: every write goes through it.
        self.encoder = encoder

    @classmethod
    def of(cls, scope: dict, encoder: GzipStream | None = None) -> Wire | None:
        """Register on the response behind this scope, when the server allows it."""
        request = (getattr(scope.get(SCOPE_KEY), "args", None) or (None,))[0]
        if not callable(getattr(request, "registerProducer", None)):
            return None
        wire = cls(request, encoder)
        try:
            request.registerProducer(wire, True)
        except (ValueError, RuntimeError, AttributeError):
            return None  # another producer is registered, or the connection is gone
        transport = getattr(getattr(request, "channel", None), "transport", None)
        if isinstance(getattr(transport, "bufferSize", None), int):
            # Twisted pauses a producer past 64 KiB buffered; a stream needs far less.
            transport.bufferSize = STREAM_BUFFER_BYTES
        if isinstance(transport, tcp.Connection):
            # The kernel's send buffer grows to megabytes for a client that does not read;
            # a fixed small one makes such a client show as full (and paused) at once.
            try:
                transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, STREAM_BUFFER_BYTES)
            except OSError:
                logger.debug("Could not size a stream's send buffer", exc_info=True)
        return wire

    @property
    def ready(self) -> bool:
        """Whether the client is connected and reading."""
        request = self.request
        return request is not None and self.writable.is_set() and not request.finished and request.channel is not None

    def write(self, data: bytes) -> bool:
        """Write `data` to the client now; False when the connection can take no more.

        The bytes go out as `Request.write` would send them (a chunk, on HTTP/1.1). When the
        connection has nothing buffered they are sent on its socket at once: a stream event
        is small, and waiting for the next turn of the loop to send it would cost each of a
        thousand clients two more system calls (registering and unregistering the socket
        for writing).
        """
        if not self.ready:
            return False
        request = self.request
        if self.encoder is not None:
            data = self.encoder.encode(data)
        try:
            transport = request.channel.transport
            if not (request.startedWriting and _idle_tcp(transport)):
                request.write(data)
                return True
            if request.chunked:
                data = b"".join(http.toChunk(data))
            request.sentLength += len(data)
            sent = transport.writeSomeData(data)
            if not isinstance(sent, int):
                return False  # the connection was lost; Twisted hears of it on its own
            if sent < len(data):
                transport.write(data[sent:])  # the rest waits in Twisted's buffer
        except Exception:  # noqa: BLE001 - the connection is going; the stream ends with it
            logger.debug("Writing to a stream failed", exc_info=True)
            return False
        return True

    def pauseProducing(self) -> None:  # noqa: N802 - Twisted's interface
        """The client's buffer is full: hold writes."""
        logger.debug("A stream's client stopped reading; holding its events")
        self.writable.clear()

    def resumeProducing(self) -> None:  # noqa: N802 - Twisted's interface
        """The buffer drained: writes may go on."""
        self.writable.set()

    def stopProducing(self) -> None:  # noqa: N802 - Twisted's interface
        """The connection is closing: release any waiting writer (it is cancelled anyway)."""
        self.writable.set()

    def close(self) -> None:
        """Unregister before the response ends, and let go of the request."""
        request, self.request = self.request, None
        try:
            request.unregisterProducer()
        except Exception:  # noqa: BLE001 - the connection may be gone already
            logger.debug("unregisterProducer failed", exc_info=True)
        if getattr(request, "producer", None) is self:
            request.producer = None  # no cycle left for the collector


def _idle_tcp(transport: Any) -> bool:
    """Whether `transport` is a plain TCP connection, open, with nothing waiting to be sent."""
    return (
        isinstance(transport, tcp.Connection)
        and transport.connected
        and not transport.disconnecting
        and not transport.dataBuffer
        and not transport._tempDataBuffer  # noqa: SLF001 - Twisted's pending writes
    )


def sse_stream(view: Callable) -> Callable:
    """Mark a view as a long-lived stream (see `StreamingASGIHandler`)."""
    view.sse_stream = True
    return view


class _InPlace:
    """A MiddlewareMixin's hooks, run on the event loop instead of a thread.

    Only for middleware whose hooks do no I/O (the ones streams keep).
    """

    def __init__(self, middleware: MiddlewareMixin, get_response: Handler) -> None:
        markcoroutinefunction(self)
        self.middleware = middleware
        self.get_response = get_response
        self.process_request = getattr(middleware, "process_request", None)
        self.process_response = getattr(middleware, "process_response", None)

    async def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.process_request(request) if self.process_request else None
        if response is None:
            response = await self.get_response(request)
        if self.process_response:
            response = self.process_response(request, response)
        return response


def stream_middleware_chain() -> Handler:
    """The view of the resolved stream, inside the project's middleware minus the skipped."""

    async def view(request: HttpRequest) -> HttpResponseBase:
        match = request.resolver_match
        return await match.func(request, *match.args, **match.kwargs)

    handler: Handler = convert_exception_to_response(view)
    for path in reversed(settings.MIDDLEWARE):
        if path in STREAM_SKIPPED_MIDDLEWARE:
            continue
        middleware = import_string(path)(handler)
        if isinstance(middleware, MiddlewareMixin):
            if any(hasattr(middleware, hook) for hook in ("process_view", "process_exception")):
                raise ImproperlyConfigured(f"{path} has view or exception hooks; list it in STREAM_SKIPPED_MIDDLEWARE")
            middleware = _InPlace(middleware, handler)
        elif not getattr(middleware, "async_capable", False):
            raise ImproperlyConfigured(f"{path} cannot run on the event loop; list it in STREAM_SKIPPED_MIDDLEWARE")
        handler = convert_exception_to_response(middleware)
    return handler


class StreamingASGIHandler(ASGIHandler):
    """Django's ASGI handler, with a lean path for stream views (see the module)."""

    def __init__(self) -> None:
        super().__init__()
        self.stream_chain = stream_middleware_chain()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        """Serve streams on their own path; everything else as Django does."""
        if scope["type"] == "http":
            scope[SCOPE_KEY] = send
            try:
                match = resolve(scope["path"])
            except Resolver404:
                match = None
            if match is not None and getattr(match.func, "sse_stream", False):
                await self.serve_stream(scope, receive, send, match)
                return
        await super().__call__(scope, receive, send)

    async def serve_stream(self, scope: dict, receive: Any, send: Any, match: Any) -> None:
        """Read the (ignored) body, run the chain, send the response until it or the client ends."""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            if not message.get("more_body", False):
                break
        set_script_prefix(get_script_prefix(scope))
        request, response = self.create_request(scope, io.BytesIO())
        if request is not None:
            request.resolver_match = match
            response = await self.stream_chain(request)
        stream = asyncio.current_task()
        gone = asyncio.Event()
        watcher = asyncio.ensure_future(_cancel_on_disconnect(receive, stream, gone))
        try:
            await self.send_response(response, send)
        except asyncio.CancelledError:
            if not gone.is_set():
                raise  # the server is shutting down, not the client leaving
            stream.uncancel()
        finally:
            watcher.cancel()


async def _cancel_on_disconnect(receive: Any, stream: asyncio.Task, gone: asyncio.Event) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    gone.set()
    stream.cancel()
