"""Jobs run isolated: a crash, a memory blow-up or a hang fails the job and leaves the caller alive."""

from __future__ import annotations

import faulthandler
import os
import threading

import pytest

from tasks_app.audio.errors import AudioError, Cancelled
from tasks_app.isolation import JobCrashed, run_isolated


def ignore(fraction: float, stage: str) -> None:
    """A progress callback that drops the reports."""


def test_progress_calls_reach_the_parent_and_the_result_comes_back():
    seen: list[tuple[float, str]] = []

    def job(progress):
        for step in range(3):
            progress(step / 2, "work")
        return {"pid": os.getpid(), "value": 42}

    result = run_isolated(job, lambda f, s: seen.append((f, s)), timeout=60)
    assert result["value"] == 42 and result["pid"] != os.getpid()
    assert seen == [(0.0, "work"), (0.5, "work"), (1.0, "work")]


def test_the_pipelines_own_error_comes_back_with_its_code():
    def job(progress):
        raise AudioError("truncated", "The file was cut off.")

    with pytest.raises(AudioError) as caught:
        run_isolated(job, ignore, timeout=60)
    assert caught.value.code == "truncated" and caught.value.message == "The file was cut off."


def quiet_abort(progress) -> None:
    """Abort the process natively, without the interpreter's fault report in the test output."""
    faulthandler.disable()
    os.abort()


def test_a_native_abort_fails_the_job_with_a_readable_error_and_the_next_job_runs():
    with pytest.raises(JobCrashed, match="aborted") as caught:
        run_isolated(quiet_abort, ignore, timeout=60)
    assert "Traceback" not in str(caught.value)
    assert run_isolated(lambda progress: "next", ignore, timeout=60) == "next"


def test_a_job_past_its_memory_limit_fails_as_out_of_memory():
    def job(progress):
        return len(bytearray(512 * 1024 * 1024))

    with pytest.raises(JobCrashed, match="out of memory"):
        run_isolated(job, ignore, timeout=60, memory_mb=64)
    assert run_isolated(job, ignore, timeout=60, memory_mb=2048) == 512 * 1024 * 1024


def test_a_hung_job_is_stopped_at_its_time_limit():
    def job(progress):
        threading.Event().wait()  # never set: a decoder that hangs

    with pytest.raises(JobCrashed, match="longer than the 0.5 s limit"):
        run_isolated(job, ignore, timeout=0.5)


def test_a_callback_that_cancels_stops_the_child():
    def job(progress):
        progress(0.1, "work")
        threading.Event().wait()

    def cancel(fraction: float, stage: str) -> None:
        raise Cancelled("no longer processing")

    with pytest.raises(Cancelled):
        run_isolated(job, cancel, timeout=60)


def test_a_quiet_job_still_gets_idle_calls_for_heartbeats():
    idles: list[int] = []

    def job(progress):
        progress(0.0, "start")
        threading.Event().wait()

    def idle() -> None:
        idles.append(1)
        if len(idles) == 2:
            raise Cancelled("stop")

    with pytest.raises(Cancelled):
        run_isolated(job, ignore, timeout=60, idle=idle)
    assert len(idles) == 2
