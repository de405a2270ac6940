"""`manage.py worker`: the job worker, with periodic recovery and a graceful hand-back on stop."""

from __future__ import annotations

import logging
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from types import FrameType
from typing import Any

from django.conf import settings
from django.db import close_old_connections
from django_tasks_db.management.commands import db_worker

from tasks_app import jobs

# The processing code is imported once, here, so that every job forked from the worker (isolation.py)
# starts with numpy, scipy and PyAV loaded instead of importing them again.
from tasks_app.audio.processors import analyze, normalize  # noqa: F401
from tasks_app.management.commands.serve import READY_FD_ENV
from tasks_app.recovery import recover
from tasks_app.webhooks.sender import deliver_due, make_client

logger = logging.getLogger(__name__)

# Pause between tries to reach the database again after the worker's poll lost it.
RECONNECT_SECONDS = 1.0


class Worker(db_worker.Worker):
    """django-tasks-db's worker; on the first SIGTERM/SIGINT the running task is handed back."""

    def shutdown(self, signum: int, frame: FrameType | None) -> None:
        """Stop after handing the current task back (a second signal stops at once)."""
        if not self.running:
            # Second signal: leave without a traceback; the task is recovered as stale.
            logger.warning("Received %s again - stopping now.", signal.strsignal(signum))
            raise SystemExit(1)
        if self.running_task:
            jobs.hand_back_requested.set()
        super().shutdown(signum, frame)


def recovery_loop(stop: threading.Event, interval: float) -> None:
    """Every `interval` seconds, run one recovery sweep (errors are logged, never fatal)."""
    while not stop.wait(interval):
        try:
            close_old_connections()
            recover(stale_seconds=settings.TASK_STALE_SECONDS, max_attempts=settings.TASK_MAX_ATTEMPTS)
        except Exception:  # noqa: BLE001 - a failed sweep must not stop the worker
            logger.exception("Recovery sweep failed; trying again in %.0f s", interval)
        finally:
            close_old_connections()


def webhook_loop(stop: threading.Event, interval: float) -> None:
    """Send due webhook deliveries; look again at once after a batch, else every `interval` seconds."""
    with make_client() as client, ThreadPoolExecutor(settings.WEBHOOK_SEND_THREADS, "webhook") as pool:
        while not stop.is_set():
            sent = 0
            try:
                close_old_connections()
                sent = deliver_due(client=client, pool=pool)
            except Exception:  # noqa: BLE001 - a failed round must not stop the sender
                logger.exception("Webhook round failed; trying again in %.0f s", interval)
            finally:
                close_old_connections()
            if not sent:
                stop.wait(interval)


def run_reconnecting(worker: Worker, stop: threading.Event) -> None:
    """Run the worker; when the database goes away while it polls, reconnect and go on."""
    # db_worker's loop re-raises any database error but a locked SQLite file, so a PostgreSQL
    # restart would end the worker. A lost connection during a job never gets here: the job
    # hands its task back itself (jobs.hand_back_after_connection_loss).
    while True:
        try:
            worker.run()
            return
        except jobs.CONNECTION_ERRORS as exc:
            logger.warning("Database connection lost (%s); reconnecting in %.0f s", exc, RECONNECT_SECONDS)
            close_old_connections()
            stop.wait(RECONNECT_SECONDS)


def announce_ready() -> None:
    """Tell a supervising `serve` that start-up is over (a later exit is a crash, worth a restart)."""
    fd = os.environ.pop(READY_FD_ENV, None)
    if fd is not None:
        os.write(int(fd), b"1")
        os.close(int(fd))


class Command(db_worker.Command):
    """Run jobs like `db_worker`, and recover stale and lost tasks every few seconds."""

    help = (
        "Run the job worker (django-tasks-db's db_worker options), and every "
        "TASK_RECOVERY_SECONDS send tasks of dead workers back to pending and enqueue "
        "pending tasks whose job was lost; send due webhook deliveries all along. "
        "SIGTERM/Ctrl-C hands the running task back. "
        "--reload is ignored."
    )

    def handle(
        self,
        *args: Any,
        verbosity: int,
        queue_name: str,
        exclude_queues: str,
        interval: float,
        batch: bool,
        backend_name: str,
        startup_delay: bool,
        max_tasks: int | None,
        worker_id: str,
        **options: Any,
    ) -> None:
        """Start the recovery and webhook threads, then run the worker until stopped (no autoreload)."""
        self.configure_logging(verbosity)
        worker = Worker(
            queue_names=queue_name.split(","),
            interval=interval,
            batch=batch,
            backend_name=backend_name,
            startup_delay=startup_delay,
            max_tasks=max_tasks,
            worker_id=worker_id,
            excluded_queue_names=exclude_queues.split(",") if exclude_queues else [],
        )
        stop = threading.Event()
        sweeper = threading.Thread(
            target=recovery_loop, name="recovery", daemon=True, args=(stop, settings.TASK_RECOVERY_SECONDS)
        )
        sender = threading.Thread(
            target=webhook_loop, name="webhooks", daemon=True, args=(stop, settings.WEBHOOK_POLL_SECONDS)
        )
        worker.configure_signals()
        sweeper.start()
        sender.start()
        announce_ready()
        try:
            run_reconnecting(worker, stop)
        finally:
            stop.set()
