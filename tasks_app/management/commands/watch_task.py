"""`manage.py watch_task TASK_ID`: follow a task's SSE stream with a live progress bar."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError, OutputWrapper
from tqdm import tqdm

from tasks_app.accounts import DEMO_USERNAME, access_token_for, user_by_name
from tasks_app.client import StreamError, format_eta, watch
from tasks_app.exceptions import NotFound


def add_watch_arguments(parser: ArgumentParser) -> None:
    """Where the server is and who to watch as (shared with create_and_monitor_task)."""
    parser.add_argument(
        "--url", default="http://127.0.0.1:8000", help="Base URL of the running server (default: %(default)s)."
    )
    parser.add_argument("--token", default=None, help="Access token to use (default: issue one for --user).")


def watch_with_progress_bar(
    *, url: str, task_id: str, token: str | None, username: str, stdout: OutputWrapper, stderr: OutputWrapper
) -> None:
    """Show a task's progress until it ends; raise CommandError unless it completed."""
    if token is None:
        try:
            token = access_token_for(user_by_name(username))
        except NotFound as exc:
            raise CommandError(exc.message) from exc
    # tqdm rewrites its line with `\r`; it needs the raw stream, not Django's line wrapper.
    bar = tqdm(
        total=100.0,
        file=stderr._out,
        dynamic_ncols=True,
        bar_format="{percentage:5.1f}%|{bar}| {desc}",
        desc=f"{task_id} connecting",
    )

    def on_event(event: str, payload: dict, event_id: str) -> None:
        bar.n = float(payload.get("progress") or 0.0)
        bar.set_description_str(
            f"{task_id} {payload.get('state')} {payload.get('stage') or '-'} "
            f"ETA {format_eta(payload.get('estimated_time'))}"
        )

    try:
        final = watch(url, task_id, token, on_event)
    except StreamError as exc:
        raise CommandError(f"Cannot watch {task_id}: {exc.message}") from exc
    finally:
        bar.close()
    state = final.get("state")
    if state == "completed":
        stdout.write(f"{task_id} completed")
        return
    if state == "failed":
        raise CommandError(f"{task_id} failed: {final.get('error') or 'no error recorded'}")
    raise CommandError(f"{task_id} ended {state}")


class Command(BaseCommand):
    """Watch one task's progress over SSE until it completes, fails or is cancelled."""

    help = (
        "Open the task's SSE stream on a running server and show a progress bar with "
        "state, stage and ETA; exit 0 when the task completes, 1 otherwise."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        """TASK_ID, --url, --user, --token."""
        parser.add_argument("task_id", metavar="TASK_ID")
        add_watch_arguments(parser)
        parser.add_argument(
            "--user", default=DEMO_USERNAME, help="Watch as this user when no --token is given (default: %(default)s)."
        )

    def handle(self, *args: Any, task_id: str, url: str, token: str | None, user: str, **options: Any) -> None:
        """Watch the stream and report the outcome."""
        watch_with_progress_bar(
            url=url, task_id=task_id, token=token, username=user, stdout=self.stdout, stderr=self.stderr
        )
