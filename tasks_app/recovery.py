"""Recovery after a crash: tasks left `processing` by a dead worker go back to `pending` (up to
a retry limit, then `failed`) and lose the temporary folder it left, and `pending` tasks whose
job was lost are enqueued again."""

from __future__ import annotations

import glob
import logging
import os
import shutil
import tempfile
import uuid
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django_tasks_db.compat import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from .models import Task
from .services import task_enqueue_again, task_fail, task_hand_back

logger = logging.getLogger(__name__)

EXHAUSTED_ERROR = (
    "The task was started {attempts} times and each time its worker stopped "
    "without finishing it (no heartbeat for {seconds:.0f} s); it was not retried "
    "again. Retry the task to run it once more."
)
ORPHAN_ERROR = (
    "The task was started {attempts} times and each time its worker was stopped "
    "before it finished; it was not retried again. Retry the task to run it once more."
)


def task_requeue_orphaned(*, worker_ids: list[str], max_attempts: int) -> tuple[int, int]:
    """Send back to pending (or fail, when out of attempts) the processing tasks whose job was
    last claimed by one of these stopped workers; return (requeued, failed)."""
    if not worker_ids:
        return 0, 0
    processing: dict[str, tuple[str, int]] = {}
    for job_id, task_id, attempts in (
        Task.objects.filter(state=Task.State.PROCESSING).exclude(job_id="").values_list("job_id", "pk", "attempts")
    ):
        try:
            processing[str(uuid.UUID(job_id))] = (task_id, attempts)
        except ValueError:
            continue  # not a database-backend job id
    # A job's last claimer is the worker that ran it (a requeue enqueues a new job).
    claimed = DBTaskResult.objects.filter(pk__in=list(processing)).values_list("pk", "worker_ids")
    requeued = failed = 0
    for job_id, claimers in claimed:
        if not claimers or claimers[-1] not in worker_ids:
            continue
        task_id, attempts = processing[str(job_id)]
        if attempts >= max_attempts:
            error = ORPHAN_ERROR.format(attempts=attempts)
            failed += task_fail(task_id=task_id, error=error) is not None
        elif task_hand_back(task_id=task_id, attempt=attempts) is not None:
            requeued += 1
        else:
            continue
        _close_job(str(job_id))
        remove_work_folders(task_id, attempts)
    return requeued, failed


def _stale_filter(cutoff: Any) -> Q:
    """Processing tasks without a sign of life since `cutoff`."""
    # A task without a heartbeat is judged by its last update, so one claimed a moment ago
    # by a worker that has not reported yet is not taken for dead.
    return Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, updated_at__lt=cutoff)


def task_requeue_stale(*, older_than_seconds: float, max_attempts: int) -> tuple[int, int]:
    """Send stale processing tasks back to pending, or fail those out of attempts.

    Returns (requeued, failed).
    """
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    requeued = failed = 0
    stale = Task.objects.filter(_stale_filter(cutoff), state=Task.State.PROCESSING)
    for task_id, attempts, job_id in stale.values_list("pk", "attempts", "job_id"):
        if attempts >= max_attempts:
            error = EXHAUSTED_ERROR.format(attempts=attempts, seconds=older_than_seconds)
            with transaction.atomic():
                # Re-check under the row lock: the worker may have reported since the scan.
                if (
                    Task.objects.select_for_update()
                    .filter(_stale_filter(cutoff), pk=task_id, state=Task.State.PROCESSING, attempts=attempts)
                    .exists()
                    and task_fail(task_id=task_id, error=error) is not None
                ):
                    failed += 1
        elif task_hand_back(task_id=task_id, attempt=attempts, stale_before=cutoff) is not None:
            requeued += 1
        else:
            continue
        _close_job(job_id)
        remove_work_folders(task_id, attempts)
    if requeued or failed:
        logger.warning(
            "Stale tasks (no heartbeat for %.0f s): %d sent back to pending, %d failed",
            older_than_seconds,
            requeued,
            failed,
        )
    return requeued, failed


def task_enqueue_lost(*, older_than_seconds: float) -> int:
    """Enqueue again pending tasks (older than the threshold) whose job is gone; return how many.

    The job is gone when the enqueue after commit never happened (no job id), its row is
    missing, or it was claimed or finished without the task ever starting.
    """
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    pending = dict(Task.objects.filter(state=Task.State.PENDING, updated_at__lt=cutoff).values_list("pk", "job_id"))
    uuids = {}
    for task_id, job_id in pending.items():
        try:
            uuids[task_id] = uuid.UUID(job_id)
        except ValueError:
            continue
    waiting = set(
        DBTaskResult.objects.filter(pk__in=list(uuids.values()), status=TaskResultStatus.READY).values_list(
            "pk", flat=True
        )
    )
    lost = [task_id for task_id in pending if uuids.get(task_id) not in waiting]
    enqueued = sum(task_enqueue_again(task_id=task_id, lost_job_id=pending[task_id]) for task_id in lost)
    if enqueued:
        logger.warning("Enqueued %d pending task(s) whose job was lost", enqueued)
    return enqueued


def work_folder_prefix(task_id: str, attempt: int) -> str:
    """Name prefix of the temporary folder in which one attempt of a task works."""
    return f"audio-task-{task_id}-{attempt}-"


def remove_work_folders(task_id: str, attempt: int) -> int:
    """Delete the temporary folder(s) a dead worker left for this attempt; return how many.

    Only this machine's temporary directory is seen: a worker on another machine leaves its
    folder to the sweep there. The attempt in the name keeps the folder of the next attempt,
    which may already have started here, out of reach.
    """
    pattern = os.path.join(tempfile.gettempdir(), glob.escape(work_folder_prefix(task_id, attempt)) + "*")
    removed = 0
    for path in glob.glob(pattern):
        shutil.rmtree(path, ignore_errors=True)
        removed += not os.path.exists(path)
    if removed:
        logger.info("Removed %d temporary folder(s) of task %s attempt %d", removed, task_id, attempt)
    return removed


def _close_job(job_id: str) -> None:
    """Mark a dead worker's job row as failed, so it does not stay RUNNING for good."""
    try:
        pk = uuid.UUID(job_id)
    except ValueError:
        return
    DBTaskResult.objects.filter(pk=pk, status=TaskResultStatus.RUNNING).update(
        status=TaskResultStatus.FAILED, finished_at=timezone.now()
    )


def recover(*, stale_seconds: float, max_attempts: int) -> dict[str, int]:
    """One recovery sweep: stale processing tasks, then pending tasks with a lost job."""
    requeued, failed = task_requeue_stale(older_than_seconds=stale_seconds, max_attempts=max_attempts)
    enqueued = task_enqueue_lost(older_than_seconds=stale_seconds)
    return {"requeued": requeued, "failed": failed, "enqueued": enqueued}
