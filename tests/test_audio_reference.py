"""Results agree with a trusted reference on real material: ffmpeg's ebur128 filter measures like we do.

`analyze` is compared on speech from espeak-ng (as synthesised, resampled to stereo, and through
MP3), music-like mixes at 44.1 and 96 kHz, pink and white noise, and loud bursts in near-silence
(gating); `normalize` output is measured by ffmpeg to be on target and under the ceiling. Both tools
must be installed (`apt-get install ffmpeg espeak-ng`): without them the tests skip, and with
REQUIRE_SERVICES=1 (as in CI) they fail, so the comparison never silently stops running there.
The service itself never runs ffmpeg.
"""

import re
import shutil
import subprocess
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import scipy.signal

from bench._signals import LowPass, PinkNoise, music, write_chunks
from tasks_app.audio.generate import write_audio
from tasks_app.audio.registry import get_processor, validate_options

pytestmark = pytest.mark.needs_ffmpeg

# ffmpeg prints one decimal, so up to 0.05 of each tolerance is its rounding.
LOUDNESS_TOLERANCE_LU = 0.1
TRUE_PEAK_TOLERANCE_DB = 0.3
# EBU Tech 3342 leaves the rounding of the 10th/95th percentiles open (ffmpeg counts histogram
# bins); on a few seconds of sparse bursts that alone moves LRA by 0.2 LU. A wrong gate or
# percentile would be off by whole LU.
LOUDNESS_RANGE_TOLERANCE_LU = 0.4
SPEECH = (
    "Loudness is measured the same way everywhere, or it is not worth measuring at all. "
    "This recording was made by a speech synthesiser, with pauses between its sentences, so the gate "
    "has real silence to leave out. Seven quick brown foxes jumped over the lazy dog, "
    "and then they ran back again, much faster than before. "
    "Numbers such as forty two and three hundred and sixty five are read out in full."
)
SUMMARY = re.compile(
    r"Summary:.*?I:\s+(?P<i>-?[\d.]+|-inf) LUFS.*?LRA:\s+(?P<lra>[\d.]+) LU"
    r".*?True peak:\s+Peak:\s+(?P<tp>-?[\d.]+|-inf) dBFS",
    re.DOTALL,
)


def require(program: str, package: str) -> str:
    """Path of `program`, failing (not skipping) the test when it is missing."""
    path = shutil.which(program)
    if path is None:
        pytest.fail(f"{program} is not installed; the reference test needs it: apt-get install {package}")
    return path


def ffmpeg_ebur128(path: Path) -> dict[str, float]:
    """Integrated loudness, loudness range and true peak from ffmpeg's ebur128 summary."""
    ffmpeg = require("ffmpeg", "ffmpeg")
    run = subprocess.run(
        [ffmpeg, "-nostats", "-hide_banner", "-i", str(path), "-af", "ebur128=peak=true", "-f", "null", "-"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = SUMMARY.search(run.stderr)
    assert run.returncode == 0 and match, f"ffmpeg failed on {path.name}:\n{run.stderr[-2000:]}"
    return {key: float(value) for key, value in match.groupdict().items()}


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, int]:
    """About 20 s of synthesised English speech as (1, n) float32 samples and their rate."""
    espeak = require("espeak-ng", "espeak-ng")
    path = tmp_path_factory.mktemp("speech") / "espeak.wav"
    subprocess.run([espeak, "-w", str(path), SPEECH], check=True, capture_output=True, timeout=60)
    with wave.open(str(path)) as wav:
        rate = wav.getframerate()
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    return (data.astype(np.float32) / 32768)[None, :], rate


def speech_as_synthesised(folder: Path, speech: tuple[np.ndarray, int]) -> Path:
    """espeak-ng's own output: 22.05 kHz mono 16-bit."""
    samples, rate = speech
    write_audio(str(folder / "speech.wav"), samples, rate, "wav")
    return folder / "speech.wav"


def speech_stereo(rate: int, fmt: str) -> Callable[[Path, tuple[np.ndarray, int]], Path]:
    """Speech resampled to `rate`, the right channel 4 dB quieter and 5 ms late, encoded as `fmt`."""

    def build(folder: Path, speech: tuple[np.ndarray, int]) -> Path:
        samples, source_rate = speech
        mono = scipy.signal.resample_poly(samples[0], rate, source_rate)
        delay = int(0.005 * rate)
        right = np.concatenate([np.zeros(delay), mono[:-delay]]) * 10 ** (-4 / 20)
        path = folder / f"speech-{rate}.{fmt}"
        write_audio(str(path), np.stack([mono, right]).astype(np.float32), rate, fmt)
        return path

    return build


def music_mix(rate: int, seconds: float, fmt: str) -> Callable[[Path, tuple[np.ndarray, int]], Path]:
    """Chords, bass, melody and drums with section dynamics (see bench/_signals.py)."""

    def build(folder: Path, speech: tuple[np.ndarray, int]) -> Path:
        path = folder / f"music-{rate}.{fmt}"
        write_chunks(str(path), music(seconds, rate), rate, 2, fmt)
        return path

    return build


def pink_noise(folder: Path, speech: tuple[np.ndarray, int]) -> Path:
    """10 s of band-limited stereo pink noise at 48 kHz."""
    path = folder / "pink.wav"
    write_audio(str(path), PinkNoise(48000, 2, seed=3).next(480000), 48000, "wav")
    return path


def white_noise(folder: Path, speech: tuple[np.ndarray, int]) -> Path:
    """10 s of band-limited mono white noise at -20 dBFS RMS, 44.1 kHz."""
    noise = 0.1 * np.random.default_rng(5).standard_normal((1, 441000))
    path = folder / "white.wav"
    write_audio(str(path), LowPass(44100, 1).process(noise), 44100, "wav")
    return path


def bursts_in_silence(folder: Path, speech: tuple[np.ndarray, int]) -> Path:
    """20 s of digital silence and -85 dBFS hiss (both under the -70 LUFS gate) with three loud bursts.

    Only the bursts pass the absolute gate, and the quietest one falls under the relative gate,
    so a meter that gated wrongly (or not at all) would be several LU off.
    """
    rate = 44100
    rng = np.random.default_rng(7)
    signal = 10 ** (-85 / 20) * rng.standard_normal((2, 20 * rate))
    signal[:, : 3 * rate] = 0.0
    mix = np.concatenate(list(music(3.0, rate, seed=11)), axis=1)
    for start, seconds, gain_db in ((4.0, 1.2, 0.0), (9.5, 0.7, -6.0), (15.0, 2.0, -18.0)):
        at, n = int(start * rate), int(seconds * rate)
        fade = np.minimum(1.0, np.minimum(np.arange(n), np.arange(n)[::-1]) / (0.01 * rate))
        signal[:, at : at + n] += mix[:, :n] * fade * 10 ** (gain_db / 20)
    path = folder / "bursts.wav"
    write_audio(str(path), LowPass(rate, 2).process(signal), rate, "wav")
    return path


MATERIAL: dict[str, Callable[[Path, tuple[np.ndarray, int]], Path]] = {
    "speech-22k-mono-wav": speech_as_synthesised,
    "speech-48k-stereo-flac": speech_stereo(48000, "flac"),
    "speech-44k-stereo-mp3": speech_stereo(44100, "mp3"),
    "music-44k-stereo-wav": music_mix(44100, 20.0, "wav"),
    "music-96k-stereo-flac": music_mix(96000, 8.0, "flac"),
    "pink-noise-48k-stereo": pink_noise,
    "white-noise-44k-mono": white_noise,
    "bursts-in-silence-44k": bursts_in_silence,
}


@pytest.mark.parametrize("material", list(MATERIAL))
def test_analyze_agrees_with_ffmpeg_ebur128_on_real_material(
    material: str, speech: tuple[np.ndarray, int], tmp_path: Path
) -> None:
    path = MATERIAL[material](tmp_path, speech)
    reference = ffmpeg_ebur128(path)
    ours = get_processor("analyze").run(str(path), {}, lambda fraction, stage: None, str(tmp_path))["loudness"]
    report = (
        f"{material}: ours I={ours['integrated_lufs']} LRA={ours['loudness_range_lu']} TP={ours['true_peak_dbtp']}; "
        f"ffmpeg I={reference['i']} LRA={reference['lra']} TP={reference['tp']}"
    )
    assert abs(ours["integrated_lufs"] - reference["i"]) <= LOUDNESS_TOLERANCE_LU, report
    assert abs(ours["true_peak_dbtp"] - reference["tp"]) <= TRUE_PEAK_TOLERANCE_DB, report
    assert abs(ours["loudness_range_lu"] - reference["lra"]) <= LOUDNESS_RANGE_TOLERANCE_LU, report


@pytest.mark.parametrize("fmt", ["mp3", "flac"])
def test_normalize_output_measures_on_target_and_under_the_ceiling_in_ffmpeg(
    fmt: str, speech: tuple[np.ndarray, int], tmp_path: Path
) -> None:
    # The mix is at about -19 LUFS with peaks near -2 dBTP: reaching -14 LUFS needs real limiting,
    # which costs loudness that the preview must win back before the one encoding pass.
    path = music_mix(44100, 30.0, "wav")(tmp_path, speech)
    options = {"target_lufs": -14.0, "true_peak_ceiling": -1.0, "output_format": fmt}
    result = get_processor("normalize").run(
        str(path), validate_options("normalize", options), lambda fraction, stage: None, str(tmp_path)
    )
    measured = ffmpeg_ebur128(tmp_path / result["artifacts"]["output"])
    report = f"{fmt}: ffmpeg measures I={measured['i']} TP={measured['tp']}; ours {result['output']}"
    assert result["limiter"]["max_reduction_db"] > 2.0, report
    assert result["attempts"] == 1, report
    assert abs(measured["i"] - -14.0) <= 0.5, report
    assert measured["tp"] <= -1.0 + TRUE_PEAK_TOLERANCE_DB, report
