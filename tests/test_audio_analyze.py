"""The analyze processor: result fields, waveform files, silence, clipping, progress and cancelling."""

import itertools
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from tasks_app.audio import progress as progress_module
from tasks_app.audio.errors import Cancelled
from tasks_app.audio.generate import tone, write_audio, write_tone
from tasks_app.audio.progress import REPORT_INTERVAL
from tasks_app.audio.registry import get_processor, validate_options

RATE = 44100


def analyze(path: Path, output_dir: Path, **options: object) -> tuple[dict, list[tuple[float, str]]]:
    calls: list[tuple[float, str]] = []
    result = get_processor("analyze").run(
        str(path), validate_options("analyze", options), lambda f, s: calls.append((f, s)), str(output_dir)
    )
    return result, calls


@pytest.fixture(scope="module")
def speech_like(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tones with silences at 2.0-3.0 s and 6.0-6.3 s and a 50-sample clipped run at 4.0 s."""
    parts = [
        tone(2.0, RATE, 2, 440.0, -6.0),
        np.zeros((2, RATE), dtype=np.float32),
        tone(3.0, RATE, 2, 220.0, -20.0),
        np.zeros((2, int(0.3 * RATE)), dtype=np.float32),
        tone(2.0, RATE, 2, 1000.0, -3.0),
    ]
    signal = np.concatenate(parts, axis=1).copy()
    clip_at = 4 * RATE
    signal[:, clip_at : clip_at + 50] = 1.0
    path = tmp_path_factory.mktemp("analyze") / "speech_like.wav"
    write_audio(str(path), signal, RATE, "wav")
    return path


@pytest.fixture(scope="module")
def analysed(speech_like: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, list, Path]:
    out = tmp_path_factory.mktemp("analyze-out")
    result, calls = analyze(speech_like, out, silence_min_duration=0.25)
    return result, calls, out


def test_result_has_format_facts_and_exact_duration(analysed: tuple[dict, list, Path]) -> None:
    result = analysed[0]
    assert result["format"]["container"] == "wav"
    assert result["format"]["codec"] == "pcm_s16le"
    assert result["format"]["sample_rate"] == RATE
    assert result["format"]["channels"] == 2
    assert result["format"]["bit_rate"] == RATE * 2 * 16
    assert abs(result["format"]["duration"] - 8.3) <= 0.01
    json.dumps(result, allow_nan=False)


def test_result_has_loudness_and_per_channel_levels(analysed: tuple[dict, list, Path]) -> None:
    loudness = analysed[0]["loudness"]
    for key in ("integrated_lufs", "loudness_range_lu", "true_peak_dbtp", "sample_peak_dbfs", "rms_dbfs"):
        assert isinstance(loudness[key], float), key
    assert loudness["sample_peak_dbfs"] == pytest.approx(0.0, abs=0.01)
    assert loudness["true_peak_dbtp"] >= loudness["sample_peak_dbfs"]
    channels = analysed[0]["channels"]
    assert [c["channel"] for c in channels] == [0, 1]
    assert all(c["rms_dbfs"] < c["sample_peak_dbfs"] for c in channels)


def test_waveform_json_follows_the_audiowaveform_format(analysed: tuple[dict, list, Path]) -> None:
    result, _, out = analysed
    assert result["artifacts"]["waveform_json"] == "waveform.json"
    doc = json.loads((out / "waveform.json").read_text())
    assert doc["version"] == 2
    assert doc["channels"] == 1
    assert doc["sample_rate"] == RATE
    assert doc["bits"] == 16
    assert 0 < doc["length"] <= 4000
    assert len(doc["data"]) == 2 * doc["length"]
    assert doc["length"] == math.ceil(8.3 * RATE / doc["samples_per_pixel"])
    mins, maxs = doc["data"][0::2], doc["data"][1::2]
    assert all(lo <= hi for lo, hi in zip(mins, maxs))
    assert max(maxs) == 32767 and min(mins) < -16000
    silent_pixel = int(2.5 * RATE / doc["samples_per_pixel"])
    assert (mins[silent_pixel], maxs[silent_pixel]) == (0, 0)


def test_waveform_png_is_rendered(analysed: tuple[dict, list, Path]) -> None:
    result, _, out = analysed
    with Image.open(out / result["artifacts"]["waveform_png"]) as image:
        assert image.format == "PNG"
        assert image.size == (1800, 280)
        assert len(image.getcolors(maxcolors=100000) or []) > 2


def test_explicit_samples_per_pixel_is_used(speech_like: Path, tmp_path: Path) -> None:
    result, _ = analyze(speech_like, tmp_path, samples_per_pixel=441)
    assert result["waveform"]["samples_per_pixel"] == 441
    assert result["waveform"]["length"] == math.ceil(round(8.3 * RATE) / 441)


def test_silence_segments_are_found(analysed: tuple[dict, list, Path]) -> None:
    silence = analysed[0]["silence"]
    segments = silence["segments"]
    assert len(segments) == 2
    assert segments[0]["start"] == pytest.approx(2.0, abs=0.02)
    assert segments[0]["end"] == pytest.approx(3.0, abs=0.02)
    assert segments[1]["start"] == pytest.approx(6.0, abs=0.02)
    assert segments[1]["end"] == pytest.approx(6.3, abs=0.02)
    assert silence["total_duration"] == pytest.approx(1.3, abs=0.04)


def test_silence_shorter_than_the_minimum_is_ignored(speech_like: Path, tmp_path: Path) -> None:
    result, _ = analyze(speech_like, tmp_path, silence_min_duration=0.5)
    assert [round(s["start"], 1) for s in result["silence"]["segments"]] == [2.0]


def test_clipped_run_is_reported(analysed: tuple[dict, list, Path]) -> None:
    clipping = analysed[0]["clipping"]
    assert clipping["run_count"] == 1
    assert clipping["clipped_samples"] == 50
    assert clipping["runs"] == [{"start": pytest.approx(4.0, abs=1e-4), "length": 50}]


def test_clipped_run_across_block_boundary_is_one_run(tmp_path: Path) -> None:
    signal = tone(4.0, RATE, 1, 300.0, -10.0).copy()
    signal[0, 65536 - 10 : 65536 + 10] = -1.0
    path = tmp_path / "clip.wav"
    write_audio(str(path), signal, RATE, "wav")
    result, _ = analyze(path, tmp_path)
    assert result["clipping"]["run_count"] == 1
    assert result["clipping"]["runs"][0]["length"] == 20


def test_progress_is_monotonic_and_reaches_one(analysed: tuple[dict, list, Path]) -> None:
    calls = analysed[1]
    fractions = [f for f, _ in calls]
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0
    assert all(0.0 <= f <= 1.0 for f in fractions)
    assert {s for _, s in calls} == {"analyze"}


@pytest.fixture(scope="module")
def long_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("long") / "long.wav"
    write_tone(str(path), 300.0, "wav", sample_rate=RATE, channels=2, freq=440.0)
    return path


def test_progress_is_reported_for_every_block_of_a_long_file(
    long_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reports wait only on the clock, and each block of audio is a chance to report.

    With a clock that moves a whole REPORT_INTERVAL at every read, every block reports, so the
    steps between reports are the pipeline's own granularity: a sliver of the file, whatever the
    machine's speed (the pace in seconds is measured in bench/, not here).
    """
    ticks = itertools.count(step=REPORT_INTERVAL)
    monkeypatch.setattr(progress_module, "time", SimpleNamespace(monotonic=lambda: next(ticks)))
    fractions: list[float] = []
    options = validate_options("analyze", {})
    get_processor("analyze").run(str(long_file), options, lambda f, s: fractions.append(f), str(tmp_path))
    steps = [b - a for a, b in zip(fractions, fractions[1:])]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    # 300 s of audio: a report at least every 2 % of the file (6 s of audio; about 1 % today).
    assert len(fractions) >= 50
    assert max(steps) < 0.02


def test_reports_are_spaced_by_the_report_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    """Between two reports at least REPORT_INTERVAL passes; the end of a pass is always reported."""
    now = [0.0]
    monkeypatch.setattr(progress_module, "time", SimpleNamespace(monotonic=lambda: now[0]))
    calls: list[float] = []
    tracker = progress_module.Progress(lambda f, s: calls.append(f), "analyze", total=100)
    now[0] = REPORT_INTERVAL
    tracker.advance(10)
    tracker.advance(10)  # same instant: held back
    now[0] += REPORT_INTERVAL / 2
    tracker.advance(10)  # half an interval later: still held back
    now[0] += REPORT_INTERVAL / 2
    tracker.advance(10)
    tracker.finish()
    assert calls == [0.1, 0.4, 1.0]


def test_cancelled_from_the_callback_stops_processing(long_file: Path, tmp_path: Path) -> None:
    seen: list[float] = []

    def cancel_after_start(fraction: float, stage: str) -> None:
        seen.append(fraction)
        if fraction > 0:
            raise Cancelled()

    with pytest.raises(Cancelled):
        get_processor("analyze").run(str(long_file), validate_options("analyze", {}), cancel_after_start, str(tmp_path))
    assert 0 < seen[-1] < 0.9
    assert not (tmp_path / "waveform.json").exists()


@pytest.mark.parametrize("fmt", ["mp3", "flac", "opus", "m4a"])
def test_compressed_formats_are_analysed(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"tone.{fmt}"
    write_tone(str(path), 3.0, fmt, freq=997.0, amplitude_db=-12.0)
    result, _ = analyze(path, tmp_path)
    assert abs(result["format"]["duration"] - 3.0) <= 0.05
    # RMS rather than peak: lossy codecs overshoot at the tone's abrupt onset.
    assert result["loudness"]["rms_dbfs"] == pytest.approx(-15.01, abs=0.3)
    assert (tmp_path / "waveform.json").exists()


def test_a_waveform_finer_than_the_point_limit_is_coarsened_with_a_warning(
    speech_like: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks_app.audio.processors import analyze as analyze_module

    monkeypatch.setattr(analyze_module, "MAX_WAVEFORM_POINTS", 1000)
    result, _ = analyze(speech_like, tmp_path, samples_per_pixel=1)
    spp = result["waveform"]["samples_per_pixel"]
    assert spp == math.ceil(round(8.3 * RATE) / 1000)
    assert result["waveform"]["length"] <= 1000
    assert [w["code"] for w in result["warnings"]] == ["waveform_coarsened"]
    doc = json.loads((tmp_path / "waveform.json").read_text())
    assert doc["length"] == result["waveform"]["length"]
