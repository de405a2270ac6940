"""Chaos: 50 tasks, 50 clients cut at random, a server restart; nothing lost, nothing twice."""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
import pytest

from tasks_app.audio.generate import write_tone

from .conftest import REDIS_URL, postgres_database
from .live_server import LiveService, start_service, stop_service, wait_until

TASKS = 50
# A client drops its connection after reading 1 to this many events (counted, not timed, so the
# cuts fall the same way on a fast or a loaded machine).
MAX_EVENTS_PER_CONNECTION = 4


@dataclass
class Follower:
    """One client following one task's stream through cuts and reconnects."""

    task_id: str
    seed: int
    events: list[tuple[int, str, dict]] = field(default_factory=list)  # (id, type, data)
    reconnects: int = 0
    done: bool = False
    last_id: str = ""

    def run(self, service: LiveService, token: str, deadline: float) -> None:
        """Read, cut after a random number of events, reconnect with Last-Event-ID, until `complete`."""
        rng = random.Random(self.seed)
        url = f"/api/v1/sse/tasks/{self.task_id}/progress"
        with service.client(token, timeout=30) as client:
            while not self.done and time.monotonic() < deadline:
                cut_after = rng.randint(1, MAX_EVENTS_PER_CONNECTION)
                headers = {"Last-Event-ID": self.last_id} if self.last_id else {}
                try:
                    with client.stream("GET", url, headers=headers) as response:
                        if response.status_code == 204:  # `complete` was seen already
                            self.done = True
                            break
                        assert response.status_code == 200, response.read()
                        self._read(response, cut_after)
                except httpx.TransportError:
                    time.sleep(0.1)  # the server is restarting: retry shortly, like EventSource
                if not self.done:
                    self.reconnects += 1

    def _read(self, response: httpx.Response, cut_after: int) -> None:
        fields: dict[str, str] = {}
        read = 0
        for line in response.iter_lines():
            if line:
                name, _, value = line.partition(":")
                if name:
                    fields[name] = value.removeprefix(" ")
            else:
                if "data" in fields and fields.get("id"):
                    # Like EventSource: the last id seen is what a reconnect sends, even when
                    # the connection then breaks mid-read.
                    self.last_id = fields["id"]
                    kind = fields.get("event", "message")
                    self.events.append((int(self.last_id.rsplit(":", 1)[1]), kind, json.loads(fields["data"])))
                    if kind == "complete":
                        self.done = True
                        return
                    read += 1
                    if read >= cut_after:
                        break  # the cut: drop the connection mid-stream
                fields = {}


def run_chaos(service: LiveService, tmp_path) -> list[Follower]:
    """Start TASKS tasks and their followers; restart Daphne once mid-run."""
    path = tmp_path / "tone.flac"
    write_tone(str(path), 5 * 60, fmt="flac")
    token = service.token("alice")
    audio = service.upload(token, path)
    followers = [Follower(service.create_task(token, audio["id"])["id"], seed) for seed in range(TASKS)]
    deadline = time.monotonic() + 400
    with ThreadPoolExecutor(TASKS) as pool:
        futures = [pool.submit(f.run, service, token, deadline) for f in followers]
        wait_until(lambda: sum(f.done for f in followers) >= 5, 300, "the first tasks to finish")
        service.restart_daphne()
        for future in futures:
            future.result(timeout=420)
    return followers


def check(followers: list[Follower]) -> None:
    """Every event of every task exactly once, in order, and every stream ended by `complete`."""
    # The cuts happened: on average at least one per client (a client whose task ended before it
    # connected reads the snapshot and `complete` and has nothing to cut).
    assert sum(f.reconnects for f in followers) >= TASKS, [f.reconnects for f in followers]
    for f in followers:
        ids = [eid for eid, _, _ in f.events]
        assert f.done and f.events[-1][1] == "complete", f.task_id
        assert f.events[-1][2]["state"] == "completed"
        assert ids == list(range(ids[0], ids[0] + len(ids))), f"{f.task_id}: {ids}"
        progress = [data["progress"] for _, _, data in f.events]
        assert progress == sorted(progress), f.task_id


CHAOS_ENV = {
    "SSE_MAX_STREAMS_PER_USER": "200",
    "SSE_KEEPALIVE_SECONDS": "1",
    "TASK_PROGRESS_INTERVAL": "0.05",
}


@pytest.mark.slow
def test_chaos_embedded(tmp_path):
    service = start_service(tmp_path, workers=2, extra_env=CHAOS_ENV)
    try:
        followers = run_chaos(service, tmp_path)
    finally:
        stop_service(service)
    print(f"reconnects: {sum(f.reconnects for f in followers)}, events: {sum(len(f.events) for f in followers)}")
    check(followers)


@pytest.mark.slow
@pytest.mark.needs_postgres
@pytest.mark.needs_redis
def test_chaos_postgresql_and_redis(tmp_path):
    name = f"audio_tasks_chaos_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with postgres_database(name) as database_url:
        env = {
            **CHAOS_ENV,
            "DATABASE_URL": database_url,
            "EVENTSTREAM_REDIS": REDIS_URL,
            "SSE_REDIS_CHANNEL": f"events_{name}",
        }
        service = start_service(tmp_path, workers=2, extra_env=env)
        try:
            followers = run_chaos(service, tmp_path)
        finally:
            stop_service(service)
    print(f"reconnects: {sum(f.reconnects for f in followers)}, events: {sum(len(f.events) for f in followers)}")
    check(followers)
