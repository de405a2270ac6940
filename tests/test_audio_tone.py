"""The standard-library tone (`tasks_app.audio.tone`): what it says it wrote is what a probe finds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tasks_app.audio.decode import Decoder
from tasks_app.audio.probe import probe
from tasks_app.audio.tone import write_wav_tone


@pytest.mark.parametrize(("seconds", "channels", "rate"), [(2.0, 2, 44100), (1.25, 1, 44100), (0.3, 2, 48000)])
def test_the_facts_of_the_tone_are_what_a_probe_finds(tmp_path: Path, seconds: float, channels: int, rate: int):
    path = str(tmp_path / "tone.wav")
    assert write_wav_tone(path, seconds, sample_rate=rate, channels=channels) == probe(path)


def test_the_tone_is_a_steady_sine_at_its_level(tmp_path: Path):
    path = str(tmp_path / "tone.wav")
    write_wav_tone(path, 2.5, freq=440, amplitude_db=-12.0)
    samples = np.concatenate(list(Decoder(path).blocks()), axis=1)
    assert samples.shape == (2, int(2.5 * 44100))
    assert np.array_equal(samples[0], samples[1])
    peak = np.abs(samples).max()
    assert 20 * np.log10(peak) == pytest.approx(-12.0, abs=0.05)
    # 440 cycles a second, seamless where each second's table repeats: the spectrum has one line.
    spectrum = np.abs(np.fft.rfft(samples[0]))
    assert np.argmax(spectrum) * 44100 / samples.shape[1] == pytest.approx(440, abs=1)
    assert np.sort(spectrum)[-3] < spectrum.max() / 1000
