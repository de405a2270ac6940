"""Throughput of `analyze` and `normalize` against ffmpeg on one long music-like file (bench/README.md).

    .venv/bin/python bench/audio_throughput.py [--minutes 30] [--mp3-input] [--profile]

Each measured run is its own process, so its peak RSS is its own; ours are timed around the
processor's `run()` (a worker process is long-lived, so interpreter start-up is not per task).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench._signals import music, write_chunks  # noqa: E402

RATE = 44100
# Goals: our analysis at least as fast as ffmpeg's ebur128 filter, and our normalisation (measure,
# limit, encode, verify) within 1.5x the time of ffmpeg's two-pass loudnorm to the same MP3.
ANALYZE_GOAL = 1.0
NORMALIZE_GOAL = 1.5
TARGET_LUFS, CEILING_DBTP, BIT_RATE_KBPS, LOUDNORM_LRA = -16.0, -1.0, 192, 11.0
NORMALIZE_OPTIONS = {
    "target_lufs": TARGET_LUFS,
    "true_peak_ceiling": CEILING_DBTP,
    "output_format": "mp3",
    "bit_rate": BIT_RATE_KBPS,
}
# ffmpeg's peak memory is sampled this often while it runs (ours is read exactly at the end).
RSS_POLL_SECONDS = 0.02
SUMMARY = re.compile(
    r"Summary:.*?I:\s+(?P<i>-?[\d.]+|-inf) LUFS.*?True peak:\s+Peak:\s+(?P<tp>-?[\d.]+|-inf) dBFS", re.DOTALL
)


@dataclass
class Run:
    """One measured process: wall time, our in-process time (None for ffmpeg), peak RSS and output."""

    wall: float
    seconds: float
    rss_mb: float
    stdout: str
    stderr: str


def peak_rss_mb(pid: int | str) -> float | None:
    """High-water resident memory of a live process (VmHWM), in MB."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def measure_process(args: list[str]) -> Run:
    """Run `args` to completion; its output goes through files (ffmpeg's ebur128 log is megabytes)."""
    # getrusage/wait4 cannot be used for memory: the child inherits this process's high-water mark
    # at fork/exec, so every child would report the parent's size. VmHWM belongs to the new image.
    rss = 0.0
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen(args, stdout=out, stderr=err, cwd=REPO)
        while True:
            rss = max(rss, peak_rss_mb(process.pid) or 0.0)
            try:
                process.wait(timeout=RSS_POLL_SECONDS)
                break
            except subprocess.TimeoutExpired:
                continue
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(args[:4])} ... failed ({process.returncode}):\n{stderr[-3000:]}")
    return Run(wall, wall, rss, stdout, stderr)


def ours(kind: str, path: Path, out_dir: Path) -> tuple[Run, dict]:
    """Run one of our processors in a child process; return the measurement and its result dict."""
    options = json.dumps(NORMALIZE_OPTIONS if kind == "normalize" else {})
    run = measure_process([sys.executable, __file__, "--child", kind, str(path), str(out_dir), options])
    report = json.loads(run.stdout.strip().splitlines()[-1])
    run.seconds = report["seconds"]
    run.rss_mb = report["rss_mb"]  # exact, read by the child as it finishes
    return run, report["result"]


def ffmpeg(*args: str) -> Run:
    """Run ffmpeg quietly with `args`."""
    return measure_process(["ffmpeg", "-hide_banner", "-nostats", "-y", *args])


def ebur128(path: Path) -> tuple[Run, dict[str, float]]:
    """ffmpeg's EBU R128 meter with true peak: the measurement and its summary."""
    run = ffmpeg("-i", str(path), "-af", "ebur128=peak=true", "-f", "null", "-")
    match = SUMMARY.search(run.stderr)
    if match is None:
        raise SystemExit(f"no ebur128 summary for {path}")
    return run, {key: float(value) for key, value in match.groupdict().items()}


def loudnorm_json(stderr: str) -> dict[str, str]:
    """The JSON block loudnorm prints last."""
    return json.loads(stderr[stderr.rindex("{") : stderr.rindex("}") + 1])


def ffmpeg_two_pass(path: Path, output: Path) -> tuple[Run, Run, dict[str, str]]:
    """ffmpeg's documented two-pass loudnorm (linear where the peak allows) encoded to 192k MP3."""
    spec = f"loudnorm=I={TARGET_LUFS:g}:TP={CEILING_DBTP:g}:LRA={LOUDNORM_LRA:g}"
    first = ffmpeg("-i", str(path), "-af", f"{spec}:print_format=json", "-f", "null", "-")
    measured = loudnorm_json(first.stderr)
    second_spec = (
        f"{spec}:measured_I={measured['input_i']}:measured_TP={measured['input_tp']}"
        f":measured_LRA={measured['input_lra']}:measured_thresh={measured['input_thresh']}"
        f":offset={measured['target_offset']}:linear=true:print_format=json"
    )
    # loudnorm works at 192 kHz and MP3 cannot hold that: resample back to the input's rate.
    second = ffmpeg(
        "-i",
        str(path),
        "-af",
        second_spec,
        "-ar",
        str(RATE),
        "-c:a",
        "libmp3lame",
        "-b:a",
        f"{BIT_RATE_KBPS}k",
        str(output),
    )
    return first, second, loudnorm_json(second.stderr)


def child(kind: str, path: str, out_dir: str, options: str, profile: bool) -> None:
    """In the measured process: run one processor, print {"seconds", "rss_mb", "result"} (and a profile)."""
    from tasks_app.audio.registry import get_processor, validate_options

    processor = get_processor(kind)
    checked = validate_options(kind, json.loads(options))
    profiles: list[cProfile.Profile] = []
    if profile:
        # cProfile sees one thread; the pipeline decodes, meters and encodes on helper threads too.
        thread_run = threading.Thread.run

        def profiled_run(self: threading.Thread) -> None:
            profiler = cProfile.Profile()
            profiles.append(profiler)
            profiler.runcall(thread_run, self)

        threading.Thread.run = profiled_run  # type: ignore[method-assign]
        profiles.append(cProfile.Profile())
        profiles[-1].enable()
    started = time.perf_counter()
    result = processor.run(path, checked, lambda fraction, stage: None, out_dir)
    seconds = time.perf_counter() - started
    if profile:
        profiles[0].disable()
        text = io.StringIO()
        stats = pstats.Stats(profiles[0], stream=text)
        for other in profiles[1:]:
            stats.add(other)
        stats.sort_stats("tottime").print_stats(10)
        sys.stderr.write(text.getvalue())
    print(json.dumps({"seconds": seconds, "rss_mb": peak_rss_mb("self"), "result": result}))


def fmt_row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths))


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    """A plain fixed-width table."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    print(fmt_row(header, widths))
    print(fmt_row(["-" * w for w in widths], widths))
    for row in rows:
        print(fmt_row(row, widths))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the generated file (default 30)")
    parser.add_argument("--mp3-input", action="store_true", help="also compare analysis of an MP3 copy")
    parser.add_argument("--profile", action="store_true", help="print the profile even if normalize meets its goal")
    parser.add_argument("--profile-minutes", type=float, default=5.0, help="length profiled (default 5)")
    parser.add_argument("--keep", metavar="DIR", help="write files to DIR and keep them (default: a temp dir)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--child-profile", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, profile=args.child_profile)
        return
    if shutil.which("ffmpeg") is None:
        raise SystemExit("ffmpeg is needed for the comparison: apt-get install ffmpeg")
    work = Path(args.keep or tempfile.mkdtemp(prefix="audio-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        run_benchmark(work, args)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def run_benchmark(work: Path, args: argparse.Namespace) -> None:
    """Generate the material, time every step, print the tables."""
    seconds = args.minutes * 60
    wav = work / "music.wav"
    started = time.perf_counter()
    write_chunks(str(wav), music(seconds, RATE), RATE, 2, "wav")
    print(
        f"Generated {args.minutes:g} min of 44.1 kHz stereo music-like audio ({wav.stat().st_size / 1e6:.0f} MB WAV)"
        f" in {time.perf_counter() - started:.1f} s; ffmpeg: {ffmpeg_version()}, {os.cpu_count()} CPUs"
    )
    inputs = [("WAV", wav)]
    if args.mp3_input:
        mp3 = work / "music.mp3"
        write_chunks(str(mp3), music(seconds, RATE), RATE, 2, "mp3", BIT_RATE_KBPS)
        inputs.append(("MP3", mp3))

    rows = []
    for label, path in inputs:
        our_run, result = ours("analyze", path, work)
        ref_run, reference = ebur128(path)
        loud = result["loudness"]
        rows.append(
            [
                f"analyze ({label})",
                f"{our_run.seconds:.2f}",
                f"{seconds / our_run.seconds:.0f}x",
                f"{our_run.rss_mb:.0f}",
                f"I {loud['integrated_lufs']:.1f} / TP {loud['true_peak_dbtp']:.1f}",
            ]
        )
        rows.append(
            [
                f"ffmpeg ebur128 ({label})",
                f"{ref_run.wall:.2f}",
                f"{seconds / ref_run.wall:.0f}x",
                f"{ref_run.rss_mb:.0f}",
                f"I {reference['i']:.1f} / TP {reference['tp']:.1f}",
            ]
        )
        speed = ref_run.wall / our_run.seconds
        rows.append(
            [
                f"  speed ours/ffmpeg ({label})",
                f"{speed:.2f}x",
                f"goal >= {ANALYZE_GOAL:g}x",
                "",
                "MET" if speed >= ANALYZE_GOAL else "MISSED",
            ]
        )

    our_norm, norm = ours("normalize", wav, work)
    first, second, loudnorm = ffmpeg_two_pass(wav, work / "ffmpeg.mp3")
    ffmpeg_total = first.wall + second.wall
    _, ours_out = ebur128(work / norm["artifacts"]["output"])
    _, ffmpeg_out = ebur128(work / "ffmpeg.mp3")
    ratio = our_norm.seconds / ffmpeg_total
    rows.append(
        [
            f"normalize -> mp3 ({norm['attempts']} apply pass(es))",
            f"{our_norm.seconds:.2f}",
            f"{seconds / our_norm.seconds:.0f}x",
            f"{our_norm.rss_mb:.0f}",
            f"out I {ours_out['i']:.1f} / TP {ours_out['tp']:.1f}",
        ]
    )
    rows.append(
        ["ffmpeg loudnorm pass 1", f"{first.wall:.2f}", f"{seconds / first.wall:.0f}x", f"{first.rss_mb:.0f}", ""]
    )
    rows.append(
        [
            f"ffmpeg loudnorm pass 2 ({loudnorm['normalization_type']}) -> mp3",
            f"{second.wall:.2f}",
            f"{seconds / second.wall:.0f}x",
            f"{second.rss_mb:.0f}",
            f"out I {ffmpeg_out['i']:.1f} / TP {ffmpeg_out['tp']:.1f}",
        ]
    )
    rows.append(["ffmpeg two-pass total", f"{ffmpeg_total:.2f}", f"{seconds / ffmpeg_total:.0f}x", "", ""])
    rows.append(
        [
            "  time ours/ffmpeg (normalize)",
            f"{ratio:.2f}x",
            f"goal <= {NORMALIZE_GOAL:g}x",
            "",
            "MET" if ratio <= NORMALIZE_GOAL else "MISSED",
        ]
    )
    print_table(
        f"{args.minutes:g} min, target {TARGET_LUFS:g} LUFS / {CEILING_DBTP:g} dBTP / {BIT_RATE_KBPS}k MP3 "
        "(out I / TP measured by ffmpeg ebur128)",
        ["step", "seconds", "x real time", "peak RSS MB", "result"],
        rows,
    )
    print("Ours: time inside the processor's run(); each run also pays ~0.5 s of interpreter start-up.")

    if args.profile or ratio > NORMALIZE_GOAL:
        profile_normalize(work, args.profile_minutes)


def profile_normalize(work: Path, minutes: float) -> None:
    """cProfile top 10 (all threads, by own time) of our normalize on an excerpt of the material."""
    excerpt = work / "excerpt.wav"
    write_chunks(str(excerpt), music(minutes * 60, RATE), RATE, 2, "wav")
    run = measure_process(
        [
            sys.executable,
            __file__,
            "--child",
            "normalize",
            str(excerpt),
            str(work),
            json.dumps(NORMALIZE_OPTIONS),
            "--child-profile",
        ]
    )
    print(f"\ncProfile of normalize on {minutes:g} min (all threads; helper threads overlap the main one):")
    lines = run.stderr.strip().splitlines()
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    print("\n".join(lines[start:]))


def ffmpeg_version() -> str:
    """ffmpeg's version string, e.g. "5.1.9-0+deb12u1"."""
    first = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True, check=True).stdout.split("\n")[0]
    return first.split()[2]


if __name__ == "__main__":
    main()
