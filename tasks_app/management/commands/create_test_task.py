"""`manage.py create_test_task`: generate a real audio file and queue a task on it."""

from __future__ import annotations

import os
import re
import tempfile
from argparse import ArgumentParser
from typing import Any

from django.core.files.uploadedfile import UploadedFile
from django.core.management.base import BaseCommand, CommandError

from tasks_app import services
from tasks_app.accounts import DEMO_USERNAME, user_by_name
from tasks_app.audio.formats import EXTENSIONS
from tasks_app.audio.tone import write_wav_tone
from tasks_app.exceptions import DomainError
from tasks_app.models import Task

TASK_ID_RE = re.compile(r"^task_[A-Za-z0-9_-]{1,35}$")


def add_test_task_arguments(parser: ArgumentParser, *, seconds: float = 30.0) -> None:
    """The options that describe a test task (shared with create_and_monitor_task)."""
    parser.add_argument(
        "--id", dest="task_id", default=None, help="Task id, starting with `task_` (default: a random one)."
    )
    parser.add_argument(
        "--user", default=DEMO_USERNAME, help="Owner of the task; created if missing (default: %(default)s)."
    )
    parser.add_argument(
        "--seconds", type=float, default=seconds, help="Length of the generated tone (default: %(default)s)."
    )
    parser.add_argument("--kind", default="analyze", help="Task kind to run (default: %(default)s).")
    parser.add_argument(
        "--format",
        dest="fmt",
        default="wav",
        choices=sorted(EXTENSIONS),
        help="Audio format of the generated file (default: %(default)s).",
    )


def create_test_task(*, username: str, task_id: str | None, seconds: float, kind: str, fmt: str) -> Task:
    """Write a tone, store it as the user's audio file and create a pending task on it."""
    if task_id is not None:
        if not TASK_ID_RE.match(task_id):
            raise CommandError(
                f"Invalid task id {task_id!r}: it must start with `task_` and use at most "
                "40 letters, digits, `_` or `-`."
            )
        if Task.objects.filter(pk=task_id).exists():
            raise CommandError(f"A task with id {task_id!r} already exists; pick another --id or delete it first.")
    if not 0 < seconds <= 24 * 3600:
        raise CommandError("--seconds must be more than 0 and at most 86400.")
    owner = user_by_name(username, create=True)
    with tempfile.TemporaryDirectory(prefix="test-task-") as folder:
        name = f"{task_id or 'test'}-{seconds:g}s.{EXTENSIONS[fmt]}"
        path = os.path.join(folder, name)
        known = None
        if fmt == "wav":  # the default: the standard library writes it, and knows what it wrote
            known = write_wav_tone(path, seconds)
        else:
            # Other formats need numpy and PyAV (and a probe): imported here only, so that the
            # default, `--help` and the commands sharing these arguments start without them.
            from tasks_app.audio.generate import write_tone

            write_tone(path, seconds, fmt=fmt)
        with open(path, "rb") as fh:
            upload = UploadedFile(fh, name=name, size=os.path.getsize(path))
            try:
                audio = services.audio_file_create(owner=owner, upload=upload, known=known)
            except DomainError as exc:
                raise CommandError(f"The generated audio was refused: {exc.message}") from exc
    try:
        return services.task_create(owner=owner, audio_file_id=audio.pk, kind=kind, options={}, task_id=task_id)
    except DomainError as exc:
        services.audio_file_delete(audio_file=audio)
        raise CommandError(f"Could not create the task: {exc.message}") from exc


class Command(BaseCommand):
    """Create a pending task on freshly generated audio; print its id."""

    help = (
        "Generate a sine tone (a real audio file), upload it for --user and create a "
        "task on it; prints the task id. Needs a running worker to make progress."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        """--id, --user, --seconds, --kind, --format."""
        add_test_task_arguments(parser)

    def handle(
        self, *args: Any, task_id: str | None, user: str, seconds: float, kind: str, fmt: str, **options: Any
    ) -> None:
        """Create the task and print its id."""
        task = create_test_task(username=user, task_id=task_id, seconds=seconds, kind=kind, fmt=fmt)
        self.stdout.write(task.id)
