"""The streaming meters and detectors give the results of a whole-file computation, whatever the blocks."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import scipy.signal

from bench._signals import music
from tasks_app.audio.decode import resampled_peak
from tasks_app.audio.detect import SILENCE_FRAMES_PER_SECOND, SilenceDetector
from tasks_app.audio.generate import write_audio
from tasks_app.audio.loudness import (
    FINE_FRAMES_PER_SECOND,
    MOMENTARY_SUB_BLOCKS,
    SHORT_TERM_SUB_BLOCKS,
    SUB_BLOCKS_PER_SECOND,
    LoudnessMeter,
    _window_powers,
    channel_weights,
    integrated_loudness,
    k_weighting_sos,
    loudness_range,
)
from tasks_app.audio.registry import get_processor

# Block sizes: the decoder's, one that leaves a remainder in every 10 ms frame, and a tiny one.
BLOCKS = (65536, 4409, 97)


def material(seconds: float, rate: int) -> np.ndarray:
    """Music-like stereo with two silent gaps, so gating, LRA and silence runs all have work."""
    signal = np.concatenate(list(music(seconds, rate)), axis=1)
    signal[:, int(5.003 * rate) : int(7.5 * rate)] = 0.0
    signal[:, int(20.25 * rate) : int(21.0 * rate)] *= 1e-4
    return np.ascontiguousarray(signal)


def frame_means(values: np.ndarray, rate: int, per_second: int) -> tuple[np.ndarray, np.ndarray]:
    """Whole-array sums and lengths of complete frames, frame k covering [k*rate//per_second, ...)."""
    count = (values.size * per_second) // rate
    edges = (np.arange(count + 1) * rate) // per_second
    while edges[-1] > values.size:
        edges = edges[:-1]
    sums = np.add.reduceat(values[: edges[-1]], edges[:-1], dtype=np.float64)
    return sums, np.diff(edges).astype(np.float64)


def whole_file_loudness(signal: np.ndarray, rate: int) -> dict[str, float | None]:
    """BS.1770 / Tech 3342 over the whole signal at once: filtered in one call, windows by cumulative sums."""
    filtered = scipy.signal.sosfilt(k_weighting_sos(rate), signal, axis=1)
    power = channel_weights(signal.shape[0]) @ (filtered * filtered)
    sums, lengths = frame_means(power, rate, FINE_FRAMES_PER_SECOND)
    per_sub = FINE_FRAMES_PER_SECOND // SUB_BLOCKS_PER_SECOND
    whole = (sums.size // per_sub) * per_sub
    powers = sums[:whole].reshape(-1, per_sub).sum(axis=1) / lengths[:whole].reshape(-1, per_sub).sum(axis=1)
    width = MOMENTARY_SUB_BLOCKS * per_sub
    energy = np.concatenate([[0.0], np.cumsum(sums)])
    count = np.concatenate([[0.0], np.cumsum(lengths)])
    momentary_max = ((energy[width:] - energy[:-width]) / (count[width:] - count[:-width])).max()
    short_term = _window_powers(powers, SHORT_TERM_SUB_BLOCKS)
    return {
        "integrated_lufs": integrated_loudness(_window_powers(powers, MOMENTARY_SUB_BLOCKS)),
        "loudness_range_lu": loudness_range(short_term),
        "momentary_max_lufs": -0.691 + 10 * math.log10(momentary_max),
        "short_term_max_lufs": -0.691 + 10 * math.log10(short_term.max()),
    }


def whole_file_silence(signal: np.ndarray, rate: int, threshold_db: float, min_duration: float) -> list[dict]:
    """Silent runs of 10 ms means (trailing partial frame included) over the whole signal."""
    squares = (signal * signal).mean(axis=0)
    sums, lengths = frame_means(squares, rate, SILENCE_FRAMES_PER_SECOND)
    means = sums / lengths
    tail = squares.size - int(lengths.sum())
    if tail:
        means = np.append(means, squares[-tail:].sum(dtype=np.float64) / tail)
    silent = np.concatenate([[False], means < 10 ** (threshold_db / 10), [False]])
    edges = np.flatnonzero(np.diff(silent.astype(np.int8)))
    segments = []
    for first, stop in zip(edges[::2].tolist(), edges[1::2].tolist()):
        start_s, end_s = first / SILENCE_FRAMES_PER_SECOND, min(stop / SILENCE_FRAMES_PER_SECOND, squares.size / rate)
        if end_s - start_s >= min_duration - 1e-9:
            segments.append({"start": round(start_s, 3), "end": round(end_s, 3)})
    return segments


@pytest.mark.parametrize("rate", [44100, 22050])
def test_block_wise_loudness_equals_the_whole_file_computation(rate: int) -> None:
    signal = material(40.0, rate)
    expected = whole_file_loudness(signal, rate)
    for block in BLOCKS:
        meter = LoudnessMeter(rate, 2)
        for start in range(0, signal.shape[1], block):
            meter.process(signal[:, start : start + block])
        result = meter.result()
        for key, value in expected.items():
            assert result[key] == pytest.approx(value, abs=0.01), (rate, block, key)


@pytest.mark.parametrize("rate", [44100, 22050])
def test_block_wise_silence_equals_the_whole_file_computation(rate: int) -> None:
    signal = material(30.0, rate)[:, :-77]  # ends inside a 10 ms frame
    expected = whole_file_silence(signal, rate, -50.0, 0.5)
    assert [s["start"] for s in expected] == [5.01, 20.25], "the material has its two gaps"
    squares = (signal * signal).mean(axis=0)
    for block in BLOCKS:
        detector = SilenceDetector(rate, -50.0, 0.5)
        for start in range(0, squares.size, block):
            detector.add_power(squares[start : start + block])
        assert detector.result()["segments"] == expected, (rate, block)


def test_analyze_of_a_file_equals_the_whole_file_computation(tmp_path: Path) -> None:
    rate = 44100
    signal = material(40.0, rate)  # about 27 decoder blocks
    path = tmp_path / "music.flac"
    write_audio(str(path), signal, rate, "flac")
    decoded = np.round(signal * 32768.0).clip(-32768, 32767) / np.float32(32768.0)  # what FLAC keeps

    result = get_processor("analyze").run(str(path), {}, lambda fraction, stage: None, str(tmp_path))

    expected = whole_file_loudness(decoded.astype(np.float32), rate)
    for key, value in expected.items():
        assert result["loudness"][key] == pytest.approx(value, abs=0.01), key
    assert result["silence"]["segments"] == whole_file_silence(decoded.astype(np.float32), rate, -50.0, 0.5)


def test_resampled_peak_streams_the_file_to_the_same_peak(tmp_path: Path) -> None:
    import av

    rate = 44100
    signal = material(20.0, rate)
    path = tmp_path / "music.wav"
    write_audio(str(path), signal, rate, "wav")
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout=stream.codec_context.layout, rate=192000)
        frames = [*container.decode(stream), None]
        outputs = [out.to_ndarray() for frame in frames for out in resampler.resample(frame)]
    whole = float(np.abs(np.concatenate(outputs, axis=1)).max())

    assert resampled_peak(str(path)) == pytest.approx(whole, abs=1e-7)
