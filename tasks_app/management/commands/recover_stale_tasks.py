"""`manage.py recover_stale_tasks`: fail tasks left `processing` by a worker that died."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from tasks_app.recovery import task_fail_stale

DEFAULT_STALE_SECONDS = 60.0


class Command(BaseCommand):
    """Mark processing tasks without a recent heartbeat as failed, with a readable error."""

    help = ("Fail tasks stuck in `processing` whose worker stopped (no heartbeat for "
            "--older-than seconds), so they can be retried.")

    def add_arguments(self, parser: ArgumentParser) -> None:
        """--older-than."""
        parser.add_argument(
            "--older-than", type=float, default=DEFAULT_STALE_SECONDS, metavar="SECONDS",
            help="Heartbeat age after which a processing task counts as abandoned "
                 "(default: %(default)s).")

    def handle(self, *args: Any, older_than: float, **options: Any) -> None:
        """Run the recovery and report how many tasks it failed."""
        failed = task_fail_stale(older_than_seconds=older_than)
        self.stdout.write(f"Failed {failed} stale task(s).")
