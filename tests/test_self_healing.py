"""Real worker processes die or stop mid-task; the task is handed on and completes."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from tasks_app.audio.generate import write_tone

from .live_server import LiveService, payloads, read_events, spawn_worker, start_service, stop_service, wait_until

STALE_SECONDS = 5

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> Iterator[LiveService]:
    """A service whose workers call a task stale after 5 s and sweep twice a second."""
    live = start_service(
        tmp_path_factory.mktemp("healing"),
        workers=0,
        extra_env={"TASK_STALE_SECONDS": str(STALE_SECONDS), "TASK_RECOVERY_SECONDS": "0.5"},
    )
    yield live
    stop_service(live)


@pytest.fixture(scope="module")
def audio_id(service: LiveService, tmp_path_factory) -> int:
    """A 20-minute FLAC tone: several seconds of analysis."""
    path = tmp_path_factory.mktemp("audio") / "long.flac"
    write_tone(str(path), 20 * 60, fmt="flac")
    return service.upload(service.token("alice"), path)["id"]


def event_number(event_id: str) -> int:
    """The per-channel counter in an id like `task-task_x:12`."""
    return int(event_id.rsplit(":", 1)[1])


def collapse(states: list[str]) -> list[str]:
    """The states in order, repeats folded."""
    return [s for i, s in enumerate(states) if i == 0 or states[i - 1] != s]


def test_a_killed_workers_task_goes_back_to_pending_and_another_worker_completes_it(
    service: LiveService, audio_id: int
) -> None:
    token = service.token("alice")
    stop_workers(service)
    first = spawn_worker(service)
    task = service.create_task(token, audio_id)
    killed_at: list[float] = []
    marks: dict[str, float] = {}

    def kill_mid_task(events) -> bool:
        latest = payloads(events[-1:])[0]
        if not killed_at and latest["state"] == "processing" and latest["progress"] > 0:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
            killed_at.append(time.monotonic())
            spawn_worker(service)  # the replacement finds the stale task and runs it again
        elif killed_at and latest["state"] not in marks:
            marks[latest["state"]] = time.monotonic() - killed_at[0]
        return False

    with service.client(token, timeout=60) as client:
        status, events = read_events(
            client, f"/api/v1/sse/tasks/{task['id']}/progress", until=kill_mid_task, timeout=STALE_SECONDS + 120
        )
    assert status == 200 and killed_at, "the worker was never seen processing"
    print(
        f"after SIGKILL: pending at {marks.get('pending', 0):.1f} s, completed at "
        f"{marks.get('completed', 0):.1f} s (stale timeout {STALE_SECONDS} s)"
    )
    states = collapse([p["state"] for p in payloads(events[1:], "progress")])
    assert states[-4:] == ["processing", "pending", "processing", "completed"], states
    assert events[-1].event == "complete"
    attempts = [p["attempts"] for p in payloads(events, "progress") if p["state"] == "completed"]
    assert attempts == [2]
    numbers = [event_number(e.id) for e in events[1:]]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), "no gaps in ids"


def stop_workers(service: LiveService) -> None:
    """Stop the workers earlier tests left running, so the next one is the only worker."""
    for proc in service.workers:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)


def test_sigterm_hands_the_running_task_back_without_a_traceback(service: LiveService, audio_id: int) -> None:
    token = service.token("alice")
    stop_workers(service)
    worker = spawn_worker(service)
    task = service.create_task(token, audio_id)
    with service.client(token, timeout=60) as client:

        def progress() -> dict:
            return client.get(f"/api/v1/tasks/{task['id']}/progress/").json()

        wait_until(lambda: progress()["progress"] > 0, 120, "the task to make progress", interval=0.2)
        os.killpg(worker.pid, signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
        handed_back = progress()
        assert (handed_back["state"], handed_back["attempts"]) == ("pending", 1)
        log = (service.data_dir / f"worker{service.workers.index(worker)}.log").read_text()
        assert "Traceback" not in log and "handed back" in log

        spawn_worker(service)
        wait_until(lambda: progress()["state"] == "completed", 180, "the task to complete", interval=0.2)
        assert progress()["attempts"] == 2
