"""Slow clients are cut: late headers and stalled bodies get 408, oversize headers 431, streams live on."""

from __future__ import annotations

import asyncio
import json
import resource
import socket
import time

import httpx
import pytest

from .live_server import LiveService, start_service, stop_service

TRICKLERS = 1000
ENV = {
    "REQUEST_HEADER_TIMEOUT_SECONDS": "2",
    "REQUEST_BODY_TIMEOUT_SECONDS": "2",
    "REQUEST_BODY_MIN_BYTES_PER_SECOND": "1024",
    "REQUEST_HEADERS_MAX_BYTES": "16384",
    "SSE_KEEPALIVE_SECONDS": "1",
}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> LiveService:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    svc = start_service(tmp_path_factory.mktemp("slow"), workers=0, extra_env=ENV)
    yield svc
    stop_service(svc)


def port(service: LiveService) -> int:
    return int(service.base_url.rsplit(":", 1)[1])


def response_of(raw: bytes) -> tuple[int, dict]:
    """Status and JSON body of a raw HTTP response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


def test_1000_connections_trickling_headers_are_closed_while_the_api_answers(service: LiveService) -> None:
    token = service.token("alice")

    async def trickle() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port(service))
        writer.write(b"GET /api/v1/tasks/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        try:
            while True:
                try:
                    data = await asyncio.wait_for(reader.read(65536), 0.5)
                except TimeoutError:
                    writer.write(b"a")  # one more byte, never the end of the headers
                    continue
                if not data:
                    return b""
                return data + await reader.read()
        except ConnectionError:
            return b""
        finally:
            writer.close()

    async def scenario() -> tuple[list[bytes], list[int]]:
        tricklers = [asyncio.ensure_future(trickle()) for _ in range(TRICKLERS)]
        statuses = []
        async with httpx.AsyncClient(base_url=service.base_url, headers={"Authorization": f"Bearer {token}"}) as api:
            deadline = time.monotonic() + 90
            while not all(t.done() for t in tricklers) and time.monotonic() < deadline:
                statuses.append((await api.get("/api/v1/tasks/", timeout=30)).status_code)
        return await asyncio.wait_for(asyncio.gather(*tricklers), 30), statuses

    answers, statuses = asyncio.run(scenario())
    assert statuses and set(statuses) == {200}, "the API must keep answering while the tricklers wait"
    answered = [response_of(raw) for raw in answers if raw]
    assert len(answered) >= TRICKLERS * 0.9, f"only {len(answered)} of {TRICKLERS} got their 408"
    for status, body in answered:
        assert status == 408 and body["error"]["code"] == "request_timeout"


def test_an_upload_body_that_stops_moving_gets_408(service: LiveService) -> None:
    token = service.token("alice")
    with socket.create_connection(("127.0.0.1", port(service)), timeout=60) as sock:
        sock.sendall(
            b"POST /api/v1/audio/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
            + f"Authorization: Bearer {token}\r\nContent-Length: 1000000\r\n\r\n".encode()
            + b"x" * 100
        )
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    status, body = response_of(raw)
    assert status == 408 and body["error"]["code"] == "request_timeout"


@pytest.mark.parametrize("shape", ["one long header", "many headers"])
def test_headers_over_the_limit_get_431_json(service: LiveService, shape: str) -> None:
    if shape == "one long header":
        headers = b"X-Big: " + b"a" * 20000 + b"\r\n"
    else:
        headers = b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 100) for i in range(200))
    with socket.create_connection(("127.0.0.1", port(service)), timeout=60) as sock:
        sock.sendall(b"GET /api/v1/tasks/ HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers + b"\r\n")
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    status, body = response_of(raw)
    assert status == 431 and body["error"]["code"] == "headers_too_large"


def test_an_open_stream_outlives_the_header_and_body_deadlines(service: LiveService, tmp_path) -> None:
    from tasks_app.audio.generate import write_tone

    token = service.token("alice")
    wav = tmp_path / "t.wav"
    write_tone(str(wav), 0.5)
    task = service.create_task(token, service.upload(token, wav)["id"])  # no worker: it stays pending
    with socket.create_connection(("127.0.0.1", port(service)), timeout=30) as sock:
        sock.sendall(
            f"GET /api/v1/sse/tasks/{task['id']}/progress HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {token}\r\n\r\n".encode()
        )
        raw = b""
        # Keep-alives come every second: six of them span three header deadlines.
        while raw.count(b": keep-alive") < 6:
            chunk = sock.recv(65536)
            assert chunk, "the stream was cut"
            raw += chunk
    assert raw.startswith(b"HTTP/1.1 200")
