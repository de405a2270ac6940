"""`manage.py create_and_monitor_task`: create a test task, then watch it to the end."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from .create_test_task import add_test_task_arguments, create_test_task
from .watch_task import add_watch_arguments, watch_with_progress_bar


class Command(BaseCommand):
    """create_test_task followed by watch_task, in one go."""

    help = (
        "Generate audio, create a task on it and follow its SSE stream on the running "
        "server (--url) with a progress bar; exit 0 when the task completes."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        """The options of create_test_task and watch_task."""
        add_test_task_arguments(parser, seconds=60.0)
        add_watch_arguments(parser)

    def handle(
        self,
        *args: Any,
        task_id: str | None,
        user: str,
        seconds: float,
        kind: str,
        fmt: str,
        url: str,
        token: str | None,
        **options: Any,
    ) -> None:
        """Create the task, print its id, and watch it."""
        task = create_test_task(username=user, task_id=task_id, seconds=seconds, kind=kind, fmt=fmt)
        self.stdout.write(f"Created {task.id} ({kind}, {seconds:g} s of {fmt}) for {user}")
        watch_with_progress_bar(
            url=url, task_id=task.id, token=token, username=user, stdout=self.stdout, stderr=self.stderr
        )
