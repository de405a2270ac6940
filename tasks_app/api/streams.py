"""The SSE stream views: async Django views, so streams pass the same middleware as the API.

A stream holds no thread and no database connection while it is open: database work runs
on the hub's pool (`fanout.run_db`) and live events come from the hub's ring.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from .. import wire_gzip
from ..streaming import Wire, sse_stream
from ..events import COMPLETE, ERROR, LogEvent, events_after
from ..exceptions import DomainError, InternalError, MethodNotAllowed
from ..fanout import BATCH, KEEPALIVE, Channel, Hub, Subscription, get_hub, run_db
from ..metrics import SSE_EVENTS_DELIVERED, SSE_STREAM_CONNECTS
from ..models import user_channel
from ..sse import TOKEN_COOKIE, Credentials, StreamOpening, authenticate_user_stream, open_task_stream, open_user_stream
from .exceptions import error_body

logger = logging.getLogger(__name__)

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


# GET-only, and never authenticated by the session: other methods get a JSON 405, not
# Django's CSRF page.
@csrf_exempt
@sse_stream
async def task_progress_stream(request: HttpRequest, task_id: str) -> HttpResponse:
    """`GET sse/tasks/{task_id}/progress`: one task's events; ends after `complete`."""

    async def opener(hub: Hub, credentials: Credentials, last: str | None) -> tuple[Channel, StreamOpening]:
        channel = hub.acquire(f"task-{task_id}")
        try:
            return channel, await run_db(open_task_stream, credentials, task_id, last)
        except BaseException:
            hub.release(channel)
            raise

    return await _serve(request, opener, ends_on_complete=True)


@csrf_exempt
@sse_stream
async def tasks_progress_stream(request: HttpRequest) -> HttpResponse:
    """`GET sse/tasks/progress`: every task of the caller, for dashboards."""

    async def opener(hub: Hub, credentials: Credentials, last: str | None) -> tuple[Channel, StreamOpening]:
        caller = await run_db(authenticate_user_stream, credentials)
        channel = hub.acquire(user_channel(caller.user.pk))
        try:
            return channel, await run_db(open_user_stream, caller, last)
        except BaseException:
            hub.release(channel)
            raise

    return await _serve(request, opener, ends_on_complete=False)


Opener = Callable[[Hub, Credentials, str | None], Awaitable[tuple[Channel, StreamOpening]]]


async def _serve(request: HttpRequest, opener: Opener, *, ends_on_complete: bool) -> HttpResponse:
    """Answer errors as JSON before the stream starts; otherwise start streaming."""
    if request.method != "GET":
        return _error(MethodNotAllowed(f"Method {request.method} not allowed; use GET.", field="method"))
    hub = get_hub()
    last = request.headers.get("Last-Event-ID") or _last(request.GET.getlist("lastEventId"))
    opened_at = time.monotonic()
    try:
        channel, opening = await opener(hub, _credentials(request), last)
    except DomainError as exc:
        return _error(exc)
    except Exception:  # never leave a client waiting on a response that will not come
        logger.exception("Opening a stream failed")
        return _error(InternalError())
    if opening.status == 204:
        hub.release(channel)
        SSE_STREAM_CONNECTS.labels(status="204").inc()
        return HttpResponse(status=204, headers={"Cache-Control": "no-cache"})
    encoder = wire_gzip.for_request(request.headers.get("Accept-Encoding"))
    if opening.finished:
        hub.release(channel)
        body = _finished(opening)
    else:
        try:
            sub = hub.subscribe(
                channel,
                user_id=opening.caller.user.pk,
                last_id=opening.last_id,
                current=opening.current,
                expires_at=opening.caller.expires_at,
                ends_on_complete=ends_on_complete,
                opened_at=opened_at,
            )
        except DomainError as exc:
            hub.release(channel)
            return _error(exc)
        body = _live(hub, sub, opening.head, Wire.of(request.scope, encoder))
    SSE_STREAM_CONNECTS.labels(status="200").inc()
    headers = {**SSE_HEADERS, **encoder.headers} if encoder else {**SSE_HEADERS, "Vary": "Accept-Encoding"}
    body = encoder.wrap(body) if encoder else body
    return StreamingHttpResponse(body, content_type="text/event-stream; charset=utf-8", headers=headers)


async def _live(hub: Hub, sub: Subscription, head: bytes, wire: Wire | None) -> AsyncIterator[bytes]:
    """Snapshot, then every event after the client's position, live, until the end.

    While the stream is caught up it waits, and the hub writes new events to its client
    itself (`Hub.push`); it wakes the stream for what it cannot do: a page from storage,
    a client that stopped reading, the end.
    """
    try:
        yield head or KEEPALIVE
        while True:
            if wire is not None and not wire.writable.is_set():
                # The client stopped reading: hold nothing for it. Its events stay in the
                # log, and it catches up from there once it reads again.
                await wire.writable.wait()
            if sub.final is not None:
                yield sub.final
                return
            if sub.ended:
                return
            frames, ended = hub.take(sub)
            if frames is None:  # behind the ring: catch up from storage, a page at a time
                frames, ended = await _page(sub)
            if frames:
                sub.last_write = time.monotonic()
                SSE_EVENTS_DELIVERED.inc(len(frames))
                yield b"".join(frames)
                if ended:
                    return
                continue
            if sub.keepalive:
                sub.keepalive = False
                sub.last_write = time.monotonic()
                yield KEEPALIVE
                continue
            sub.wire = wire
            await sub.wake.wait()
            sub.wake.clear()
            sub.wire = None
    except Exception:  # noqa: BLE001 - end the response; the client resumes with its last id
        logger.exception("Stream of %s failed", sub.channel.name)
    finally:
        sub.wire = None
        hub.unsubscribe(sub)
        if wire is not None:
            wire.close()


async def _page(sub: Subscription) -> tuple[list[bytes], bool]:
    """The next page of stored events after the stream's position."""
    page = await run_db(events_after, sub.channel.name, sub.last_id, limit=BATCH)
    if not page:
        # Nothing stored where the ring says there are newer events: they were trimmed.
        ring = sub.channel.ring
        sub.last_id = max(sub.last_id, ring[0][0] - 1 if ring else sub.channel.last or 0)
        return [], False
    return _frames(page, sub)


def _frames(page: list[LogEvent], sub: Subscription) -> tuple[list[bytes], bool]:
    out = []
    for event in page:
        out.append(event.frame())
        sub.last_id = event.eid
        if event.type == ERROR or (event.type == COMPLETE and sub.ends_on_complete):
            return out, True
    return out, False


async def _finished(opening: StreamOpening) -> AsyncIterator[bytes]:
    """A finished task: snapshot, the stored events the client missed, the final `complete`."""
    yield opening.head
    last = opening.last_id
    while last < opening.current - 1:
        page = await run_db(events_after, opening.channel, last, upto=opening.current - 1)
        if not page:
            break
        frames = []
        for event in page:
            frames.append(event.frame())
            last = event.eid
            if event.type in (COMPLETE, ERROR):
                yield b"".join(frames)  # an earlier attempt ended here: so does this stream
                return
        yield b"".join(frames)
    yield opening.tail


def _error(exc: DomainError) -> JsonResponse:
    """A JSON error with a real status, before any stream starts."""
    SSE_STREAM_CONNECTS.labels(status=str(exc.status_code)).inc()
    response = JsonResponse(error_body(exc.code, exc.message, exc.field), status=exc.status_code)
    if exc.status_code == 401:
        response["WWW-Authenticate"] = 'Bearer realm="api"'
    if exc.status_code == 405:
        response["Allow"] = "GET"
    return response


def _credentials(request: HttpRequest) -> Credentials:
    auth = request.headers.get("Authorization", "")
    bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else None
    return Credentials(
        bearer=bearer or None,
        cookie_token=request.COOKIES.get(TOKEN_COOKIE),
        ticket=_last(request.GET.getlist("ticket")),
    )


def _last(values: list[str]) -> str | None:
    return next((v for v in reversed(values) if v), None)
