"""The seam's start-up check: the pinned server passes it; a changed internal means public APIs only."""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from daphne.server import Server
from twisted.internet.testing import StringTransport
from twisted.web.http import HTTPChannel, Request

from project.server import BoundedServer
from tasks_app.audio.generate import write_tone
from tasks_app.streams import seam
from tasks_app.streams.seam import SCOPE_KEY, StreamingASGIHandler, Wire

from .live_server import read_events, start_service, stop_service, wait_until


@pytest.fixture
def fresh_check() -> Any:
    seam.internals.cache_clear()
    yield
    seam.internals.cache_clear()


def daphne_scope() -> dict:
    """A scope whose `send` is Daphne's, in shape: the request is its first argument."""
    channel = HTTPChannel()
    channel.makeConnection(StringTransport())

    def handle_reply(request: Request, message: dict) -> None:
        pass

    return {SCOPE_KEY: partial(handle_reply, Request(channel))}


def test_the_pinned_server_passes_the_start_up_check(fresh_check: Any) -> None:
    assert seam.internals()
    assert seam.server_class(BoundedServer) is BoundedServer
    assert isinstance(Wire.of(daphne_scope()), Wire)


@pytest.mark.parametrize("part", sorted(seam.CHECKS))
def test_an_internal_not_as_expected_means_public_apis_only_and_a_warning(
    part: str, fresh_check: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def changed() -> None:
        raise RuntimeError("renamed in an upgrade")

    monkeypatch.setitem(seam.CHECKS, part, changed)
    with caplog.at_level(logging.WARNING, logger="tasks_app.streams.seam"):
        assert not seam.internals()
    assert f"{part}: renamed in an upgrade" in caplog.text and "public APIs only" in caplog.text
    assert seam.server_class(BoundedServer) is Server  # Daphne's own app path
    assert Wire.of(daphne_scope()) is None  # streams write through ASGI: Request.write
    assert StreamingASGIHandler().stream_chain is None  # Django's own request path


@pytest.mark.slow
def test_a_task_streams_whole_on_public_apis_only(tmp_path: Path) -> None:
    service = start_service(tmp_path, extra_env={"SSE_PUBLIC_APIS_ONLY": "1", "TASK_PROGRESS_INTERVAL": "0.05"})
    try:
        token = service.token("alice")
        wav = tmp_path / "tone.flac"
        write_tone(str(wav), 120, fmt="flac")
        task = service.create_task(token, service.upload(token, wav)["id"])
        with service.client(token, timeout=120) as client:
            status, events = read_events(client, f"/api/v1/sse/tasks/{task['id']}/progress", timeout=120)
        assert status == 200 and events[-1].event == "complete"
        ids = [int(e.id.rsplit(":", 1)[1]) for e in events if e.id]
        assert ids == list(range(ids[0], ids[0] + len(ids)))
        log = tmp_path / "daphne.log"
        wait_until(lambda: "public server APIs only" in log.read_text(), 10, "the WARNING")
    finally:
        stop_service(service)
