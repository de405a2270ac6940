"""What the worker runs: one audio task, with honest progress, ETA and prompt cancellation."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import DatabaseError, InterfaceError, OperationalError, close_old_connections
from django_tasks import task

from . import queue, quota, services
from .audio.errors import AudioError, Cancelled, OptionsError
from .audio.progress import EtaEstimator
from .audio.registry import get_processor
from .exceptions import TaskCrashed
from .isolation import JobCrashed, run_isolated
from .models import Task
from .recovery import work_folder_prefix

logger = logging.getLogger(__name__)

# Set by the worker on a graceful SIGTERM/SIGINT: the running job stops at its next progress
# callback and hands its task back to pending instead of finishing (or failing) it.
hand_back_requested = threading.Event()


# A lost connection (backend terminated, database restarting) says nothing about the task: it is
# handed back to pending and runs again once the worker has reconnected. OperationalError also
# covers a database that cannot be reached; InterfaceError, a connection already closed.
CONNECTION_ERRORS = (OperationalError, InterfaceError)
# Seconds between tries to reconnect and hand the task back (about a minute in all). A database
# away for longer leaves the task processing without heartbeats; the recovery sweep then hands it
# back as stale once the database answers again.
RECONNECT_DELAYS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)


class HandBack(Exception):
    """The worker is stopping: give the running task back to the queue."""


# What became of a job's task: the job's return value, so that its result (SUCCESSFUL for every
# job that ran to its end) tells a completed task from a hand-back, a failure or a cancel.
COMPLETED = "completed"
FAILED = "failed"
STOPPED = "stopped: the task is no longer processing"
HANDED_BACK = "handed back to pending: the worker stopped"
SKIPPED = "skipped: the task is no longer pending"


class ProgressReporter:
    """Turns the pipeline's progress callbacks into throttled, coalesced, guarded task updates.

    Checks in at most once per TASK_PROGRESS_INTERVAL, and each check-in doubles as the cancel
    check: when the task is no longer processing it is refused and the pipeline is stopped with
    Cancelled. A check-in that only moves the progress (or the ETA) is a heartbeat unless
    PROGRESS_EVENT_INTERVAL_SECONDS passed since the last visible update: every visible update
    is an event on two channels, stored and sent to each subscriber, while a heartbeat is one
    UPDATE that nobody sees. A stage change is written at once; a held value is written as soon
    as the interval is up, by the next callback or, when the pipeline is quiet, by `idle`.
    """

    def __init__(
        self,
        task_id: str,
        attempt: int,
        interval: float | None = None,
        *,
        event_interval: float | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.task_id = task_id
        self.attempt = attempt
        self.interval = settings.TASK_PROGRESS_INTERVAL if interval is None else interval
        self.event_interval = settings.PROGRESS_EVENT_INTERVAL_SECONDS if event_interval is None else event_interval
        self.clock = clock or time.monotonic
        self.last_write = 0.0
        self.last_event = -math.inf
        # A change was seen at a check-in but not written (the event interval was not up).
        self.held = False
        self.stage = ""
        self.written: tuple[float, str] | None = None
        self.estimator = EtaEstimator(started=self.clock())

    @property
    def fraction(self) -> float:
        """Share of the job done so far (never decreasing)."""
        return self.estimator.fraction

    def __call__(self, fraction: float, stage: str) -> None:
        """Pipeline callback: record progress and maybe write it."""
        if hand_back_requested.is_set():
            raise HandBack(self.task_id)
        now = self.clock()
        self.estimator.update(now, min(fraction, 1.0))
        stage_changed = stage != self.stage
        self.stage = stage
        if stage_changed or now - self.last_write >= self.interval or (self.held and self._event_due(now)):
            self.flush(now, force=stage_changed)

    def idle(self) -> None:
        """The pipeline is quiet: write a held value that is due, else beat the heartbeat."""
        self.flush(force=False)

    def flush(self, now: float | None = None, *, force: bool = True) -> None:
        """Write the latest progress (or a heartbeat when unchanged or not yet due); raise
        Cancelled if stopped. With `force`, a change is written whatever the interval."""
        now = self.clock() if now is None else now
        self.last_write = now
        if not (self._changed() and (force or self._event_due(now))):
            # Nothing for subscribers; still prove the job is alive and check for cancel.
            self.held = self._changed()
            ok = services.task_heartbeat(task_id=self.task_id, attempt=self.attempt)
        else:
            state = self._state()
            ok = services.task_report_progress(
                task_id=self.task_id,
                attempt=self.attempt,
                progress=state[0],
                stage=self.stage,
                estimated_time=self.eta(now),
            )
            if ok:
                self.written, self.last_event, self.held = state, now, False
        if not ok:
            raise Cancelled("The task is no longer processing.")

    def _state(self) -> tuple[float, str]:
        return (round(self.fraction * 100, 2), self.stage)

    def _changed(self) -> bool:
        return self._state() != self.written

    def _event_due(self, now: float) -> bool:
        """Whether a changed value may be written now without breaking the event interval."""
        return now - self.last_event >= self.event_interval and self._changed()

    def eta(self, now: float) -> float | None:
        """Seconds left at the measured throughput, or None until it can be trusted."""
        return self.estimator.remaining(now)


@contextmanager
def local_copy(name: str, folder: str) -> Iterator[str]:
    """A local path for a stored file: the file itself on local storage, else a copy in `folder`."""
    try:
        yield default_storage.path(name)
        return
    except NotImplementedError:
        pass
    suffix = os.path.splitext(name)[1]
    with tempfile.NamedTemporaryFile(suffix=suffix, dir=folder) as tmp, default_storage.open(name) as src:
        shutil.copyfileobj(src, tmp)
        tmp.flush()
        yield tmp.name


def store_artifacts(task_id: str, attempt: int, folder: str, result: dict) -> None:
    """Move the files a processor wrote into storage, in the attempt's own folder.

    The result names them there, so they take the place of the task's artifacts only when
    this attempt completes; a superseded attempt's files are never seen and are removed.
    """
    artifacts = result.get("artifacts") or {}
    stored = {}
    for key, filename in artifacts.items():
        source = os.path.join(folder, filename)
        if not os.path.exists(source):
            continue
        target = f"{services.artifacts_dir(task_id, attempt)}/{filename}"
        if default_storage.exists(target):
            default_storage.delete(target)
        with open(source, "rb") as fh:
            stored[key] = default_storage.save(target, File(fh))
    result["artifacts"] = stored


@task(queue_name="default")
def run_task(task_id: str) -> str:
    """Process one task from pending to completed, failed or cancelled; return what became of it."""
    claimed = services.task_start(task_id=task_id)
    if claimed is None:
        logger.info("Task %s is no longer pending; skipped", task_id)
        return SKIPPED
    return process(claimed)


queue.set_job(run_task)


def process(task_row: Task) -> str:
    """Run a claimed task's processor, record the outcome and return it (COMPLETED, HANDED_BACK, …)."""
    task_id, attempt = task_row.id, task_row.attempts
    reporter = ProgressReporter(task_id, attempt)
    try:
        processor = get_processor(task_row.kind)
        # Refused before anything is written when the output's size is known in advance.
        quota.check_output(task_row, quota.expected_output_bytes(task_row), expected=True)
        # Everything the attempt writes locally is in this folder, named so that recovery can
        # remove it when the worker dies (recovery.remove_work_folders).
        with (
            tempfile.TemporaryDirectory(prefix=work_folder_prefix(task_id, attempt)) as folder,
            local_copy(task_row.audio_file.file.name, folder) as path,
        ):
            options = dict(task_row.options)
            # In a child process: a native abort, memory blow-up or hang fails this task only.
            result = run_isolated(
                lambda progress: processor.run(path, options, progress, folder),
                reporter,
                timeout=settings.AUDIO_JOB_TIMEOUT_SECONDS,
                memory_mb=settings.AUDIO_JOB_MEMORY_MB,
                idle=reporter.idle,
            )
            reporter(1.0, reporter.stage or "finishing")
            reporter.flush()
            output_bytes = quota.written_bytes(folder, result)
            quota.check_output(task_row, output_bytes)  # before it reaches storage
            store_artifacts(task_id, attempt, folder, result)
    except Cancelled:
        logger.info("Task %s stopped: no longer processing", task_id)
        return STOPPED
    except HandBack:
        if services.task_hand_back(task_id=task_id, attempt=attempt) is None:
            return STOPPED
        logger.warning("Worker stopping: task %s handed back to pending", task_id)
        return HANDED_BACK
    except CONNECTION_ERRORS:
        logger.warning("Task %s: database connection lost; handing it back", task_id, exc_info=True)
        return HANDED_BACK if hand_back_after_connection_loss(task_id, attempt) else STOPPED
    except (AudioError, OptionsError, JobCrashed, quota.OutputLimitExceeded) as exc:
        services.task_fail(task_id=task_id, attempt=attempt, error=str(exc))
        return FAILED
    except Exception:  # noqa: BLE001 - any failure must end the task, not strand it
        logger.exception("Task %s failed", task_id)
        services.task_fail(task_id=task_id, attempt=attempt, error=TaskCrashed.default_detail)
        return FAILED
    try:
        # Django's JSON encoder writes NaN and infinity, which no database accepts as JSON.
        json.dumps(result, allow_nan=False)
        completed = services.task_complete(task_id=task_id, attempt=attempt, result=result, output_bytes=output_bytes)
    except CONNECTION_ERRORS:
        # Whether the completion committed is unknown: only a successful hand-back proves it did
        # not, and only then are this attempt's stored files surely unused.
        logger.warning("Task %s: database connection lost while completing; handing it back", task_id, exc_info=True)
        if not hand_back_after_connection_loss(task_id, attempt):
            return STOPPED
        services.remove_artifacts(services.artifacts_dir(task_id, attempt))
        return HANDED_BACK
    except (TypeError, ValueError, DatabaseError):
        logger.exception("Task %s: result refused", task_id)
        services.task_fail(
            task_id=task_id,
            attempt=attempt,
            error=(
                "The result could not be saved: it holds values that cannot be stored as JSON "
                f"(such as NaN or infinity). This is a bug in the {task_row.kind!r} processor."
            ),
        )
        services.remove_artifacts(services.artifacts_dir(task_id, attempt))
        return FAILED
    if completed is None:
        logger.info("Task %s attempt %d did not complete (cancelled, superseded or refused)", task_id, attempt)
        services.remove_artifacts(services.artifacts_dir(task_id, attempt))
        return STOPPED
    return COMPLETED


def hand_back_after_connection_loss(task_id: str, attempt: int) -> bool:
    """Reconnect and send the task back to pending; False if the database stayed away or it moved on."""
    for delay in RECONNECT_DELAYS:
        time.sleep(delay)
        # Drops the broken connection (Django would otherwise keep failing on it); the next query
        # opens a new one.
        close_old_connections()
        try:
            handed = services.task_hand_back(task_id=task_id, attempt=attempt)
        except CONNECTION_ERRORS as exc:
            logger.warning("Task %s: database still unreachable (%s)", task_id, exc)
            continue
        if handed is None:
            logger.info("Task %s attempt %d had already moved on when the worker reconnected", task_id, attempt)
            return False
        logger.warning("Task %s handed back to pending after a lost database connection", task_id)
        return True
    logger.error("Task %s: database unreachable; the recovery sweep will hand it back", task_id)
    return False
