"""Scaled shape: PostgreSQL, Redis fan-out, two Daphne instances and two workers."""

from __future__ import annotations

import os
import uuid

import httpx
import pytest

from tasks_app.audio.generate import write_tone

from .conftest import REDIS_URL, postgres_database
from .live_server import LiveService, payloads, read_events, spawn_daphne, start_service, stop_service

pytestmark = [pytest.mark.needs_postgres, pytest.mark.needs_redis, pytest.mark.slow]


@pytest.fixture(scope="module")
def scaled(tmp_path_factory) -> tuple[LiveService, str]:
    """Two Daphne instances and two workers on one PostgreSQL database and Redis.

    The counter poll is set to an hour, so events that arrive before the read timeout can
    only have come through Redis pub/sub.
    """
    name = f"audio_tasks_it_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with postgres_database(name) as database_url:
        env = {
            "DATABASE_URL": database_url,
            "EVENTSTREAM_REDIS": REDIS_URL,
            "SSE_REDIS_CHANNEL": f"events_{name}",
            "SSE_POLL_SECONDS": "3600",
            # As in the `live` fixture: progress written and sent every 50 ms, so even a fast
            # machine reports several intermediate values (the default coalesces to one a second).
            "TASK_PROGRESS_INTERVAL": "0.05",
            "PROGRESS_EVENT_INTERVAL_SECONDS": "0.05",
        }
        tmp = tmp_path_factory.mktemp("scaled")
        service = start_service(tmp, workers=2, extra_env=env)
        second, second_url = spawn_daphne(tmp, service.env, "daphne2")
        service.extra.append(second)
        yield service, second_url
        stop_service(service)


def test_worker_events_reach_a_stream_on_another_instance_through_redis(scaled, tmp_path):
    service, other_url = scaled
    path = tmp_path / "tone.flac"
    write_tone(str(path), 300, fmt="flac")
    token = service.token("alice")
    audio = service.upload(token, path)
    task = service.create_task(token, audio["id"])
    with httpx.Client(base_url=other_url, timeout=60, headers={"Authorization": f"Bearer {token}"}) as client:
        status, events = read_events(client, f"/api/v1/sse/tasks/{task['id']}/progress", timeout=120)
    assert status == 200
    assert events[-1].event == "complete"
    assert payloads(events[-1:])[0]["state"] == "completed"
    values = [p["progress"] for p in payloads(events, "progress")]
    assert values == sorted(values) and len({v for v in values if 0 < v < 100}) >= 2


def test_cancel_on_one_instance_ends_stream_on_the_other_through_redis(scaled, tmp_path):
    service, other_url = scaled
    path = tmp_path / "long.flac"
    write_tone(str(path), 900, fmt="flac")
    token = service.token("alice")
    audio = service.upload(token, path)
    task = service.create_task(token, audio["id"])
    headers = {"Authorization": f"Bearer {token}"}
    cancelled: list[bool] = []

    def cancel_once_processing(events) -> bool:
        if not cancelled and payloads(events[-1:])[0]["state"] == "processing":
            with service.client(token) as api:
                resp = api.post(f"/api/v1/tasks/{task['id']}/cancel/")
            assert resp.status_code == 200, resp.text
            cancelled.append(True)
        return False

    with httpx.Client(base_url=other_url, timeout=30, headers=headers) as streamer:
        _, events = read_events(streamer, f"/api/v1/sse/tasks/{task['id']}/progress", until=cancel_once_processing)
    assert events[-1].event == "complete"
    assert payloads(events[-1:])[0]["state"] == "cancelled"
    assert cancelled, "the task was never seen processing"


def test_concurrent_cancels_across_instances_have_exactly_one_winner(scaled, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    service, other_url = scaled
    path = tmp_path / "long.flac"
    write_tone(str(path), 900, fmt="flac")  # seconds of work: cancels land while it runs
    token = service.token("alice")
    audio = service.upload(token, path)
    headers = {"Authorization": f"Bearer {token}"}
    for _ in range(3):
        task = service.create_task(token, audio["id"])

        def cancel(base: str, task_id: str = task["id"]) -> int:
            with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
                return client.post(f"/api/v1/tasks/{task_id}/cancel/").status_code

        with ThreadPoolExecutor(max_workers=8) as pool:
            codes = list(pool.map(cancel, [service.base_url, other_url] * 4))
        assert codes.count(200) == 1 and codes.count(409) == 7, codes
        with service.client(token) as api:
            assert api.get(f"/api/v1/tasks/{task['id']}/").json()["state"] == "cancelled"
