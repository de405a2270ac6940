"""Recovery after a crash: fail tasks left `processing` by a worker that is gone."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from .models import Task
from .services import task_fail

logger = logging.getLogger(__name__)

STALE_ERROR = ("The worker processing this task stopped without finishing it "
               "(no heartbeat for {seconds:.0f} s). Retry the task to run it again.")
ORPHAN_ERROR = ("The worker processing this task was stopped before it finished. "
                "Retry the task to run it again.")


def task_fail_stale(*, older_than_seconds: float) -> int:
    """Fail processing tasks whose heartbeat is older than the threshold; return how many."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    # A task without a heartbeat is judged by its last update, so one claimed a moment ago
    # by a worker that has not reported yet is not taken for dead.
    stale = (Q(heartbeat_at__lt=cutoff)
             | Q(heartbeat_at__isnull=True, updated_at__lt=cutoff))
    error = STALE_ERROR.format(seconds=older_than_seconds)
    failed = 0
    for task_id in Task.objects.filter(stale, state=Task.State.PROCESSING).values_list(
            "pk", flat=True):
        with transaction.atomic():
            # Re-check under the row lock: the worker may have reported since the scan.
            locked = Task.objects.select_for_update().filter(
                stale, pk=task_id, state=Task.State.PROCESSING)
            if locked.exists() and task_fail(task_id=task_id, error=error) is not None:
                failed += 1
    if failed:
        logger.warning("Failed %d task(s) left processing by a stopped worker", failed)
    return failed


def task_fail_orphaned(*, worker_ids: list[str]) -> int:
    """Fail processing tasks whose job was claimed by one of these (stopped) workers."""
    if not worker_ids:
        return 0
    processing: dict[str, str] = {}
    for job_id, task_id in Task.objects.filter(state=Task.State.PROCESSING).exclude(
            job_id="").values_list("job_id", "pk"):
        try:
            processing[str(uuid.UUID(job_id))] = task_id
        except ValueError:
            continue  # not a database-backend job id
    # A job's last claimer is the worker that ran it (a retry enqueues a new job).
    claimed = DBTaskResult.objects.filter(pk__in=list(processing)).values_list("pk", "worker_ids")
    failed = 0
    for job_id, claimers in claimed:
        if claimers and claimers[-1] in worker_ids:
            if task_fail(task_id=processing[str(job_id)], error=ORPHAN_ERROR) is not None:
                failed += 1
    return failed
