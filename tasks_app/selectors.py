"""Reads of audio files and tasks, scoped to what a user may see (staff see everything)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from .exceptions import NotFound
from .models import AudioFile, Task


def audio_files_visible_to(user: Any) -> QuerySet[AudioFile]:
    """Audio files the user owns; every audio file for staff."""
    queryset = AudioFile.objects.all()
    return queryset if user.is_staff else queryset.filter(owner_id=user.pk)


def audio_file_for_user(user: Any, audio_file_id: Any) -> AudioFile:
    """One visible audio file; NotFound when missing or owned by someone else."""
    if not str(audio_file_id).isdigit():
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


def task_for_user(user: Any, task_id: str) -> Task:
    """One visible task; NotFound when missing or owned by someone else (never a 403)."""
    task = tasks_visible_to(user).filter(pk=task_id).first()
    if task is None:
        raise NotFound(f"Task {task_id} not found.", field="task_id")
    return task
