"""How wrong the worker's ETA is: real progress callbacks replayed through the job's EtaEstimator.

    .venv/bin/python bench/eta_accuracy.py [--hours 2] [--minutes 30]

Runs `analyze` on a long 22.05 kHz mono WAV and `normalize` (to MP3) on a 30-minute 44.1 kHz stereo
WAV, records every (time, fraction) progress callback, feeds them in order to
`tasks_app.audio.progress.EtaEstimator` exactly as `jobs.ProgressReporter` does, and compares each
estimate with the time that really remained.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench._signals import music, write_chunks  # noqa: E402
from tasks_app.audio.progress import EtaEstimator  # noqa: E402
from tasks_app.audio.registry import get_processor, validate_options  # noqa: E402

CHECKPOINTS = (0.10, 0.25, 0.50, 0.75, 0.90)
# Relative error is meaningless when almost nothing remains; the maximum ignores the last seconds.
MIN_REMAINING_SECONDS = 1.0


def record(
    kind: str, path: Path, options: dict[str, object], out_dir: Path
) -> tuple[list[tuple[float, float]], float, dict]:
    """Run a processor; return its progress callbacks as (monotonic time, fraction), end time and result."""
    calls: list[tuple[float, float]] = []
    processor = get_processor(kind)
    checked = validate_options(kind, options)
    calls.append((time.monotonic(), 0.0))
    result = processor.run(
        str(path), checked, lambda fraction, stage: calls.append((time.monotonic(), fraction)), str(out_dir)
    )
    return calls, time.monotonic(), result


def replay(calls: list[tuple[float, float]], end: float) -> list[tuple[float, float, float | None, float]]:
    """(fraction, elapsed, estimate, actual remaining) after each callback, as the worker would see it."""
    started = calls[0][0]
    estimator = EtaEstimator(started=started)
    fraction = 0.0
    rows = []
    for now, reported in calls[1:]:
        fraction = min(max(reported, fraction), 1.0)  # as ProgressReporter clamps it
        estimator.update(now, fraction)
        rows.append((fraction, now - started, estimator.remaining(now), end - now))
    return rows


def error(estimate: float | None, actual: float) -> float | None:
    return None if estimate is None or actual <= 0 else abs(estimate - actual) / actual


def report(title: str, calls: list[tuple[float, float]], end: float) -> None:
    """Print the error at each checkpoint and the worst error past 10 %."""
    rows = replay(calls, end)
    total = end - calls[0][0]
    print(f"\n{title}: {total:.1f} s, {len(calls) - 1} progress callbacks")
    print(f"{'progress':>9}  {'elapsed s':>9}  {'ETA s':>7}  {'actual s':>8}  {'error':>7}")
    for point in CHECKPOINTS:
        row = next((r for r in rows if r[0] >= point), None)
        if row is None:
            print(f"{point:>9.0%}  (never reported)")
            continue
        fraction, elapsed, estimate, actual = row
        err = error(estimate, actual)
        shown = "-" if estimate is None else f"{estimate:.1f}"
        print(
            f"{point:>9.0%}  {elapsed:>9.1f}  {shown:>7}  {actual:>8.1f}  "
            f"{'-' if err is None else f'{err:.0%}':>7}   (reported {fraction:.1%})"
        )
    past = [(error(e, a), f, a) for f, _, e, a in rows if f >= 0.10 and a >= MIN_REMAINING_SECONDS]
    known = [item for item in past if item[0] is not None]
    if known:
        worst, at, remaining = max(known)
        print(
            f"max error past 10 % (while >= {MIN_REMAINING_SECONDS:g} s remained): {worst:.0%} "
            f"at {at:.1%} with {remaining:.1f} s left"
        )
    silent = sum(1 for item in past if item[0] is None)
    if silent:
        print(f"no estimate at {silent} callbacks past 10 %")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=2.0, help="length of the analyze input (default 2)")
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the normalize input (default 30)")
    parser.add_argument("--targets", default="-16,-23", help="normalize targets in LUFS (default -16,-23)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="audio-eta-"))
    try:
        long_mono = work / "long.wav"
        write_chunks(str(long_mono), music(args.hours * 3600, 22050, channels=1), 22050, 1, "wav")
        calls, end, _ = record("analyze", long_mono, {}, work)
        report(f"analyze, {args.hours:g} h 22.05 kHz mono WAV", calls, end)
        long_mono.unlink()
        stereo = work / "music.wav"
        write_chunks(str(stereo), music(args.minutes * 60, 44100), 44100, 2, "wav")
        for target in (float(t) for t in args.targets.split(",")):
            options = {"target_lufs": target, "true_peak_ceiling": -1.0, "output_format": "mp3", "bit_rate": 192}
            calls, end, result = record("normalize", stereo, options, work)
            report(
                f"normalize to {target:g} LUFS / -1 dBTP, 192k MP3, {args.minutes:g} min 44.1 kHz stereo WAV "
                f"({result['attempts']} apply pass(es))",
                calls,
                end,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
