"""The stream hub's background loops survive failures, and /healthz names a hub that stalled."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tasks_app.streams import follow
from tasks_app.streams import hub as hub_module
from tasks_app.streams.hub import Hub


def test_a_hub_loop_that_raises_is_logged_and_restarted(settings: Any, caplog: pytest.LogCaptureFixture) -> None:
    settings.SSE_KEEPALIVE_SECONDS = 0.2  # a tick every 0.1 s

    async def scenario() -> Hub:
        hub = Hub()
        hub.loop = asyncio.get_running_loop()
        recovered = asyncio.Event()
        original, calls = hub.tick_once, []

        def tick_once(period: float) -> None:
            calls.append(period)
            if len(calls) == 1:
                raise RuntimeError("a bug in one tick")
            original(period)
            recovered.set()

        hub.tick_once = tick_once
        hub.supervise("tick", hub.tick_period(), hub._tick)
        try:
            await asyncio.wait_for(recovered.wait(), 30)
        finally:
            hub.loops["tick"].task.cancel()
        return hub

    with caplog.at_level(logging.ERROR, logger="tasks_app.streams.hub"):
        hub = asyncio.run(scenario())
    assert hub.loops["tick"].failures == 1
    assert "The stream hub's tick loop failed; restarting it" in caplog.text


@pytest.fixture
def running_hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Hub, asyncio.AbstractEventLoop]]:
    """This process's hub, its loops running on an event loop of their own."""
    hub = Hub()
    monkeypatch.setattr(hub_module, "_hub", hub)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> None:
        hub._start()

    asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    yield hub, loop

    async def stop() -> None:
        tasks = [state.task for state in hub.loops.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


@pytest.mark.django_db
def test_healthz_reports_a_stalled_stream_hub_as_down_naming_it(
    client: Any, settings: Any, monkeypatch: pytest.MonkeyPatch, running_hub: tuple[Hub, Any]
) -> None:
    settings.SSE_HUB_STALL_SECONDS = 0.5
    settings.SSE_KEEPALIVE_SECONDS = 0.2
    hang = threading.Event()

    async def hanging_db(fn: Any, *args: Any, **kwargs: Any) -> Any:
        while not hang.is_set():  # the database stopped answering
            await asyncio.sleep(0.01)
        raise RuntimeError("the database came back")

    monkeypatch.setattr(follow, "run_db", hanging_db)
    try:
        deadline = time.monotonic() + 30
        while True:
            response = client.get("/healthz")
            if response.status_code == 503 or time.monotonic() > deadline:
                break
        body = response.json()
        assert response.status_code == 503, body
        assert body["down"] == ["stream_hub"]
        assert "log loop silent" in body["checks"]["stream_hub"]["error"]
    finally:
        hang.set()


def test_the_tick_loop_hands_freed_memory_back_to_the_system(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.SSE_KEEPALIVE_SECONDS = 0.2  # a tick every 0.1 s
    monkeypatch.setattr(hub_module, "RELEASE_MEMORY_SECONDS", 0.0)
    released: list[str] = []

    async def scenario() -> None:
        hub = Hub()
        hub.loop = asyncio.get_running_loop()
        done = asyncio.Event()
        loop = asyncio.get_running_loop()

        def release() -> bool:  # runs on a worker thread, off the event loop
            released.append(threading.current_thread().name)
            loop.call_soon_threadsafe(done.set)
            return True

        monkeypatch.setattr(hub_module, "release_free_memory", release)
        hub.supervise("tick", hub.tick_period(), hub._tick)
        try:
            await asyncio.wait_for(done.wait(), 30)
        finally:
            hub.loops["tick"].task.cancel()

    asyncio.run(scenario())
    assert released and released[0] != threading.main_thread().name
