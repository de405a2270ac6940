"""Requests' synchronous code runs on a fixed set of threads (`seam.RequestThreads`).

asgiref's per-request context starts a thread for every request and another to join it, and
the event loop waits on each start: under load the waits pile up and so do the requests, each
holding a thread. The web process instead hands each request the least busy of a few threads
started once.
"""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from asgiref.sync import sync_to_async
from django.core.signals import request_started
from rest_framework_simplejwt.tokens import AccessToken

from tasks_app.streams.collector import collector
from tasks_app.streams.seam import RequestThreads, StreamingASGIHandler
from tests.test_stream_handler import receive_then_wait, stream_scope


def get_scope(path: str, token: str) -> dict:
    return {**stream_scope("x", token), "path": path, "raw_path": path.encode()}


@pytest.mark.django_db(transaction=True)
def test_many_requests_run_on_the_few_threads_started_once(user, settings):
    settings.WEB_REQUEST_THREADS = 3
    app = StreamingASGIHandler()
    scope = get_scope("/api/v1/auth/me/", str(AccessToken.for_user(user)))
    names: list[str] = []

    def seen(**kwargs) -> None:
        names.append(threading.current_thread().name)

    async def one() -> int:
        sent: list[dict] = []

        async def send(message: dict) -> None:
            sent.append(message)

        await app(scope, receive_then_wait(), send)
        return sent[0]["status"]

    async def run() -> list[int]:
        return await asyncio.gather(*(one() for _ in range(40)))

    request_started.connect(seen)
    try:
        threads_before = threading.active_count()
        statuses = asyncio.run(run())
        threads_after = threading.active_count()
    finally:
        request_started.disconnect(seen)
    assert statuses == [200] * 40
    assert len(names) == 40
    assert {name.rsplit("_", 1)[0] for name in names} <= {"request-0", "request-1", "request-2"}, set(names)
    assert len(set(names)) >= 2, "concurrent requests were not spread over the threads"
    assert threads_after <= threads_before + 3


def test_a_request_gets_an_idle_thread_while_another_blocks_its_own():
    async def scenario() -> tuple[str, str, list[int]]:
        threads = RequestThreads(2)
        gate = threading.Event()

        def blocked() -> str:
            assert gate.wait(60), "never released"
            return threading.current_thread().name

        def quick() -> str:
            return threading.current_thread().name

        async def request(work) -> str:
            async with threads.context():
                return await sync_to_async(work)()

        slow = asyncio.ensure_future(request(blocked))
        while threads.load != [1, 0]:  # until the slow request holds the first thread
            await asyncio.sleep(0)
        quick_name = await asyncio.wait_for(request(quick), 60)  # not queued behind the slow one
        gate.set()
        slow_name = await slow
        return slow_name, quick_name, threads.load

    slow_name, quick_name, load = asyncio.run(scenario())
    assert slow_name.startswith("request-0") and quick_name.startswith("request-1")
    assert load == [0, 0]


@pytest.mark.django_db(transaction=True)
def test_a_request_crosses_to_its_thread_once_for_all_its_middleware(user, settings, monkeypatch):
    """Middleware and view run in one call on the request's thread, not one handover per hook.

    Django's async path would hand each synchronous middleware's `process_request` and
    `process_response` to the thread on its own (twenty handovers with this project's
    middleware); here the whole chain is one, beside the request signals' own.
    """
    from asgiref import sync

    app = StreamingASGIHandler()
    scope = get_scope("/api/v1/auth/me/", str(AccessToken.for_user(user)))
    handed: list[str] = []
    real_call = sync.SyncToAsync.__call__

    async def counted(self, *args, **kwargs):
        handed.append(getattr(self.func, "__qualname__", repr(self.func)))
        return await real_call(self, *args, **kwargs)

    monkeypatch.setattr(sync.SyncToAsync, "__call__", counted)
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive_then_wait(), send))
    assert sent[0]["status"] == 200
    assert b'"username"' in b"".join(m.get("body", b"") for m in sent)
    chain = [name for name in handed if "get_response" in name or "process_" in name]
    assert chain == ["BaseHandler.get_response"], handed
    assert len(handed) <= 4, handed


@pytest.mark.django_db(transaction=True)
def test_requests_past_the_limit_in_flight_are_refused_at_once_and_the_rest_served(user, settings):
    """A burst past WEB_MAX_REQUESTS_IN_FLIGHT gets `503` with Retry-After, not a pile-up."""
    settings.WEB_REQUEST_THREADS = 1
    settings.WEB_MAX_REQUESTS_IN_FLIGHT = 2
    app = StreamingASGIHandler()
    scope = get_scope("/api/v1/auth/me/", str(AccessToken.for_user(user)))
    gate = threading.Event()

    def hold(**kwargs) -> None:  # on the request's thread: the first request holds it
        assert gate.wait(60), "never released"

    async def one() -> tuple[int, dict, bytes]:
        sent: list[dict] = []

        async def send(message: dict) -> None:
            sent.append(message)

        await app(scope, receive_then_wait(), send)
        return sent[0]["status"], dict(sent[0]["headers"]), b"".join(m.get("body", b"") for m in sent)

    async def scenario() -> tuple[list, tuple, tuple]:
        held = [asyncio.ensure_future(one()) for _ in range(2)]

        async def both_taken_on() -> None:  # one on the thread, one waiting for it
            while collector.in_flight < 2:
                await asyncio.sleep(0)

        await asyncio.wait_for(both_taken_on(), 30)
        refused = await asyncio.wait_for(one(), 30)  # answered while the other two are in flight
        gate.set()
        done = await asyncio.gather(*held)
        request_started.disconnect(hold)
        return done, refused, await one()

    request_started.connect(hold)
    try:
        done, refused, after = asyncio.run(scenario())
    finally:
        gate.set()
        request_started.disconnect(hold)
    status, headers, body = refused
    assert status == 503
    assert headers[b"retry-after"] == b"1"
    assert headers[b"content-type"] == b"application/json"
    assert headers[b"content-security-policy"] == b"default-src 'none'; frame-ancestors 'none'"
    assert json.loads(body)["error"]["code"] == "overloaded"
    assert [d[0] for d in done] == [200, 200]
    assert after[0] == 200
    assert collector.shed >= 1
