"""A two-hour file through the real worker: bounded memory, spread progress, honest ETA."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tasks_app.audio.generate import write_tone

from .live_server import LiveService, payloads, read_events, start_service, stop_service

TWO_HOURS = 2 * 60 * 60
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> LiveService:
    """A service of its own, so the worker's peak memory is this test's alone."""
    # A quick counter poll, so delivery delay does not blur the ETA measurement.
    live = start_service(tmp_path_factory.mktemp("long"), extra_env={"SSE_POLL_SECONDS": "0.05"})
    yield live
    stop_service(live)


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory of a process (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM line")


def job_peak_rss_mb(service: LiveService) -> float:
    """Peak resident memory of the jobs, which run in a child of the worker (it logs the figure)."""
    log = (service.data_dir / "worker0.log").read_text()
    peaks = [float(mb) for mb in re.findall(r"Isolated job done: peak RSS (\d+) MB", log)]
    assert peaks, "the worker logged no finished job"
    return max(peaks)


def test_two_hour_file_bounded_memory_spread_progress_and_honest_eta(service, tmp_path):
    path = tmp_path / "two-hours.flac"
    write_tone(str(path), TWO_HOURS, fmt="flac", sample_rate=44100, channels=2)
    token = service.token("alice")
    audio = service.upload(token, path)
    assert abs(audio["duration"] - TWO_HOURS) < 0.05
    task = service.create_task(token, audio["id"])
    received: list[tuple[float, dict]] = []

    def stamp(events) -> bool:
        received.append((time.monotonic(), payloads(events[-1:])[0]))
        return False

    with service.client(token, timeout=300) as client:
        _, events = read_events(client, f"/api/v1/sse/tasks/{task['id']}/progress", until=stamp, timeout=300)
        result = client.get(f"/api/v1/tasks/{task['id']}/").json()["result"]
    assert events[-1].event == "complete" and result["format"]["duration"] == pytest.approx(TWO_HOURS, abs=0.05)
    finished = received[-1][0]
    running = [(t, p) for t, p in received if p["state"] == "processing" and p["progress"] > 0]
    started = running[0][0]
    duration = finished - started

    # Progress events are spread over the run, not bunched at its ends: every quarter of the
    # work is reported several times (how far apart in seconds is bench/eta_accuracy.py's).
    quarters = [sum(q * 25 <= p["progress"] < (q + 1) * 25 for _, p in running) for q in range(4)]
    assert min(quarters) >= 2, quarters

    # Once past 25 %, every event carries an ETA. How close it comes is measured by
    # bench/eta_accuracy.py (it depends on the machine's load); printed here for the record.
    past_quarter = [(at, p) for at, p in running if 25 <= p["progress"] < 95]
    assert past_quarter and all(
        p["estimated_time"] is not None and p["estimated_time"] >= 0 for _, p in past_quarter
    ), past_quarter
    errors = [abs(p["estimated_time"] - (finished - at)) / (finished - at) for at, p in past_quarter]
    print(
        f"2 h analysis: {duration:.1f} s, {len(running)} progress events, "
        f"ETA error past 25 %: max {max(errors):.1%}, mean {sum(errors) / len(errors):.1%}, "
        f"worker peak RSS {peak_rss_mb(service.workers[0].pid):.0f} MB, "
        f"job {job_peak_rss_mb(service):.0f} MB"
    )
    assert peak_rss_mb(service.workers[0].pid) < 300 and job_peak_rss_mb(service) < 300
