"""The collector's freezes (`tasks_app.streams.collector`): never while a request is in flight.

A Django or DRF request is a reference cycle; frozen half-way it would never be freed. These
tests hold a real request in flight through the ASGI application and look at what the freeze
does, and check that refused streams (which a freeze may catch while they open) leave no cycle.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from pathlib import Path
from typing import Any

import pytest
from rest_framework_simplejwt.tokens import AccessToken

from tasks_app.streams import hub as hub_module
from tasks_app.streams import seam
from tasks_app.streams.collector import Collector, collector, release_free_memory
from tasks_app.streams.seam import StreamingASGIHandler
from tests.test_stream_handler import cyclic_garbage, receive_then_wait, stream_scope


@pytest.fixture
def thawed():
    """Undo this test's freezes, so later tests' collections see everything again."""
    yield
    gc.unfreeze()


def test_a_freeze_waits_until_no_request_is_in_flight(thawed):
    watch = Collector(every=10)
    frozen_before = gc.get_freeze_count()
    with watch.busy():
        watch.streams_changed(25)
        assert watch.freezes == 0, "froze with a request in flight"
        with watch.busy():
            pass
        assert watch.freezes == 0, "froze while an outer request was still in flight"
    assert watch.freezes == 1 and watch.frozen_for == 25
    assert gc.get_freeze_count() > frozen_before
    watch.streams_changed(30)  # five more: not yet
    assert watch.freezes == 1
    watch.streams_changed(0)  # they closed: counting starts again from here
    watch.streams_changed(10)
    assert watch.freezes == 2 and watch.frozen_for == 10
    watch.enabled = False  # the public-APIs-only path: never
    watch.streams_changed(100)
    assert watch.freezes == 2


def test_the_public_apis_path_never_freezes(settings, monkeypatch):
    monkeypatch.setattr(collector, "enabled", True)
    settings.SSE_PUBLIC_APIS_ONLY = True
    seam.internals.cache_clear()
    try:
        app = StreamingASGIHandler()
    finally:
        seam.internals.cache_clear()
    assert app.stream_chain is None and not collector.enabled


def api_scope(path: str, token: str) -> dict:
    return {
        **stream_scope("x", token),
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"authorization", f"Bearer {token}".encode()),
            (b"content-type", b"application/json"),
        ],
    }


@pytest.mark.django_db(transaction=True)
def test_a_request_in_flight_through_the_app_holds_back_the_freeze(user, monkeypatch, thawed):
    monkeypatch.setattr(collector, "enabled", True)  # an earlier test may have built a public-path app
    monkeypatch.setattr(collector, "every", 5)
    monkeypatch.setattr(collector, "streams", 0)
    monkeypatch.setattr(collector, "frozen_for", 0)
    monkeypatch.setattr(collector, "in_flight", 0)
    app = StreamingASGIHandler()
    scope = api_scope("/api/v1/tasks/", str(AccessToken.for_user(user)))
    sent: list[dict] = []

    async def run() -> tuple[int, int]:
        body_may_come = asyncio.Event()  # until set, the request is in flight, its body still arriving
        receive = receive_then_wait(b"{}", body_may_come)

        async def send(message: dict) -> None:
            sent.append(message)

        async def counted() -> None:
            while collector.in_flight == 0:
                await asyncio.sleep(0.01)

        request = asyncio.ensure_future(app(scope, receive, send))
        await asyncio.wait_for(counted(), 30)  # fails here if the app does not count the request
        freezes = collector.freezes
        collector.streams_changed(50)  # streams opened meanwhile: enough for a freeze, but not now
        held_back = collector.freezes - freezes
        body_may_come.set()
        await asyncio.wait_for(request, 60)
        return held_back, collector.freezes - freezes

    held_back, after = asyncio.run(run())
    assert sent[0]["status"] == 400  # the view ran: an empty task is refused
    assert held_back == 0, "a freeze caught the request in flight"
    assert after == 1, "the freeze did not come once the request ended"
    assert collector.in_flight == 0


async def refused(app: StreamingASGIHandler, scope: dict) -> list[dict]:
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


@pytest.mark.django_db(transaction=True)
def test_a_refused_stream_leaves_no_reference_cycle(user, other_user, make_task, monkeypatch):
    monkeypatch.setattr(hub_module, "_hub", None)
    task = make_task(other_user, state="processing")
    app = StreamingASGIHandler()
    scopes = [
        stream_scope(task.pk, "not-a-token"),  # 401
        stream_scope(task.pk, str(AccessToken.for_user(user))),  # 404: not the caller's task
    ]
    cyclic_garbage()
    statuses = [asyncio.run(refused(app, scope))[0]["status"] for scope in scopes]
    assert statuses == [401, 404]
    left: list[Any] = [
        type(o).__name__ for o in cyclic_garbage() if type(o).__name__ == "ASGIRequest" and o.path == scopes[0]["path"]
    ]
    assert left == [], f"a refused stream left these in reference cycles: {left}"


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


def test_memory_a_burst_freed_on_another_thread_goes_back_to_the_system():
    kept: list[bytearray] = []

    def burst() -> None:
        # As a burst of requests leaves it: big buffers freed between small objects still alive.
        pairs = [(bytearray(16384), bytearray(600)) for _ in range(6000)]
        kept.extend(small for _, small in pairs)

    thread = threading.Thread(target=burst)
    thread.start()
    thread.join()
    before = rss_kb()
    assert release_free_memory()
    # 6,000 × 16 KiB were freed: most of those pages leave the process.
    assert before - rss_kb() > 40_000
