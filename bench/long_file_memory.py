"""Peak worker memory of `analyze` and `normalize` on one long file, run as the worker runs them (bench/README.md).

    .venv/bin/python bench/long_file_memory.py [--hours 3] [--material music] [--formats wav,mp3] [--keep DIR]

Each processor runs in its own measuring process that first loads Django and the worker's job
module (as a worker has), then runs the processor through `run_isolated`, the worker's forked
child; the figure is that child's peak resident memory (VmHWM), which includes what it inherits.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from bench._signals import music, write_chunks  # noqa: E402
from tasks_app.audio.generate import write_tone  # noqa: E402

RATE = 44100
# The figure: 400 MB of worker RSS at most, whatever the file's length.
GOAL_MB = 400
TARGET_LUFS, CEILING_DBTP = -16.0, -1.0
CHUNK_SECONDS = 10


def material(path: Path, kind: str, seconds: float) -> None:
    """Write `seconds` of 44.1 kHz stereo `kind` (music, tone or silence) to a FLAC file."""
    if kind == "tone":
        write_tone(str(path), seconds, "flac", RATE, 2)
    elif kind == "silence":
        step = CHUNK_SECONDS * RATE
        chunks = (
            np.zeros((2, min(step, int(seconds * RATE) - start)), dtype=np.float32)
            for start in range(0, int(seconds * RATE), step)
        )
        write_chunks(str(path), chunks, RATE, 2, "flac")
    else:
        write_chunks(str(path), music(seconds, RATE), RATE, 2, "flac")


def child(kind: str, path: str, options: str) -> None:
    """In the measuring process: load the worker's modules, run one processor isolated, print the figures."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    django.setup()
    from tasks_app import jobs  # noqa: F401 - what a worker has imported before it forks a job
    from tasks_app.audio.registry import get_processor, validate_options
    from tasks_app.isolation import run_isolated

    processor = get_processor(kind)
    checked = validate_options(kind, json.loads(options))
    worker_mb = rss_mb("VmRSS")
    with tempfile.TemporaryDirectory(prefix="long-file-memory-") as folder:

        def job(progress: object) -> tuple[dict, float]:
            """The processor's run, and the isolated child's own high-water mark at its end."""
            result = processor.run(path, checked, progress, folder)
            return result, rss_mb("VmHWM")

        started = time.perf_counter()
        result, peak = run_isolated(job, lambda fraction, stage: None, timeout=24 * 3600)
        seconds = time.perf_counter() - started
        sizes = {name: os.path.getsize(os.path.join(folder, name)) for name in os.listdir(folder)}
    print(json.dumps({"seconds": seconds, "worker_mb": worker_mb, "peak_mb": peak, "files": sizes, "result": result}))


def rss_mb(field: str) -> float:
    """This process's VmRSS or VmHWM, in MB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return 0.0


def measure(kind: str, path: Path, options: dict[str, object]) -> dict:
    """Run one processor in a fresh measuring process; return its figures."""
    args = [sys.executable, __file__, "--child", kind, str(path), json.dumps(options)]
    done = subprocess.run(args, capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"{kind} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summary(kind: str, result: dict) -> str:
    """The headline numbers of a result."""
    if kind == "analyze":
        loud = result["loudness"]
        return f"I {loud['integrated_lufs']} / LRA {loud['loudness_range_lu']} / TP {loud['true_peak_dbtp']}"
    out = result["output"]
    return f"in I {result['input']['integrated_lufs']} -> out I {out['integrated_lufs']} / TP {out['true_peak_dbtp']}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=3.0, help="length of the generated file (default 3)")
    parser.add_argument("--material", choices=("music", "tone", "silence"), default="music")
    parser.add_argument("--formats", default="wav,mp3", help="normalize output formats (default wav,mp3)")
    parser.add_argument("--skip-analyze", action="store_true", help="measure normalize only")
    parser.add_argument("--keep", metavar="DIR", help="keep the input in DIR and reuse it when it is there")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    work = Path(args.keep or tempfile.mkdtemp(prefix="long-file-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        run_benchmark(work, args)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def run_benchmark(work: Path, args: argparse.Namespace) -> None:
    """Generate (or reuse) the input, measure each processor, print one table."""
    path = work / f"{args.material}-{args.hours:g}h.flac"
    if not path.exists():
        started = time.perf_counter()
        material(path, args.material, args.hours * 3600)
        print(
            f"Generated {args.hours:g} h of 44.1 kHz stereo {args.material} "
            f"({path.stat().st_size / 1e6:.1f} MB FLAC) in {time.perf_counter() - started:.0f} s"
        )
    runs: list[tuple[str, str, dict[str, object]]] = []
    if not args.skip_analyze:
        runs.append(("analyze", "analyze", {}))
    for fmt in filter(None, args.formats.split(",")):
        options = {"target_lufs": TARGET_LUFS, "true_peak_ceiling": CEILING_DBTP, "output_format": fmt}
        runs.append((f"normalize -> {fmt}", "normalize", options))
    print(f"{'step':<20}  {'seconds':>8}  {'worker MB':>9}  {'peak MB':>8}  {'goal':<7}  result")
    for label, kind, options in runs:
        figures = measure(kind, path, options)
        verdict = "MET" if figures["peak_mb"] <= GOAL_MB else "MISSED"
        print(
            f"{label:<20}  {figures['seconds']:>8.1f}  {figures['worker_mb']:>9.0f}  {figures['peak_mb']:>8.0f}  "
            f"{verdict:<7}  {summary(kind, figures['result'])}",
            flush=True,
        )
    print(
        f"worker MB: the measuring process before the job (Django and the worker's modules loaded); "
        f"peak MB: the job's forked child (VmHWM), goal <= {GOAL_MB} MB."
    )


if __name__ == "__main__":
    main()
