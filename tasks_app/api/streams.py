"""The SSE stream views: async Django views, so streams pass the same middleware as the API.

A view authorizes the stream and answers errors as JSON; once it streams, the hub runs it
(`Hub.serve`). A stream holds no thread and no database connection while it is open:
database work runs on the hub's pool (`hub.run_db`) and live events come from the hub's ring.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from .. import wire_gzip
from ..exceptions import DomainError, InternalError, MethodNotAllowed
from ..metrics import SSE_STREAM_CONNECTS
from ..sse import TOKEN_COOKIE, Credentials, StreamOpening, authenticate_user_stream, open_task_stream, open_user_stream
from ..streams import seam
from ..streams.hub import Channel, Hub, get_hub
from ..streams.names import task_channel, user_channel
from ..streams.outlet import Outlet
from ..streams.pool import run_db
from ..streams.seam import sse_stream
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
        channel = hub.acquire(task_channel(task_id))
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
        outlet = _outlet(request, encoder)
        last, upto = opening.last_id, opening.current - 1
        body = _written(lambda: hub.replay(outlet, opening.channel, last, upto, opening.head, opening.tail))
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
        outlet = _outlet(request, encoder)
        body = _written(lambda: hub.serve(sub, outlet, opening.head))
    SSE_STREAM_CONNECTS.labels(status="200").inc()
    headers = {**SSE_HEADERS, **encoder.headers} if encoder else {**SSE_HEADERS, "Vary": "Accept-Encoding"}
    body = encoder.wrap(body) if encoder else body
    return StreamingHttpResponse(body, content_type="text/event-stream; charset=utf-8", headers=headers)


def _outlet(request: HttpRequest, encoder: wire_gzip.GzipStream | None) -> Outlet:
    """The stream's outlet, every byte through the response's Content-Encoding."""
    outlet = seam.outlet(request.scope)
    if encoder is not None:
        outlet.encoder = encoder
    return outlet


async def _written(run: Callable[[], Awaitable[None]]) -> AsyncIterator[bytes]:
    """The response body: the stream writes itself through its outlet, so nothing is yielded."""
    await run()
    for chunk in ():
        yield chunk


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
