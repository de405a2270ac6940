"""The worker's job: real processing, throttled progress, honest ETA, cancel, failure, retry."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django_eventstream.models import Event as StoredEvent

from tasks_app import jobs, services
from tasks_app.audio.errors import Cancelled
from tasks_app.audio.generate import write_tone
from tasks_app.audio.registry import get_processor
from tasks_app.exceptions import IllegalTransition, TaskCrashed
from tasks_app.models import Task

pytestmark = pytest.mark.django_db


def store(owner: Any, path: Path) -> Any:
    """Upload a file through the service."""
    return services.audio_file_create(owner=owner, upload=SimpleUploadedFile(path.name, path.read_bytes()))


def run(task: Task) -> Task:
    """What the worker does with one queued task; returns the task as stored afterwards."""
    outcome = jobs.run_task.call(task.id)
    done = Task.objects.get(pk=task.id)
    # The job's return value (its result's) says what became of the task.
    expected = {Task.State.COMPLETED: jobs.COMPLETED, Task.State.FAILED: jobs.FAILED}.get(
        done.state, jobs.STOPPED if done.started_at else jobs.SKIPPED
    )
    assert outcome == expected, (outcome, done.state)
    return done


@pytest.mark.parametrize("fmt", ["wav", "mp3", "flac", "opus", "m4a"])
def test_five_formats_are_analysed_to_the_true_duration(user, tmp_path, fmt):
    path = tmp_path / f"tone.{fmt}"
    write_tone(str(path), 6.0, fmt=fmt, sample_rate=48000 if fmt == "opus" else 44100)
    task = services.task_create(owner=user, audio_file_id=store(user, path).pk)
    done = run(task)
    assert done.state == Task.State.COMPLETED, done.error
    assert done.progress == 100 and done.attempts == 1
    assert abs(done.result["format"]["duration"] - 6.0) < 0.05
    assert done.result["format"]["channels"] == 2
    loud = done.result["loudness"]
    assert abs(loud["sample_peak_dbfs"] - (-12.0)) < 0.5  # lossy codecs move peaks a little
    assert loud["rms_dbfs"] < loud["sample_peak_dbfs"]
    waveform_name = done.result["artifacts"]["waveform_json"]
    from django.core.files.storage import default_storage

    with default_storage.open(waveform_name) as fh:
        waveform = json.load(fh)
    assert waveform["length"] * 2 == len(waveform["data"])


def test_an_exception_in_processing_fails_the_task_and_logs_the_details(user, make_audio, monkeypatch, caplog):
    task = services.task_create(owner=user, audio_file_id=make_audio(user).pk)

    def explode(*args: Any) -> dict:
        raise RuntimeError("decoder exploded")

    broken = dataclasses.replace(get_processor("analyze"), run=explode)
    monkeypatch.setattr(jobs, "get_processor", lambda kind: broken)
    done = run(task)
    assert done.state == Task.State.FAILED
    assert done.error == TaskCrashed.default_detail
    assert "exploded" not in done.error and "RuntimeError" not in done.error
    assert "decoder exploded" in caplog.text
    assert done.finished_at is not None and done.estimated_time is None


def test_a_missing_stored_file_fails_without_leaking_paths(user, make_audio, caplog):
    audio = make_audio(user)
    stored = Path(audio.file.path)
    stored.unlink()
    done = run(services.task_create(owner=user, audio_file_id=audio.pk))
    assert done.state == Task.State.FAILED
    assert done.error == TaskCrashed.default_detail
    for internal in ("FileNotFoundError", str(stored.parent), "/"):
        assert internal not in done.error
    assert "FileNotFoundError" in caplog.text


def test_a_file_corrupted_after_upload_fails_with_a_readable_error(user, tmp_path):
    path = tmp_path / "tone.flac"
    write_tone(str(path), 20.0, fmt="flac")
    audio = store(user, path)
    stored = Path(audio.file.path)
    stored.write_bytes(stored.read_bytes()[: stored.stat().st_size // 3])
    task = services.task_create(owner=user, audio_file_id=audio.pk)
    done = run(task)
    assert done.state == Task.State.FAILED
    assert done.error and "Traceback" not in done.error


def test_retry_of_a_failed_task_runs_it_again_and_counts_attempts(user, make_audio, monkeypatch):
    task = services.task_create(owner=user, audio_file_id=make_audio(user).pk)

    def no_disk(*args: Any) -> dict:
        raise OSError("disk full")

    broken = dataclasses.replace(get_processor("analyze"), run=no_disk)
    with monkeypatch.context() as patch:
        patch.setattr(jobs, "get_processor", lambda kind: broken)
        assert run(task).state == Task.State.FAILED
    retried = services.task_retry(task_id=task.id)
    assert retried.state == Task.State.PENDING and retried.error is None
    done = run(task)
    assert done.state == Task.State.COMPLETED and done.attempts == 2


def test_cancelled_task_stops_at_the_next_progress_write(user, make_audio):
    task = services.task_create(owner=user, audio_file_id=make_audio(user).pk)
    claimed = services.task_start(task_id=task.id)
    services.task_cancel(task_id=task.id)
    jobs.process(claimed)
    done = Task.objects.get(pk=task.id)
    assert done.state == Task.State.CANCELLED and done.result is None


def test_a_cancelled_pending_task_is_never_started(user, make_audio):
    task = services.task_create(owner=user, audio_file_id=make_audio(user).pk)
    services.task_cancel(task_id=task.id)
    done = run(task)
    assert done.state == Task.State.CANCELLED and done.attempts == 0


def test_progress_writes_are_throttled_but_the_last_one_lands(user, make_audio):
    task = services.task_create(owner=user, audio_file_id=make_audio(user).pk)
    services.task_start(task_id=task.id)
    reporter = jobs.ProgressReporter(task.id, 1, interval=3600)
    before = StoredEvent.objects.filter(channel=task.channel).count()
    for step in range(1, 200):
        reporter(step / 200, "analyze")
    reporter.flush()
    after = StoredEvent.objects.filter(channel=task.channel).count()
    assert after - before == 2  # the first write, and the final one
    assert Task.objects.get(pk=task.id).progress == pytest.approx(99.5)


def test_unchanged_progress_still_beats_the_heartbeat_and_notices_cancel(user, make_audio):
    task = services.task_create(owner=user, audio_file_id=make_audio(user).pk)
    services.task_start(task_id=task.id)
    reporter = jobs.ProgressReporter(task.id, 1, interval=0.0)
    reporter(0.5, "encode")
    Task.objects.filter(pk=task.id).update(heartbeat_at=None)  # fixture: an old heartbeat
    events = StoredEvent.objects.filter(channel=task.channel).count()
    reporter(0.5, "encode")
    assert Task.objects.get(pk=task.id).heartbeat_at is not None
    assert StoredEvent.objects.filter(channel=task.channel).count() == events
    services.task_cancel(task_id=task.id)
    with pytest.raises(Cancelled):
        reporter(0.5, "encode")


def test_progress_never_goes_backwards_within_an_attempt(user, make_audio):
    task = services.task_create(owner=user, audio_file_id=make_audio(user).pk)
    services.task_start(task_id=task.id)
    services.task_report_progress(task_id=task.id, attempt=1, progress=60, stage="a", estimated_time=3)
    services.task_report_progress(task_id=task.id, attempt=1, progress=40, stage="a", estimated_time=3)
    assert Task.objects.get(pk=task.id).progress == 60


def test_eta_comes_from_measured_throughput(user, make_audio, monkeypatch):
    task = services.task_create(owner=user, audio_file_id=make_audio(user).pk)
    services.task_start(task_id=task.id)
    clock = [1000.0]
    monkeypatch.setattr(jobs.time, "monotonic", lambda: clock[0])
    reporter = jobs.ProgressReporter(task.id, 1, interval=0.0)
    reporter(0.0, "analyze")
    assert reporter.eta(clock[0]) is None  # nothing measured yet
    for _ in range(20):  # 2 % of the job per second
        clock[0] += 0.5
        reporter(reporter.fraction + 0.01, "analyze")
    assert reporter.eta(clock[0]) == pytest.approx((1 - 0.2) / 0.02, rel=0.01)
    assert Task.objects.get(pk=task.id).estimated_time == pytest.approx(40, rel=0.02)


def test_illegal_transitions_are_refused(user, make_audio):
    task = services.task_create(owner=user, audio_file_id=make_audio(user).pk)
    with pytest.raises(IllegalTransition):
        services.task_retry(task_id=task.id)  # pending → pending
    services.task_cancel(task_id=task.id)
    with pytest.raises(IllegalTransition):
        services.task_cancel(task_id=task.id)  # cancelled → cancelled
    assert services.task_complete(task_id=task.id, attempt=0, result={}) is None  # never processing
    assert Task.objects.get(pk=task.id).state == Task.State.CANCELLED


def test_every_committed_change_is_stored_for_the_stream_and_a_rollback_stores_none(user, make_audio):
    task = services.task_create(owner=user, audio_file_id=make_audio(user).pk)
    events = StoredEvent.objects.filter(channel=task.channel).exclude(eid=0)
    assert [e.type for e in events] == ["progress"]
    with pytest.raises(RuntimeError), transaction.atomic():
        services.task_cancel(task_id=task.id)
        raise RuntimeError("roll back")
    assert events.count() == 1
    services.task_cancel(task_id=task.id)
    stored = list(events.order_by("eid"))
    assert [e.type for e in stored] == ["progress", "progress", "complete"]
    assert [e.eid for e in stored] == [1, 2, 3]
    assert json.loads(stored[-1].data)["state"] == "cancelled"
    with pytest.raises(Cancelled):
        jobs.ProgressReporter(task.id, 0).flush()


def test_a_job_superseded_by_cancel_and_retry_has_its_writes_refused(user, make_audio, media_files):
    task = services.task_create(owner=user, audio_file_id=make_audio(user).pk)
    first = services.task_start(task_id=task.id)
    services.task_cancel(task_id=task.id)
    services.task_retry(task_id=task.id)
    second = services.task_start(task_id=task.id)
    assert (first.attempts, second.attempts) == (1, 2)
    stale = jobs.ProgressReporter(task.id, first.attempts, interval=0.0)
    with pytest.raises(Cancelled):
        stale(0.9, "analyze")  # the first job's progress lands nowhere...
    assert not services.task_heartbeat(task_id=task.id, attempt=first.attempts)
    assert services.task_complete(task_id=task.id, attempt=first.attempts, result={"stale": True}) is None
    assert services.task_fail(task_id=task.id, attempt=first.attempts, error="x") is None
    now = Task.objects.get(pk=task.id)
    assert (now.state, now.progress, now.result) == (Task.State.PROCESSING, 0.0, None)
    # ...while the second attempt's does.
    assert services.task_report_progress(
        task_id=task.id, attempt=second.attempts, progress=50, stage="analyze", estimated_time=1
    )
    jobs.process(first)  # the whole first job, run late: refused at its first write
    assert Task.objects.get(pk=task.id).attempts == 2
    assert not [f for f in media_files() if "/artifacts/" in str(f)]
    jobs.process(second)
    done = Task.objects.get(pk=task.id)
    assert done.state == Task.State.COMPLETED
    stored = [str(f) for f in media_files() if "/artifacts/" in str(f)]
    assert stored and all(f"/artifacts/{task.id}/2/" in name for name in stored)
