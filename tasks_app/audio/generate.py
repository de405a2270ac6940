"""Synthesize and write test audio (tones, arbitrary sample arrays) in any supported format.

`python -m tasks_app.audio.generate x.wav --seconds 120` writes a sine tone to try the API with.
"""

import argparse
import math
import os

import numpy as np

from tasks_app.audio.encode import AudioWriter
from tasks_app.audio.formats import EXTENSIONS

CHUNK_SECONDS = 10.0


def write_audio(path: str, samples: np.ndarray, sample_rate: int, fmt: str, bit_rate_kbps: int | None = None) -> None:
    """Write `samples` shaped (channels, n), floats in [-1, 1], to `path` encoded as `fmt`."""
    samples = np.atleast_2d(samples)
    step = int(CHUNK_SECONDS * sample_rate)
    with AudioWriter(path, fmt, sample_rate, samples.shape[0], bit_rate_kbps) as writer:
        for start in range(0, samples.shape[1], step):
            writer.write(samples[:, start : start + step])


def tone(
    seconds: float,
    sample_rate: int = 44100,
    channels: int = 2,
    freq: float = 440.0,
    amplitude_db: float = -12.0,
    start_sample: int = 0,
    phase: float = 0.0,
) -> np.ndarray:
    """Return a (channels, n) float32 sine of peak `amplitude_db` dBFS starting at `start_sample`."""
    n = int(round(seconds * sample_rate))
    t = np.arange(start_sample, start_sample + n, dtype=np.float64)
    # Reduce the phase modulo 2*pi in float64 so long tones stay exact in float32.
    angle = np.mod(2 * np.pi * freq / sample_rate * t + phase, 2 * np.pi)
    wave = (10 ** (amplitude_db / 20) * np.sin(angle)).astype(np.float32)
    return np.broadcast_to(wave, (channels, n))


def write_tone(
    path: str,
    seconds: float,
    fmt: str = "wav",
    sample_rate: int = 44100,
    channels: int = 2,
    freq: float = 440.0,
    amplitude_db: float = -12.0,
    bit_rate_kbps: int | None = None,
) -> None:
    """Write a sine tone of `seconds` to `path`, generated in chunks so long files stay cheap."""
    total = int(round(seconds * sample_rate))
    step = max(1, min(total, int(CHUNK_SECONDS * sample_rate)))
    omega = 2 * np.pi * freq / sample_rate
    amplitude = 10 ** (amplitude_db / 20)
    # sin(phase + w*t) = sin(w*t)*cos(phase) + cos(w*t)*sin(phase): one table serves every chunk.
    base = np.arange(step) * omega
    sin_table = (amplitude * np.sin(base)).astype(np.float32)
    cos_table = (amplitude * np.cos(base)).astype(np.float32)
    with AudioWriter(path, fmt, sample_rate, channels, bit_rate_kbps) as writer:
        for start in range(0, total, step):
            n = min(step, total - start)
            phase = math.fmod(omega * start, 2 * np.pi)
            wave = sin_table[:n] * np.float32(math.cos(phase)) + cos_table[:n] * np.float32(math.sin(phase))
            writer.write(np.broadcast_to(wave, (channels, n)))


def main(argv: list[str] | None = None) -> None:
    """Write a tone to the path given on the command line, in the format its extension names."""
    parser = argparse.ArgumentParser(prog="python -m tasks_app.audio.generate", description=main.__doc__)
    parser.add_argument("path", help="File to write, e.g. x.wav (wav, flac, mp3, opus or m4a).")
    parser.add_argument("--seconds", type=float, default=120.0, help="Length (default: %(default)s).")
    parser.add_argument("--freq", type=float, default=440.0, help="Frequency in Hz (default: %(default)s).")
    args = parser.parse_args(argv)
    fmt = os.path.splitext(args.path)[1].lstrip(".").lower()
    if fmt not in EXTENSIONS:
        parser.error(f"{args.path}: the extension must be one of {', '.join(sorted(EXTENSIONS))}")
    if not 0 < args.seconds <= 24 * 3600:
        parser.error("--seconds must be more than 0 and at most 86400")
    write_tone(args.path, args.seconds, fmt=fmt, freq=args.freq)
    print(f"Wrote {args.seconds:g} s of a {args.freq:g} Hz tone to {args.path}")


if __name__ == "__main__":
    main()
