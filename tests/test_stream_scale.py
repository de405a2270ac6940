"""Hundreds of open streams on one Daphne process hold no thread and no database connection."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import httpx
import pytest

from tasks_app.audio.generate import write_tone

from .live_server import LiveService, start_service, stop_service

SSE_DB_THREADS = 4  # the default
STREAMS = 300
TASKS = 10


@pytest.fixture(scope="module")
def idle_service(tmp_path_factory) -> LiveService:
    """A service with no worker, so tasks stay pending until the test cancels them."""
    service = start_service(
        tmp_path_factory.mktemp("scale"), workers=0, extra_env={"SSE_MAX_STREAMS_PER_USER": str(STREAMS + 10)}
    )
    yield service
    stop_service(service)


def thread_count(pid: int) -> int:
    """Threads of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads line")


def database_handles(pid: int, data_dir: Path) -> int:
    """Open file descriptors of a process on the SQLite database (the file, -wal, -shm)."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(data_dir / "db.sqlite3")):
            count += 1
    return count


async def follow(client: httpx.AsyncClient, url: str, opened: asyncio.Queue) -> list[dict]:
    """Read one stream: report when its snapshot arrived, return every event until the end."""
    events: list[dict] = []
    async with client.stream("GET", url) as resp:
        assert resp.status_code == 200
        event_type = None
        async for line in resp.aiter_lines():
            if line.startswith("event: "):
                event_type = line[7:]
            elif line.startswith("data: "):
                events.append({"event": event_type, **json.loads(line[6:])})
                if len(events) == 1:
                    opened.put_nowait(url)
    return events


@pytest.mark.slow
def test_300_streams_share_threads_and_database_connections(idle_service, tmp_path):
    service = idle_service
    token = service.token("alice")
    audio_path = tmp_path / "short.wav"
    write_tone(str(audio_path), 2.0)
    audio = service.upload(token, audio_path)
    task_ids = [service.create_task(token, audio["id"])["id"] for _ in range(TASKS)]
    pid = service.daphne.pid
    threads_before = thread_count(pid)
    handles_before = database_handles(pid, service.data_dir)

    async def scenario() -> tuple[list[list[dict]], int, int]:
        limits = httpx.Limits(max_connections=STREAMS + 20)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=service.base_url, headers=headers, limits=limits, timeout=60) as client:
            opened: asyncio.Queue = asyncio.Queue()
            readers = [
                asyncio.create_task(follow(client, f"/api/v1/sse/tasks/{task_ids[i % TASKS]}/progress", opened))
                for i in range(STREAMS)
            ]
            for _ in range(STREAMS):
                await asyncio.wait_for(opened.get(), timeout=60)
            threads = thread_count(pid)
            handles = database_handles(pid, service.data_dir)
            for task_id in task_ids:
                resp = await client.post(f"/api/v1/tasks/{task_id}/cancel/")
                assert resp.status_code == 200, resp.text
            results = await asyncio.wait_for(asyncio.gather(*readers), timeout=60)
            return results, threads, handles

    results, threads, handles = asyncio.run(scenario())
    print(
        f"threads: {threads_before} before, {threads} with {STREAMS} streams; "
        f"db handles: {handles_before} before, {handles} with streams"
    )
    assert threads < 40
    # Streams share a fixed pool of SSE_DB_THREADS connections (plus the request threads'),
    # each holding the database file and its WAL and shared-memory files: a bound far below
    # one connection per stream.
    assert handles <= max(handles_before, 3 * (SSE_DB_THREADS + 2)), "database handles grew with the streams"
    for events in results:
        assert events[0]["event"] == "progress" and events[0]["state"] == "pending"
        assert events[-1]["event"] == "complete" and events[-1]["state"] == "cancelled"
