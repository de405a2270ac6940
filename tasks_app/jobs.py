"""What the worker runs: one audio task, with honest progress, ETA and prompt cancellation."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from typing import Iterator

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django_tasks import task

from . import services
from .audio.errors import AudioError, Cancelled
from .audio.progress import EtaEstimator
from .audio.registry import get_processor
from .exceptions import TaskCrashed
from .models import Task

logger = logging.getLogger(__name__)


class ProgressReporter:
    """Turns the pipeline's progress callbacks into throttled, guarded task updates.

    Writes at most one update per TASK_PROGRESS_INTERVAL (stage changes go at once), and
    each write doubles as the cancel check: when the task is no longer processing the
    update is refused and the pipeline is stopped with Cancelled.
    """

    def __init__(self, task_id: str, interval: float | None = None) -> None:
        self.task_id = task_id
        self.interval = settings.TASK_PROGRESS_INTERVAL if interval is None else interval
        self.last_write = 0.0
        self.stage = ""
        self.written: tuple[float, str] | None = None
        self.estimator = EtaEstimator(started=time.monotonic())

    @property
    def fraction(self) -> float:
        """Share of the job done so far (never decreasing)."""
        return self.estimator.fraction

    def __call__(self, fraction: float, stage: str) -> None:
        """Pipeline callback: record progress and maybe write it."""
        now = time.monotonic()
        self.estimator.update(now, min(fraction, 1.0))
        stage_changed = stage != self.stage
        self.stage = stage
        if stage_changed or now - self.last_write >= self.interval:
            self.flush(now)

    def flush(self, now: float | None = None) -> None:
        """Write the latest progress (or a heartbeat when unchanged); raise Cancelled if stopped."""
        now = time.monotonic() if now is None else now
        state = (round(self.fraction * 100, 2), self.stage)
        self.last_write = now
        if state == self.written:
            # Nothing for subscribers; still prove the job is alive and check for cancel.
            ok = services.task_heartbeat(task_id=self.task_id)
        else:
            ok = services.task_report_progress(
                task_id=self.task_id, progress=state[0], stage=self.stage,
                estimated_time=self.eta(now),
            )
        if not ok:
            raise Cancelled("The task is no longer processing.")
        self.written = state

    def eta(self, now: float) -> float | None:
        """Seconds left at the measured throughput, or None until it can be trusted."""
        return self.estimator.remaining(now)


@contextmanager
def local_copy(name: str) -> Iterator[str]:
    """A local path for a stored file: the file itself on local storage, else a temp copy."""
    try:
        yield default_storage.path(name)
        return
    except NotImplementedError:
        pass
    suffix = os.path.splitext(name)[1]
    with tempfile.NamedTemporaryFile(suffix=suffix) as tmp, default_storage.open(name) as src:
        shutil.copyfileobj(src, tmp)
        tmp.flush()
        yield tmp.name


def store_artifacts(task_id: str, folder: str, result: dict) -> None:
    """Move the files a processor wrote into storage, next to the task."""
    artifacts = result.get("artifacts") or {}
    stored = {}
    for key, filename in artifacts.items():
        source = os.path.join(folder, filename)
        if not os.path.exists(source):
            continue
        target = f"{services.artifacts_dir(task_id)}/{filename}"
        if default_storage.exists(target):
            default_storage.delete(target)
        with open(source, "rb") as fh:
            stored[key] = default_storage.save(target, File(fh))
    result["artifacts"] = stored


@task(queue_name="default")
def run_task(task_id: str) -> None:
    """Process one task from pending to completed, failed or cancelled."""
    claimed = services.task_start(task_id=task_id)
    if claimed is None:
        logger.info("Task %s is no longer pending; skipped", task_id)
        return
    process(claimed)


def process(task_row: Task) -> None:
    """Run a claimed task's processor and record the outcome."""
    task_id = task_row.id
    reporter = ProgressReporter(task_id)
    try:
        processor = get_processor(task_row.kind)
        with local_copy(task_row.audio_file.file.name) as path, \
                tempfile.TemporaryDirectory(prefix=f"{task_id}-") as folder:
            result = processor.run(path, dict(task_row.options), reporter, folder)
            reporter(1.0, reporter.stage or "finishing")
            reporter.flush()
            store_artifacts(task_id, folder, result)
    except Cancelled:
        logger.info("Task %s stopped: no longer processing", task_id)
        return
    except AudioError as exc:
        services.task_fail(task_id=task_id, error=str(exc))
        return
    except Exception:  # noqa: BLE001 - any failure must end the task, not strand it
        logger.exception("Task %s failed", task_id)
        services.task_fail(task_id=task_id, error=TaskCrashed.default_detail)
        return
    if services.task_complete(task_id=task_id, result=result) is None:
        logger.info("Task %s was cancelled before it could complete", task_id)
