"""Reads of audio files and tasks, scoped to what a user may see (staff see everything)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import PurePath
from typing import Any

from django.core.files.storage import default_storage
from django.db import connection
from django.db.models import QuerySet

from .audio.formats import MEDIA_TYPES
from .exceptions import NotFound, NotReady
from .models import AudioFile, Task
from .streams.log import current_id_sql

# Artifact key (in `task.result["artifacts"]`) -> (what it is, download name suffix).
ARTIFACTS: dict[str, tuple[str, str]] = {
    "waveform_json": ("waveform JSON (only analyze tasks draw one)", "-waveform.json"),
    "waveform_png": ("waveform PNG (only analyze tasks draw one)", "-waveform.png"),
    "output": ("output file (only normalize tasks write one)", "-normalized"),
}
FIXED_MEDIA_TYPES = {"waveform_json": "application/json", "waveform_png": "image/png"}


@dataclass(frozen=True)
class Artifact:
    """One stored file of a completed task: where it is and how to name and type it."""

    name: str
    filename: str
    content_type: str


def audio_files_visible_to(user: Any) -> QuerySet[AudioFile]:
    """Audio files the user owns; every audio file for staff."""
    queryset = AudioFile.objects.all()
    return queryset if user.is_staff else queryset.filter(owner_id=user.pk)


def audio_file_for_user(user: Any, audio_file_id: Any) -> AudioFile:
    """One visible audio file; NotFound when missing or owned by someone else."""
    if not (str(audio_file_id).isascii() and str(audio_file_id).isdigit()):
        raise NotFound(f"Audio file {audio_file_id} not found.", field="id")
    audio = audio_files_visible_to(user).filter(pk=int(audio_file_id)).first()
    if audio is None:
        raise NotFound(f"Audio file {audio_file_id} not found.", field="id")
    return audio


def tasks_visible_to(user: Any, *, state: str | None = None) -> QuerySet[Task]:
    """Tasks the user owns (every task for staff), optionally in one state."""
    queryset = Task.objects.all()
    if not user.is_staff:
        queryset = queryset.filter(owner_id=user.pk)
    if state:
        queryset = queryset.filter(state=state)
    return queryset


def task_for_stream(user: Any, task_id: str, channel: str) -> Task | None:
    """A task visible to the user (as in `tasks_visible_to`) with its stream channel's newest
    event id (`task.current`), read in one statement, so from one snapshot of the database.

    A stream connect runs this once: written out as SQL once per process rather than built
    by the ORM on every call.
    """
    task = next(iter(Task.objects.raw(_task_for_stream_sql(), [channel, task_id])), None)
    if task is None or not (user.is_staff or task.owner_id == user.pk):
        return None
    return task


@cache
def _task_for_stream_sql() -> str:
    quote = connection.ops.quote_name
    columns = ", ".join(quote(field.column) for field in Task._meta.concrete_fields)
    return (
        f"SELECT {columns}, {current_id_sql()} AS {quote('current')} FROM {quote(Task._meta.db_table)} "
        f"WHERE {quote(Task._meta.pk.column)} = %s"
    )


def task_for_user(user: Any, task_id: str) -> Task:
    """One visible task; NotFound when missing or owned by someone else (never a 403)."""
    task = tasks_visible_to(user).filter(pk=task_id).first()
    if task is None:
        raise NotFound(f"Task {task_id} not found.", field="task_id")
    return task


def task_artifact_keys(task: Task) -> set[str]:
    """Keys of the artifacts a task has to serve: none until it is completed."""
    if task.state != Task.State.COMPLETED:
        return set()
    return set(((task.result or {}).get("artifacts") or {}).keys()) & set(ARTIFACTS)


def task_artifact(user: Any, task_id: str, key: str) -> Artifact:
    """One artifact of a visible task; NotReady before completion, NotFound if it has none."""
    task = task_for_user(user, task_id)
    if task.state != Task.State.COMPLETED:
        raise NotReady(f"The task is {task.state}; artifacts exist once it is completed.", field="task_id")
    what, suffix = ARTIFACTS[key]
    name = ((task.result or {}).get("artifacts") or {}).get(key)
    if not name or not default_storage.exists(name):
        raise NotFound(f"Task {task.id} ({task.kind}) has no {what}.", field="task_id")
    stem = PurePath(task.audio_file.original_name).stem or "audio"
    if key in FIXED_MEDIA_TYPES:
        return Artifact(name, f"{stem}{suffix}", FIXED_MEDIA_TYPES[key])
    ext = PurePath(name).suffix
    fmt = str(((task.result or {}).get("output") or {}).get("format") or ext.lstrip("."))
    return Artifact(name, f"{stem}{suffix}{ext}", MEDIA_TYPES.get(fmt, "application/octet-stream"))
