"""The normalize processor and its true-peak limiter: loudness on target, peaks under the ceiling."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.signal

from tasks_app.audio.errors import Cancelled
from tasks_app.audio.generate import write_audio
from tasks_app.audio.limiter import TruePeakLimiter
from tasks_app.audio.loudness import LoudnessMeter, TruePeakMeter
from tasks_app.audio.probe import probe
from tasks_app.audio.registry import get_processor, validate_options

RATE = 44100
SECONDS = 6.0
CODECS = {"mp3": "mp3", "opus": "opus", "m4a": "aac", "flac": "flac", "wav": "pcm_s16le"}


def programme(seconds: float, lufs: float, seed: int) -> np.ndarray:
    """Music-like stereo signal: darkened noise with a slow level swell, scaled to `lufs`."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    b, a = scipy.signal.butter(1, 2000 / (RATE / 2))
    signal = scipy.signal.lfilter(b, a, rng.standard_normal((2, n)))
    signal *= 0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * np.arange(n) / RATE)
    meter = LoudnessMeter(RATE, 2)
    meter.process(signal.astype(np.float32))
    return (signal * 10 ** ((lufs - meter.result()["integrated_lufs"]) / 20)).astype(np.float32)


def signals() -> dict[str, np.ndarray]:
    quiet = programme(SECONDS, -35.0, 1)
    loud = np.clip(programme(SECONDS, -8.0, 2), -1.0, 1.0)
    peaky = programme(SECONDS, -30.0, 3)
    rng = np.random.default_rng(4)
    for start in rng.choice(peaky.shape[1] - 10, 10, replace=False):
        peaky[:, start : start + 3] = 0.95 * rng.choice([-1.0, 1.0])
    return {"quiet": quiet, "loud": loud, "peaky": peaky}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("normalize-in")
    paths = {}
    for name, signal in signals().items():
        paths[name] = folder / f"{name}.wav"
        write_audio(str(paths[name]), signal, RATE, "wav")
    return paths


def normalize(path: Path, out: Path, **options: object) -> tuple[dict, list[tuple[float, str]]]:
    calls: list[tuple[float, str]] = []
    result = get_processor("normalize").run(
        str(path), validate_options("normalize", options), lambda f, s: calls.append((f, s)), str(out)
    )
    return result, calls


def reanalyse(path: Path, out: Path) -> dict:
    return get_processor("analyze").run(str(path), {}, lambda f, s: None, str(out))


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("quiet", "mp3"),
        ("loud", "mp3"),
        ("peaky", "mp3"),
        ("peaky", "opus"),
        ("quiet", "m4a"),
        ("peaky", "flac"),
        ("loud", "wav"),
    ],
)
def test_output_is_on_target_under_the_ceiling_and_as_long_as_the_input(
    inputs: dict[str, Path], tmp_path: Path, name: str, fmt: str
) -> None:
    result, calls = normalize(inputs[name], tmp_path, output_format=fmt)
    output = tmp_path / result["artifacts"]["output"]
    assert output.name == f"output.{fmt}"
    info = probe(str(output))
    assert info.codec == CODECS[fmt]
    measured = reanalyse(output, tmp_path)
    assert measured["loudness"]["integrated_lufs"] == pytest.approx(-16.0, abs=0.5)
    assert measured["loudness"]["true_peak_dbtp"] <= -1.0
    assert abs(measured["format"]["duration"] - SECONDS) <= 0.05
    # The reported output figures are the re-measured encoded file, not the pre-encoding samples.
    assert result["output"]["integrated_lufs"] == pytest.approx(measured["loudness"]["integrated_lufs"], abs=0.05)
    assert result["output"]["true_peak_dbtp"] == pytest.approx(measured["loudness"]["true_peak_dbtp"], abs=0.05)
    fractions = [f for f, _ in calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_input_measurements_and_gain_are_reported(inputs: dict[str, Path], tmp_path: Path) -> None:
    result, calls = normalize(inputs["quiet"], tmp_path, output_format="flac", target_lufs=-20.0)
    assert result["input"]["integrated_lufs"] == pytest.approx(-35.0, abs=0.1)
    assert result["gain_db"] == pytest.approx(15.0, abs=0.2)
    assert result["output"]["integrated_lufs"] == pytest.approx(-20.0, abs=0.2)
    assert result["limiter"]["max_reduction_db"] == 0.0
    assert {s for _, s in calls} >= {"measure", "normalize", "verify"}
    assert json.loads(json.dumps(result, allow_nan=False)) == result


def test_peaky_input_is_limited_not_turned_down(inputs: dict[str, Path], tmp_path: Path) -> None:
    result, _ = normalize(inputs["peaky"], tmp_path, output_format="wav", true_peak_ceiling=-2.0)
    assert result["limiter"]["max_reduction_db"] > 6.0
    assert result["limiter"]["limited_fraction"] < 0.3
    assert result["output"]["true_peak_dbtp"] <= -2.0
    assert result["output"]["integrated_lufs"] == pytest.approx(-16.0, abs=0.5)


def test_bit_rate_option_sets_the_encoder_bit_rate(inputs: dict[str, Path], tmp_path: Path) -> None:
    result, _ = normalize(inputs["loud"], tmp_path, output_format="mp3", bit_rate=96)
    assert result["output"]["bit_rate"] == 96000
    assert probe(str(tmp_path / "output.mp3")).bit_rate == 96000


def test_cancelled_during_normalize_propagates(inputs: dict[str, Path], tmp_path: Path) -> None:
    def cancel(fraction: float, stage: str) -> None:
        if stage == "normalize":
            raise Cancelled()

    with pytest.raises(Cancelled):
        get_processor("normalize").run(str(inputs["loud"]), validate_options("normalize", {}), cancel, str(tmp_path))


def _limit(signal: np.ndarray, ceiling_db: float, block: int) -> tuple[np.ndarray, TruePeakLimiter]:
    limiter = TruePeakLimiter(RATE, signal.shape[0], ceiling_db)
    parts = [limiter.process(signal[:, i : i + block]) for i in range(0, signal.shape[1], block)]
    parts.append(limiter.flush())
    return np.concatenate(parts, axis=1), limiter


@pytest.mark.parametrize("block", [65536, 777])
def test_limiter_keeps_true_peak_under_ceiling_and_length(block: int) -> None:
    signal = programme(3.0, -10.0, 5) * 2.0
    limited, _ = _limit(signal, -1.0, block)
    assert limited.shape == signal.shape
    meter = TruePeakMeter(RATE, 2)
    meter.process(np.ascontiguousarray(limited))
    assert 20 * math.log10(float(meter.true_peak.max())) <= -1.0 + 1e-3


def test_limiter_leaves_quiet_audio_untouched() -> None:
    signal = programme(2.0, -30.0, 6)
    limited, limiter = _limit(signal, -1.0, 4096)
    np.testing.assert_array_equal(limited, signal)
    assert limiter.min_gain == 1.0


def test_limiter_gain_changes_smoothly_around_a_click() -> None:
    signal = np.full((1, RATE), 0.1, dtype=np.float32)
    signal[0, RATE // 2] = 1.0
    limited, _ = _limit(signal, -6.0, 4096)
    gain = limited[0] / signal[0]
    assert gain.min() < 0.6
    # A 5 ms attack ramp: no step from one sample to the next bigger than a few percent.
    assert np.abs(np.diff(gain)).max() < 0.02
    assert gain[RATE // 2 - int(0.01 * RATE)] == pytest.approx(1.0)
    assert gain[-1] == pytest.approx(1.0, abs=1e-3)


def test_limiter_catches_a_peak_in_the_very_first_samples() -> None:
    # A full-scale low tone from sample 0: its first peak lies inside the look-ahead window.
    t = np.arange(int(0.1 * RATE)) / RATE
    signal = np.vstack([np.sin(2 * np.pi * 140 * t)] * 2).astype(np.float32)
    limited, _ = _limit(signal, -6.0, 4096)
    meter = TruePeakMeter(RATE, 2)
    meter.process(np.ascontiguousarray(limited))
    assert 20 * math.log10(float(meter.true_peak.max())) <= -6.0 + 1e-3
