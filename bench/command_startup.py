"""Wall time of the quick management commands, this tree against another commit (bench/README.md).

    .venv/bin/python bench/command_startup.py [--against REF] [--runs 5]

Runs each command (`--help`, `healthcheck`, `get_token`, `watch_task`, `create_test_task --help`
and `create_test_task` itself) `--runs` times as a fresh process on a migrated SQLite database,
in this tree and in a copy of `--against` (default `HEAD~1`, exported with `git archive`, so the
repository is not touched), and prints the fastest and median wall time and the median CPU time
of each, whether the process loaded numpy, scipy or PyAV, and the load average. `healthcheck`
and `watch_task` ask a port where nothing listens, so
they measure start-up and a refused connection, not a server.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests import live_server  # noqa: E402

COMMANDS = [
    ["--help"],
    ["healthcheck", "--url", "http://127.0.0.1:9/healthz"],
    ["get_token", "alice"],
    ["watch_task", "task_x", "--user", "alice", "--url", "http://127.0.0.1:9"],
    ["create_test_task", "--help"],
    ["create_test_task", "--seconds", "2"],  # writes a 2 s WAV and creates a pending task
]
# Prints whether the command loaded the audio stack; the command runs as `manage.py` would.
RUNNER = (
    "import sys\n"
    "from django.core.management import execute_from_command_line\n"
    "try:\n"
    "    execute_from_command_line(['manage.py', *sys.argv[1:]])\n"
    "except SystemExit:\n"
    "    pass\n"
    "print('AUDIO_STACK', sorted({'numpy', 'scipy', 'av'} & {m.partition('.')[0] for m in sys.modules}))\n"
)


def export(ref: str, target: Path) -> Path:
    """The tree of `ref` unpacked into `target` (no checkout, no worktree)."""
    archive = subprocess.run(["git", "archive", ref], cwd=REPO, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target


def cpu_of_children() -> float:
    """CPU seconds (user + system) used by the finished children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_command(tree: Path, argv: list[str], env: dict, runs: int) -> tuple[list[float], list[float], str]:
    """Wall and CPU times of `runs` runs of one command in `tree`, and what it said about the audio stack."""
    times, cpu, stack = [], [], "?"
    for _ in range(runs):
        started, cpu_before = time.perf_counter(), cpu_of_children()
        done = subprocess.run([sys.executable, "-c", RUNNER, *argv], cwd=tree, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - started)
        cpu.append(cpu_of_children() - cpu_before)
        stack = done.stdout.rpartition("AUDIO_STACK ")[2].strip() or "?"
    return times, cpu, stack


def main() -> None:
    """Time every command in both trees and print one table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default="HEAD~1", help="commit to compare with (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="command-startup-") as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        live_server.copy_sqlite(live_server.migrated_sqlite_template(), data / "db.sqlite3")
        env = {**live_server.service_env(data), "PYTHONDONTWRITEBYTECODE": "1"}
        trees = {"this tree": REPO, args.against: export(args.against, Path(tmp) / "other")}
        print(f"load average before: {os.getloadavg()}")
        # CPU time barely depends on the load: on an idle machine, wall time comes close to it.
        print(f"{'command':<40} {'tree':<12} {'min s':>7} {'median s':>9} {'CPU s':>6}  audio stack loaded")
        for argv in COMMANDS:
            for name, tree in trees.items():
                times, cpu, stack = time_command(tree, argv, env, args.runs)
                label = " ".join(argv)[:40]
                print(
                    f"{label:<40} {name:<12} {min(times):>7.2f} {statistics.median(times):>9.2f} "
                    f"{statistics.median(cpu):>6.2f}  {stack}"
                )
        print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
