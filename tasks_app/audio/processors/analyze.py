"""The "analyze" processor: loudness, peaks, silence, clipping and a waveform in one streaming pass."""

import os
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from tasks_app.audio.decode import Decoder
from tasks_app.audio.detect import ClipDetector, SilenceDetector
from tasks_app.audio.loudness import LoudnessMeter, TruePeakMeter, to_db
from tasks_app.audio.probe import probe
from tasks_app.audio.progress import Progress, ProgressFn
from tasks_app.audio.results import json_safe, warning
from tasks_app.audio.waveform import WaveformBuilder, auto_samples_per_pixel, render_png, write_json

WAVEFORM_JSON = "waveform.json"
WAVEFORM_PNG = "waveform.png"
# A finer waveform than this is drawn at this resolution instead (with a warning): at one sample per
# pixel, three hours of audio would be a 476-million-point document held in the worker's memory.
MAX_WAVEFORM_POINTS = 500_000


def _db(value: float, digits: int = 2) -> float | None:
    db = to_db(value)
    return None if db is None else round(db, digits)


def _power_db(value: float, digits: int = 2) -> float | None:
    db = to_db(value, power=True)
    return None if db is None else round(db, digits)


def run(path: str, options: dict[str, object], progress: ProgressFn, output_dir: str) -> dict[str, object]:
    """Analyse the file at `path`, write waveform.json/png to `output_dir`, return the measurements."""
    info = probe(path)
    decoder = Decoder(path, info)
    rate, channels = decoder.sample_rate, decoder.channels
    spp = options.get("samples_per_pixel") or auto_samples_per_pixel(decoder.expected_samples)
    finest = auto_samples_per_pixel(decoder.expected_samples, MAX_WAVEFORM_POINTS)
    coarsened = spp < finest
    spp = max(spp, finest)
    loudness = LoudnessMeter(rate, channels, info.channel_names)
    peaks = TruePeakMeter(rate, channels)
    silence = SilenceDetector(
        rate, float(options.get("silence_threshold_db", -50.0)), float(options.get("silence_min_duration", 0.5))
    )
    clips = ClipDetector(rate, float(options.get("clip_threshold", 0.999)))
    waveform = WaveformBuilder(rate, int(spp))
    square_sums = np.zeros(channels)
    samples = 0
    tracker = Progress(progress, "analyze", decoder.expected_samples)
    tracker.advance(0)
    # True peak is the costliest meter; it runs on a second core, one block behind at most.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="audio-true-peak") as pool:
        pending: Future[None] | None = None
        for block in decoder.blocks():
            block_peak = np.maximum(block.max(axis=1), -block.min(axis=1))
            if pending is not None:
                pending.result()
            pending = pool.submit(peaks.process, block, block_peak)
            loudness.process(block)
            squares = block * block
            square_sums += squares.sum(axis=1, dtype=np.float64)
            silence.add_power(squares.mean(axis=0) if channels > 1 else squares[0])
            clips.add(block, float(block_peak.max()))
            waveform.add(block)
            samples += block.shape[1]
            tracker.advance(block.shape[1])
        if pending is not None:
            pending.result()

    wave_doc = waveform.data()
    write_json(os.path.join(output_dir, WAVEFORM_JSON), wave_doc)
    render_png(os.path.join(output_dir, WAVEFORM_PNG), wave_doc)
    tracker.finish()

    mean_squares = square_sums / max(samples, 1)
    per_channel = [
        {
            "channel": ch,
            "sample_peak_dbfs": _db(float(peaks.sample_peak[ch])),
            "true_peak_dbtp": _db(float(peaks.true_peak[ch])),
            "rms_dbfs": _power_db(float(mean_squares[ch])),
        }
        for ch in range(channels)
    ]
    return json_safe(
        {
            "format": {
                "container": info.format,
                "codec": info.codec,
                "bit_rate": info.bit_rate,
                "sample_rate": rate,
                "channels": channels,
                "layout": info.layout,
                "duration": round(samples / rate, 6),
                "samples": samples,
                "decode_errors": decoder.decode_errors,
                "size": info.size,
            },
            "loudness": {
                **loudness.result(),
                "true_peak_dbtp": _db(float(peaks.true_peak.max())),
                "sample_peak_dbfs": _db(float(peaks.sample_peak.max())),
                "rms_dbfs": _power_db(float(mean_squares.mean())),
            },
            "channels": per_channel,
            "silence": silence.result(),
            "clipping": clips.result(),
            "waveform": {
                "samples_per_pixel": wave_doc["samples_per_pixel"],
                "length": wave_doc["length"],
                "bits": wave_doc["bits"],
            },
            "warnings": decoder.warnings() + _waveform_warnings(coarsened, int(spp)),
            "artifacts": {"waveform_json": WAVEFORM_JSON, "waveform_png": WAVEFORM_PNG},
        }
    )


def _waveform_warnings(coarsened: bool, spp: int) -> list[dict[str, str]]:
    """A warning when the requested waveform resolution was too fine for the file's length."""
    if not coarsened:
        return []
    return [
        warning(
            "waveform_coarsened",
            f"The requested waveform resolution would exceed {MAX_WAVEFORM_POINTS:,} points; "
            f"it was drawn at {spp} samples per pixel.",
        )
    ]
