"""Compression on the wire: streams and JSON gzip-compressed when accepted, never a secret."""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
import threading
import zlib

import httpx
import pytest

from tasks_app.audio.generate import write_tone

from .live_server import LiveService, start_service, stop_service


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> LiveService:
    """A service with no worker: tasks stay pending until a test changes them."""
    live = start_service(tmp_path_factory.mktemp("wire"), workers=0)
    yield live
    stop_service(live)


@pytest.fixture(scope="module")
def token(service) -> str:
    return service.token("alice")


@pytest.fixture(scope="module")
def audio_id(service, token, tmp_path_factory) -> int:
    path = tmp_path_factory.mktemp("a") / "tone.wav"
    write_tone(str(path), 1.0)
    return service.upload(token, path)["id"]


def plain_client(service: LiveService, token: str) -> httpx.Client:
    """A client that sends no Accept-Encoding at all (httpx sends one by default)."""
    client = service.client(token, timeout=20)
    del client.headers["Accept-Encoding"]
    return client


def cancel(service: LiveService, token: str, task_id: str) -> None:
    with service.client(token) as client:
        assert client.post(f"/api/v1/tasks/{task_id}/cancel/").status_code == 200


def test_a_stream_is_gzipped_when_accepted_and_each_event_decodes_on_arrival(service, token, audio_id):
    task_id = service.create_task(token, audio_id)["id"]
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    text = b""
    with (
        plain_client(service, token) as client,
        client.stream("GET", f"/api/v1/sse/tasks/{task_id}/progress", headers={"Accept-Encoding": "gzip"}) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-encoding"] == "gzip"
        assert "accept-encoding" in response.headers["vary"].lower()
        raw = response.iter_raw()
        # The snapshot decodes from the bytes already sent: it was flushed, not held in the
        # compressor until more came (the read times out otherwise).
        while b"\n\n" not in text:
            text += inflate.decompress(next(raw))
        assert text.startswith(b"event: progress\n") and b'"state":"pending"' in text
        cancel(service, token, task_id)
        for part in raw:
            text += inflate.decompress(part)
    assert inflate.eof  # the gzip stream was ended with its trailer
    assert b"event: complete\n" in text and b'"state":"cancelled"' in text


class Follower(threading.Thread):
    """A client reading a task's stream to its end, raw bytes as they came off the wire."""

    def __init__(self, service: LiveService, token: str, task_id: str, *, gzipped: bool) -> None:
        super().__init__(daemon=True)
        self.service, self.token, self.task_id, self.gzipped = service, token, task_id, gzipped
        self.started = threading.Event()
        self.inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self.raw: list[bytes] = []
        self.text = b""
        self.failure: BaseException | None = None

    def run(self) -> None:
        headers = {"Accept-Encoding": "gzip"} if self.gzipped else {}
        url = f"/api/v1/sse/tasks/{self.task_id}/progress"
        try:
            with plain_client(self.service, self.token) as client, client.stream("GET", url, headers=headers) as answer:
                assert (answer.headers.get("content-encoding") == "gzip") is self.gzipped
                for part in answer.iter_raw():
                    self.raw.append(part)
                    self.text += self.inflate.decompress(part) if self.gzipped else part
                    if b"\n\n" in self.text:
                        self.started.set()
        except BaseException as exc:  # noqa: BLE001 - the test thread reports it
            self.failure = exc
        finally:
            self.started.set()

    def ids(self) -> list[int]:
        return [int(n) for n in re.findall(rb"^id: task-[\w-]+:(\d+)$", self.text, re.MULTILINE)]


def report(service: LiveService, task_id: str, start: int, count: int) -> None:
    """Progress reports that each change the stage, so that every one is an event."""
    service.shell(
        "from tasks_app import services\n"
        f"for i in range({start}, {start + count}):\n"
        f"    services.task_report_progress(task_id='{task_id}', attempt=1, "
        "progress=i / 1000, stage=f's{i}', estimated_time=None)\n"
    )


def test_compressed_streams_of_one_task_share_its_events_and_each_decodes_to_every_event(service, token, audio_id):
    task_id = service.create_task(token, audio_id)["id"]
    service.shell(f"from tasks_app import services; services.task_start(task_id='{task_id}')")

    def follow(gzipped: bool) -> Follower:
        follower = Follower(service, token, task_id, gzipped=gzipped)
        follower.start()
        assert follower.started.wait(30) and follower.failure is None, follower.failure
        return follower

    early = [follow(True) for _ in range(3)] + [follow(False)]
    report(service, task_id, 0, 30)
    late = follow(True)  # joins while the others are well into the task
    report(service, task_id, 30, 30)
    cancel(service, token, task_id)
    followers = [*early, late]
    for follower in followers:
        follower.join(60)
        assert not follower.is_alive() and follower.failure is None, follower.failure
    plain = early[-1]
    for follower in followers:
        if follower.gzipped:
            assert follower.inflate.eof  # the whole body is one gzip file, trailer and all
            assert gzip.decompress(b"".join(follower.raw)) == follower.text
        ids = follower.ids()
        assert ids == list(range(ids[0], ids[0] + len(ids)))  # nothing lost, nothing twice
        assert follower.text.rstrip().rpartition(b"\n\n")[2].startswith(b"event: complete\n")
        assert plain.text.endswith(follower.text.partition(b"\n\n")[2])  # the same events as plain
    assert late.ids()[0] >= early[0].ids()[0] + 30


def test_a_stream_without_accept_encoding_is_plain_text(service, token, audio_id):
    task_id = service.create_task(token, audio_id)["id"]
    with (
        plain_client(service, token) as client,
        client.stream("GET", f"/api/v1/sse/tasks/{task_id}/progress") as response,
    ):
        assert response.status_code == 200
        assert "content-encoding" not in response.headers
        assert "accept-encoding" in response.headers["vary"].lower()
        first = next(response.iter_raw())
    assert first.startswith(b"event: progress\n")


def test_a_finished_tasks_stream_is_one_valid_gzip_file(service, token, audio_id):
    task_id = service.create_task(token, audio_id)["id"]
    cancel(service, token, task_id)
    with (
        plain_client(service, token) as client,
        client.stream("GET", f"/api/v1/sse/tasks/{task_id}/progress", headers={"Accept-Encoding": "gzip"}) as response,
    ):
        assert response.headers["content-encoding"] == "gzip"
        text = gzip.decompress(b"".join(response.iter_raw()))
    assert text.count(b"event: progress\n") == 1 and text.endswith(b"\n\n") and b"event: complete\n" in text


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_compressed_follows_a_stream_to_its_end(service, token, audio_id):
    task_id = service.create_task(token, audio_id)["id"]
    curl = subprocess.Popen(
        [
            "curl",
            "--compressed",
            "-sS",
            "-N",
            "--max-time",
            "30",
            "-H",
            f"Authorization: Bearer {token}",
            "-D",
            "-",
            f"{service.base_url}/api/v1/sse/tasks/{task_id}/progress",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        lines = []
        for line in curl.stdout:  # the snapshot arrives before the task changes
            lines.append(line)
            if line.startswith(b"data: "):
                break
        cancel(service, token, task_id)
        out = b"".join(lines) + curl.stdout.read()
    finally:
        curl.kill() if curl.poll() is None else None
        curl.wait()
    assert curl.returncode == 0
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"content-encoding: gzip" in head.lower()
    assert body.startswith(b"event: progress\n") and b"event: complete\n" in body


def test_json_answers_are_gzipped_when_accepted(service, token, audio_id):
    task_id = service.create_task(token, audio_id)["id"]
    with plain_client(service, token) as client:
        gzipped = client.get(f"/api/v1/tasks/{task_id}/", headers={"Accept-Encoding": "gzip"})
        plain = client.get(f"/api/v1/tasks/{task_id}/")
    assert gzipped.headers["content-encoding"] == "gzip"
    assert "accept-encoding" in gzipped.headers["vary"].lower()
    assert gzipped.json() == plain.json()  # httpx decoded it
    assert "content-encoding" not in plain.headers


@pytest.mark.parametrize("which", ["token", "refresh", "verify", "stream-ticket", "stream-cookie"])
def test_answers_that_carry_a_secret_are_never_compressed(service, token, audio_id, which):
    with httpx.Client(base_url=service.base_url, headers={"Accept-Encoding": "gzip"}) as client:
        pair = client.post("/api/v1/auth/token/", json={"username": "alice", "password": "integration-pass-1"})
        bearer = {"Authorization": f"Bearer {pair.json()['access']}"}
        response = {
            "token": lambda: pair,
            "refresh": lambda: client.post("/api/v1/auth/token/refresh/", json={"refresh": pair.json()["refresh"]}),
            "verify": lambda: client.post("/api/v1/auth/token/verify/", json={"token": pair.json()["access"]}),
            "stream-ticket": lambda: client.post("/api/v1/auth/stream-ticket/", json={}, headers=bearer),
            "stream-cookie": lambda: client.post("/api/v1/auth/stream-cookie/", headers=bearer),
        }[which]()
    assert response.status_code in (200, 201, 204), response.text
    assert "content-encoding" not in response.headers
