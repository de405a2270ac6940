"""`manage.py trim_events`: delete stream events older than the retention (for cron)."""

from __future__ import annotations

from argparse import ArgumentParser
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from tasks_app.streams.log import trim


class Command(BaseCommand):
    """Trim the event log: old events, and the channels of deleted tasks."""

    help = (
        "Delete stream events older than --hours (default: EVENT_RETENTION_HOURS) and the "
        "event counters of deleted tasks. Servers also do this every "
        "EVENT_TRIM_INTERVAL_SECONDS; a finished task's stream still ends with `complete`."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        """--hours."""
        parser.add_argument(
            "--hours", type=float, default=None, help="Retention in hours (default: EVENT_RETENTION_HOURS)."
        )

    def handle(self, *args: Any, hours: float | None, **options: Any) -> None:
        """Trim and say how many rows went."""
        retention = settings.EVENT_RETENTION_HOURS if hours is None else hours
        removed = trim(older_than=timedelta(hours=retention))
        self.stdout.write(f"Removed {removed} row(s) from the event log.")
