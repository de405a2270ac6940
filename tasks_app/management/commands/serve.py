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
from dataclasses import dataclass
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, OutputWrapper

from tasks_app.accounts import DEFAULT_DEMO_PASSWORD, demo_password, ensure_demo_user
from tasks_app.recovery import task_fail_orphaned, task_fail_stale

STALE_SECONDS = 60.0
# How long children get to finish after SIGTERM (a worker finishes its current task
# first) before they are asked again, and then killed.
GRACE_SECONDS = 10.0
FORCE_SECONDS = 5.0
PR_SET_PDEATHSIG = 1


@dataclass
class Child:
    """One supervised process."""

    name: str
    process: subprocess.Popen


def _libc() -> Any:
    """libc for prctl on Linux, loaded before any fork; None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


def start_child(name: str, argv: list[str], libc: Any) -> Child:
    """Start a child in its own process group, so a terminal's Ctrl-C reaches only us.

    We forward the signal once; a second SIGINT would make the worker abort its task.
    On Linux the child also gets SIGTERM if this process dies without cleaning up.
    """
    def die_with_parent() -> None:
        if libc is not None:
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    process = subprocess.Popen(argv, cwd=settings.BASE_DIR, process_group=0,
                               preexec_fn=die_with_parent)
    return Child(name, process)


def supervise(children: list[Child], stdout: OutputWrapper) -> tuple[Child | None, int | None]:
    """Wait until a child exits or we get SIGINT/SIGTERM; return (dead child, signal)."""
    received: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not received:
            for child in children:
                if child.process.poll() is not None:
                    return child, None
            time.sleep(0.2)
        stdout.write(f"Received {signal.strsignal(received[0])}; shutting down…")
        return None, received[0]
    finally:
        # While stopping, further Ctrl-C are ignored so the shutdown itself is not cut short.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)


def stop_children(children: list[Child], signum: int) -> None:
    """Forward `signum` to the living children, insist once, then kill what is left."""
    for attempt, wait in ((signum, GRACE_SECONDS), (signal.SIGTERM, FORCE_SECONDS),
                          (signal.SIGKILL, 5.0)):
        alive = [c for c in children if c.process.poll() is None]
        if not alive:
            return
        for child in alive:
            try:
                child.process.send_signal(attempt)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(c.process.poll() is None for c in alive):
            time.sleep(0.1)


def display_host(host: str) -> str:
    """The host to put in printed URLs (a wildcard bind is reachable on loopback)."""
    return "127.0.0.1" if host in {"0.0.0.0", "::", ""} else host


class Command(BaseCommand):
    """Migrate, ensure the demo user, then run Daphne and the worker until stopped."""

    help = ("Start everything on one machine: migrate the database, ensure the demo user, "
            "fail tasks abandoned by a dead worker, then run Daphne and db_worker as child "
            "processes until Ctrl-C/SIGTERM or until one of them exits.")

    def add_arguments(self, parser: ArgumentParser) -> None:
        """--host, --port, --workers, --no-worker."""
        parser.add_argument("--host", default="127.0.0.1",
                            help="Address Daphne binds to (default: %(default)s).")
        parser.add_argument("--port", type=int, default=8000,
                            help="Port Daphne listens on (default: %(default)s).")
        parser.add_argument("--workers", type=int, default=1,
                            help="Number of worker processes (default: %(default)s).")
        parser.add_argument("--no-worker", action="store_true",
                            help="Run only Daphne (workers run elsewhere).")

    def handle(self, *args: Any, host: str, port: int, workers: int, no_worker: bool,
               **options: Any) -> None:
        """Prepare the database, start the children and supervise them."""
        if workers < 1:
            raise CommandError("--workers must be at least 1 (use --no-worker for none).")
        call_command("migrate", interactive=False, verbosity=max(0, options["verbosity"] - 1),
                     stdout=self.stdout, stderr=self.stderr)
        username = None
        if settings.PRODUCTION and demo_password() == DEFAULT_DEMO_PASSWORD:
            # A superuser with a published password must never appear in production.
            self.stdout.write("Production mode: no demo user (set DEMO_PASSWORD to create one).")
        else:
            username = ensure_demo_user()[0].get_username()
        self.print_banner(display_host(host), port, username)

        libc = _libc()
        children = [start_child("daphne", [
            sys.executable, "-m", "project.server", "-b", host, "-p", str(port),
            "project.asgi:application"], libc)]
        worker_ids: list[str] = []
        if not no_worker:
            recovered = task_fail_stale(older_than_seconds=STALE_SECONDS)
            if recovered:
                self.stdout.write(f"Failed {recovered} task(s) abandoned by a stopped worker.")
            for index in range(workers):
                worker_id = f"serve-{socket.gethostname()[:32]}-{os.getpid()}-{index}"
                worker_ids.append(worker_id)
                children.append(start_child(f"worker {index}", [
                    sys.executable, str(settings.BASE_DIR / "manage.py"), "db_worker",
                    "--queue-name", "*", "--interval", "0.2", "--no-startup-delay",
                    "--no-reload", "--worker-id", worker_id], libc))

        dead, signum = supervise(children, self.stdout)
        stop_children(children, signum or signal.SIGTERM)
        # Our workers are gone: whatever they were processing will never finish.
        orphaned = task_fail_orphaned(worker_ids=worker_ids)
        if orphaned:
            self.stdout.write(f"Failed {orphaned} task(s) the stopped worker left unfinished.")
        if dead is not None:
            code = dead.process.returncode
            if code != 0:
                raise CommandError(f"{dead.name} exited with code {code}; stopped the rest.",
                                   returncode=code if code > 0 else 1)
            self.stderr.write(f"{dead.name} exited; stopped the rest.")

    def print_banner(self, host: str, port: int, username: str | None) -> None:
        """Tell the operator where to go and how to log in."""
        base = f"http://{host}:{port}"
        self.stdout.write(self.style.SUCCESS(f"Starting on {base}"))
        self.stdout.write(f"  API docs:   {base}/docs\n  Admin:      {base}/admin/")
        if username is None:
            return
        password = demo_password()
        self.stdout.write(f"  Demo login: username={username} password={password}\n"
                          f"  Get a token:\n"
                          f"    curl -s -X POST {base}/api/v1/auth/token/ "
                          f"-H 'Content-Type: application/json' "
                          f"-d '{{\"username\": \"{username}\", \"password\": \"{password}\"}}'")
