"""Waveform overview in BBC audiowaveform JSON format, and a PNG rendering of it."""

import json
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

MAX_POINTS = 4000
BITS = 16
FULL_SCALE = 2 ** (BITS - 1)


def auto_samples_per_pixel(total_samples: int, max_points: int = MAX_POINTS) -> int:
    """Smallest samples-per-pixel that keeps the waveform within `max_points` points."""
    return max(1, math.ceil(total_samples / max_points))


class WaveformBuilder:
    """Accumulate per-pixel min/max of the channel mix, block by block."""

    def __init__(self, sample_rate: int, samples_per_pixel: int) -> None:
        self.sample_rate = sample_rate
        self.spp = samples_per_pixel
        self._carry = np.zeros(0, dtype=np.float32)
        self._mins: list[np.ndarray] = []
        self._maxs: list[np.ndarray] = []

    def add(self, block: np.ndarray) -> None:
        """Feed the next (channels, n) block."""
        mono = block[0] if block.shape[0] == 1 else block.mean(axis=0)
        if self._carry.size:
            mono = np.concatenate([self._carry, mono])
        whole = (mono.shape[0] // self.spp) * self.spp
        if whole:
            pixels = mono[:whole].reshape(-1, self.spp)
            self._mins.append(pixels.min(axis=1))
            self._maxs.append(pixels.max(axis=1))
        self._carry = mono[whole:].copy()

    def data(self) -> dict[str, object]:
        """The audiowaveform v2 JSON document (one mixed channel, 16-bit values)."""
        mins = list(self._mins)
        maxs = list(self._maxs)
        if self._carry.size:
            mins.append(self._carry.min(keepdims=True))
            maxs.append(self._carry.max(keepdims=True))
        low = np.concatenate(mins) if mins else np.zeros(0, dtype=np.float32)
        high = np.concatenate(maxs) if maxs else np.zeros(0, dtype=np.float32)
        pairs = np.empty(low.size * 2, dtype=np.int64)
        pairs[0::2] = np.clip(np.floor(low * FULL_SCALE), -FULL_SCALE, FULL_SCALE - 1)
        pairs[1::2] = np.clip(np.ceil(high * FULL_SCALE), -FULL_SCALE, FULL_SCALE - 1)
        return {
            "version": 2,
            "channels": 1,
            "sample_rate": self.sample_rate,
            "samples_per_pixel": self.spp,
            "bits": BITS,
            "length": int(low.size),
            "data": pairs.tolist(),
        }


def write_json(path: str, waveform: dict[str, object]) -> None:
    """Write the waveform document compactly."""
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(waveform, fh, separators=(",", ":"))


def _tick_step(seconds: float) -> float:
    for step in (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600):
        if seconds / step <= 12:
            return step
    return 7200.0


def _label(seconds: float) -> str:
    if seconds < 60 and seconds != int(seconds):
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (ImportError, OSError):  # Pillow built without FreeType has only the tiny bitmap font
        return ImageFont.load_default()


def render_png(path: str, waveform: dict[str, object], width: int = 1800, height: int = 280) -> None:
    """Draw the waveform with a time axis into a PNG of `width` x `height` pixels."""
    axis = 24
    plot_h = height - axis
    mid = plot_h / 2
    image = Image.new("RGB", (width, height), (250, 250, 252))
    draw = ImageDraw.Draw(image)
    font = _font(13)
    data = np.asarray(waveform["data"], dtype=np.float64) / FULL_SCALE
    points = int(waveform["length"])
    duration = points * int(waveform["samples_per_pixel"]) / int(waveform["sample_rate"])
    for db in (-6.0, -20.0):
        offset = 10 ** (db / 20) * mid
        for y in (mid - offset, mid + offset):
            draw.line([(0, y), (width, y)], fill=(228, 230, 236))
    draw.line([(0, mid), (width, mid)], fill=(200, 204, 214))
    if points:
        columns = np.minimum((np.arange(points) * width) // points, width - 1)
        low = np.full(width, np.inf)
        high = np.full(width, -np.inf)
        np.minimum.at(low, columns, data[0::2])
        np.maximum.at(high, columns, data[1::2])
        filled = np.isfinite(low)
        for x in np.flatnonzero(filled).tolist():
            top = mid - high[x] * mid
            bottom = mid - low[x] * mid
            draw.line([(x, top), (x, max(bottom, top + 1))], fill=(38, 99, 201))
    draw.rectangle([(0, plot_h), (width, height)], fill=(240, 241, 245))
    if duration > 0:
        step = _tick_step(duration)
        tick = 0.0
        while tick <= duration + 1e-9:
            x = tick / duration * (width - 1)
            draw.line([(x, plot_h), (x, plot_h + 5)], fill=(90, 90, 100))
            draw.text((min(x + 3, width - 48), plot_h + 5), _label(tick), fill=(60, 60, 70), font=font)
            tick += step
    image.save(path, optimize=False)
