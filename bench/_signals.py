"""Synthetic, deterministic test material shared by the benchmarks and the loudness reference test.

Everything is generated in chunks with carried-over state, so a two-hour file costs no more
memory than a ten-second one and the chunk size never changes the result.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.signal

from tasks_app.audio.encode import AudioWriter

CHUNK_SECONDS = 10.0
# Recordings pass an anti-alias filter before they are sampled; content between 20 kHz and Nyquist
# would be unrealistic, and it is exactly where BS.1770's true-peak interpolator (which rolls off
# above about 19 kHz at 44.1 kHz) and ffmpeg's 192 kHz resampler legitimately disagree.
BAND_LIMIT_HZ = 20000.0
# Paul Kellet's 3-pole approximation of a -3 dB/octave (pink) filter, accurate within 0.05 dB
# from 10 Hz to Nyquist at 44.1 kHz.
PINK_B = np.array([0.049922035, -0.095993537, 0.050612699, -0.004408786])
PINK_A = np.array([1.0, -2.494956002, 2.017265875, -0.522189400])
# One cycle of a band-limited, sawtooth-like tone (harmonics 1..8 at 1/k): cheap to play at any pitch.
WAVETABLE_SIZE = 4096
_PHASE = np.arange(WAVETABLE_SIZE) / WAVETABLE_SIZE
WAVETABLE = sum(np.sin(2 * np.pi * k * _PHASE) / k for k in range(1, 9)).astype(np.float32)
WAVETABLE /= np.abs(WAVETABLE).max()
# Minor and major triads over a slowly walking root (semitones from A2 = 110 Hz).
CHORDS = ((0, 3, 7), (5, 9, 12), (7, 10, 14), (3, 7, 10), (8, 12, 15), (10, 14, 17))
BEAT_SECONDS = 0.5  # 120 bpm
# Leaves the loudest moments of the mix (kick + snare + chord peaks) about 1 dB under full scale.
MIX_GAIN = 0.65


class LowPass:
    """Stateful steep low-pass at BAND_LIMIT_HZ (or 0.9 x Nyquist), like a converter's anti-alias filter."""

    def __init__(self, rate: int, channels: int) -> None:
        cutoff = min(BAND_LIMIT_HZ, 0.45 * rate)
        self.sos = scipy.signal.ellip(10, 0.05, 90, cutoff / (rate / 2), output="sos")
        self.zi = np.zeros((self.sos.shape[0], channels, 2))

    def process(self, block: np.ndarray) -> np.ndarray:
        """Filter the next (channels, n) block, continuing from the previous one."""
        out, self.zi = scipy.signal.sosfilt(self.sos, block, axis=1, zi=self.zi)
        return out.astype(np.float32)


class PinkNoise:
    """Stateful band-limited pink-noise source: successive calls continue one seamless signal."""

    def __init__(self, rate: int, channels: int, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.zi = np.zeros((channels, PINK_A.size - 1))
        self.lowpass = LowPass(rate, channels)

    def next(self, n: int) -> np.ndarray:
        """The next `n` samples, shaped (channels, n), RMS about 0.1 (-20 dBFS)."""
        white = self.rng.standard_normal((self.zi.shape[0], n))
        pink, self.zi = scipy.signal.lfilter(PINK_B, PINK_A, white, axis=1, zi=self.zi)
        return self.lowpass.process(pink * 0.9)


@dataclass(frozen=True)
class Note:
    """One wavetable voice: start/length in samples, pitch, level and stereo gains."""

    start: int
    length: int
    freq: float
    level: float
    left: float
    right: float


def _score(seconds: float, rate: int, seed: int) -> list[Note]:
    """A chord progression with a bass line and a melody, with some human timing and velocity."""
    rng = np.random.default_rng(seed)
    notes: list[Note] = []
    beats = int(seconds / BEAT_SECONDS)
    for beat in range(0, beats, 2):
        chord = CHORDS[(beat // 8) % len(CHORDS)]
        start = int((beat * BEAT_SECONDS + rng.uniform(0, 0.01)) * rate)
        for i, semitone in enumerate(chord):
            pan = 0.5 + 0.35 * (i - 1)
            notes.append(
                Note(
                    start,
                    int(rng.uniform(0.9, 1.6) * rate),
                    220 * 2 ** (semitone / 12),
                    rng.uniform(0.10, 0.16),
                    math.cos(pan * math.pi / 2),
                    math.sin(pan * math.pi / 2),
                )
            )
        notes.append(Note(start, int(0.9 * rate), 55 * 2 ** (chord[0] / 12), 0.3, 0.7, 0.7))
        for step in range(4):
            if rng.random() < 0.7:
                semitone = chord[int(rng.integers(3))] + 12 * int(rng.integers(1, 3))
                at = start + int(step * BEAT_SECONDS / 2 * rate)
                notes.append(
                    Note(at, int(0.22 * rate), 220 * 2 ** (semitone / 12), rng.uniform(0.05, 0.12), 0.55, 0.83)
                )
    notes.sort(key=lambda note: note.start)
    return notes


def _envelope(t: np.ndarray, length: int, rate: int) -> np.ndarray:
    """Attack 8 ms, decay to 60 % with a 0.3 s time constant, release over the last 80 ms."""
    attack, release = 0.008 * rate, 0.08 * rate
    env = 0.6 + 0.4 * np.exp(-t / (0.3 * rate))
    env *= np.minimum(1.0, t / attack)
    env *= np.clip((length - t) / release, 0.0, 1.0)
    return env.astype(np.float32)


def _one_shot(kind: str, rate: int, rng: np.random.Generator) -> np.ndarray:
    """A mono drum sample: kick (pitch-dropping sine), snare (tone + noise) or hi-hat (bright noise)."""
    if kind == "kick":
        t = np.arange(int(0.3 * rate)) / rate
        phase = 2 * np.pi * np.cumsum(50 + 90 * np.exp(-t / 0.03)) / rate
        return (0.9 * np.sin(phase) * np.exp(-t / 0.09)).astype(np.float32)
    if kind == "snare":
        t = np.arange(int(0.25 * rate)) / rate
        body = 0.4 * np.sin(2 * np.pi * 185 * t) * np.exp(-t / 0.04)
        return (body + 0.35 * rng.standard_normal(t.size) * np.exp(-t / 0.07)).astype(np.float32)
    t = np.arange(int(0.06 * rate)) / rate
    sos = scipy.signal.butter(2, min(7000 / (rate / 2), 0.9), "highpass", output="sos")
    return (0.25 * scipy.signal.sosfilt(sos, rng.standard_normal(t.size)) * np.exp(-t / 0.015)).astype(np.float32)


def music(seconds: float, rate: int = 44100, channels: int = 2, seed: int = 1) -> Iterator[np.ndarray]:
    """Yield music-like float32 (channels, n) chunks: chords, bass, melody, drums and a pink-noise bed.

    Sections alternate between full, quieter and sparse every 24 beats so loudness range and
    gating have real work. The mix stays linear (saturation would alias above the band limit).
    """
    total = int(round(seconds * rate))
    rng = np.random.default_rng(seed + 1)
    notes = _score(seconds, rate, seed)
    starts = [note.start for note in notes]
    longest = max((note.length for note in notes), default=0)
    drums = {kind: _one_shot(kind, rate, rng) for kind in ("kick", "snare", "hat")}
    bed = PinkNoise(rate, 2, seed + 2)
    lowpass = LowPass(rate, 2)
    section_gains = np.array([1.0, 0.55, 1.0, 0.3, 0.8])
    section_samples = int(24 * BEAT_SECONDS * rate)
    step = int(CHUNK_SECONDS * rate)
    for s0 in range(0, total, step):
        s1 = min(total, s0 + step)
        n = s1 - s0
        out = np.zeros((2, n), dtype=np.float32)
        first = bisect.bisect_left(starts, s0 - longest)
        for note in notes[first : bisect.bisect_left(starts, s1)]:
            i0, i1 = max(s0, note.start), min(s1, note.start + note.length)
            if i1 <= i0:
                continue
            t = np.arange(i0 - note.start, i1 - note.start, dtype=np.float64)
            index = (np.mod(note.freq * t / rate, 1.0) * WAVETABLE_SIZE).astype(np.intp)
            voice = WAVETABLE[index] * _envelope(t, note.length, rate) * np.float32(note.level)
            out[0, i0 - s0 : i1 - s0] += note.left * voice
            out[1, i0 - s0 : i1 - s0] += note.right * voice
        # Drums: kick on 1 and 3, snare on 2 and 4, hi-hat on every eighth.
        eighth = int(BEAT_SECONDS / 2 * rate)
        for hit in range(max(0, (s0 - rate) // eighth), s1 // eighth + 1):
            kinds = ["hat"] + (["kick"] if hit % 4 == 0 else ["snare"] if hit % 4 == 2 else [])
            for kind in kinds:
                sample = drums[kind]
                at = hit * eighth
                i0, i1 = max(s0, at), min(s1, at + sample.size)
                if i1 > i0:
                    pan = (0.6, 0.8) if kind == "hat" else (0.75, 0.75)
                    out[0, i0 - s0 : i1 - s0] += pan[0] * sample[i0 - at : i1 - at]
                    out[1, i0 - s0 : i1 - s0] += pan[1] * sample[i0 - at : i1 - at]
        out += 0.08 * bed.next(n)
        # Section levels, cross-faded over one beat so there are no steps.
        position = np.arange(s0, s1) / section_samples
        index = np.floor(position).astype(np.intp)
        fade = np.clip((position - index) * 24, 0.0, 1.0)
        gains = (
            section_gains[(index - 1) % section_gains.size] * (1 - fade)
            + section_gains[index % section_gains.size] * fade
        )
        out *= gains.astype(np.float32)
        out = lowpass.process(out * np.float32(MIX_GAIN))
        if channels == 1:
            yield out.mean(axis=0, keepdims=True)
        else:
            yield out if channels == 2 else np.repeat(out, channels // 2 + 1, axis=0)[:channels]


def write_chunks(
    path: str, chunks: Iterator[np.ndarray], rate: int, channels: int, fmt: str, bit_rate_kbps: int | None = None
) -> None:
    """Encode generated chunks to `path` with the pipeline's own writer."""
    with AudioWriter(path, fmt, rate, channels, bit_rate_kbps) as writer:
        for chunk in chunks:
            writer.write(chunk)
