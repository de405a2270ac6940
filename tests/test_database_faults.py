"""A lost database connection during a task hands the task back; the worker reconnects and it completes."""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from django.db import OperationalError

from tasks_app import jobs, services
from tasks_app.audio.generate import write_tone
from tasks_app.audio.registry import get_processor
from tasks_app.models import AudioFile, Task

from .conftest import POSTGRES_URL, postgres_database
from .live_server import LiveService, spawn_worker, start_service, stop_service, wait_until

LOST = "terminating connection due to administrator command"


def fail_once(monkeypatch: pytest.MonkeyPatch, name: str) -> list[bool]:
    """Make `services.<name>` raise a lost-connection error on its first call; returns the calls' log."""
    real = getattr(services, name)
    calls: list[bool] = []

    def flaky(**kwargs: Any) -> Any:
        calls.append(True)
        if len(calls) == 1:
            raise OperationalError(LOST)
        return real(**kwargs)

    monkeypatch.setattr(services, name, flaky)
    return calls


def with_processor(monkeypatch: pytest.MonkeyPatch, run: Callable[..., dict]) -> None:
    """Replace the analyze processor's run for the job."""
    real = get_processor("analyze")
    monkeypatch.setattr(jobs, "get_processor", lambda kind: dataclasses.replace(real, run=run))


def halfway(path: str, options: dict, progress: Any, folder: str) -> dict:
    """A processor that reports progress once, writes an artifact and returns."""
    progress(0.5, "analyze")
    with open(os.path.join(folder, "waveform.json"), "w") as fh:
        fh.write("{}")
    return {"artifacts": {"waveform_json": "waveform.json"}}


@pytest.mark.django_db
def test_a_connection_lost_mid_task_hands_the_task_back_and_it_completes_next_time(
    user: Any, make_audio: Callable[[Any], AudioFile], monkeypatch: pytest.MonkeyPatch
) -> None:
    with_processor(monkeypatch, halfway)
    calls = fail_once(monkeypatch, "task_report_progress")
    task = services.task_create(owner=user, audio_file_id=make_audio(user).pk)

    jobs.run_task.call(task.pk)

    task.refresh_from_db()
    assert calls, "the progress write was reached"
    assert (task.state, task.attempts, task.error) == (Task.State.PENDING, 1, None)
    jobs.run_task.call(task.pk)
    task.refresh_from_db()
    assert (task.state, task.attempts) == (Task.State.COMPLETED, 2)


@pytest.mark.django_db
def test_a_connection_lost_while_completing_hands_back_and_drops_the_attempts_files(
    user: Any, make_audio: Callable[[Any], AudioFile], monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.core.files.storage import default_storage

    with_processor(monkeypatch, halfway)
    fail_once(monkeypatch, "task_complete")
    task = services.task_create(owner=user, audio_file_id=make_audio(user).pk)

    jobs.run_task.call(task.pk)

    task.refresh_from_db()
    assert (task.state, task.attempts, task.error) == (Task.State.PENDING, 1, None)
    assert not default_storage.exists(f"{services.artifacts_dir(task.pk, 1)}/waveform.json")


@pytest.mark.django_db
def test_a_database_that_stays_away_leaves_the_task_to_the_stale_sweep_not_failed(
    user: Any, make_audio: Callable[[Any], AudioFile], monkeypatch: pytest.MonkeyPatch
) -> None:
    with_processor(monkeypatch, halfway)
    fail_once(monkeypatch, "task_report_progress")
    monkeypatch.setattr(jobs, "RECONNECT_DELAYS", (0.0, 0.0, 0.0))
    tries: list[bool] = []

    def unreachable(**kwargs: Any) -> None:
        tries.append(True)
        raise OperationalError("connection refused")

    monkeypatch.setattr(services, "task_hand_back", unreachable)
    task = services.task_create(owner=user, audio_file_id=make_audio(user).pk)

    jobs.run_task.call(task.pk)

    task.refresh_from_db()
    assert len(tries) == 3
    assert (task.state, task.error) == (Task.State.PROCESSING, None)


@pytest.mark.django_db
def test_the_worker_loop_reconnects_when_its_poll_loses_the_database(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from tasks_app.management.commands import worker as command

    monkeypatch.setattr(command, "RECONNECT_SECONDS", 0.0)

    class Poller:
        """Stands in for db_worker's Worker: its poll fails twice, then it runs to the end."""

        runs = 0

        def run(self) -> None:
            self.runs += 1
            if self.runs <= 2:
                raise OperationalError("server closed the connection unexpectedly")

    poller = Poller()
    command.run_reconnecting(poller, threading.Event())  # type: ignore[arg-type]
    assert poller.runs == 3


# ----------------------------------------------------------------- on PostgreSQL

WORKER_APP = "audio-tasks-worker"


@pytest.fixture(scope="module")
def postgres_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveService, str]]:
    """A live service on its own PostgreSQL database; its worker's connections carry WORKER_APP."""
    name = f"audio_tasks_faults_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with postgres_database(name) as database_url:
        service = start_service(tmp_path_factory.mktemp("faults"), workers=0, extra_env={"DATABASE_URL": database_url})
        # Only the worker's connections are named, so only they are terminated.
        service.env = {**service.env, "DATABASE_URL": f"{database_url}?application_name={WORKER_APP}"}
        spawn_worker(service)
        yield service, name
        stop_service(service)


def terminate_worker_backends(database: str) -> int:
    """pg_terminate_backend on every connection of the worker to `database`; return how many."""
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
            (database, WORKER_APP),
        ).fetchall()
    return sum(1 for (done,) in rows if done)


@pytest.mark.slow
@pytest.mark.needs_postgres
def test_terminating_the_workers_backend_mid_task_hands_it_back_and_it_completes(
    postgres_service: tuple[LiveService, str], tmp_path: Any
) -> None:
    service, database = postgres_service
    path = tmp_path / "long.flac"
    write_tone(str(path), 20 * 60, fmt="flac")  # seconds of work at least: the backend dies mid-task
    token = service.token("alice")
    audio = service.upload(token, path)
    task = service.create_task(token, audio["id"], kind="normalize", options={"output_format": "wav"})

    def fetch() -> dict:
        with service.client(token) as api:
            return api.get(f"/api/v1/tasks/{task['id']}/").json()

    wait_until(
        lambda: (seen := fetch())["state"] == "processing" and 0 < seen["progress"] < 50,
        120,
        "the task to be under way",
    )
    assert terminate_worker_backends(database) >= 1, "the worker holds a connection while it works"

    done = wait_until(lambda: (seen := fetch())["state"] in ("completed", "failed") and seen, 300, "the task to finish")
    assert (done["state"], done["error"]) == ("completed", None)
    assert done["attempts"] == 2, "the interrupted attempt was handed back and run again"
    log = (service.data_dir / "worker0.log").read_text()
    assert "handed back to pending after a lost database connection" in log
