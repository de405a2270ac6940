"""The "normalize" processor: two-pass loudness normalisation with a true-peak limiter, then encoding."""

import math
import os
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from tasks_app.audio.decode import Decoder, resampled_peak
from tasks_app.audio.encode import MAX_CHANNELS, AudioWriter, is_lossy
from tasks_app.audio.errors import AudioError, OptionsError
from tasks_app.audio.formats import DEFAULT_BIT_RATE_KBPS, EXTENSIONS
from tasks_app.audio.limiter import FRAME, TruePeakLimiter
from tasks_app.audio.loudness import LoudnessMeter, TruePeakMeter, to_db
from tasks_app.audio.probe import probe
from tasks_app.audio.processors import OUTPUT_FORMATS
from tasks_app.audio.progress import Progress, ProgressFn
from tasks_app.audio.results import json_safe, warning

# The limiter aims this far under the requested ceiling: lossy encoders overshoot on their own
# (Opus most, after resampling to 48 kHz), and a lossless output is also checked the way ffmpeg's
# ebur128 reads it (resampled to 192 kHz), which reads limited peaks up to 0.4 dB higher than the
# BS.1770 interpolator. A verified overshoot still triggers a corrective pass.
CEILING_MARGIN_DB = {"mp3": 1.5, "m4a": 1.5, "opus": 1.5, "flac": 0.5, "wav": 0.5}
# The encoded file is measured again; if it misses the target by more than this, or its true peak
# is over the ceiling, the apply pass runs again with corrected gain and limiter ceiling.
LOUDNESS_TOLERANCE_LU = 0.5
# Passes before accepting a missed loudness target (with a warning); an output over the ceiling is
# never accepted: after MAX_CEILING_ATTEMPTS passes the task fails instead.
MAX_ATTEMPTS = 3
MAX_CEILING_ATTEMPTS = 5
# Integrated loudness needs at least one 400 ms gating block; a shorter input has none to correct.
MIN_SECONDS = 0.4
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
# Gain above this is reported: a lone click or a DC offset can ask for +40 to +90 dB.
LARGE_GAIN_DB = 30.0


def _round_db(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _measure(
    blocks: Iterator[np.ndarray], rate: int, channels: int, names: tuple[str, ...], tracker: Progress
) -> dict[str, float | None]:
    """Integrated loudness, LRA and true peak of a stream; true peak runs on a second core."""
    loudness = LoudnessMeter(rate, channels, names)
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
    loudness = LoudnessMeter(decoder.sample_rate, decoder.channels, decoder.info.channel_names)
    for block in decoder.blocks():
        loudness.process(limiter.process(block * gain))
        tracker.advance(block.shape[1])
    loudness.process(limiter.flush())
    return loudness.result()["integrated_lufs"]


def _apply(decoder: Decoder, gain_db: float, limiter: TruePeakLimiter, writer: AudioWriter, tracker: Progress) -> int:
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
    rate, channels, names = info.sample_rate, info.channels, info.channel_names
    if channels > MAX_CHANNELS[fmt]:
        fits = ", ".join(f for f in OUTPUT_FORMATS if MAX_CHANNELS[f] >= channels)
        raise OptionsError("output_format", f"{fmt} holds at most {MAX_CHANNELS[fmt]} channels; choose {fits}")
    if info.duration < MIN_SECONDS:
        raise AudioError(
            "too_short", f"Loudness is defined over at least {MIN_SECONDS:g} s of audio; this file is shorter."
        )
    decoder = Decoder(path, info)
    total = decoder.expected_samples
    # Each pass gets a share of progress in proportion to its cost; what is left is re-divided
    # whenever previews turn out to be unneeded, so progress stays even in time.
    planned = 1.0 - RETRY_RESERVE
    rest_costs = [PREVIEW_COST * MAX_PREVIEWS, APPLY_COST[fmt], VERIFY_COST[fmt]]
    done = planned * MEASURE_COST / (MEASURE_COST + sum(rest_costs))

    tracker = Progress(progress, "measure", total, 0.0, done)
    tracker.advance(0)
    measured_in = _measure(decoder.blocks(), rate, channels, names, tracker)
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
    start, end = done, planned
    try:
        attempt = 0
        while True:
            middle = start + (end - start) * rest_costs[1] / sum(rest_costs[1:])
            limiter = TruePeakLimiter(rate, channels, limit_db)
            with AudioWriter(output_path, fmt, rate, channels, kbps, layout=info.layout) as writer:
                apply = Progress(progress, "normalize", total, start, middle)
                samples = _apply(decoder, gain_db, limiter, writer, apply)
            output_info = probe(output_path)
            verify = Progress(progress, "verify", total, middle, end)
            # Measured with the input's channel positions: a WAV output cannot store them.
            measured_out = _measure(
                Decoder(output_path, output_info).blocks(), output_info.sample_rate, output_info.channels, names, verify
            )
            integrated_out = measured_out["integrated_lufs"]
            peak_out = measured_out["true_peak_dbtp"]
            if not lossy:
                # ffmpeg's ebur128 reads peaks through its resampler at 192 kHz, up to 0.4 dB above
                # the BS.1770 interpolator on limited material; a lossless output meets both.
                resampled = _round_db(to_db(resampled_peak(output_path)))
                if resampled is not None and (peak_out is None or resampled > peak_out):
                    measured_out["true_peak_dbtp"] = peak_out = resampled
            overshoot = 0.0 if peak_out is None else peak_out - ceiling
            miss = 0.0 if integrated_out is None or integrated_in is None else target - integrated_out
            # Over the ceiling is never accepted: the passes go on until it is met (the limiter
            # aims lower each time). A missed loudness target is accepted after MAX_ATTEMPTS, with a warning.
            if overshoot <= 0 and (abs(miss) <= LOUDNESS_TOLERANCE_LU or attempt + 1 >= MAX_ATTEMPTS):
                break
            if attempt + 1 >= MAX_CEILING_ATTEMPTS:
                raise AudioError(
                    "over_ceiling",
                    f"The encoded output stays {overshoot:.2f} dB over the {ceiling:g} dBTP ceiling; "
                    "try a lossless format.",
                )
            if overshoot > 0:
                limit_db -= overshoot + 0.1 * 2**attempt
            gain_db += miss
            attempt += 1
            # A retry reports within the reserve, halving what is left, so progress never goes back.
            start, end = end, end + (1.0 - end) / 2
    except BaseException:
        # Cancelled or failed: leave no half-written output behind.
        if os.path.exists(output_path):
            os.remove(output_path)
        raise
    tracker = Progress(progress, "normalize", 1, 1.0, 1.0)
    tracker.finish()

    offset = None if integrated_out is None else round(integrated_out - target, 2)
    warnings = decoder.warnings()
    if integrated_in is None:
        warnings.append(
            warning(
                "silent_input", "The input is silent or entirely under the -70 LUFS gate; its level was left as it was."
            )
        )
    elif offset is None or abs(offset) > LOUDNESS_TOLERANCE_LU:
        reason = (
            "the true-peak ceiling left no room (the limiter had to reduce peaks by "
            f"{-20 * math.log10(limiter.min_gain):.1f} dB)"
            if limiter.min_gain < 0.5
            else "the material resisted correction"
        )
        warnings.append(
            warning(
                "target_missed",
                f"The output is {'silent' if offset is None else f'{offset:+.2f} LU from'} the {target:g} LUFS target "
                f"after {attempt + 1} pass(es): {reason}.",
            )
        )
    if gain_db > LARGE_GAIN_DB:
        warnings.append(
            warning(
                "large_gain", f"The input was amplified by {gain_db:.1f} dB; its noise floor was amplified as much."
            )
        )

    return json_safe(
        {
            "input": measured_in,
            "output": {
                **measured_out,
                "format": fmt,
                "codec": output_info.codec,
                # What the encoder really wrote (LAME caps 8 kHz MP3 at 64 kbit/s whatever was asked).
                "bit_rate": output_info.bit_rate if lossy else None,
                "sample_rate": output_info.sample_rate,
                "channels": output_info.channels,
                "size": output_info.size,
            },
            "target_lufs": target,
            "true_peak_ceiling": ceiling,
            "target_offset_lu": offset,
            "ceiling_margin_db": None if peak_out is None else round(ceiling - peak_out, 2),
            "gain_db": round(gain_db, 2),
            "attempts": attempt + 1,
            "limiter": {
                "ceiling_dbtp": round(limit_db, 2),
                "max_reduction_db": round(max(0.0, -20 * math.log10(limiter.min_gain)), 2),
                "limited_fraction": round(min(1.0, limiter.limited_frames * FRAME / max(samples, 1)), 4),
            },
            "warnings": warnings,
            "artifacts": {"output": output_name},
        }
    )
