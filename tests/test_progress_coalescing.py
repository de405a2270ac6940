"""Coalesced progress: a stream gets at most one progress-only update per interval, nothing late."""

from __future__ import annotations

import pytest

from tasks_app import jobs, services
from tasks_app.audio.errors import Cancelled

INTERVAL = 1.0


class Recorder:
    """Stands in for the task's writes: what the reporter wrote, and when, on a fake clock."""

    def __init__(self) -> None:
        self.now = 100.0
        self.updates: list[tuple[float, float, str]] = []
        self.heartbeats: list[float] = []
        self.processing = True

    def clock(self) -> float:
        return self.now

    def report(self, *, task_id: str, attempt: int, progress: float, stage: str, estimated_time: float | None) -> bool:
        self.updates.append((self.now, progress, stage))
        return self.processing

    def heartbeat(self, *, task_id: str, attempt: int) -> bool:
        self.heartbeats.append(self.now)
        return self.processing


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()
    monkeypatch.setattr(services, "task_report_progress", recorder.report)
    monkeypatch.setattr(services, "task_heartbeat", recorder.heartbeat)
    return recorder


def reporter(writes: Recorder) -> jobs.ProgressReporter:
    return jobs.ProgressReporter("t1", 1, interval=0.25, event_interval=INTERVAL, clock=writes.clock)


def test_progress_only_updates_go_out_at_most_once_per_interval(writes):
    report = reporter(writes)
    for step in range(160):  # 10 s of callbacks every 1/16 s (exact in binary), progress moving each time
        report(step / 1000, "encode")
        writes.now += 0.0625
    times = [at for at, _, _ in writes.updates]
    assert all(later - earlier >= INTERVAL for earlier, later in zip(times, times[1:]))
    # ...and one each interval, not fewer: the bar keeps moving.
    assert len(times) == 10
    # The cancel check still runs every 0.25 s in between.
    assert len(writes.heartbeats) >= 25


def test_a_stage_change_goes_out_at_once(writes):
    report = reporter(writes)
    report(0.1, "measure")
    writes.now += 0.1
    report(0.2, "encode")
    assert [(at, stage) for at, _, stage in writes.updates] == [(100.0, "measure"), (100.1, "encode")]


def test_a_held_value_goes_out_when_the_interval_is_up(writes):
    report = reporter(writes)
    report(0.1, "encode")
    writes.now += 0.3
    report(0.2, "encode")  # held: 0.3 s after the last update
    writes.now = 100.9
    report(0.2, "encode")  # a check-in: still held
    assert [p for _, p, _ in writes.updates] == [10.0]
    writes.now = 100.0 + INTERVAL
    report(0.2, "encode")  # the first callback once the interval is up writes it, between check-ins
    assert writes.updates[-1] == (100.0 + INTERVAL, 20.0, "encode")


def test_a_quiet_pipeline_still_gets_its_held_value_out(writes):
    report = reporter(writes)
    report(0.1, "encode")
    writes.now += 0.3
    report(0.2, "encode")
    writes.now += 0.2
    report.idle()  # quiet, but the interval is not up yet: a heartbeat only
    assert [p for _, p, _ in writes.updates] == [10.0]
    writes.now = 100.0 + INTERVAL
    report.idle()
    assert writes.updates[-1] == (100.0 + INTERVAL, 20.0, "encode")
    report.idle()  # nothing new: no update, only a heartbeat
    assert len(writes.updates) == 2


def test_the_final_value_is_written_whatever_the_interval(writes):
    report = reporter(writes)
    report(0.5, "encode")
    writes.now += 0.01
    report(1.0, "encode")
    report.flush()
    assert writes.updates[-1] == (100.01, 100.0, "encode")


def test_a_held_check_in_still_notices_cancel(writes):
    report = reporter(writes)
    report(0.1, "encode")
    writes.processing = False
    writes.now += 0.3
    with pytest.raises(Cancelled):
        report(0.2, "encode")


def test_without_coalescing_changes_are_written_at_every_check_in_and_no_more(writes):
    report = jobs.ProgressReporter("t1", 1, interval=0.25, event_interval=0.0, clock=writes.clock)
    for step in range(32):  # 2 s of callbacks every 1/16 s
        report(step / 1000, "encode")
        writes.now += 0.0625
    assert len(writes.updates) == 8


def test_interval_zero_writes_every_change(writes):
    report = jobs.ProgressReporter("t1", 1, interval=0.25, event_interval=0.0, clock=writes.clock)
    for step in range(8):
        report(step / 100, "encode")
        writes.now += 0.25
    assert len(writes.updates) == 8
