"""Shared fixtures: users, JWT-authenticated API clients, real audio files, isolated media."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from tasks_app.audio.generate import write_tone

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def isolated_settings(settings: Any, tmp_path: Path) -> None:
    """Never write into the repo's media folder, and never run jobs in-process."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.TASKS = {"default": {"BACKEND": "django_tasks.backends.dummy.DummyBackend"}}


@pytest.fixture
def user(db: None) -> Any:
    """An ordinary user."""
    return get_user_model().objects.create_user("alice", password=PASSWORD)


@pytest.fixture
def other_user(db: None) -> Any:
    """A second ordinary user, for ownership tests."""
    return get_user_model().objects.create_user("bob", password=PASSWORD)


@pytest.fixture
def staff_user(db: None) -> Any:
    """A staff superuser (admin access, sees every user's objects)."""
    return get_user_model().objects.create_superuser("root", password=PASSWORD)


@pytest.fixture
def api_client() -> APIClient:
    """An unauthenticated DRF test client."""
    return APIClient()


def obtain_tokens(client: APIClient, username: str) -> dict[str, str]:
    """Log in through the real token endpoint and return `access` and `refresh`."""
    response = client.post("/api/v1/auth/token/", {"username": username, "password": PASSWORD},
                           format="json")
    assert response.status_code == 200, response.content
    return response.json()


@pytest.fixture
def auth_client() -> Callable[[Any], APIClient]:
    """Factory: a client sending a real Bearer access token of the given user."""

    def make(user: Any) -> APIClient:
        client = APIClient()
        access = obtain_tokens(client, user.username)["access"]
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
        return client

    return make


@pytest.fixture
def wav_upload(tmp_path: Path) -> Path:
    """A real 2 s stereo 44.1 kHz WAV tone on disk."""
    path = tmp_path / "tone.wav"
    write_tone(str(path), 2.0)
    return path


@pytest.fixture
def media_files(settings: Any) -> Callable[[], list[Path]]:
    """Return every file currently stored under MEDIA_ROOT."""

    def files() -> list[Path]:
        root = Path(settings.MEDIA_ROOT)
        return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []

    return files


@pytest.fixture
def make_audio(wav_upload: Path) -> Callable[[Any], Any]:
    """Factory: store the WAV fixture as an AudioFile of `owner` through the service."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tasks_app import services

    def make(owner: Any) -> Any:
        upload = SimpleUploadedFile("tone.wav", wav_upload.read_bytes(), "audio/wav")
        return services.audio_file_create(owner=owner, upload=upload)

    return make


@pytest.fixture
def make_task(make_audio: Callable[[Any], Any]) -> Callable[..., Any]:
    """Factory: a pending task of `owner` created through the service, optionally in `state`."""
    from tasks_app import services
    from tasks_app.models import Task

    def make(owner: Any, state: str | None = None) -> Any:
        task = services.task_create(owner=owner, audio_file_id=make_audio(owner).pk)
        if state:
            # Fixture setup only: production code changes state through services.
            Task.objects.filter(pk=task.pk).update(state=state)
            task.refresh_from_db()
        return task

    return make
