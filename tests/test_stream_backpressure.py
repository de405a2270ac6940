"""A client that stops reading costs the server a small, fixed amount and loses nothing."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from tasks_app.audio.generate import write_tone

from .live_server import LiveService, start_service, stop_service, wait_until

EVENTS = 10_000
STALLED = 20


def rss_kb(pid: int) -> int:
    """Resident memory of a process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def open_raw_stream(service: LiveService, task_id: str, token: str) -> socket.socket:
    """A stream on a socket with a tiny receive buffer, so not reading fills it at once."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", int(service.base_url.rsplit(":", 1)[1])))
    sock.sendall(
        f"GET /api/v1/sse/tasks/{task_id}/progress HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\n\r\n".encode()
    )
    sock.settimeout(60)
    return sock


def read_progress_events(sock: socket.socket, count: int) -> list[int]:
    """Read until `count` whole progress events arrived; return their ids.

    Only frames ended by their blank line count: a read can stop inside an event, with its id
    cut short (20002 read as 200).
    """
    data = b""
    while True:
        if data.count(b"event: progress") >= count:
            frames = data.split(b"\n\n")[:-1]
            progress = [frame for frame in frames if b"event: progress" in frame]
            if len(progress) >= count:
                return [int(n) for frame in progress for n in re.findall(rb"id: task-\w+:(\d+)", frame)]
        chunk = sock.recv(1 << 20)
        assert chunk, "the stream ended early"
        data += chunk


def emit(service: LiveService, task_id: str) -> None:
    """Write EVENTS progress updates to a processing task, as fast as the database goes."""
    service.shell(
        "from tasks_app import services\n"
        f"for i in range({EVENTS}):\n"
        f"    services.task_report_progress(task_id='{task_id}', attempt=1, "
        f"progress=i / {EVENTS + 100}, stage=f's{{i}}', estimated_time=None)\n"
    )


@pytest.mark.slow
@pytest.mark.timeout(900)  # 20,000 writes through a shell: minutes on a loaded machine
def test_stalled_clients_cost_under_100_kb_each_and_then_get_every_event_once(tmp_path):
    # DEBUG: the server says when it holds a stream for a client that stopped reading.
    service = start_service(tmp_path, workers=0, extra_env={"LOG_LEVEL": "DEBUG"})
    try:
        path = tmp_path / "tone.wav"
        write_tone(str(path), 1.0)
        token = service.token("alice")
        task = service.create_task(token, service.upload(token, path)["id"])
        service.shell(f"from tasks_app import services; services.task_start(task_id='{task['id']}')")
        # A first round with a client that reads, so the server's own allocations for
        # handling this many events are made before memory is measured.
        warm = open_raw_stream(service, task["id"], token)
        emit(service, task["id"])
        read_progress_events(warm, EVENTS + 1)
        warm.close()
        pid = service.daphne.pid
        before = rss_kb(pid)
        stalled = [open_raw_stream(service, task["id"], token) for _ in range(STALLED)]
        emit(service, task["id"])  # while nobody reads
        wait_until(
            lambda: "stopped reading" in (tmp_path / "daphne.log").read_text(),
            30,
            "the server to notice the stalled clients",
        )
        per_stream = (rss_kb(pid) - before) / STALLED
        assert per_stream < 100, f"{per_stream:.0f} KB per stalled stream"
        for sock in stalled[1:]:
            sock.close()
        ids = read_progress_events(stalled[0], EVENTS + 1)  # snapshot + every event
        events = ids[1:]
        assert events == list(range(ids[0] + 1, ids[0] + 1 + EVENTS))
        stalled[0].close()
    finally:
        stop_service(service)
