"""`manage.py serve`: the one-command start of the embedded default (Daphne + worker)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import sys
import time
from argparse import ArgumentParser
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, OutputWrapper

from tasks_app.accounts import DEFAULT_DEMO_PASSWORD, demo_password, ensure_demo_user
from tasks_app.management.commands.web import check_port_free
from tasks_app.recovery import recover, task_requeue_orphaned

# How long children get to finish after SIGTERM (a worker hands its current task back
# first) before they are asked again, and then killed.
GRACE_SECONDS = 10.0
FORCE_SECONDS = 5.0
# A crashed child is restarted after 1, 2, 4 … 30 s; a child that ran this long counts as
# healthy again, so its next crash restarts it after 1 s.
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0
STABLE_SECONDS = 60.0
PR_SET_PDEATHSIG = 1
# A worker writes a byte to the pipe this variable names once its start-up is over (worker.py).
READY_FD_ENV = "SERVE_READY_FD"


@dataclass
class Child:
    """One supervised process, restarted with back-off when it dies."""

    name: str
    argv: list[str]
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    crashes: int = 0
    restart_at: float | None = None
    worker_id: str | None = None
    # How the child shows that its start-up is over: it writes to the pipe named by READY_FD_ENV
    # (workers), or `ready()` says so (Daphne: its port accepts connections).
    ready: Callable[[], bool] | None = None
    ready_pipe: int | None = None
    ran: bool = False

    def alive(self) -> bool:
        """Whether the process is running."""
        return self.process is not None and self.process.poll() is None

    def started(self) -> bool:
        """Whether the child got through its start-up (it may have exited since)."""
        if not self.ran:
            if self.ready is not None:
                self.ran = self.alive() and self.ready()
            elif self.ready_pipe is not None:
                try:
                    self.ran = os.read(self.ready_pipe, 1) != b""
                except BlockingIOError:
                    pass
        return self.ran


class StartupFailed(Exception):
    """A child exited before its start-up was over: restarting it would fail the same way."""

    def __init__(self, child: Child) -> None:
        self.child = child
        super().__init__(
            f"{child.name} exited with code {child.process.returncode} before it was ready; "
            "not restarting it (its output above says why)."
        )


def _libc() -> Any:
    """libc for prctl on Linux, loaded before any fork; None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


def start_child(child: Child, libc: Any) -> None:
    """Start a child in its own process group, so a terminal's Ctrl-C reaches only us.

    We forward the signal once; a second SIGINT would make the worker stop at once.
    On Linux the child also gets SIGTERM if this process dies without cleaning up.
    """

    def in_child() -> None:
        # A shell starts a background job with SIGINT ignored, and we would pass that on: the
        # children must stop on the SIGINT we forward.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if libc is not None:
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    env, pass_fds = None, ()
    if child.ready is None:
        if child.ready_pipe is not None:
            os.close(child.ready_pipe)
        child.ready_pipe, write_end = os.pipe()
        os.set_blocking(child.ready_pipe, False)
        env, pass_fds = {**os.environ, READY_FD_ENV: str(write_end)}, (write_end,)
    try:
        child.process = subprocess.Popen(
            child.argv, cwd=settings.BASE_DIR, process_group=0, preexec_fn=in_child, env=env, pass_fds=pass_fds
        )
    finally:
        for fd in pass_fds:
            os.close(fd)
    child.started_at = time.monotonic()
    child.restart_at = None
    child.ran = False


def backoff(crashes: int) -> float:
    """Seconds to wait before restarting a child that crashed `crashes` times in a row."""
    return min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** max(0, crashes - 1))


def supervise(children: list[Child], libc: Any, stdout: OutputWrapper, on_exit: Callable[[Child], None]) -> int:
    """Restart children that crash (with back-off) until SIGINT/SIGTERM; return the signal.

    A child that exits before its start-up is over (a port in use, a broken setting) is not
    restarted: StartupFailed is raised instead.
    """
    received: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not received:
            now = time.monotonic()
            for child in children:
                if child.restart_at is None and not child.alive():
                    if not child.started():
                        raise StartupFailed(child)
                    ran = now - child.started_at
                    child.crashes = 1 if ran >= STABLE_SECONDS else child.crashes + 1
                    delay = backoff(child.crashes)
                    stdout.write(
                        f"{child.name} exited with code {child.process.returncode} "
                        f"after {ran:.0f} s; restarting in {delay:.0f} s."
                    )
                    on_exit(child)
                    child.restart_at = now + delay
                elif child.restart_at is not None and now >= child.restart_at:
                    start_child(child, libc)
                else:
                    child.started()
            time.sleep(0.2)
        stdout.write(f"Received {signal.strsignal(received[0])}; shutting down…")
        return received[0]
    finally:
        # While stopping, further Ctrl-C are ignored so the shutdown itself is not cut short.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)


def stop_children(children: list[Child], signum: int, stdout: OutputWrapper) -> None:
    """Forward `signum` to the living children, insist once, then kill what is left."""
    for attempt, wait in ((signum, GRACE_SECONDS), (signal.SIGTERM, FORCE_SECONDS), (signal.SIGKILL, 5.0)):
        alive = [c for c in children if c.alive()]
        if not alive:
            return
        if attempt != signum:
            stdout.write(f"{', '.join(c.name for c in alive)} still running; sending {signal.strsignal(attempt)}.")
        for child in alive:
            try:
                # A child still starting has no work to hand back, and Python would answer
                # SIGINT with a KeyboardInterrupt traceback from whatever it was importing.
                child.process.send_signal(attempt if child.started() else signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(c.alive() for c in alive):
            time.sleep(0.1)


def accepts_connections(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def display_host(host: str) -> str:
    """The host to put in printed URLs (a wildcard bind is reachable on loopback)."""
    return "127.0.0.1" if host in {"0.0.0.0", "::", ""} else host


class Command(BaseCommand):
    """Migrate, ensure the demo user, then run and restart Daphne and the worker until stopped."""

    help = (
        "Start everything on one machine: migrate the database, ensure the demo user, "
        "recover tasks abandoned by a dead worker, then run Daphne and the worker as child "
        "processes until Ctrl-C/SIGTERM, restarting (with back-off) any that exits."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        """--host, --port, --workers, --no-worker."""
        parser.add_argument("--host", default="127.0.0.1", help="Address Daphne binds to (default: %(default)s).")
        parser.add_argument("--port", type=int, default=8000, help="Port Daphne listens on (default: %(default)s).")
        parser.add_argument("--workers", type=int, default=1, help="Number of worker processes (default: %(default)s).")
        parser.add_argument("--no-worker", action="store_true", help="Run only Daphne (workers run elsewhere).")

    def handle(self, *args: Any, host: str, port: int, workers: int, no_worker: bool, **options: Any) -> None:
        """Prepare the database, start the children and supervise them."""
        if workers < 1:
            raise CommandError("--workers must be at least 1 (use --no-worker for none).")
        check_port_free(host, port)
        call_command(
            "migrate",
            interactive=False,
            verbosity=max(0, options["verbosity"] - 1),
            stdout=self.stdout,
            stderr=self.stderr,
        )
        username = None
        if settings.PRODUCTION and demo_password() == DEFAULT_DEMO_PASSWORD:
            # A superuser with a published password must never appear in production.
            self.stdout.write("Production mode: no demo user (set DEMO_PASSWORD to create one).")
        else:
            username = ensure_demo_user()[0].get_username()
        self.print_banner(display_host(host), port, username)

        libc = _libc()
        children = [
            Child(
                "daphne",
                [sys.executable, "-m", "project.server", "-b", host, "-p", str(port), "project.asgi:application"],
                ready=lambda: accepts_connections(display_host(host), port),
            )
        ]
        if not no_worker:
            done = recover(stale_seconds=settings.TASK_STALE_SECONDS, max_attempts=settings.TASK_MAX_ATTEMPTS)
            if done["requeued"] or done["failed"]:
                self.stdout.write(
                    f"Recovered tasks abandoned by a stopped worker: "
                    f"{done['requeued']} back to pending, {done['failed']} failed."
                )
            for index in range(workers):
                worker_id = f"serve-{socket.gethostname()[:32]}-{os.getpid()}-{index}"
                children.append(
                    Child(
                        f"worker {index}",
                        [
                            sys.executable,
                            str(settings.BASE_DIR / "manage.py"),
                            "worker",
                            "--queue-name",
                            "*",
                            "--interval",
                            "0.2",
                            "--no-startup-delay",
                            "--worker-id",
                            worker_id,
                        ],
                        worker_id=worker_id,
                    )
                )
        for child in children:
            start_child(child, libc)

        try:
            signum = supervise(children, libc, self.stdout, on_exit=self.hand_back_orphans)
        except StartupFailed as exc:
            stop_children(children, signal.SIGTERM, self.stdout)
            for child in children:
                self.hand_back_orphans(child)
            raise CommandError(str(exc)) from exc
        stop_children(children, signum, self.stdout)
        for child in children:
            self.hand_back_orphans(child)

    def hand_back_orphans(self, child: Child) -> None:
        """A worker is gone: whatever it was processing goes back to pending (or fails)."""
        if child.worker_id is None:
            return
        requeued, failed = task_requeue_orphaned(worker_ids=[child.worker_id], max_attempts=settings.TASK_MAX_ATTEMPTS)
        if requeued or failed:
            self.stdout.write(
                f"{child.name} left {requeued} task(s) unfinished: sent back to "
                f"pending ({failed} failed, out of attempts)."
            )

    def print_banner(self, host: str, port: int, username: str | None) -> None:
        """Tell the operator where to go and how to log in."""
        base = f"http://{host}:{port}"
        self.stdout.write(self.style.SUCCESS(f"Starting on {base}"))
        self.stdout.write(f"  API docs:   {base}/docs\n  Admin:      {base}/admin/")
        if settings.METRICS_TOKEN:
            self.stdout.write(f"  Metrics:    {base}/metrics (send Authorization: Bearer $METRICS_TOKEN)")
        elif settings.METRICS_ALLOWED_IPS:
            self.stdout.write(f"  Metrics:    {base}/metrics (from {', '.join(settings.METRICS_ALLOWED_IPS)})")
        else:
            self.stdout.write(
                f"  Metrics:    {base}/metrics is closed; restart with "
                f"METRICS_ALLOWED_IPS=127.0.0.1 (or METRICS_TOKEN) to read it"
            )
        if username is None:
            return
        password = demo_password()
        self.stdout.write(
            f"  Demo login: username={username} password={password}\n"
            f"  Get a token:\n"
            f"    curl -s -X POST {base}/api/v1/auth/token/ "
            f"-H 'Content-Type: application/json' "
            f'-d \'{{"username": "{username}", "password": "{password}"}}\''
        )
