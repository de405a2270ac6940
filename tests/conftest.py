"""Shared fixtures: users, JWT-authenticated API clients, real audio files, isolated media.

Also the external-service gate: tests marked `needs_postgres`, `needs_redis`, `needs_ffmpeg`
or `needs_redis_server` skip (with a reason saying how to enable them) when that service is
missing, unless REQUIRE_SERVICES=1, where a missing service fails the test instead.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from tasks_app.audio.generate import write_tone

PASSWORD = "correct horse battery staple"

# Where the scaled-shape tests find PostgreSQL and Redis (point them elsewhere, or at a closed
# port to simulate a machine without them).
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@functools.cache
def postgres_missing() -> str | None:
    """Why PostgreSQL cannot be used by the tests, or None when it answers."""
    try:
        import psycopg

        with psycopg.connect(POSTGRES_URL, connect_timeout=3):
            return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not available"
        return (
            f"PostgreSQL at {POSTGRES_URL} does not answer ({type(exc).__name__}); start it "
            f"(apt-get install postgresql) or set TEST_POSTGRES_URL"
        )


@functools.cache
def redis_missing() -> str | None:
    """Why Redis cannot be used by the tests, or None when it answers PING."""
    parts = urlsplit(REDIS_URL)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=3) as sock:
            sock.settimeout(3)
            sock.sendall(b"PING\r\n")
            if sock.recv(16).startswith(b"+PONG"):
                return None
            raise ConnectionError("no PONG")
    except OSError as exc:
        return (
            f"Redis at {REDIS_URL} does not answer ({type(exc).__name__}); start it "
            f"(apt-get install redis-server) or set TEST_REDIS_URL"
        )


def programs_missing(*programs: str) -> str | None:
    """Why these programs cannot be run, or None when all are on PATH."""
    absent = [name for name in programs if shutil.which(name) is None]
    if not absent:
        return None
    return f"{', '.join(absent)} not on PATH; install it (apt-get install {' '.join(absent)})"


SERVICE_CHECKS: dict[str, Callable[[], str | None]] = {
    "needs_postgres": postgres_missing,
    "needs_redis": redis_missing,
    "needs_ffmpeg": lambda: programs_missing("ffmpeg", "espeak-ng"),
    "needs_redis_server": lambda: programs_missing("redis-server"),
}


def pytest_configure(config: pytest.Config) -> None:
    """Declare the service markers."""
    for name in SERVICE_CHECKS:
        config.addinivalue_line("markers", f"{name}: skipped unless the service is available")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip a test whose service is missing, or fail it when REQUIRE_SERVICES=1."""
    for name, check in SERVICE_CHECKS.items():
        if item.get_closest_marker(name) is None:
            continue
        reason = check()
        if reason is None:
            continue
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(f"REQUIRE_SERVICES=1 but {reason}", pytrace=False)
        pytest.skip(f"{reason} (REQUIRE_SERVICES=1 makes this a failure)")


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
    response = client.post("/api/v1/auth/token/", {"username": username, "password": PASSWORD}, format="json")
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


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """A redis-server of this test's own on a free port (stopping it harms nobody)."""
    from .live_server import free_port, wait_until

    port = free_port()
    proc = subprocess.Popen(
        [
            shutil.which("redis-server") or "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"redis://127.0.0.1:{port}/0"

    def answers() -> bool:
        import redis

        try:
            return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    wait_until(answers, 20, "own redis-server to answer")
    yield url, proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


@contextlib.contextmanager
def postgres_database(name: str) -> Iterator[str]:
    """A fresh PostgreSQL database of this name for a live service; dropped afterwards."""
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(POSTGRES_URL)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
