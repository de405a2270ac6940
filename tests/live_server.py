"""A real service for integration tests: Daphne and a worker as subprocesses on a temp DB."""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from httpx_sse import ServerSentEvent, connect_sse

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "integration-pass-1"
# Daphne with bounded request bodies (project/server.py); bench/upload_memory.py compares "daphne".
SERVER_MODULE = "project.server"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check, timeout: float, what: str, interval: float = 0.05):
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


@dataclass
class LiveService:
    """Handles on a running Daphne + worker pair."""

    base_url: str
    env: dict
    data_dir: Path
    daphne: subprocess.Popen
    workers: list[subprocess.Popen] = field(default_factory=list)
    extra: list[subprocess.Popen] = field(default_factory=list)

    def token(self, username: str) -> str:
        """Obtain an access token through the API."""
        resp = httpx.post(f"{self.base_url}/api/v1/auth/token/", json={"username": username, "password": PASSWORD})
        assert resp.status_code == 200, resp.text
        return resp.json()["access"]

    def client(self, token: str | None = None, timeout: float = 30.0) -> httpx.Client:
        """An HTTP client for the service, authenticated when a token is given."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def upload(self, token: str, path: Path) -> dict:
        """Upload an audio file and return its JSON."""
        with self.client(token, timeout=120) as c, open(path, "rb") as fh:
            resp = c.post("/api/v1/audio/", files={"file": (path.name, fh)})
        assert resp.status_code == 201, resp.text
        return resp.json()

    def shell(self, script: str) -> str:
        """Run Python in the service's Django environment (as an operator's shell would)."""
        done = subprocess.run(
            [sys.executable, "manage.py", "shell", "--no-imports", "-c", script],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def restart_daphne(self) -> None:
        """Kill Daphne and start it again on the same port."""
        os.killpg(self.daphne.pid, signal.SIGKILL)
        self.daphne.wait()
        port = int(self.base_url.rsplit(":", 1)[1])
        self.daphne, _ = spawn_daphne(self.data_dir, self.env, "daphne", port)

    def create_task(self, token: str, audio_id: int, **extra) -> dict:
        """Create a task and return its JSON."""
        with self.client(token) as c:
            resp = c.post("/api/v1/tasks/", json={"audio_file": audio_id, **extra})
        assert resp.status_code == 201, resp.text
        return resp.json()


def read_events(
    client: httpx.Client, url: str, *, headers: dict | None = None, until=None, timeout: float = 60.0
) -> tuple[int, list[ServerSentEvent]]:
    """Read a stream until it ends or `until(events)` is true; return status and events."""
    events: list[ServerSentEvent] = []
    deadline = time.monotonic() + timeout
    with connect_sse(client, "GET", url, headers=headers or {}, timeout=httpx.Timeout(timeout, read=25.0)) as source:
        status = source.response.status_code
        if status != 200:
            source.response.read()
            return status, events
        for sse in source.iter_sse():
            if is_keepalive(sse):
                continue
            events.append(sse)
            if until is not None and until(events):
                break
            assert time.monotonic() < deadline, "stream did not finish in time"
    return status, events


def is_keepalive(sse: ServerSentEvent) -> bool:
    """Whether httpx-sse turned a `: keep-alive` comment into an empty event.

    The SSE spec keeps the last event id across events, so httpx-sse dispatches the blank
    line after a comment as an event with no data (and the default type, "message") once any
    id has been seen. The server never sends a real event without data.
    """
    return not sse.data and sse.event in ("", "message")


def payloads(events: list[ServerSentEvent], kind: str | None = None) -> list[dict]:
    """The JSON data of the events (keep-alives left out), optionally of one type only."""
    return [json.loads(e.data) for e in events if not is_keepalive(e) and (kind is None or e.event == kind)]


def start_service(tmp: Path, *, workers: int = 1, extra_env: dict | None = None) -> LiveService:
    """Give a fresh database users, start Daphne and workers; wait until ready.

    On SQLite (no DATABASE_URL) the database is a copy of one migrated once per test process:
    migrating and hashing the users' passwords took two thirds of a service's start.
    """
    env = service_env(tmp, {"PYTHONUNBUFFERED": "1", **(extra_env or {})})
    if "DATABASE_URL" in env:
        prepare_database(env)
    else:
        copy_sqlite(migrated_sqlite_template(), tmp / "db.sqlite3")
    daphne, base_url = spawn_daphne(tmp, env, "daphne")
    service = LiveService(base_url, env, tmp, daphne)
    for _ in range(workers):
        spawn_worker(service)
    return service


def service_env(data_dir: Path, extra: dict | None = None) -> dict:
    """This process's environment for a service keeping its data in `data_dir`.

    The embedded defaults (SQLite, no Redis, media in the data folder) unless `extra` says
    otherwise.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "EVENTSTREAM_REDIS", "MEDIA_ROOT"}
    }
    env.update({"DATA_DIR": str(data_dir), "DJANGO_SETTINGS_MODULE": "project.settings"})
    env.update(extra or {})
    return env


def prepare_database(env: dict) -> None:
    """Migrate the database `env` names and give it the test users, in one process."""
    script = (
        "from django.core.management import call_command\n"
        "call_command('migrate', interactive=False, verbosity=0)\n"
        "from django.contrib.auth import get_user_model as g; U = g()\n"
        "for name, staff in [('alice', False), ('bob', False), ('root', True)]:\n"
        "    u, _ = U.objects.get_or_create(username=name, defaults={'is_staff': staff})\n"
        f"    u.set_password('{PASSWORD}'); u.save()\n"
    )
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr


@functools.cache
def migrated_sqlite_template() -> Path:
    """A SQLite database migrated and holding the test users, made once per process."""
    folder = Path(tempfile.mkdtemp(prefix="live-template-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    prepare_database(service_env(folder))
    return folder / "db.sqlite3"


def copy_sqlite(source: Path, target: Path) -> None:
    """Copy a SQLite database whole (committed pages only, whatever its journal holds)."""
    with contextlib.closing(sqlite3.connect(source)) as src, contextlib.closing(sqlite3.connect(target)) as dst:
        src.backup(dst)


def spawn_worker(service: LiveService) -> subprocess.Popen:
    """Start one more worker process (`manage.py worker`) for the service."""
    index = len(service.workers)
    wlog = open(service.data_dir / f"worker{index}.log", "wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "worker",
            "--queue-name",
            "*",
            "--interval",
            "0.1",
            "--no-startup-delay",
            "--worker-id",
            f"test-worker-{index}",
        ],
        cwd=ROOT,
        env=service.env,
        stdout=wlog,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    service.workers.append(proc)
    return proc


def spawn_daphne(tmp: Path, env: dict, name: str, port: int | None = None) -> tuple[subprocess.Popen, str]:
    """Start one Daphne process (on a free port unless given) and wait until it answers."""
    port = port or free_port()
    log = open(tmp / f"{name}.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", SERVER_MODULE, "-b", "127.0.0.1", "-p", str(port), "project.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base_url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert proc.poll() is None, (tmp / f"{name}.log").read_text()
        try:
            return httpx.get(f"{base_url}/api/schema/", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, 60, f"{name} to answer")
    return proc, base_url


def stop_service(service: LiveService) -> None:
    """Stop the worker(s) and Daphne."""
    procs = [*service.workers, *service.extra, service.daphne]
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Iterator[LiveService]:
    """A running service (SQLite, no Redis) shared by one test module.

    Progress is written (and sent) every 50 ms, so even a machine ten times faster than ours
    reports several intermediate values for the test files.
    """
    service = start_service(
        tmp_path_factory.mktemp("live"),
        extra_env={"TASK_PROGRESS_INTERVAL": "0.05", "PROGRESS_EVENT_INTERVAL_SECONDS": "0.05"},
    )
    yield service
    stop_service(service)
