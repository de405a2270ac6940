"""Odd inputs against ffmpeg: lossless outputs under the ceiling as ffmpeg reads it, lengths as ffmpeg decodes.

Needs the `ffmpeg` program (`apt-get install ffmpeg`); without it the tests skip, unless
REQUIRE_SERVICES=1 (CI), where a missing ffmpeg fails them so the comparison cannot silently stop.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tasks_app.audio.registry import get_processor, validate_options

from .test_audio_corpus import (
    CLICK,
    DYNAMIC,
    RATE,
    adts_aac,
    damaged_mp3,
    music_samples,
    noise,
    vbr_mp3_without_xing,
    wav_bytes,
)

SUMMARY = re.compile(r"Summary:.*?True peak:\s+Peak:\s+(?P<tp>-?[\d.]+|-inf) dBFS", re.DOTALL)


def ffmpeg() -> str:
    """Path of ffmpeg; skip without it, or fail when REQUIRE_SERVICES=1."""
    path = shutil.which("ffmpeg")
    if path is None:
        message = "ffmpeg is not installed (apt-get install ffmpeg); the reference comparison needs it"
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


def ffmpeg_true_peak(path: Path) -> float:
    """True peak in dBTP as ffmpeg's `ebur128=peak=true` reads it."""
    run = subprocess.run(
        [ffmpeg(), "-nostats", "-hide_banner", "-i", str(path), "-af", "ebur128=peak=true", "-f", "null", "-"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    match = SUMMARY.search(run.stderr)
    assert run.returncode == 0 and match, run.stderr[-2000:]
    return float(match["tp"])


def ffmpeg_decoded_seconds(path: Path, rate: int) -> float:
    """Length of what ffmpeg decodes from `path`, from its sample count."""
    run = subprocess.run(
        [ffmpeg(), "-v", "quiet", "-i", str(path), "-ac", "1", "-f", "f32le", "-"],
        capture_output=True,
        timeout=120,
        check=True,
    )
    return len(run.stdout) / 4 / rate


MATERIAL: dict[str, tuple[Callable[[], bytes], dict[str, float]]] = {
    # Limited hard (target -9 LUFS): the case where ffmpeg read 0.35 dB over the ceiling.
    "music 44.1 kHz": (lambda: wav_bytes(music_samples(6.0), RATE), {"target_lufs": -9.0}),
    "music 96 kHz": (lambda: wav_bytes(music_samples(3.0, 96000, 6.0), 96000), {"target_lufs": -9.0}),
    "noise 48 kHz": (lambda: wav_bytes(noise(4.0, 48000), 48000), {"target_lufs": -8.0}),
    "very dynamic": (lambda: wav_bytes(DYNAMIC, RATE), {"target_lufs": -16.0, "true_peak_ceiling": -2.0}),
    "lone click": (lambda: wav_bytes(CLICK, RATE), {}),
}


@pytest.mark.parametrize("fmt", ["flac", "wav"])
@pytest.mark.parametrize("name", list(MATERIAL))
def test_lossless_output_is_under_the_ceiling_as_ffmpeg_reads_it(name: str, fmt: str, tmp_path: Path) -> None:
    ffmpeg()
    build, options = MATERIAL[name]
    source = tmp_path / "in.wav"
    source.write_bytes(build())
    checked = validate_options("normalize", {**options, "output_format": fmt})
    result = get_processor("normalize").run(str(source), checked, lambda f, s: None, str(tmp_path))
    ceiling = result["true_peak_ceiling"]
    assert result["output"]["true_peak_dbtp"] <= ceiling
    assert ffmpeg_true_peak(tmp_path / result["artifacts"]["output"]) <= ceiling, result


@pytest.mark.parametrize(
    "build",
    [adts_aac, vbr_mp3_without_xing, damaged_mp3],
    ids=["adts aac", "vbr mp3 without xing", "mp3 with 20 KB of damage"],
)
def test_streams_with_lying_or_no_headers_decode_to_ffmpegs_length(
    build: Callable[[Path], Path], tmp_path: Path
) -> None:
    ffmpeg()
    path = build(tmp_path)
    result = get_processor("analyze").run(str(path), validate_options("analyze", {}), lambda f, s: None, str(tmp_path))
    rate = result["format"]["sample_rate"]
    assert result["format"]["duration"] == pytest.approx(ffmpeg_decoded_seconds(path, rate), abs=0.1)
    assert np.isfinite(result["loudness"]["integrated_lufs"])
