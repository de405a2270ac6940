"""Self-healing: lost enqueues, handed-back tasks, unsaveable results, deleted users."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from tasks_app import jobs, services
from tasks_app.audio.registry import get_processor
from tasks_app.exceptions import IllegalTransition
from tasks_app.models import AudioFile, Task
from tasks_app.recovery import recover, task_enqueue_lost

pytestmark = pytest.mark.django_db


@pytest.fixture
def db_queue(settings: Any) -> None:
    """Jobs go to the real database queue (nothing runs them)."""
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}


def _age(task: Task, seconds: float) -> None:
    """Fixture setup: pretend the task's last change was `seconds` ago."""
    Task.objects.filter(pk=task.pk).update(updated_at=timezone.now() - timedelta(seconds=seconds))


def test_a_pending_task_whose_enqueue_was_lost_is_enqueued_again(
    db_queue: None, user: Any, make_task: Callable[..., Task], django_capture_on_commit_callbacks: Any
) -> None:
    # make_task's on-commit enqueue never runs here: exactly a crash between commit and enqueue.
    lost, young = make_task(user), make_task(user)
    _age(lost, 120)
    with django_capture_on_commit_callbacks(execute=True):
        queued = make_task(user)
    _age(queued, 120)

    with django_capture_on_commit_callbacks(execute=True):
        assert task_enqueue_lost(older_than_seconds=60) == 1

    lost.refresh_from_db()
    job = DBTaskResult.objects.get(pk=lost.job_id)
    assert job.status == "READY" and job.args_kwargs["args"] == [lost.pk]
    young.refresh_from_db()
    assert young.job_id == "", "a task created a moment ago may still be enqueueing"
    assert DBTaskResult.objects.count() == 2, "a task with a waiting job is left alone"


def test_a_task_whose_job_was_claimed_but_never_started_is_enqueued_again(
    db_queue: None, user: Any, make_task: Callable[..., Task], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        task = make_task(user)
    task.refresh_from_db()
    first_job = task.job_id
    DBTaskResult.objects.get(pk=first_job).claim("died-before-task_start")
    _age(task, 120)

    with django_capture_on_commit_callbacks(execute=True):
        assert recover(stale_seconds=60, max_attempts=3)["enqueued"] == 1

    task.refresh_from_db()
    assert task.job_id != first_job and task.state == Task.State.PENDING


def test_a_stale_task_goes_back_to_pending_and_its_dead_job_is_closed(
    db_queue: None, user: Any, make_task: Callable[..., Task], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        task = make_task(user)
    task.refresh_from_db()
    DBTaskResult.objects.get(pk=task.job_id).claim("killed-worker")
    claimed = services.task_start(task_id=task.pk)
    services.task_report_progress(task_id=task.pk, attempt=1, progress=40.0, stage="analyze", estimated_time=3.0)
    Task.objects.filter(pk=task.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=90))

    with django_capture_on_commit_callbacks(execute=True):
        assert recover(stale_seconds=60, max_attempts=3) == {"requeued": 1, "failed": 0, "enqueued": 0}

    old_job = DBTaskResult.objects.get(pk=claimed.job_id)
    assert old_job.status == "FAILED", "the dead worker's job no longer shows RUNNING"
    task.refresh_from_db()
    assert (task.state, task.progress, task.attempts) == (Task.State.PENDING, 0.0, 1)
    assert DBTaskResult.objects.get(pk=task.job_id).status == "READY"
    # The next worker to run it makes it attempt 2.
    assert services.task_start(task_id=task.pk).attempts == 2


def test_recovery_is_not_a_public_transition(user: Any, make_task: Callable[..., Task]) -> None:
    task = make_task(user, state=Task.State.PROCESSING)
    with pytest.raises(IllegalTransition):
        services.task_retry(task_id=task.pk)
    assert services.task_hand_back(task_id=task.pk, attempt=task.attempts + 1) is None
    assert Task.objects.get(pk=task.pk).state == Task.State.PROCESSING
    assert services.task_hand_back(task_id=task.pk, attempt=task.attempts) is not None
    assert Task.objects.get(pk=task.pk).state == Task.State.PENDING
    assert services.task_hand_back(task_id=task.pk) is None, "only a processing task"


def test_a_stopping_worker_hands_its_running_task_back(
    user: Any, make_audio: Callable[[Any], AudioFile], monkeypatch: pytest.MonkeyPatch
) -> None:
    task = services.task_create(owner=user, audio_file_id=make_audio(user).pk)
    monkeypatch.setattr(jobs, "hand_back_requested", _set_event())

    outcome = jobs.run_task.call(task.pk)

    task.refresh_from_db()
    assert (task.state, task.attempts, task.error) == (Task.State.PENDING, 1, None)
    # The job's result (stored by the worker as its return value) is not that of a success.
    assert outcome == jobs.HANDED_BACK != jobs.COMPLETED


def _set_event() -> Any:
    import threading

    event = threading.Event()
    event.set()
    return event


def test_a_result_the_database_cannot_store_fails_the_task_readably(
    user: Any, make_audio: Callable[[Any], AudioFile], monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    real = get_processor("analyze")

    def nan_result(path: str, options: dict, progress: Any, folder: str) -> dict:
        progress(1.0, "analyze")
        return {"integrated_lufs": math.nan}

    monkeypatch.setattr(jobs, "get_processor", lambda kind: dataclasses.replace(real, run=nan_result))
    task = services.task_create(owner=user, audio_file_id=make_audio(user).pk)

    jobs.run_task.call(task.pk)

    task.refresh_from_db()
    assert task.state == Task.State.FAILED
    assert "could not be saved" in task.error and "NaN" in task.error
    assert task.result is None


def test_deleting_a_user_deletes_their_tasks_audio_and_files(
    user: Any,
    other_user: Any,
    make_task: Callable[..., Task],
    media_files: Callable[[], list],
    django_capture_on_commit_callbacks: Any,
) -> None:
    make_task(user)
    make_task(user, state=Task.State.PROCESSING)
    kept = make_task(other_user)
    assert len(media_files()) == 3

    with django_capture_on_commit_callbacks(execute=True):
        services.user_delete(user=user)

    assert not get_user_model().objects.filter(pk=user.pk).exists()
    assert list(Task.objects.values_list("pk", flat=True)) == [kept.pk]
    assert AudioFile.objects.count() == 1 and len(media_files()) == 1


def test_a_plain_user_delete_is_not_blocked_by_their_tasks(user: Any, make_task: Callable[..., Task]) -> None:
    make_task(user)
    user.delete()  # the admin's or the shell's delete; ProtectedError before
    assert Task.objects.count() == 0 and AudioFile.objects.count() == 0


def test_recovering_a_dead_workers_task_removes_the_temp_folder_it_left(
    db_queue: None,
    user: Any,
    make_task: Callable[..., Task],
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    import tempfile

    from tasks_app.recovery import work_folder_prefix

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with django_capture_on_commit_callbacks(execute=True):
        task = make_task(user)
    services.task_start(task_id=task.pk)
    left = tmp_path / f"{work_folder_prefix(task.pk, 1)}x1y2"
    (left / "sub").mkdir(parents=True)
    (left / "sub" / "output.wav").write_bytes(b"RIFF")
    # The next attempt may already run on this machine after the hand-back: its folder stays.
    following = tmp_path / f"{work_folder_prefix(task.pk, 2)}z3"
    following.mkdir()
    Task.objects.filter(pk=task.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=90))

    with django_capture_on_commit_callbacks(execute=True):
        assert recover(stale_seconds=60, max_attempts=3)["requeued"] == 1

    assert not left.exists()
    assert following.exists()


def test_an_attempt_works_in_the_folder_recovery_knows_by_name(
    user: Any, make_audio: Callable[[Any], AudioFile], monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses
    import os

    from tasks_app.recovery import work_folder_prefix

    real = get_processor("analyze")

    def report_folder(path: str, options: dict, progress: Any, folder: str) -> dict:
        return {"folder": os.path.basename(folder)}

    monkeypatch.setattr(jobs, "get_processor", lambda kind: dataclasses.replace(real, run=report_folder))
    task = services.task_create(owner=user, audio_file_id=make_audio(user).pk)

    jobs.run_task.call(task.pk)

    task.refresh_from_db()
    assert task.state == Task.State.COMPLETED
    assert task.result["folder"].startswith(work_folder_prefix(task.pk, 1))
