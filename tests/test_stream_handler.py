"""The streams' own request path (`tasks_app.streams.seam`) and the hub's direct writes.

With thousands of streams, every reference cycle a closed stream leaves behind is work for a
full garbage collection, which stops every stream and request while it runs. These tests run
a real stream through the ASGI application in this process and look at what the collector
would have to free.
"""

from __future__ import annotations

import asyncio
import gc
import json
import re
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import pytest
from rest_framework_simplejwt.tokens import AccessToken
from twisted.internet.testing import StringTransport
from twisted.web.http import HTTPChannel, Request

from tasks_app.streams import hub as hub_module
from tasks_app.streams.hub import BATCH, REVOKED, Channel, Hub, Subscription
from tasks_app.streams.log import COMPLETE, ERROR, PROGRESS, LogEvent
from tasks_app.streams.outlet import Outlet
from tasks_app.streams.seam import SCOPE_KEY, StreamingASGIHandler, Wire


def cyclic_garbage() -> list[Any]:
    """Everything only the collector could free right now."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        return list(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


def stream_scope(task_id: str, token: str) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": f"/api/v1/sse/tasks/{task_id}/progress",
        "raw_path": f"/api/v1/sse/tasks/{task_id}/progress".encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {token}".encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


def receive_then_wait(body: bytes = b"", gate: asyncio.Event | None = None) -> Callable[[], Awaitable[dict]]:
    """An ASGI `receive`: the request's body (once `gate` is set), then nothing: the client
    stays until Django cancels the call when the response is done."""
    bodies = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict:
        if gate is not None:
            await gate.wait()
        if bodies:
            return bodies.pop()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    return receive


async def open_and_drop(app: StreamingASGIHandler, scope: dict) -> list[dict]:
    """Open a stream, wait for its first bytes, then disconnect; return what was sent."""
    sent: list[dict] = []
    started = asyncio.Event()
    inbox: asyncio.Queue = asyncio.Queue()
    inbox.put_nowait({"type": "http.request", "body": b"", "more_body": False})

    async def send(message: dict) -> None:
        sent.append(message)
        if message.get("body"):
            started.set()

    run = asyncio.ensure_future(app(scope, inbox.get, send))
    await asyncio.wait_for(started.wait(), 60)
    inbox.put_nowait({"type": "http.disconnect"})
    await asyncio.wait_for(run, 60)
    return sent


@pytest.mark.django_db(transaction=True)
def test_a_closed_stream_leaves_no_reference_cycle(user, make_task, monkeypatch):
    # A hub of its own: dropping the tasks of a hub that served earlier tests' event loops
    # would free their streams' cycles in the middle of this measurement.
    monkeypatch.setattr(hub_module, "_hub", None)
    task = make_task(user, state="processing")
    app = StreamingASGIHandler()
    scope = stream_scope(task.pk, str(AccessToken.for_user(user)))
    cyclic_garbage()  # what earlier tests left
    sent = asyncio.run(open_and_drop(app, scope))
    assert sent[0]["status"] == 200
    assert b"event: progress" in sent[1]["body"]
    ours = [
        type(o).__name__
        for o in cyclic_garbage()
        if (type(o).__name__ == "ASGIRequest" and o.path == scope["path"])
        or (isinstance(o, Subscription) and o.channel.name == f"task-{task.pk}")
    ]
    assert ours == [], f"a closed stream left these in reference cycles: {ours}"


@pytest.mark.django_db(transaction=True)
def test_a_refused_stream_answers_through_the_middleware(user, make_task):
    task = make_task(user, state="processing")
    app = StreamingASGIHandler()
    scope = stream_scope(task.pk, "not-a-token")
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    asyncio.run(app(scope, receive, send))
    headers = dict(sent[0]["headers"])
    assert sent[0]["status"] == 401
    # Headers of the middleware streams keep (the API's security headers).
    assert headers[b"X-Content-Type-Options"] == b"nosniff"
    assert headers[b"Content-Security-Policy"].startswith(b"default-src 'none'")


def test_a_wire_lets_go_of_a_request_whose_client_left():
    channel = HTTPChannel()
    channel.makeConnection(StringTransport())
    request = Request(channel)

    def handle_reply(request: Request, message: dict) -> None:  # Daphne's send, in shape
        pass

    wire = Wire.of({SCOPE_KEY: partial(handle_reply, request)})
    assert wire is not None and request.producer is wire
    request.channel = None  # the connection went first
    wire.close()
    assert request.producer is None, "the request and its wire would hold each other"
    assert not wire.ready and not wire.write(b"data: late\n\n")


class RecordingWire:
    """A client as the hub sees it: reads everything, or fills up after `room` writes."""

    def __init__(self, room: int | None = None) -> None:
        self.writes: list[bytes] = []
        self.room = room
        self.writable = asyncio.Event()
        self.writable.set()

    @property
    def ready(self) -> bool:
        return self.room is None or len(self.writes) < self.room

    def write(self, data: bytes) -> bool:
        self.writes.append(data)
        return True

    def abort(self) -> None:
        pass

    def close(self) -> None:
        pass


def written_ids(wire: RecordingWire) -> list[int]:
    return [int(n) for n in re.findall(rb"id: task-x:(\d+)", b"".join(wire.writes))]


def hub_with_waiting_stream(wire: RecordingWire) -> tuple[Hub, Subscription]:
    """A hub with one caught-up stream on `task-x`, waiting for the hub to write for it."""
    hub = Hub()
    channel = hub.channels["task-x"] = Channel("task-x")
    channel.holders = 1
    sub = hub.subscribe(channel, user_id=1, last_id=0, current=0, expires_at=None, ends_on_complete=True, opened_at=0.0)
    sub.outlet = Outlet(send=None, wire=wire)
    return hub, sub


def progress(n: int) -> list[LogEvent]:
    return [LogEvent("task-x", eid, PROGRESS, "{}") for eid in range(1, n + 1)]


def test_the_hub_writes_a_whole_burst_to_a_waiting_stream():
    async def scenario() -> None:
        wire = RecordingWire()
        hub, sub = hub_with_waiting_stream(wire)
        hub.dispatch(progress(3 * BATCH + 5))  # more than one batch in one delivery
        assert written_ids(wire) == list(range(1, 3 * BATCH + 6))
        assert not sub.wake.is_set(), "a stream the hub could serve was woken"
        hub.unsubscribe(sub)

    asyncio.run(scenario())


def test_the_hub_wakes_a_stream_whose_client_fills_up_or_whose_task_ends():
    async def scenario() -> None:
        wire = RecordingWire(room=1)
        hub, sub = hub_with_waiting_stream(wire)
        hub.dispatch(progress(2 * BATCH))
        assert written_ids(wire) == list(range(1, BATCH + 1))
        assert sub.wake.is_set() and sub.last_id == BATCH  # the stream goes on from there
        hub.unsubscribe(sub)

        wire = RecordingWire()
        hub, sub = hub_with_waiting_stream(wire)
        hub.dispatch([*progress(2), LogEvent("task-x", 3, COMPLETE, "{}")])
        assert written_ids(wire) == [1, 2, 3]
        assert sub.ended and sub.wake.is_set()
        hub.unsubscribe(sub)

    asyncio.run(scenario())


def test_a_revocation_ends_only_the_streams_that_opened_before_it():
    """The log poll hands over recent rows again after a quiet spell: an old revocation (a
    sign-out before this sign-in) must not end a stream opened after it, and must not refuse
    one still opening."""

    def open_stream(hub: Hub, name: str, seconds_ago: float) -> Subscription:
        channel = hub.channels[name] = Channel(name)
        channel.holders = 1
        return hub.subscribe(
            channel,
            user_id=1,
            last_id=0,
            current=0,
            expires_at=None,
            ends_on_complete=True,
            opened_at=time.monotonic() - seconds_ago,
        )

    async def scenario() -> None:
        hub = Hub()
        older, newer = open_stream(hub, "task-a", 60), open_stream(hub, "task-b", 0)
        payload = {"code": "unauthenticated", "message": "Signed out.", "at": time.time() - 30}
        hub.dispatch([LogEvent("user-1", 1, ERROR, json.dumps(payload))])
        assert older.final == REVOKED
        assert newer.final is None
        assert open_stream(hub, "task-c", 0).final is None
        # A revocation that does not say when it happened ends every stream of the user.
        hub.dispatch([LogEvent("user-1", 2, ERROR, json.dumps({"code": "unauthenticated"}))])
        assert newer.final == REVOKED

    asyncio.run(scenario())
