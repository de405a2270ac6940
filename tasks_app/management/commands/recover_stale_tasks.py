"""`manage.py recover_stale_tasks`: one recovery sweep (workers also run it every few seconds)."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from tasks_app.recovery import recover


class Command(BaseCommand):
    """Send tasks of dead workers back to pending (or fail them), enqueue lost pending tasks."""

    help = (
        "Send tasks stuck in `processing` (no heartbeat for --older-than seconds) back to "
        "pending, or fail them once they have had --max-attempts attempts; enqueue again "
        "pending tasks whose job was lost. `worker` does this every TASK_RECOVERY_SECONDS."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        """--older-than, --max-attempts."""
        parser.add_argument(
            "--older-than",
            type=float,
            default=None,
            metavar="SECONDS",
            help="Heartbeat age after which a processing task counts as abandoned (default: TASK_STALE_SECONDS).",
        )
        parser.add_argument(
            "--max-attempts",
            type=int,
            default=None,
            help="Attempts after which a stale task is failed instead (default: TASK_MAX_ATTEMPTS).",
        )

    def handle(self, *args: Any, older_than: float | None, max_attempts: int | None, **options: Any) -> None:
        """Run one sweep and report what it did."""
        done = recover(
            stale_seconds=settings.TASK_STALE_SECONDS if older_than is None else older_than,
            max_attempts=settings.TASK_MAX_ATTEMPTS if max_attempts is None else max_attempts,
        )
        self.stdout.write(
            f"Sent {done['requeued']} stale task(s) back to pending, failed "
            f"{done['failed']}, enqueued {done['enqueued']} lost task(s)."
        )
