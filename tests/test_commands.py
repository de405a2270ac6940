"""Operator commands: demo user, tokens, test tasks, stale-task recovery, the watch client."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError, OutputWrapper
from django.utils import timezone
from rest_framework_simplejwt.tokens import AccessToken

from tasks_app import services
from tasks_app.audio.probe import probe
from tasks_app.client import StreamError, format_eta, watch
from tasks_app.management.commands import serve
from tasks_app.models import AudioFile, Task
from tasks_app.recovery import recover, task_requeue_orphaned

from .live_server import ROOT, copy_sqlite, free_port, migrated_sqlite_template, service_env, wait_until

pytestmark = pytest.mark.django_db


def run(*args: str, **options: Any) -> str:
    """Run a management command and return what it wrote to stdout."""
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO(), **options)
    return out.getvalue()


# ------------------------------------------------------------------ demo user


def test_ensure_demo_user_is_idempotent_and_makes_an_admin() -> None:
    first = run("ensure_demo_user")
    second = run("ensure_demo_user")

    users = get_user_model().objects.filter(username="demo")
    assert users.count() == 1
    demo = users.get()
    assert demo.is_staff and demo.is_superuser and demo.is_active
    assert demo.check_password("demo-password")
    assert "Created" in first and "Found" in second
    assert "password=demo-password" in second


def test_ensure_demo_user_takes_the_password_from_demo_password(monkeypatch: pytest.MonkeyPatch) -> None:
    run("ensure_demo_user")
    monkeypatch.setenv("DEMO_PASSWORD", "another-secret-1")

    out = run("ensure_demo_user")

    assert get_user_model().objects.get(username="demo").check_password("another-secret-1")
    assert "password=another-secret-1" in out


# ------------------------------------------------------------------ get_token


def test_get_token_prints_only_an_access_token_that_verifies() -> None:
    run("ensure_demo_user")
    demo = get_user_model().objects.get(username="demo")

    out = run("get_token", "demo")

    token = out.strip()
    assert out == token + "\n"
    claims = AccessToken(token)  # raises TokenError unless valid and of type access
    assert str(claims["user_id"]) == str(demo.pk)


def test_get_token_for_an_unknown_user_is_a_command_error() -> None:
    with pytest.raises(CommandError, match="nobody"):
        run("get_token", "nobody")


# ----------------------------------------------------------- create_test_task


def test_create_test_task_creates_a_pending_task_with_the_given_id() -> None:
    out = run("create_test_task", "--id", "task_example_001", "--seconds", "2")

    assert out.strip() == "task_example_001"
    task = Task.objects.select_related("owner", "audio_file").get(pk="task_example_001")
    assert task.state == Task.State.PENDING
    assert task.kind == "analyze"
    assert task.owner.username == "demo"
    assert task.audio_file.format == "wav"
    assert task.audio_file.duration == pytest.approx(2.0, abs=0.01)


def test_create_test_task_creates_a_missing_user() -> None:
    run("create_test_task", "--id", "task_for_carol", "--user", "carol", "--seconds", "2", "--format", "flac")

    task = Task.objects.get(pk="task_for_carol")
    assert task.owner.username == "carol"
    assert task.audio_file.format == "flac"


def test_create_test_task_refuses_an_existing_id_and_stores_nothing() -> None:
    run("create_test_task", "--id", "task_dup", "--seconds", "2")

    with pytest.raises(CommandError, match="already exists"):
        run("create_test_task", "--id", "task_dup", "--seconds", "2")
    assert AudioFile.objects.count() == 1


@pytest.mark.parametrize("bad_id", ["example_001", "task_", "task_with space", "task_" + "x" * 36, "Task_upper"])
def test_create_test_task_refuses_an_id_that_is_not_a_task_id(bad_id: str) -> None:
    with pytest.raises(CommandError, match="must start with `task_`"):
        run("create_test_task", "--id", bad_id, "--seconds", "2")
    assert not Task.objects.exists()


def test_create_test_task_with_an_unknown_kind_keeps_no_audio(
    media_files: Callable[[], list], django_capture_on_commit_callbacks: Any
) -> None:
    with pytest.raises(CommandError, match="Unknown task kind"), django_capture_on_commit_callbacks(execute=True):
        run("create_test_task", "--kind", "no-such-kind", "--seconds", "2")
    assert not AudioFile.objects.exists()
    assert media_files() == []


# ---------------------------------------------------------------- recovery


def _processing(task: Task, heartbeat_age: float | None) -> None:
    """Fixture setup: make a task look like a worker is (or was) processing it."""
    now = timezone.now()
    Task.objects.filter(pk=task.pk).update(
        state=Task.State.PROCESSING,
        started_at=now - timedelta(hours=1),
        heartbeat_at=None if heartbeat_age is None else now - timedelta(seconds=heartbeat_age),
        updated_at=now - timedelta(seconds=heartbeat_age or 3600),
    )


def test_recover_stale_tasks_requeues_abandoned_tasks_and_fails_exhausted_ones(
    settings: Any, user: Any, make_task: Callable[..., Task], django_capture_on_commit_callbacks: Any
) -> None:
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    stale, silent, fresh, exhausted, pending = (make_task(user) for _ in range(5))
    _processing(stale, heartbeat_age=120)
    _processing(silent, heartbeat_age=None)
    _processing(fresh, heartbeat_age=5)
    _processing(exhausted, heartbeat_age=120)
    Task.objects.filter(pk__in=[stale.pk, silent.pk, fresh.pk]).update(attempts=1)
    Task.objects.filter(pk=exhausted.pk).update(attempts=3)

    with django_capture_on_commit_callbacks(execute=True):
        out = run("recover_stale_tasks", "--older-than", "60", "--max-attempts", "3")

    assert "Sent 2 stale task(s) back to pending, failed 1" in out
    for task in (stale, silent):
        task.refresh_from_db()
        assert (task.state, task.progress, task.attempts) == (Task.State.PENDING, 0.0, 1)
        assert task.job_id, "enqueued again"
    exhausted.refresh_from_db()
    assert exhausted.state == Task.State.FAILED
    assert "started 3 times" in exhausted.error and exhausted.finished_at is not None
    fresh.refresh_from_db()
    pending.refresh_from_db()
    assert (fresh.state, fresh.error) == (Task.State.PROCESSING, None)
    assert pending.state == Task.State.PENDING
    assert recover(stale_seconds=60, max_attempts=3) == {"requeued": 0, "failed": 0, "enqueued": 0}


def test_orphaned_tasks_of_stopped_workers_go_back_to_pending_until_out_of_attempts(
    settings: Any, user: Any, make_task: Callable[..., Task], django_capture_on_commit_callbacks: Any
) -> None:
    from django_tasks_db.models import DBTaskResult

    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    with django_capture_on_commit_callbacks(execute=True):
        mine, theirs, last_try = make_task(user), make_task(user), make_task(user)
    for task, worker in ((mine, "serve-host-1-0"), (theirs, "elsewhere-0"), (last_try, "serve-host-1-0")):
        task.refresh_from_db()
        DBTaskResult.objects.get(pk=task.job_id).claim(worker)
        assert services.task_start(task_id=task.pk) is not None
    Task.objects.filter(pk=last_try.pk).update(attempts=3)

    with django_capture_on_commit_callbacks(execute=True):
        assert task_requeue_orphaned(worker_ids=["serve-host-1-0"], max_attempts=3) == (1, 1)

    for task in (mine, theirs, last_try):
        task.refresh_from_db()
    assert (mine.state, mine.error) == (Task.State.PENDING, None)
    assert theirs.state == Task.State.PROCESSING
    assert last_try.state == Task.State.FAILED and "started 3 times" in last_try.error


# ------------------------------------------------------------- watch client


def _sse(event: str, payload: dict, event_id: str | None = None) -> str:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {json.dumps(payload)}\n\n"


def _progress(state: str, progress: float) -> dict:
    return {
        "task_id": "task_x",
        "state": state,
        "progress": progress,
        "estimated_time": None,
        "stage": "analyze",
        "error": None,
        "updated_at": "2026-11-28T12:00:00.000000Z",
    }


def test_watch_reconnects_with_last_event_id_after_a_drop() -> None:
    seen_headers: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen_headers.append(request.headers.get("last-event-id"))
        if len(seen_headers) == 1:  # the connection drops before `complete`
            body = (
                "retry: 3000\n\n"
                + _sse("progress", _progress("pending", 0), "task-task_x:1")
                + _sse("progress", _progress("processing", 40), "task-task_x:2")
            )
        else:
            body = (
                _sse("progress", _progress("processing", 40))
                + _sse("progress", _progress("processing", 90), "task-task_x:3")
                + _sse("complete", _progress("completed", 100), "task-task_x:4")
            )
        return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})

    events: list[tuple[str, float]] = []
    final = watch(
        "http://server",
        "task_x",
        "tok",
        lambda event, payload, _id: events.append((event, payload["progress"])),
        transport=httpx.MockTransport(handler),
        retry_delay=0,
    )

    assert final["state"] == "completed"
    assert seen_headers == [None, "task-task_x:2"]
    assert events[-1] == ("complete", 100)
    assert ("progress", 90) in events


def test_watch_reports_the_servers_json_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == "Bearer tok"
        return httpx.Response(
            404, json={"error": {"code": "not_found", "field": "task_id", "message": "Task task_x not found."}}
        )

    with pytest.raises(StreamError, match="Task task_x not found") as info:
        watch("http://server", "task_x", "tok", transport=httpx.MockTransport(handler))
    assert info.value.status == 404


def test_watch_stops_on_a_final_error_event_instead_of_reconnecting() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        body = (
            _sse("progress", _progress("processing", 40), "task-task_x:2")
            + "event: error\ndata: "
            + json.dumps({"code": "deleted", "message": "Task task_x was deleted."})
            + "\n\n"
        )
        return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})

    with pytest.raises(StreamError, match="deleted: Task task_x was deleted"):
        watch("http://server", "task_x", "tok", transport=httpx.MockTransport(handler), retry_delay=0)
    assert len(calls) == 1


def test_watch_answers_204_with_the_polled_progress() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/progress/"):
            return httpx.Response(200, json=_progress("completed", 100))
        return httpx.Response(204)

    final = watch(
        "http://server", "task_x", "tok", transport=httpx.MockTransport(handler), last_event_id="task-task_x:4"
    )

    assert final["state"] == "completed"


def test_watch_names_the_url_at_once_when_the_server_cannot_be_reached() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    with pytest.raises(StreamError) as info:
        watch("http://127.0.0.1:9", "task_x", "tok", transport=httpx.MockTransport(handler))
    assert info.value.message == (
        "Cannot reach http://127.0.0.1:9/api/v1/sse/tasks/task_x/progress: ConnectError: [Errno 111] Connection refused"
    )
    assert len(calls) == 1, "a server that never answered is not retried"


def test_watch_reconnects_to_a_server_that_answered_before_and_names_it_when_giving_up() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            body = _sse("progress", _progress("processing", 40), "task-task_x:2")
            return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    with pytest.raises(StreamError, match=r"^Gave up on http://server/api/v1/sse/tasks/task_x/progress after 2 "):
        watch("http://server", "task_x", "tok", transport=httpx.MockTransport(handler), max_retries=2, retry_delay=0)
    assert len(calls) == 3  # the stream that ended early, then two failed reconnects


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "?"),
        (0.4, "0s"),
        (42, "42s"),
        (65, "1m05s"),
        (3599.6, "1h00m"),
        (7385, "2h03m"),
    ],
)
def test_format_eta(seconds: float | None, text: str) -> None:
    assert format_eta(seconds) == text


def test_the_readmes_sample_file_is_made_by_one_command(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tasks_app.audio.generate", str(tmp_path / "x.wav"), "--seconds", "3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    info = probe(str(tmp_path / "x.wav"))
    assert (info.format, info.channels, info.sample_rate) == ("wav", 2, 44100)
    assert info.duration == pytest.approx(3.0)


# ------------------------------------------------------------- start-up cost

# Runs a management command as manage.py would, then prints its exit status and the top-level
# packages it imported.
IMPORTS_RUNNER = (
    "import sys\n"
    "from django.core.management import execute_from_command_line\n"
    "code = 0\n"
    "try:\n"
    "    execute_from_command_line(['manage.py', *sys.argv[1:]])\n"
    "except SystemExit as exc:\n"
    "    code = exc.code or 0\n"
    "print('EXIT', code, 'IMPORTED', *sorted({name.partition('.')[0] for name in sys.modules}))\n"
)
AUDIO_STACK = {"numpy", "scipy", "av"}


@pytest.mark.parametrize(
    ("argv", "exit_code"),
    [
        (["--help"], 0),
        (["healthcheck", "--url", "http://127.0.0.1:9/healthz"], 1),  # nothing listens on port 9
        (["get_token", "alice"], 0),
        (["watch_task", "task_x", "--user", "alice", "--url", "http://127.0.0.1:9"], 1),
        (["create_test_task", "--help"], 0),
        (["create_test_task", "--id", "task_light", "--seconds", "2"], 0),  # the default WAV
        (["create_and_monitor_task", "--help"], 0),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else str(value),
)
def test_quick_commands_do_not_import_the_audio_stack(argv: list[str], exit_code: int, tmp_path: Path) -> None:
    copy_sqlite(migrated_sqlite_template(), tmp_path / "db.sqlite3")
    done = subprocess.run(
        [sys.executable, "-c", IMPORTS_RUNNER, *argv],
        cwd=ROOT,
        env=service_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    status, _, imported = done.stdout.rpartition("EXIT ")[2].partition(" IMPORTED ")
    assert int(status) == exit_code, done.stdout + done.stderr
    assert "django" in imported.split()
    assert set(imported.split()) & AUDIO_STACK == set()


def test_healthcheck_prints_the_answer_and_nothing_else(tmp_path: Path) -> None:
    class Healthz(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            body = b'{"status": "ok"}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with ThreadingHTTPServer(("127.0.0.1", 0), Healthz) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        done = subprocess.run(
            [sys.executable, "manage.py", "healthcheck", "--url", f"http://127.0.0.1:{server.server_port}/healthz"],
            cwd=ROOT,
            env=service_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=120,
        )
        server.shutdown()
    assert (done.returncode, done.stdout, done.stderr) == (0, '{"status": "ok"}\n', "")


# ------------------------------------------------------------------- serve


def _start_serve(tmp_path: Any, preexec_fn: Callable[[], None] | None = None) -> tuple[subprocess.Popen, str, dict]:
    """Run `manage.py serve` on a free port against a fresh data folder; wait for /docs."""
    env = service_env(tmp_path, {"PYTHONUNBUFFERED": "1"})
    env.pop("DEMO_PASSWORD", None)  # the banner must show the default demo password
    port = free_port()
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=preexec_fn,
    )
    base = f"http://127.0.0.1:{port}"

    def docs_ok() -> bool:
        assert proc.poll() is None, (tmp_path / "serve.log").read_text()
        try:
            return httpx.get(f"{base}/docs", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(docs_ok, 90, "serve to answer /docs")
    return proc, base, env


def _child_pids(serve_pid: int, marker: bytes) -> list[int]:
    """Pids of the children of one `serve` process whose command line contains `marker`."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            status = (entry / "status").read_text()
        except (OSError, ValueError):
            continue
        if f"\nPPid:\t{serve_pid}\n" in status and marker in cmdline:
            pids.append(int(entry.name))
    return pids


def _serve_token_and_task(env: dict, seconds: int, *extra: str) -> tuple[str, str]:
    """Create a test task of `seconds` of audio through the CLI; return (task id, token)."""
    manage = [sys.executable, "manage.py"]
    task_id = subprocess.run(
        [*manage, "create_test_task", "--seconds", str(seconds), *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout.strip()
    token = subprocess.run(
        [*manage, "get_token", "demo"], cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    return task_id, token


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_serve_runs_daphne_and_a_worker_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    proc, base, env = _start_serve(tmp_path)
    try:
        task_id, token = _serve_token_and_task(env, 2)

        final = watch(base, task_id, token, timeout=30)

        assert final["state"] == "completed"
        banner = (tmp_path / "serve.log").read_text()
        assert "username=demo password=demo-password" in banner
        assert f"{base}/admin/" in banner
        assert f"{base}/metrics is closed; restart with METRICS_ALLOWED_IPS=127.0.0.1" in banner
    finally:
        proc.send_signal(signal.SIGINT)  # what a terminal's Ctrl-C sends (SIGTERM: same path)
        code = proc.wait(timeout=60)
    log = (tmp_path / "serve.log").read_text()
    assert code == 0, log
    assert "Traceback" not in log


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_serve_restarts_a_killed_worker_and_daphne_and_the_task_completes(tmp_path: Path) -> None:
    proc, base, env = _start_serve(tmp_path)
    try:
        # Normalising to MP3 runs at ~30x real time here: long enough to kill things mid-task.
        task_id, token = _serve_token_and_task(env, 15 * 60, "--kind", "normalize")
        api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10)

        def progress() -> dict:
            return api.get(f"/api/v1/tasks/{task_id}/progress/").json()

        wait_until(lambda: progress()["progress"] > 0, 120, "the task to be processing", interval=0.5)
        assert progress()["state"] == "processing"
        workers = _child_pids(proc.pid, b"worker")
        assert len(workers) == 1
        os.kill(workers[0], signal.SIGKILL)

        # serve hands the task back and starts a new worker, which runs it again.
        wait_until(
            lambda: (pids := _child_pids(proc.pid, b"worker")) and pids != workers, 60, "a new worker", interval=0.5
        )
        wait_until(
            lambda: progress()["attempts"] == 2 and progress()["progress"] > 0,
            120,
            "the task's second attempt to make progress",
            interval=0.5,
        )
        assert progress()["state"] == "processing"

        daphne = _child_pids(proc.pid, b"project.server")
        assert len(daphne) == 1
        os.kill(daphne[0], signal.SIGKILL)
        wait_until(
            lambda: (pids := _child_pids(proc.pid, b"project.server")) and pids != daphne,
            60,
            "a new Daphne",
            interval=0.5,
        )

        def answers() -> dict | None:
            try:
                return progress()
            except httpx.HTTPError:
                return None

        wait_until(
            lambda: (p := answers()) and p["state"] == "completed",
            600,
            "the task to complete with the restarted Daphne",
            interval=0.5,
        )
        assert progress()["attempts"] == 2, "Daphne's restart did not disturb the task"
        api.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    log = (tmp_path / "serve.log").read_text()
    assert code == 0, log
    assert "worker 0 exited with code -9" in log and "daphne exited with code -9" in log


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_backgrounded_serve_stops_its_children_with_the_sigint_it_forwards(tmp_path: Path) -> None:
    # A shell starts a background job (`manage.py serve &`) with SIGINT ignored.
    proc, _, _ = _start_serve(tmp_path, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        proc.send_signal(signal.SIGINT)
    finally:
        code = proc.wait(timeout=120)
    log = (tmp_path / "serve.log").read_text()
    assert code == 0, log
    assert "Received Interrupt" in log
    # Children still running after the forwarded SIGINT would be sent SIGTERM, then SIGKILL.
    assert "still running; sending" not in log, log
    assert "Traceback" not in log, log


@pytest.mark.parametrize("command", ["serve", "web"])
def test_serve_and_web_on_a_port_in_use_exit_with_one_line_naming_it(command: str, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "manage.py", command, "--port", str(port)],
            cwd=ROOT,
            env=service_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 1
    assert done.stdout == ""  # no banner, no worker, no migration
    assert done.stderr.splitlines() == [
        f"CommandError: Cannot listen on 127.0.0.1:{port}: Address already in use (pick another --port)."
    ]


def _child(code: str) -> serve.Child:
    """A supervised Python child running `code`."""
    return serve.Child("child", [sys.executable, "-c", code])


def _supervise_until_second_exit(child: serve.Child) -> tuple[int | None, list[int | None]]:
    """Supervise `child` until it has exited twice (then SIGTERM ends it); return (signal, exit codes)."""
    exits: list[int | None] = []

    def on_exit(exited: serve.Child) -> None:
        exits.append(exited.process.returncode)
        if len(exits) == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        serve.start_child(child, None)
        return serve.supervise([child], None, OutputWrapper(io.StringIO()), on_exit), exits
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def test_serve_restarts_a_child_that_crashed_after_its_start_up() -> None:
    child = _child(f"import os; os.write(int(os.environ[{serve.READY_FD_ENV!r}]), b'1'); raise SystemExit(3)")

    signum, exits = _supervise_until_second_exit(child)

    assert (signum, exits) == (signal.SIGTERM, [3, 3])


def test_serve_does_not_restart_a_child_that_fails_during_start_up() -> None:
    child = _child("raise SystemExit(3)")  # never says it is ready

    with pytest.raises(serve.StartupFailed, match="child exited with code 3 before it was ready"):
        _supervise_until_second_exit(child)
    assert child.restart_at is None


def test_serve_waits_longer_after_each_quick_crash_up_to_a_cap() -> None:
    from tasks_app.management.commands.serve import BACKOFF_MAX, backoff

    assert [backoff(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert backoff(10) == BACKOFF_MAX == 30.0
