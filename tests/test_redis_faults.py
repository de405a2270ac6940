"""A paused Redis blocks nothing: jobs go on, requests answer, every event arrives."""

from __future__ import annotations

import os
import signal
import subprocess
import threading

import httpx
import pytest

from tasks_app.audio.generate import write_tone

from .live_server import payloads, read_events, start_service, stop_service, wait_until

# Progress points the job must make while Redis is paused (about a tenth of the run).
PAUSED_PROGRESS = 10.0


def progress_of(client: httpx.Client, task_id: str) -> dict:
    """The task's TaskProgress from the polling endpoint."""
    return client.get(f"/api/v1/tasks/{task_id}/progress/").json()


@pytest.mark.slow
@pytest.mark.needs_redis_server
def test_a_paused_redis_slows_neither_jobs_nor_requests_and_loses_no_event(
    tmp_path, own_redis: tuple[str, subprocess.Popen]
) -> None:
    url, redis_proc = own_redis
    service = start_service(tmp_path, extra_env={"EVENTSTREAM_REDIS": url, "SSE_REDIS_CHANNEL": "events_fault_test"})
    try:
        path = tmp_path / "long.flac"
        write_tone(str(path), 15 * 60, fmt="flac")
        token = service.token("alice")
        audio = service.upload(token, path)
        task = service.create_task(token, audio["id"], kind="normalize", options={"output_format": "mp3"})
        stream: dict = {}

        def watch() -> None:
            with service.client(token, timeout=300) as client:
                stream["result"] = read_events(client, f"/api/v1/sse/tasks/{task['id']}/progress", timeout=300)

        reader = threading.Thread(target=watch)
        reader.start()
        with service.client(token) as api:
            wait_until(lambda: progress_of(api, task["id"])["progress"] > 3, 120, "the job to get going")
            os.kill(redis_proc.pid, signal.SIGSTOP)
            try:
                before = progress_of(api, task["id"])["progress"]
                # Both answer while Redis cannot: neither the request nor the job waits on it
                # (a frozen publisher would hold the job at `before` until the timeout).
                assert api.post("/api/v1/tasks/", json={"audio_file": audio["id"]}).status_code == 201
                paused = wait_until(
                    lambda: (p := progress_of(api, task["id"]))["progress"] >= before + PAUSED_PROGRESS and p,
                    240,
                    f"the job to advance {PAUSED_PROGRESS} points with Redis paused",
                )
            finally:
                os.kill(redis_proc.pid, signal.SIGCONT)
            if paused["state"] == "processing":
                wait_until(lambda: progress_of(api, task["id"])["state"] != "processing", 300, "the job to end")
            final = progress_of(api, task["id"])
        reader.join(300)
        status, events = stream["result"]
    finally:
        stop_service(service)
    assert final["state"] == "completed"
    assert status == 200 and events[-1].event == "complete"
    numbered = [int(e.id.rsplit(":", 1)[1]) for e in events if e.id and e.data]
    assert numbered == list(range(numbered[0], numbered[0] + len(numbered)))
    values = [p["progress"] for p in payloads(events)]
    assert values == sorted(values) and values[-1] == 100
