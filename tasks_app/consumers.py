"""Channels HTTP consumers that serve the SSE streams without holding a thread or connection."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.http import AsyncHttpConsumer
from django.conf import settings
from django_eventstream.event import Event
from django_eventstream.utils import make_id, sse_encode_event

from .exceptions import DomainError, InternalError, MethodNotAllowed
from .fanout import CATCH_UP, Subscription, get_hub
from .sse import (COMPLETE, PROGRESS, TOKEN_COOKIE, Credentials, StreamOpening, events_after,
                  open_task_stream, open_user_stream)

logger = logging.getLogger(__name__)

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class ProgressStreamConsumer(AsyncHttpConsumer):
    """Base SSE consumer: authorize, send snapshot and missed events, then stream live."""

    # Whether the response ends after the first `complete` event (per-task streams).
    ends_on_complete = True

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        """Serve one request, stopping as soon as the client goes away."""
        self.scope = scope
        self.base_send = send
        self.started = False
        while True:  # the request body is empty for GET; read until it is complete
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            if not message.get("more_body"):
                break
        stream = asyncio.ensure_future(self.serve())
        gone = asyncio.ensure_future(_wait_for_disconnect(receive))
        try:
            await asyncio.wait({stream, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for future in (stream, gone):
                future.cancel()
            await asyncio.gather(stream, gone, return_exceptions=True)
        if stream.done() and not stream.cancelled() and stream.exception():
            logger.error("Stream failed", exc_info=stream.exception())
            if not self.started and gone.cancelled():
                # Never leave a client waiting on a response that will not come.
                await self.send_error(InternalError())

    async def send_headers(self, *, status: int = 200, headers: Any = None) -> None:
        """Send the response start, remembering that it went out."""
        self.started = True
        await super().send_headers(status=status, headers=headers)

    async def open(self, credentials: Credentials, last_event_id: str | None) -> StreamOpening:
        """Authorize and read the opening events (subclasses)."""
        raise NotImplementedError

    async def serve(self) -> None:
        """Answer errors as JSON before the stream starts; otherwise stream until done."""
        headers = {k.decode("latin1").lower(): v.decode("latin1")
                   for k, v in self.scope.get("headers", [])}
        query = parse_qs(self.scope.get("query_string", b"").decode("latin1"))
        credentials = _credentials(headers, query)
        last_event_id = headers.get("last-event-id") or _last(query.get("lastEventId"))
        method = self.scope.get("method", "GET")
        if method != "GET":
            await self.send_error(MethodNotAllowed(f"Method {method} not allowed; use GET.",
                                                   field="method"))
            return
        try:
            opening = await self.open(credentials, last_event_id)
            if opening.status == 204:
                await self.send_response(204, b"", headers=[(b"cache-control", b"no-cache")])
                return
            sub = get_hub().subscribe(opening.channel, opening.user_id, opening.last_id)
        except DomainError as exc:
            await self.send_error(exc)
            return
        try:
            await self.stream(opening, sub)
        finally:
            get_hub().unsubscribe(sub)

    async def send_error(self, exc: DomainError) -> None:
        """A JSON error with a real status, before any stream starts."""
        body = {"error": {"code": exc.code, "message": exc.message, "field": exc.field}}
        headers = [(b"content-type", b"application/json")]
        if exc.status_code == 401:
            headers.append((b"www-authenticate", b'Bearer realm="api"'))
        if exc.status_code == 405:
            headers.append((b"allow", b"GET"))
        await self.send_response(exc.status_code, json.dumps(body).encode(), headers=headers)

    async def stream(self, opening: StreamOpening, sub: Subscription) -> None:
        """Snapshot first, then missed events, then live events and keep-alives."""
        await self.send_headers(status=200, headers=SSE_HEADERS)
        chunk = ""
        for snapshot in opening.snapshot:
            chunk += sse_encode_event(PROGRESS, json.dumps(snapshot),
                                      event_id=opening.snapshot_id)
        text, done = self.encode(opening.replay, sub)
        await self.send_body((chunk + text).encode(), more_body=not done)
        keepalive = settings.SSE_KEEPALIVE_SECONDS
        while not done:
            try:
                batch = await asyncio.wait_for(sub.queue.get(), timeout=keepalive)
            except asyncio.TimeoutError:
                await self.send_body(b": keep-alive\n\n", more_body=True)
                continue
            if batch is CATCH_UP or batch[0].id > sub.last_id + 1:
                # Joined after the hub moved on, or a notification was lost: read storage.
                batch = await database_sync_to_async(events_after)(sub.channel, sub.last_id)
            text, done = self.encode(batch, sub)
            if text or done:
                await self.send_body(text.encode(), more_body=not done)

    def encode(self, events: list[Event], sub: Subscription) -> tuple[str, bool]:
        """SSE text of the events this stream has not sent yet, and whether it should end."""
        out = []
        for event in events:
            if event.id is not None and event.id <= sub.last_id:
                continue
            sub.last_id = event.id
            out.append(sse_encode_event(event.type, json.dumps(event.data),
                                        event_id=make_id({sub.channel: event.id})))
            if event.type == COMPLETE and self.ends_on_complete:
                return "".join(out), True
        return "".join(out), False


class TaskProgressConsumer(ProgressStreamConsumer):
    """`GET /api/v1/sse/tasks/{task_id}/progress`: one task's stream, ends after `complete`."""

    async def open(self, credentials: Credentials, last_event_id: str | None) -> StreamOpening:
        """Authorize the task and read its snapshot."""
        task_id = self.scope["url_route"]["kwargs"]["task_id"]
        return await database_sync_to_async(open_task_stream)(credentials, task_id,
                                                              last_event_id)


class UserProgressConsumer(ProgressStreamConsumer):
    """`GET /api/v1/sse/tasks/progress`: every task of the caller, for dashboards."""

    ends_on_complete = False

    async def open(self, credentials: Credentials, last_event_id: str | None) -> StreamOpening:
        """Authorize the user and snapshot their unfinished tasks."""
        return await database_sync_to_async(open_user_stream)(credentials, last_event_id)


def _credentials(headers: dict[str, str], query: dict[str, list[str]]) -> Credentials:
    auth = headers.get("authorization", "")
    bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else None
    cookie_token = None
    for part in headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == TOKEN_COOKIE and value:
            cookie_token = value
    return Credentials(bearer=bearer, cookie_token=cookie_token, ticket=_last(query.get("ticket")))


def _last(values: list[str] | None) -> str | None:
    return next((v for v in reversed(values or []) if v), None)


async def _wait_for_disconnect(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
