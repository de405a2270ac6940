"""The "normalize" processor: two-pass loudness normalisation with a true-peak limiter, then encoding."""

import math
import os
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from tasks_app.audio.decode import Decoder
from tasks_app.audio.encode import DEFAULT_BIT_RATE_KBPS, EXTENSIONS, AudioWriter, is_lossy
from tasks_app.audio.errors import OptionsError
from tasks_app.audio.limiter import FRAME, TruePeakLimiter
from tasks_app.audio.loudness import LoudnessMeter, TruePeakMeter, to_db
from tasks_app.audio.probe import probe
from tasks_app.audio.progress import Progress, ProgressFn
from tasks_app.audio.registry import Option, Processor, register

OUTPUT_FORMATS = ("mp3", "opus", "m4a", "flac", "wav")
# The limiter aims this far under the requested ceiling: lossy encoders overshoot on their own
# (Opus most, after resampling to 48 kHz), and 16-bit rounding needs a hair of room even for
# lossless output. A verified overshoot still triggers one corrective pass.
CEILING_MARGIN_DB = {"mp3": 1.5, "m4a": 1.5, "opus": 1.5, "flac": 0.05, "wav": 0.05}
# The encoded file is measured again; if it misses the target by more than this, or its true peak
# is over the ceiling, the apply pass runs once more with corrected gain and limiter ceiling.
LOUDNESS_TOLERANCE_LU = 0.5
MAX_ATTEMPTS = 2
# Relative wall-clock cost of each pass per output format, measured on music-like 44.1 kHz stereo
# (the encoder dominates lossy output), so that progress (and an ETA from it) is even in time.
MEASURE_COST = 1.0
PREVIEW_COST = 2.0
APPLY_COST = {"mp3": 30.0, "opus": 12.0, "m4a": 30.0, "flac": 3.0, "wav": 2.0}
VERIFY_COST = {"mp3": 1.2, "opus": 1.3, "m4a": 1.1, "flac": 1.8, "wav": 0.8}
# Progress held back from the first verification so a corrective retry still has room to report.
RETRY_RESERVE = 0.02
# Limiting lowers the loudness, so when the gain pushes peaks into the limiter, gain and limiter are
# first previewed without encoding (a tenth of the encoding pass's cost) and the gain corrected, up
# to this many times or until the preview is this close to the target. Otherwise the encoded output
# would miss and the whole encoding pass would run again: twice the time, with the second pass
# squeezed into RETRY_RESERVE, so the ETA was 60-90 % wrong.
MAX_PREVIEWS = 2
PREVIEW_TOLERANCE_LU = 0.1

OPTIONS = {
    "target_lufs": Option("number", -16.0, -70.0, -5.0, help="Integrated loudness to reach, in LUFS."),
    "true_peak_ceiling": Option("number", -1.0, -9.0, 0.0, help="Highest allowed true peak, in dBTP."),
    "output_format": Option("string", "mp3", choices=OUTPUT_FORMATS, help="Codec/container of the output file."),
    "bit_rate": Option(
        "integer",
        None,
        32,
        320,
        help="Lossy bit rate in kbit/s (default: mp3 192, m4a 192, opus 128); lossless ignores it.",
    ),
}


def _round_db(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _measure(blocks: Iterator[np.ndarray], rate: int, channels: int, tracker: Progress) -> dict[str, float | None]:
    """Integrated loudness, LRA and true peak of a stream; true peak runs on a second core."""
    loudness = LoudnessMeter(rate, channels)
    peaks = TruePeakMeter(rate, channels)
    samples = 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="audio-true-peak") as pool:
        pending: Future[None] | None = None
        for block in blocks:
            if pending is not None:
                pending.result()
            pending = pool.submit(peaks.process, block)
            loudness.process(block)
            samples += block.shape[1]
            tracker.advance(block.shape[1])
        if pending is not None:
            pending.result()
    result = loudness.result()
    return {
        "integrated_lufs": result["integrated_lufs"],
        "loudness_range_lu": result["loudness_range_lu"],
        "true_peak_dbtp": _round_db(to_db(float(peaks.true_peak.max()))),
        "duration": round(samples / rate, 6),
    }


def _preview(decoder: Decoder, gain_db: float, limit_db: float, tracker: Progress) -> float | None:
    """Integrated loudness of the input after gain and limiter, as `_apply` would encode it."""
    gain = np.float32(10 ** (gain_db / 20))
    limiter = TruePeakLimiter(decoder.sample_rate, decoder.channels, limit_db)
    loudness = LoudnessMeter(decoder.sample_rate, decoder.channels)
    for block in decoder.blocks():
        loudness.process(limiter.process(block * gain))
        tracker.advance(block.shape[1])
    loudness.process(limiter.flush())
    return loudness.result()["integrated_lufs"]


def _apply(
    decoder: Decoder, gain_db: float, limiter: TruePeakLimiter, writer: AudioWriter, tracker: Progress
) -> int:
    """Stream the input through gain and limiter into the encoder (on a second core); return samples."""
    gain = np.float32(10 ** (gain_db / 20))
    samples = 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="audio-encode") as pool:
        pending: Future[None] | None = None

        def emit(out: np.ndarray) -> None:
            """Hand a limited block to the encoder thread."""
            nonlocal pending
            if out.shape[1]:
                # One block in flight keeps memory bounded and order intact.
                if pending is not None:
                    pending.result()
                pending = pool.submit(writer.write, out)

        for block in decoder.blocks():
            emit(limiter.process(block * gain))
            samples += block.shape[1]
            tracker.advance(block.shape[1])
        emit(limiter.flush())
        if pending is not None:
            pending.result()
    return samples


def run(path: str, options: dict[str, object], progress: ProgressFn, output_dir: str) -> dict[str, object]:
    """Normalise the file at `path` to the target loudness under the ceiling; write output.<ext>."""
    fmt = str(options.get("output_format", "mp3"))
    target = float(options.get("target_lufs", -16.0))
    ceiling = float(options.get("true_peak_ceiling", -1.0))
    lossy = is_lossy(fmt)
    kbps = int(options.get("bit_rate") or DEFAULT_BIT_RATE_KBPS.get(fmt, 0)) if lossy else None
    info = probe(path)
    rate, channels = info.sample_rate, info.channels
    if fmt == "mp3" and channels > 2:
        raise OptionsError("output_format", "mp3 holds at most 2 channels; choose opus, m4a, flac or wav")
    decoder = Decoder(path, info)
    total = decoder.expected_samples
    # Each pass gets a share of progress in proportion to its cost; what is left is re-divided
    # whenever previews turn out to be unneeded, so progress stays even in time.
    planned = 1.0 - RETRY_RESERVE
    rest_costs = [PREVIEW_COST * MAX_PREVIEWS, APPLY_COST[fmt], VERIFY_COST[fmt]]
    done = planned * MEASURE_COST / (MEASURE_COST + sum(rest_costs))

    tracker = Progress(progress, "measure", total, 0.0, done)
    tracker.advance(0)
    measured_in = _measure(decoder.blocks(), rate, channels, tracker)
    integrated_in = measured_in["integrated_lufs"]
    peak_in = measured_in["true_peak_dbtp"]
    # Digital silence (or audio entirely under the -70 LUFS gate) has no loudness to correct.
    gain_db = 0.0 if integrated_in is None else target - integrated_in
    limit_db = ceiling - CEILING_MARGIN_DB[fmt]

    if integrated_in is not None and peak_in is not None and peak_in + gain_db > limit_db:
        for previews_left in range(MAX_PREVIEWS, 0, -1):
            share = (planned - done) * PREVIEW_COST / (PREVIEW_COST * previews_left + sum(rest_costs[1:]))
            previewed = _preview(decoder, gain_db, limit_db, Progress(progress, "measure", total, done, done + share))
            done += share
            if previewed is None:
                break
            gain_db += target - previewed
            if abs(target - previewed) <= PREVIEW_TOLERANCE_LU:
                break

    output_name = f"output.{EXTENSIONS[fmt]}"
    output_path = os.path.join(output_dir, output_name)
    middle = done + (planned - done) * rest_costs[1] / sum(rest_costs[1:])
    spans = [(done, middle, planned)]
    # A retry, if needed, reports within the reserve so progress never goes back or stops early.
    spans.append((planned, planned + RETRY_RESERVE * 0.7, 1.0))
    try:
        for attempt in range(MAX_ATTEMPTS):
            start, middle, end = spans[attempt]
            limiter = TruePeakLimiter(rate, channels, limit_db)
            with AudioWriter(output_path, fmt, rate, channels, kbps) as writer:
                apply = Progress(progress, "normalize", total, start, middle)
                samples = _apply(decoder, gain_db, limiter, writer, apply)
            output_info = probe(output_path)
            verify = Progress(progress, "verify", total, middle, end)
            measured_out = _measure(
                Decoder(output_path, output_info).blocks(), output_info.sample_rate, output_info.channels, verify
            )
            integrated_out = measured_out["integrated_lufs"]
            peak_out = measured_out["true_peak_dbtp"]
            overshoot = 0.0 if peak_out is None else peak_out - ceiling
            miss = 0.0 if integrated_out is None or integrated_in is None else target - integrated_out
            if (overshoot <= 0 and abs(miss) <= LOUDNESS_TOLERANCE_LU) or attempt == MAX_ATTEMPTS - 1:
                break
            if overshoot > 0:
                limit_db -= overshoot + 0.1
            gain_db += miss
    except BaseException:
        # Cancelled or failed: leave no half-written output behind.
        if os.path.exists(output_path):
            os.remove(output_path)
        raise
    tracker = Progress(progress, "normalize", 1, 1.0, 1.0)
    tracker.finish()

    return {
        "input": measured_in,
        "output": {
            **measured_out,
            "format": fmt,
            "codec": output_info.codec,
            "bit_rate": kbps * 1000 if kbps else None,
            "sample_rate": output_info.sample_rate,
            "channels": output_info.channels,
            "size": output_info.size,
        },
        "target_lufs": target,
        "true_peak_ceiling": ceiling,
        "gain_db": round(gain_db, 2),
        "attempts": attempt + 1,
        "limiter": {
            "ceiling_dbtp": round(limit_db, 2),
            "max_reduction_db": round(max(0.0, -20 * math.log10(limiter.min_gain)), 2),
            "limited_fraction": round(min(1.0, limiter.limited_frames * FRAME / max(samples, 1)), 4),
        },
        "artifacts": {"output": output_name},
    }


PROCESSOR = register(
    Processor(
        kind="normalize",
        run=run,
        options=OPTIONS,
        description="Normalise loudness to a target (EBU R128 measurement) under a true-peak ceiling, then encode.",
    )
)
