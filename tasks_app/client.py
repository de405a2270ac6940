"""Client side of the SSE stream: follow one task's progress over HTTP until it finishes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
from httpx_sse import connect_sse

# Seconds to wait for a TCP connection: a reachable server accepts at once.
CONNECT_TIMEOUT = 5.0
# What the caller is told about each event: (event type, TaskProgress payload, event id).
OnEvent = Callable[[str, dict, str], None]


class StreamError(Exception):
    """The server refused or ended the stream (401, 404, 429, a final `error` event, …) or kept
    dropping it."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.message = message
        self.status = status
        super().__init__(message)


def stream_url(base_url: str, task_id: str) -> str:
    """URL of one task's SSE stream on a server (this project's URLconf names its path)."""
    from django.urls import reverse

    return base_url.rstrip("/") + reverse("sse_task_progress", kwargs={"task_id": task_id})


def watch(
    base_url: str,
    task_id: str,
    token: str,
    on_event: OnEvent | None = None,
    *,
    timeout: float = 60.0,
    max_retries: int = 5,
    retry_delay: float = 1.0,
    last_event_id: str | None = None,
    transport: httpx.BaseTransport | None = None,
) -> dict:
    """Follow a task's stream until `complete` and return that final TaskProgress.

    Reconnects with Last-Event-ID when the connection drops mid-stream, so no event is
    missed; gives up after `max_retries` failed attempts in a row. A server that cannot be
    reached at all on the first attempt (wrong URL, nothing listening) fails at once. A 204 (the stream
    already ended for this client) is answered with the polling endpoint's TaskProgress.
    `timeout` bounds each read: the server sends a keep-alive at least every 20 s.
    `transport` replaces the network (tests pass an httpx.MockTransport).
    """
    url = stream_url(base_url, task_id)
    headers = {"Authorization": f"Bearer {token}"}
    failures = 0
    answered = False
    with httpx.Client(timeout=httpx.Timeout(timeout, connect=CONNECT_TIMEOUT), transport=transport) as client:
        while True:
            if last_event_id:
                headers["Last-Event-ID"] = last_event_id
            try:
                with connect_sse(client, "GET", url, headers=dict(headers)) as source:
                    response = source.response
                    answered = True
                    if response.status_code == 204:
                        return _poll_progress(client, base_url, task_id, headers)
                    if response.status_code != 200:
                        response.read()
                        raise StreamError(f"{url} answered {_error_message(response)}", status=response.status_code)
                    for sse in source.iter_sse():
                        if sse.id:
                            last_event_id = sse.id
                        if not sse.data:
                            continue  # e.g. the opening `retry:` field
                        failures = 0
                        payload = json.loads(sse.data)
                        if sse.event == "error":  # final: `deleted`, `unauthenticated`
                            raise StreamError(f"{payload.get('code')}: {payload.get('message')}")
                        if on_event is not None:
                            on_event(sse.event, payload, sse.id)
                        if sse.event == "complete":
                            return payload
            except httpx.TransportError as exc:
                error: str = f"{type(exc).__name__}: {exc}"
                if not answered:
                    # Retrying a server that never answered only delays the same message.
                    raise StreamError(f"Cannot reach {url}: {error}") from exc
            else:
                error = "the server ended the stream before `complete`"
            failures += 1
            if failures > max_retries:
                raise StreamError(f"Gave up on {url} after {max_retries} reconnects: {error}")
            time.sleep(retry_delay * failures)


def format_eta(seconds: float | None) -> str:
    """Seconds left as `45s`, `1m05s` or `2h03m`; `?` when unknown."""
    if seconds is None:
        return "?"
    total = int(round(seconds))
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m{total % 60:02d}s"
    return f"{total // 3600}h{total % 3600 // 60:02d}m"


def _poll_progress(client: httpx.Client, base_url: str, task_id: str, headers: dict[str, str]) -> dict:
    """The task's TaskProgress from the polling endpoint."""
    auth = {"Authorization": headers["Authorization"]}
    response = client.get(f"{base_url.rstrip('/')}/api/v1/tasks/{task_id}/progress/", headers=auth)
    if response.status_code != 200:
        raise StreamError(_error_message(response), status=response.status_code)
    return response.json()


def _error_message(response: httpx.Response) -> str:
    """The message of the API's `{"error": {...}}` body, or the raw status line."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return f"{response.status_code}: {error['message']}"
        if body.get("detail"):
            return f"{response.status_code}: {body['detail']}"
    return f"{response.status_code} {response.reason_phrase}: {response.text[:200]}"
