"""Run one job in a child process so a crash, a memory blow-up or a hang fails the job, not the worker.

Django-free: the child only runs the (Django-free) audio pipeline and sends its progress calls and
its outcome back over a pipe; the parent relays progress to the caller's callback (which writes to
the database and may raise to cancel) and enforces the wall-time limit.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import pickle
import resource
import signal
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")
ProgressFn = Callable[[float, str], None]

# How long the parent waits for a message before calling `idle` (heartbeat and cancel check).
IDLE_SECONDS = 1.0
PR_SET_PDEATHSIG = 1


class JobCrashed(Exception):
    """The job's process died, ran out of memory or ran past its time limit; the message says which."""


def run_isolated(
    job: Callable[[ProgressFn], T],
    progress: ProgressFn,
    *,
    timeout: float,
    memory_mb: int | None = None,
    idle: Callable[[], None] | None = None,
) -> T:
    """Run `job(progress)` in a forked child and return its result; re-raise its exception here.

    `progress` is called in this process for every progress call of the child; if it raises (e.g.
    Cancelled), the child is killed and the exception propagates. `idle` is called when the child
    has been quiet for IDLE_SECONDS. Raises JobCrashed when the child dies without an answer, uses
    more than `memory_mb` MiB of address space beyond the worker's own, or runs past `timeout` s.
    """
    # fork, not spawn: the child starts at once with the pipeline already imported, and it runs
    # only Django-free code, so the database connections it inherits are never touched.
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(sender, job, memory_mb), name="audio-job", daemon=True)
    child.start()
    sender.close()  # so the pipe reports EOF as soon as the child is gone
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise JobCrashed(f"The job ran longer than the {timeout:g} s limit and was stopped.")
            if not receiver.poll(min(IDLE_SECONDS, left)):
                if idle is not None:
                    idle()
                continue
            try:
                message = receiver.recv()
            except (EOFError, OSError):
                raise JobCrashed(_death_message(child, memory_mb)) from None
            kind = message[0]
            if kind == "progress":
                progress(message[1], message[2])
            elif kind == "result":
                logger.info("Isolated job done: peak RSS %.0f MB", message[2] / 1024)
                return message[1]
            else:
                _, error, child_traceback = message
                logger.info("Isolated job raised:\n%s", child_traceback)
                if isinstance(error, MemoryError):
                    raise JobCrashed(_memory_message(memory_mb))
                raise error
    finally:
        receiver.close()
        if child.is_alive():
            child.kill()
        child.join()


def _child(sender: Connection, job: Callable[[ProgressFn], object], memory_mb: int | None) -> None:
    """Child side: apply limits, run the job, send progress and exactly one outcome."""
    _die_with_parent()
    # Ctrl-C and SIGTERM reach the whole process group; the worker decides (finish the job
    # gracefully, or exit and take this child with it), so the child ignores them.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if memory_mb:
        # Address space, not RSS: it is what the kernel can refuse per allocation, so a runaway
        # allocation fails as MemoryError (or an abort) in this child instead of waking the OOM killer.
        limit = _address_space() + memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    def report(fraction: float, stage: str) -> None:
        """Forward one progress call to the parent."""
        sender.send(("progress", fraction, stage))

    try:
        outcome: tuple[object, ...] = ("result", job(report), _peak_rss_kb())
    except BaseException as exc:  # noqa: BLE001 - every failure goes to the parent to report
        outcome = ("error", _picklable(exc), traceback.format_exc())
    try:
        sender.send(outcome)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        sender.send(("error", RuntimeError(f"The job's result could not be sent back: {exc}"), ""))
    sender.close()


def _picklable(exc: BaseException) -> BaseException:
    """The exception itself if it survives pickling, else a RuntimeError carrying its text."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any exception type may refuse to pickle
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def _die_with_parent() -> None:
    """Ask Linux to kill this child when the worker dies, so a killed worker leaves no orphan job."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: the pipe still breaks and the child's next send fails


def _peak_rss_kb() -> int:
    """This process's peak resident memory (VmHWM) in KiB; its parent cannot read it once it exits."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _address_space() -> int:
    """Bytes of address space this process already maps (inherited from the worker)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def _memory_message(memory_mb: int | None) -> str:
    limit = f" (limit {memory_mb} MiB)" if memory_mb else ""
    return f"The job ran out of memory{limit} and was stopped."


def _death_message(child: multiprocessing.process.BaseProcess, memory_mb: int | None) -> str:
    """A readable reason for a child that ended without sending an outcome."""
    child.join(5)
    code = child.exitcode
    if code is None:
        return "The job's process stopped answering and was stopped."
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        if -code == signal.SIGKILL:
            return f"The job's process was killed ({name}), most likely for running out of memory."
        if -code == signal.SIGABRT:
            return (
                f"The job's process aborted ({name}) inside a native library, most likely on input it could not handle."
            )
        return f"The job's process crashed ({name})."
    return f"The job's process exited unexpectedly with code {code}."
