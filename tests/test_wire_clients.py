"""The Python clients (httpx-sse: `tasks_app.client.watch`, `manage.py watch_task`) against a
compressed stream coalesced at the default interval, with a real worker."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from tasks_app.audio.generate import write_tone
from tasks_app.client import watch

from .live_server import ROOT, LiveService, start_service, stop_service


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> LiveService:
    """A service with one worker and every setting at its default (coalescing included)."""
    live = start_service(tmp_path_factory.mktemp("clients"))
    yield live
    stop_service(live)


@pytest.fixture(scope="module")
def audio_id(service, tmp_path_factory) -> int:
    """A 20-minute FLAC tone: seconds of analysis, so the stream carries progress."""
    path = tmp_path_factory.mktemp("a") / "long.flac"
    write_tone(str(path), 20 * 60.0, fmt="flac", sample_rate=44100, channels=2)
    return service.upload(service.token("alice"), path)["id"]


class Recording(httpx.HTTPTransport):
    """The network, remembering each response's Content-Encoding."""

    def __init__(self) -> None:
        super().__init__()
        self.encodings: list[str | None] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        self.encodings.append(response.headers.get("content-encoding"))
        return response


def test_watch_follows_a_gzipped_coalesced_stream_to_complete(service, audio_id):
    token = service.token("alice")
    task = service.create_task(token, audio_id, kind="analyze")
    transport = Recording()
    events: list[tuple[str, dict]] = []
    final = watch(
        service.base_url,
        task["id"],
        token,
        lambda event, payload, _id: events.append((event, payload)),
        transport=transport,
    )
    assert transport.encodings == ["gzip"]
    assert final["state"] == "completed" and final["progress"] == 100
    values = [payload["progress"] for _, payload in events]
    assert values == sorted(values)
    assert any(payload["state"] == "processing" for _, payload in events)


def test_manage_py_watch_task_sees_the_task_complete(service, audio_id):
    token = service.token("alice")
    task = service.create_task(token, audio_id, kind="analyze")
    done = subprocess.run(
        [sys.executable, "manage.py", "watch_task", task["id"], "--url", service.base_url, "--token", token],
        cwd=ROOT,
        env=service.env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    assert f"{task['id']} completed" in done.stdout
