"""Daphne with bounded request bodies: `python -m project.server` takes daphne's arguments.

Plain Daphne costs about 12x an upload's size in memory and reads the whole body before the
application sees anything:

- Twisted's `Request.requestReceived` parses every `multipart/form-data` POST into
  `request.args` with the `email` package (the whole body as one bytes object, then copies of
  each part); Daphne never reads `args`. It also answers a malformed multipart body itself with
  an empty `400` before Django is asked.
- Daphne then pushes the whole body, in 8 KiB messages, into the application's input queue in
  one synchronous loop, so the body sits in memory until Django has copied it out.
- Twisted calls the application only once the whole body has arrived, so a size limit in Django
  (or in ASGI middleware) comes after the body was received.
- A chunked body reaches the application without `Content-Length`, and Django and DRF then
  read no body at all: a chunked upload was a "no file" 400.

Here the request refuses a body over `REQUEST_BODY_MAX_BYTES` with `413` as soon as its
`Content-Length` (or, for chunked bodies, the bytes received so far) passes the limit; Twisted's
form parsing is off; and the application's input queue keeps the body in a spooled temporary
file and hands it out in chunks as the application reads.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from functools import partial
from typing import Any

from daphne.cli import CommandLineInterface
from daphne.http_protocol import HTTPFactory, WebRequest
from daphne.server import Server
from django.conf import settings

from project.access_log import redact_details

# Size of the body messages the application receives, and how much of a body stays in memory
# before the spool moves to disk.
BODY_CHUNK_BYTES = 64 * 1024
SPOOL_MEMORY_BYTES = 1024 * 1024


def too_large_response(limit: int) -> bytes:
    """A complete `413` HTTP response with the API's JSON error body."""
    from tasks_app.api.exceptions import error_body
    from tasks_app.exceptions import UploadTooLarge

    error = UploadTooLarge(f"The request body is larger than the limit of {limit} bytes.", field="file")
    body = json.dumps(error_body(error.code, error.message, error.field)).encode()
    head = (
        "HTTP/1.1 413 Content Too Large\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        "X-Frame-Options: DENY\r\n"
        "Content-Security-Policy: default-src 'none'; frame-ancestors 'none'\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class BoundedWebRequest(WebRequest):
    """Daphne's request, refusing oversize bodies while they arrive and never parsing forms."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Twisted's multipart parsing of POST bodies is what costs ~10x the body in memory.
        kwargs["parsePOSTFormSubmission"] = False
        super().__init__(*args, **kwargs)
        self.body_limit: int = settings.REQUEST_BODY_MAX_BYTES
        self.body_received = 0
        self.refused = False

    def gotLength(self, length: int | None) -> None:
        """Refuse at once when the declared `Content-Length` is over the limit."""
        super().gotLength(length)
        if length is not None and length > self.body_limit:
            self.refuse()

    def handleContentChunk(self, data: bytes) -> None:
        """Store a body chunk (on disk past 100 kB); refuse once the total passes the limit."""
        if self.refused:
            return
        self.body_received += len(data)
        if self.body_received > self.body_limit:
            self.refuse()
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        """Hand the request to the application, unless it was refused already."""
        if self.refused:
            return
        if self.requestHeaders.hasHeader(b"transfer-encoding"):
            # The body is here, de-chunked: say how long it is, as for any other request.
            # Django and DRF read no body from a request without Content-Length.
            self.requestHeaders.removeHeader(b"transfer-encoding")
            self.requestHeaders.setRawHeaders(b"content-length", [b"%d" % self.body_received])
        super().requestReceived(command, path, version)

    def refuse(self) -> None:
        """Answer `413` and close the connection without reading the rest of the body."""
        self.refused = True
        self.content.close()
        # Twisted would answer `Expect: 100-continue` right after this call: no invitation.
        self.requestHeaders.removeHeader(b"expect")
        transport = self.channel.transport
        transport.write(too_large_response(self.body_limit))
        # loseConnection flushes the response first, then closes; reading stops now.
        transport.loseConnection()


class BoundedHTTPFactory(HTTPFactory):
    """Daphne's HTTP factory, building connections that use BoundedWebRequest."""

    def buildProtocol(self, addr: Any) -> Any:
        """A Daphne HTTP connection whose requests are BoundedWebRequest."""
        protocol = super().buildProtocol(addr)
        protocol.requestFactory = BoundedWebRequest
        return protocol


class SpooledInputQueue(asyncio.Queue):
    """An application input queue that keeps the request body in a spool, not in messages.

    Daphne puts the whole body in one go; the application gets it back in BODY_CHUNK_BYTES
    messages as it reads, so at most SPOOL_MEMORY_BYTES of it are ever in memory.
    """

    BODY = object()

    def __init__(self) -> None:
        super().__init__()
        self.spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)
        self.body_size = 0
        self.body_sent: int | None = None

    def put_nowait(self, item: Any) -> None:
        """Spool body messages; pass every other message through in order."""
        if item.get("type") != "http.request":
            super().put_nowait(item)
            return
        self.body_size += self.spool.write(item.get("body", b""))
        if not item.get("more_body", False):
            self.spool.seek(0)
            super().put_nowait(self.BODY)

    async def get(self) -> Any:
        """The next message: body chunks from the spool once the body is complete."""
        if self.body_sent is None or self.body_sent >= self.body_size:
            item = await super().get()
            if item is not self.BODY:
                return item
            self.body_sent = 0
        chunk = self.spool.read(BODY_CHUNK_BYTES)
        self.body_sent += len(chunk)
        more = self.body_sent < self.body_size
        if not more:
            self.spool.close()
        return {"type": "http.request", "body": chunk, "more_body": more}


class BoundedServer(Server):
    """Daphne's server with BoundedHTTPFactory and SpooledInputQueue."""

    @property
    def http_factory(self) -> HTTPFactory:
        """The HTTP factory `run()` listens with."""
        return self._http_factory

    @http_factory.setter
    def http_factory(self, factory: HTTPFactory) -> None:
        # Server.run() builds its factory inline; this is the one place to swap it.
        self._http_factory = BoundedHTTPFactory(self)

    def create_application(self, protocol: Any, scope: dict) -> asyncio.Queue | None:
        """Daphne's `create_application` with a SpooledInputQueue for HTTP requests."""
        assert "application_instance" not in self.connections[protocol]
        input_queue: asyncio.Queue = SpooledInputQueue() if scope.get("type") == "http" else asyncio.Queue()
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

    def log_action(self, protocol: str, action: str, details: dict) -> None:
        """Daphne's access log, with query strings redacted (they may carry stream tickets)."""
        super().log_action(protocol, action, redact_details(details))


class BoundedCommandLineInterface(CommandLineInterface):
    """Daphne's command line, running BoundedServer."""

    server_class = BoundedServer


if __name__ == "__main__":
    BoundedCommandLineInterface.entrypoint()
