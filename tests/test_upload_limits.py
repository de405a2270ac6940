"""Upload limits on the live server: 413 before the body is read, bounded memory per upload."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from .live_server import LiveService, start_service, stop_service
from .upload_client import upload_silence

MB = 1_000_000


def peak_rss_since_reset(pid: int) -> int:
    """Bytes of the process's peak RSS (VmHWM) since the last `reset_peak_rss`."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


def reset_peak_rss(pid: int) -> int:
    """Reset the process's peak RSS to its current RSS and return that, in bytes."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return peak_rss_since_reset(pid)


@pytest.fixture(scope="module")
def small_limit(tmp_path_factory) -> Iterator[LiveService]:
    """A server whose upload limit is 5 MiB."""
    service = start_service(tmp_path_factory.mktemp("limit5"), workers=0, extra_env={"AUDIO_MAX_UPLOAD_MB": "5"})
    yield service
    stop_service(service)


@pytest.fixture(scope="module")
def default_limit(tmp_path_factory) -> Iterator[LiveService]:
    """A server with the default upload limit (500 MiB)."""
    service = start_service(tmp_path_factory.mktemp("limit500"), workers=0)
    yield service
    stop_service(service)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_oversize_upload_is_413_before_the_client_sent_10_mb(small_limit, chunked):
    result = upload_silence(small_limit.base_url, small_limit.token("alice"), 200 * MB, chunked=chunked)
    assert result.status == 413, result.body[:300]
    assert result.headers["content-type"] == "application/json"
    error = json.loads(result.body)["error"]
    assert error["code"] == "too_large"
    assert error["field"] == "file"
    assert "limit" in error["message"]
    # What was sent includes what the kernel's socket buffers took before the server answered.
    assert result.body_bytes_sent < 10 * MB


def test_oversize_upload_keeps_the_server_serving(small_limit):
    upload_silence(small_limit.base_url, small_limit.token("alice"), 50 * MB)
    with small_limit.client(small_limit.token("alice")) as client:
        assert client.get("/api/v1/audio/").json()["count"] == 0


def test_a_200_mb_upload_raises_server_memory_by_less_than_64_mb(default_limit):
    token = default_limit.token("alice")
    pid = default_limit.daphne.pid
    before = reset_peak_rss(pid)
    result = upload_silence(default_limit.base_url, token, 200 * MB)
    peak = peak_rss_since_reset(pid)
    assert result.status == 201, result.body[:300]
    assert json.loads(result.body)["size"] == 200 * MB + 44
    assert peak - before < 64 * 2**20, f"peak RSS rose by {(peak - before) / 2**20:.0f} MiB"


def test_a_chunked_upload_under_the_limit_is_accepted(default_limit):
    result = upload_silence(default_limit.base_url, default_limit.token("alice"), 2 * MB, chunked=True)
    assert result.status == 201, result.body[:300]
    assert json.loads(result.body)["size"] == 2 * MB + 44


def test_expect_continue_over_the_limit_gets_only_the_413(small_limit):
    host, port = small_limit.base_url.rsplit("/", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            b"POST /api/v1/audio/ HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 200000000\r\n\r\n"
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"100 Continue" not in answer
