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
file and hands it out in chunks as the application reads. Swapping Daphne's factory and input
queue touches its internals: that is done in `tasks_app.streams.seam`, which falls back to
Daphne's own server (with a WARNING) when they are not as expected.
"""

from __future__ import annotations

import asyncio
import tempfile
from typing import Any

from daphne.cli import CommandLineInterface
from daphne.http_protocol import HTTPFactory, WebRequest
from daphne.server import Server
from django.conf import settings
from twisted.web import http

from project.access_log import redact_details
from tasks_app.streams import seam

# Size of the body messages the application receives, and how much of a body stays in memory
# before the spool moves to disk.
BODY_CHUNK_BYTES = 64 * 1024
SPOOL_MEMORY_BYTES = 1024 * 1024


def error_response(status: str, code: str, message: str, field: str | None = None) -> bytes:
    """A complete HTTP response with the API's JSON error body, closing the connection."""
    from tasks_app.api.exceptions import refusal

    body, headers = refusal(code, message, field)
    head = f"HTTP/1.1 {status}\r\n" + "".join(f"{name}: {value}\r\n" for name, value in headers)
    return (head + "Connection: close\r\n\r\n").encode("ascii") + body


def too_large_response(limit: int) -> bytes:
    """A complete `413` HTTP response with the API's JSON error body."""
    from tasks_app.exceptions import UploadTooLarge

    error = UploadTooLarge(f"The request body is larger than the limit of {limit} bytes.", field="file")
    return error_response("413 Content Too Large", error.code, error.message, error.field)


class BoundedHTTPChannel(http.HTTPChannel):
    """Twisted's HTTP connection, cutting clients that are too slow or send too much header.

    - The request line and headers must arrive within `REQUEST_HEADER_TIMEOUT_SECONDS` of the
      connection opening (or of the previous response on a kept-alive connection): `408`.
    - A request body must keep moving: at least `REQUEST_BODY_MIN_BYTES_PER_SECOND` on average
      over every `REQUEST_BODY_TIMEOUT_SECONDS`: `408`.
    - Request line plus headers over `REQUEST_HEADERS_MAX_BYTES`: `431`.

    Once a request is whole, neither deadline runs: a long response (a stream) is not cut.
    """

    def connectionMade(self) -> None:  # noqa: N802 - Twisted's interface
        """Start the header deadline with the connection."""
        self.header_limit: int = settings.REQUEST_HEADERS_MAX_BYTES
        # Twisted answers a bare 400 at its own limits: keep them above ours.
        self.totalHeadersSize = self.header_limit + 4096
        self.MAX_LENGTH = self.header_limit
        self.header_bytes = 0
        self.body_bytes = 0
        self.deadline: Any = None
        self.body_check: Any = None
        super().connectionMade()
        self.expect_headers()

    def expect_headers(self) -> None:
        """Give the next request's line and headers their deadline."""
        self.header_bytes = 0
        self.cancel(self.deadline)
        self.deadline = self.callLater(settings.REQUEST_HEADER_TIMEOUT_SECONDS, self.headers_too_slow)

    def lineReceived(self, line: bytes) -> None:  # noqa: N802 - Twisted's interface
        """Count header bytes; refuse with `431` past the limit."""
        self.header_bytes += len(line) + 2
        if self.header_bytes > self.header_limit:
            self.refuse_headers()
            return
        super().lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:  # noqa: N802 - Twisted's interface
        """One header line alone is over the limit: `431`."""
        self.refuse_headers()

    def allHeadersReceived(self) -> None:  # noqa: N802 - Twisted's interface
        """Headers in time: stop their deadline, and watch the body's pace."""
        self.cancel(self.deadline)
        self.deadline = None
        self.body_bytes = 0
        self.body_check = self.callLater(settings.REQUEST_BODY_TIMEOUT_SECONDS, self.check_body)
        super().allHeadersReceived()

    def rawDataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's interface
        """Count body bytes for the pace check."""
        self.body_bytes += len(data)
        super().rawDataReceived(data)

    def allContentReceived(self) -> None:  # noqa: N802 - Twisted's interface
        """The request is whole: nothing more to watch until its response is done."""
        self.cancel(self.body_check)
        self.body_check = None
        super().allContentReceived()

    def requestDone(self, request: Any) -> None:  # noqa: N802 - Twisted's interface
        """A response is done: the next request on this connection gets its own deadline."""
        super().requestDone(request)
        if self.transport is not None and not self.transport.disconnecting:
            self.expect_headers()

    def connectionLost(self, reason: Any) -> None:  # noqa: N802 - Twisted's interface
        """Stop the timers."""
        self.cancel(self.deadline)
        self.cancel(self.body_check)
        super().connectionLost(reason)

    def check_body(self) -> None:
        """Cut a body that arrives slower than the minimum pace; else look again later."""
        window = settings.REQUEST_BODY_TIMEOUT_SECONDS
        if self.body_bytes < settings.REQUEST_BODY_MIN_BYTES_PER_SECOND * window:
            self.body_check = None
            rate = settings.REQUEST_BODY_MIN_BYTES_PER_SECOND
            message = f"The request body arrived too slowly (under {rate} bytes/s)."
            self.refuse(error_response("408 Request Timeout", "request_timeout", message))
            return
        self.body_bytes = 0
        self.body_check = self.callLater(window, self.check_body)

    def headers_too_slow(self) -> None:
        """Headers late: `408` for a request under way, a quiet close for an idle connection."""
        self.deadline = None
        if self.header_bytes == 0:
            self.transport.loseConnection()
            return
        limit = settings.REQUEST_HEADER_TIMEOUT_SECONDS
        message = f"The request headers did not arrive within {limit:g} s."
        self.refuse(error_response("408 Request Timeout", "request_timeout", message))

    def refuse_headers(self) -> None:
        """Answer `431` and close."""
        message = f"The request line and headers are larger than the limit of {self.header_limit} bytes."
        self.refuse(error_response("431 Request Header Fields Too Large", "headers_too_large", message))

    def refuse(self, response: bytes) -> None:
        """Send a complete error response and close; nothing more is read."""
        self.cancel(self.deadline)
        self.cancel(self.body_check)
        self.deadline = self.body_check = None
        self.dataReceived = self.lineReceived = self.rawDataReceived = lambda *args: None
        self.transport.write(response)
        self.transport.loseConnection()

    @staticmethod
    def cancel(call: Any) -> None:
        """Cancel a pending delayed call, if it still is."""
        if call is not None and call.active():
            call.cancel()


class BoundedWebRequest(WebRequest):
    """Daphne's request, refusing oversize bodies while they arrive and never parsing forms."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Twisted's multipart parsing of POST bodies is what costs ~10x the body in memory.
        kwargs["parsePOSTFormSubmission"] = False
        super().__init__(*args, **kwargs)
        self.body_limit: int = settings.REQUEST_BODY_MAX_BYTES
        self.body_received = 0
        self.refused = False

    def gotLength(self, length: int | None) -> None:  # noqa: N802 - Twisted's interface
        """Refuse at once when the declared `Content-Length` is over the limit."""
        super().gotLength(length)
        if length is not None and length > self.body_limit:
            self.refuse()

    def handleContentChunk(self, data: bytes) -> None:  # noqa: N802 - Twisted's interface
        """Store a body chunk (on disk past 100 kB); refuse once the total passes the limit."""
        if self.refused:
            return
        self.body_received += len(data)
        if self.body_received > self.body_limit:
            self.refuse()
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:  # noqa: N802 - Twisted's interface
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
    """Daphne's HTTP factory, building BoundedHTTPChannel connections that use BoundedWebRequest."""

    protocol = seam.channel_protocol(BoundedHTTPChannel)

    def buildProtocol(self, addr: Any) -> Any:  # noqa: N802 - Twisted's interface
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


class BoundedServer(seam.BoundedServer):
    """Daphne's server with BoundedHTTPFactory and SpooledInputQueue (through the seam)."""

    factory_class = BoundedHTTPFactory
    input_queue_class = SpooledInputQueue

    def log_action(self, protocol: str, action: str, details: dict) -> None:
        """Daphne's access log, with query strings redacted (they may carry stream tickets)."""
        super().log_action(protocol, action, redact_details(details))


class BoundedCommandLineInterface(CommandLineInterface):
    """Daphne's command line, running BoundedServer."""

    @property
    def server_class(self) -> type[Server]:
        """BoundedServer, or Daphne's own server when its internals are not as expected."""
        return seam.server_class(BoundedServer)


if __name__ == "__main__":
    BoundedCommandLineInterface.entrypoint()
