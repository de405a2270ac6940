"""Stored files over HTTP in bounded memory: ranges, conditional requests and backpressure.

Django's `FileResponse` cannot be used under ASGI for large files: its body is a synchronous
iterator, which Django's ASGI handler consumes whole into a list before sending, and Daphne's
`send` never waits for the client, so a download sat in the server's memory, once per client.
Here the body is an async generator that reads the file a chunk at a time on a thread and,
under Daphne, reads the next chunk only while the client's connection is not full
(`streams.seam.Wire`): a download costs about one chunk plus Twisted's 64 KiB buffer, however
large the file and however slowly the client reads.

The headers are those a browser needs to seek an `<audio>` element and to resume a broken
download: `Accept-Ranges`, `Content-Length`, `ETag` and `Last-Modified`; one `Range` gets `206`
(or `416` past the end), `If-Range` guards it, `If-None-Match` / `If-Modified-Since` get `304`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

from django.core.files.storage import Storage, default_storage
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse, StreamingHttpResponse
from django.utils.cache import get_conditional_response
from django.utils.http import content_disposition_header, http_date, parse_http_date_safe

from .api.exceptions import error_body
from .streams.seam import Wire

CHUNK_BYTES = 128 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass(frozen=True)
class StoredFile:
    """What the headers of a stored file say: its name in storage, size and version."""

    name: str
    size: int
    modified: int  # epoch seconds

    @property
    def etag(self) -> str:
        """A strong validator from the size and modification time (as nginx makes it)."""
        return f'"{self.modified:x}-{self.size:x}"'

    @classmethod
    def stat(cls, name: str, storage: Storage = default_storage) -> StoredFile:
        """Look the file up; FileNotFoundError when it is gone."""
        size = storage.size(name)
        modified = int(storage.get_modified_time(name).timestamp())
        return cls(name, size, modified)


def file_response(
    request: HttpRequest, stored: StoredFile, *, filename: str, content_type: str, attachment: bool = False
) -> HttpResponseBase:
    """The response to a GET or HEAD of `stored`: 200, 206, 304, 412 or 416."""
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": stored.etag,
        "Last-Modified": http_date(stored.modified),
        "Content-Disposition": content_disposition_header(attachment, filename),
    }
    validators = HttpResponse(status=200, headers=headers)
    conditional = get_conditional_response(request, stored.etag, stored.modified, validators)
    if conditional.status_code == 412:
        return JsonResponse(
            error_body("precondition_failed", "The file changed since the version the request names.", None),
            status=412,
        )
    if conditional is not validators:
        return conditional  # 304, with the validators
    span = requested_range(request, stored)
    if span == "unsatisfiable":
        response = JsonResponse(
            error_body("range_not_satisfiable", f"The file is {stored.size} bytes long.", "Range"), status=416
        )
        response["Content-Range"] = f"bytes */{stored.size}"
        return response
    start, end = span or (0, stored.size - 1)
    length = end - start + 1
    if request.method == "HEAD":
        response: HttpResponseBase = HttpResponse(content_type=content_type, headers=headers)
    else:
        response = StreamingHttpResponse(_body(request, stored.name, start, length), content_type=content_type)
        for name, value in headers.items():
            response[name] = value
    response["Content-Length"] = str(length)
    if span is not None:
        response.status_code = 206
        response["Content-Range"] = f"bytes {start}-{end}/{stored.size}"
    return response


def requested_range(request: HttpRequest, stored: StoredFile) -> tuple[int, int] | str | None:
    """The one byte range to send (first, last), "unsatisfiable", or None for the whole file.

    A malformed `Range`, several ranges, or an `If-Range` naming another version mean the
    whole file (RFC 9110 lets a server ignore a `Range` it does not serve).
    """
    header = request.headers.get("Range")
    if not header or not _if_range_holds(request.headers.get("If-Range"), stored):
        return None
    match = _RANGE.match(header.replace(" ", ""))
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.groups()
    if first == "":  # the last N bytes
        suffix = int(last)
        if suffix == 0 or stored.size == 0:
            return "unsatisfiable"
        return max(0, stored.size - suffix), stored.size - 1
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= stored.size:
        return "unsatisfiable"
    return start, min(int(last), stored.size - 1) if last else stored.size - 1


def _if_range_holds(if_range: str | None, stored: StoredFile) -> bool:
    """Whether a `Range` may be served: no `If-Range`, or one naming this very version."""
    if not if_range:
        return True
    if if_range.startswith('"'):
        return if_range == stored.etag  # a strong comparison: W/ tags never match
    return parse_http_date_safe(if_range) == stored.modified


async def _body(request: HttpRequest, name: str, start: int, length: int) -> AsyncIterator[bytes]:
    """`length` bytes of the file from `start`, a chunk at a time, as fast as the client reads."""
    # Registered here, on the event loop, not in the (synchronous) view's thread: Twisted is
    # not thread-safe. Default buffers: a download wants throughput, not a stream's small ones.
    wire = Wire.of(request.scope, small_buffers=False) if hasattr(request, "scope") else None
    handle = await asyncio.to_thread(default_storage.open, name, "rb")
    try:
        await asyncio.to_thread(handle.seek, start)
        left = length
        while left > 0:
            if wire is not None:
                # The client's buffer is full: read nothing more until it drains.
                await wire.writable.wait()
            chunk = await asyncio.to_thread(handle.read, min(CHUNK_BYTES, left))
            if not chunk:
                raise OSError(f"{name} ended {left} bytes early")  # truncated since it was stat'ed
            left -= len(chunk)
            yield chunk
    finally:
        handle.close()
        if wire is not None:
            wire.close()
