"""The job queue as the domain sees it: `services` queues a task's job without importing the job.

The job (`tasks_app.jobs.run_task`, a django-tasks task) calls `services` for every change of a task's
state, so `services` importing it back would make a cycle. Instead `jobs` plugs its task in here when
it is imported, and the app's `ready()` imports `jobs` in every process, so whichever process creates,
retries or hands back a task queues its job.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from .models import Task

_job: Any = None


def set_job(job: Any) -> None:
    """Make `job` (a django-tasks task taking a task id) the one `enqueue_on_commit` queues."""
    global _job
    _job = job


def enqueue_on_commit(task_id: str) -> None:
    """Queue the job for `task_id` once the current transaction commits, and note the job's id."""
    if _job is None:
        raise RuntimeError("no job is plugged into the queue: is tasks_app in INSTALLED_APPS?")
    job = _job

    def enqueue() -> None:
        result = job.enqueue(task_id)
        Task.objects.filter(pk=task_id).update(job_id=str(result.id)[:64])

    transaction.on_commit(enqueue)
