"""The one seam to the server's internals: Daphne, Twisted and Django details live here only.

Four details make streams cheap and uploads bounded; none is a public API, so each is checked
once at start-up (`internals`). When any is not what this module expects (an upgrade moved
it), or `SSE_PUBLIC_APIS_ONLY` is set, it logs a WARNING and everything runs on public APIs:
Daphne's own server and app path, Django's own ASGI path, and Twisted's `Request.write`
(through ASGI `send`), with no wire.

- **Writes without a task** (Twisted). ASGI has no way to say "the client's socket is full",
  and Daphne's `send` never waits: it hands every body chunk to Twisted, which buffers it
  without limit. Twisted says it through the public producer interface of its request
  (`registerProducer`). `Wire.of` finds Daphne's request behind the server's `send` (Daphne
  passes `partial(server.handle_reply, request)`), registers, and fixes the socket's kernel
  send buffer small, so a client that stops reading shows as full at once. The hub then
  writes an event's bytes to every caught-up client at once (`Wire.write`, on the socket
  when nothing is buffered), with no task to wake per stream.
- **A lean request path for streams** (Django). `StreamingASGIHandler` serves the views
  marked `sse_stream` through `create_request` / `send_response`: the same URLconf and
  middleware minus `STREAM_SKIPPED_MIDDLEWARE` (sessions, the user, messages, CSRF: streams
  authenticate by token or ticket and only answer GET), hooks run in place on the event loop;
  no `request_started` / `request_finished`; a disconnect cancels the stream without an
  exception left in reference cycles.
- **The server's HTTP factory and app path** (Daphne). `Server.run()` builds its factory
  inline and `create_application` its input queue: `BoundedServer` swaps both (bounded
  request bodies, header deadlines: `project.server`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import inspect
import io
import logging
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from asgiref.sync import ThreadSensitiveContext, markcoroutinefunction, sync_to_async
from daphne.http_protocol import HTTPFactory
from daphne.server import Server
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.base import BaseHandler
from django.core.handlers.exception import convert_exception_to_response
from django.http import HttpRequest, HttpResponseBase
from django.urls import Resolver404, resolve, set_script_prefix
from django.utils.deprecation import MiddlewareMixin
from django.utils.module_loading import import_string
from twisted.internet import tcp
from twisted.internet.testing import StringTransport
from twisted.web import http

from .collector import collector
from .outlet import Outlet

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
    """A response's Daphne request: a Twisted push producer, and a direct way to write.

    `writable` is clear while the client's socket is full; `write` sends bytes as the next
    part of the response body, as ASGI's `http.response.body` would; `abort` drops the
    connection; `close` unregisters before the response ends. Any long response (a stream,
    a download) can use it: `Wire.of(scope)` is None when there is no such request.
    """

    __slots__ = ("request", "writable")

    def __init__(self, request: Any) -> None:
        self.request = request
        self.writable = asyncio.Event()
        self.writable.set()

    @classmethod
    def of(cls, scope: dict, *, small_buffers: bool = True) -> Wire | None:
        """Register on the response behind this scope, when the server allows it.

        `small_buffers=False` keeps Twisted's and the kernel's buffer sizes (for downloads).
        """
        if not internals():
            return None
        request = (getattr(scope.get(SCOPE_KEY), "args", None) or (None,))[0]
        if not callable(getattr(request, "registerProducer", None)):
            return None
        wire = cls(request)
        try:
            request.registerProducer(wire, True)
        except (ValueError, RuntimeError, AttributeError):
            return None  # another producer is registered, or the connection is gone
        if not small_buffers:
            return wire
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
        """Hand all of `data` to the connection now; False when it did not take all of it.

        The bytes go out as `Request.write` would send them (a chunk, on HTTP/1.1). When the
        connection has nothing buffered they are sent on its socket at once: a stream event
        is small, and waiting for the next turn of the loop to send it would cost each of a
        thousand clients two more system calls (registering and unregistering the socket
        for writing). What the socket does not take waits in Twisted's buffer, in order.
        After a False some of the bytes may have gone out: drop the connection (`abort`).
        """
        request = self.request
        if request is None or request.finished or request.channel is None:
            return False  # the response or its connection is gone
        # A full client is no failure: what it cannot take yet waits in Twisted's buffer.
        try:
            transport = request.channel.transport
            if getattr(transport, "disconnecting", False) or not getattr(transport, "connected", True):
                return False  # Twisted would drop the bytes without a word
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
        except Exception:  # noqa: BLE001 - the caller drops the connection; the client resumes
            logger.warning("Writing to a stream failed", exc_info=True)
            return False
        return True

    def abort(self) -> None:
        """Drop the connection at once: what was half written must not look like an ending."""
        request = self.request
        transport = getattr(getattr(request, "channel", None), "transport", None)
        if transport is None:
            return
        try:
            abort = getattr(transport, "abortConnection", None) or transport.loseConnection
            abort()
        except Exception:  # noqa: BLE001 - the connection is gone already
            logger.debug("Dropping a stream's connection failed", exc_info=True)

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


def outlet(scope: dict) -> Outlet:
    """Where a response behind this scope writes: the wire when there is one, else ASGI `send`."""
    return Outlet(scope[SCOPE_KEY], Wire.of(scope))


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


@functools.cache
def overloaded() -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The `503` answer's JSON body and headers (the API's error shape and headers)."""
    from ..api.exceptions import refusal  # DRF: only once Django is set up

    body, headers = refusal("overloaded", "The server is answering as many requests as it can; try again in a second.")
    return body, [(name.lower().encode(), value.encode()) for name, value in headers] + [(b"retry-after", b"1")]


async def send_overloaded(send: Callable[[dict], Awaitable[None]]) -> None:
    """Answer `503` with Retry-After at once, without reading the request or touching Django.

    A web process serves requests' synchronous code on a few threads; requests past what they
    can serve wait, and under a burst they would pile up without limit, each holding memory,
    and every garbage collection walking them all until the process serves less and less.
    """
    body, headers = overloaded()
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})


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


class RequestThreads:
    """A fixed set of threads for requests' synchronous code (views, the ORM, middleware).

    Django runs a request's synchronous code on a thread of its own: asgiref's per-request
    context starts a new thread for it, and one more to join it when the request ends, and
    the event loop waits on each start. Under load those waits stall the loop, requests pile
    up, and every one of them holds a thread. Here each request is handed, through asgiref's
    public `ThreadSensitiveContext(executor=…)`, the single-thread executor with the fewest
    requests: a request's calls still run one at a time on one thread, as Django expects;
    the threads are started once; and a request that waits for its turn holds no thread.
    """

    def __init__(self, size: int) -> None:
        self.executors = [ThreadPoolExecutor(1, thread_name_prefix=f"request-{i}") for i in range(size)]
        self.load = [0] * size

    @contextlib.asynccontextmanager
    async def context(self) -> AsyncIterator[None]:
        """Run the block's thread-sensitive calls on the least busy thread."""
        i = self.load.index(min(self.load))
        self.load[i] += 1
        try:
            async with ThreadSensitiveContext(executor=self.executors[i]):
                yield
        finally:
            self.load[i] -= 1


class StreamingASGIHandler(ASGIHandler):
    """Django's ASGI handler, with a lean path for stream views (see the module)."""

    def __init__(self) -> None:
        super().__init__()
        self.stream_chain = stream_middleware_chain() if internals() else None
        # On the public path a stream is a Django request for as long as it lives: it keeps
        # Django's own thread per request, so no stream waits for another's thread.
        self.threads: RequestThreads | None = None
        self.sync_chain: BaseHandler | None = None
        if self.stream_chain is None:
            # Streams then take Django's own path, their requests in flight for as long as they
            # live: no moment would be safe to freeze, so the collector does not (`collector`).
            collector.enabled = False
        else:
            self.threads = RequestThreads(settings.WEB_REQUEST_THREADS)
            self.sync_chain = BaseHandler()
            self.sync_chain.load_middleware(is_async=False)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        """Serve streams on their own path; everything else as Django does."""
        if scope["type"] == "http":
            scope[SCOPE_KEY] = send
            if self.stream_chain is None:  # public APIs only: Django's own path for all
                await super().__call__(scope, receive, send)
                return
            try:
                match = resolve(scope["path"])
            except Resolver404:
                match = None
            if match is not None and getattr(match.func, "sse_stream", False):
                await self.serve_stream(scope, receive, send, match)
                return
            if collector.in_flight >= settings.WEB_MAX_REQUESTS_IN_FLIGHT:
                collector.shed += 1
                await send_overloaded(send)
                return
            # No freeze while a request is in flight (see `collector`). Django's own per-request
            # context inside finds this one and uses its thread.
            with collector.busy():
                async with self.threads.context():
                    await super().__call__(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        """The response to a request that is not a stream: middleware and view in one call on its thread.

        Django's async path calls each synchronous middleware's `process_request` and
        `process_response` through `sync_to_async`: two handovers between the event loop and
        the request's thread per middleware, twenty for this project's, each a wake-up and a
        wait for the GIL. Under load the handovers cost more than the views, and requests pile
        up. The request's whole synchronous part, `BaseHandler.get_response` as under WSGI,
        takes one handover instead.
        """
        if self.sync_chain is None:
            return await super().get_response_async(request)
        return await sync_to_async(self.sync_chain.get_response, thread_sensitive=True)(request)

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


# ------------------------------------------------------------------- Daphne's app path


class BoundedServer(Server):
    """Daphne's server with its HTTP factory and its HTTP input queue swapped.

    `project.server` names the two classes (`factory_class`, `input_queue_class`).
    """

    factory_class: type[HTTPFactory] = HTTPFactory
    input_queue_class: type[asyncio.Queue] = asyncio.Queue

    @property
    def http_factory(self) -> HTTPFactory:
        """The HTTP factory `run()` listens with."""
        return self._http_factory

    @http_factory.setter
    def http_factory(self, factory: HTTPFactory) -> None:
        # Server.run() builds its factory inline; this is the one place to swap it.
        self._http_factory = self.factory_class(self)

    def create_application(self, protocol: Any, scope: dict) -> asyncio.Queue | None:
        """Daphne's `create_application` (checked at start-up), with its own HTTP input queue."""
        assert "application_instance" not in self.connections[protocol]
        http_request = scope.get("type") == "http"
        input_queue: asyncio.Queue = self.input_queue_class() if http_request else asyncio.Queue()
        scope.setdefault("asgi", {"version": "3.0"})
        application_instance = self.application(
            scope=scope, receive=input_queue.get, send=partial(self.handle_reply, protocol)
        )
        if protocol not in self.connections:
            return None
        self.connections[protocol]["application_instance"] = asyncio.ensure_future(
            application_instance, loop=asyncio.get_event_loop()
        )
        return input_queue


def channel_protocol(channel_class: type[http.HTTPChannel]) -> Callable[[http.HTTPFactory], Any]:
    """An `HTTPFactory.protocol` building connections of `channel_class` (Twisted wraps each
    channel in a private proxy that picks HTTP/1.1 or HTTP/2; this builds the same)."""

    def build(factory: http.HTTPFactory) -> Any:
        return http._GenericHTTPChannelProtocol(channel_class())  # noqa: SLF001 - checked at start-up

    return build


def server_class(bounded: type[BoundedServer]) -> type[Server]:
    """`bounded` when Daphne's internals are as expected; else Daphne's own server."""
    return bounded if internals() else Server


# ------------------------------------------------------------------ the start-up check

# `Server.create_application` as `BoundedServer` copies it (whitespace-normalized SHA-256).
DAPHNE_CREATE_APPLICATION = "6ac9fb74770b2318"


class _NoReactor:
    """A reactor that registers nothing: enough for a probe connection that is never run."""

    def addReader(self, reader: Any) -> None:  # noqa: N802 - Twisted's interface
        """Ignore."""

    addWriter = removeReader = removeWriter = addReader  # noqa: N815


def check_twisted() -> None:
    """A `tcp.Connection` writes to its socket as `Wire.write` expects; a Request has its fields."""
    near, far = socket.socketpair()
    try:
        connection = tcp.Connection(near, None, reactor=_NoReactor())
        connection.connected = True
        if not _idle_tcp(connection):
            raise RuntimeError("tcp.Connection's buffers are not where Wire.write looks")
        if connection.writeSomeData(b"probe") != 5 or far.recv(16) != b"probe":
            raise RuntimeError("tcp.Connection.writeSomeData does not write to the socket")
    finally:
        near.close()
        far.close()
    channel = http.HTTPChannel()
    channel.makeConnection(StringTransport())
    request = http.Request(channel)
    for name in ("sentLength", "chunked", "startedWriting", "finished"):
        if not hasattr(request, name):
            raise RuntimeError(f"twisted.web.http.Request has no {name}")
    if b"".join(http.toChunk(b"ab")) != b"2\r\nab\r\n":
        raise RuntimeError("twisted.web.http.toChunk frames differently")
    if http.HTTPFactory.protocol is not getattr(http, "_genericHTTPChannelProtocolFactory", None):
        raise RuntimeError("twisted.web.http.HTTPFactory no longer builds its channels as channel_protocol does")


def check_daphne() -> None:
    """`Server.run` builds its factory as `BoundedServer` expects; `create_application` is the copied one."""
    if "self.http_factory = HTTPFactory(self)" not in inspect.getsource(Server.run):
        raise RuntimeError("daphne's Server.run no longer builds its HTTP factory inline")
    source = re.sub(r"\s+", " ", inspect.getsource(Server.create_application))
    if hashlib.sha256(source.encode()).hexdigest()[:16] != DAPHNE_CREATE_APPLICATION:
        raise RuntimeError("daphne's Server.create_application changed")


def check_django() -> None:
    """`ASGIHandler.create_request`, `send_response` and `get_response_async` take what the lean path passes."""
    for method, expected in (
        ("create_request", ["scope", "body_file"]),
        ("send_response", ["response", "send"]),
        ("get_response_async", ["request"]),
    ):
        params = list(inspect.signature(getattr(ASGIHandler, method)).parameters)[1:]
        if params != expected:
            raise RuntimeError(f"django's ASGIHandler.{method} takes {params}, not {expected}")


CHECKS = {"twisted": check_twisted, "daphne": check_daphne, "django": check_django}


@functools.cache
def internals() -> bool:
    """Whether the internals this module uses are as expected (checked once, at start-up)."""
    if getattr(settings, "SSE_PUBLIC_APIS_ONLY", False):
        logger.warning("SSE_PUBLIC_APIS_ONLY is set: streams and uploads run on public server APIs only")
        return False
    problems = []
    for name, check in CHECKS.items():
        try:
            check()
        except Exception as exc:  # noqa: BLE001 - any surprise means: do not rely on it
            problems.append(f"{name}: {exc}")
    if problems:
        logger.warning(
            "Server internals are not as expected (%s); running on public APIs only: Daphne's own app path, "
            "Django's ASGI path and Request.write through ASGI, without bounded upload bodies or stream backpressure",
            "; ".join(problems),
        )
        return False
    return True
