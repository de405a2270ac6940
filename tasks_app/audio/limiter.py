"""Look-ahead true-peak limiter working on streamed (channels, n) float blocks."""

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from tasks_app.audio.loudness import TAPS_PER_PHASE, Interpolator

# The gain envelope is computed once per frame of this many samples and interpolated in between:
# 0.7 ms at 44.1 kHz is far finer than any attack or release, and 32x cheaper than per sample.
FRAME = 32
# Stretches of this many samples that provably stay under the ceiling skip the oversampled check.
SEGMENT = 1024
HISTORY = TAPS_PER_PHASE
# Frames before a peak whose samples feed its interpolation window (11 taps back fit in two frames).
BACK_FRAMES = 2
RELEASED_LOG_DEPTH = math.log(0.001)
# Frames reduced by more than 0.1 dB count as limited in the statistics.
AUDIBLE_GAIN = 10 ** (-0.1 / 20)


class TruePeakLimiter:
    """Keep the oversampled (true) peak of a stream under `ceiling_db` with a smooth gain envelope.

    Each output sample's gain is at most the gain needed by every interpolation window it takes
    part in, because the envelope is a moving average of a look-ahead minimum: the gain ramps down
    over `lookahead` seconds before a peak (no step, no clipping) and recovers afterwards with its
    dB reduction decaying exponentially (time constant `release` seconds). Output lags input by a
    few frames; `flush` returns the rest, so total output length equals total input length.
    """

    def __init__(
        self,
        sample_rate: int,
        channels: int,
        ceiling_db: float,
        lookahead: float = 0.005,
        release: float = 0.025,
    ) -> None:
        self.channels = channels
        self.ceiling = 10 ** (ceiling_db / 20)
        self.interpolator = Interpolator(sample_rate)
        self.bound = self.interpolator.bound
        self.ahead = max(1, math.ceil(lookahead * sample_rate / FRAME))
        # Per-frame log of the factor by which the dB reduction shrinks while releasing.
        self.release_log = -FRAME / (release * sample_rate)
        self.samples_in = 0
        self.samples_out = 0
        self.min_gain = 1.0
        self.limited_frames = 0
        self._history = np.zeros((channels, HISTORY), dtype=np.float32)
        self._carry = np.zeros((channels, 0), dtype=np.float32)
        self._audio: list[np.ndarray] = []  # frames waiting for their gain, oldest first
        # Requirements (linear gain) of recent frames, starting BACK_FRAMES before the next envelope frame.
        self._required = np.ones(BACK_FRAMES)
        self._log_depth = -math.inf  # log of the current reduction in dB; -inf means none
        self._box: np.ndarray | None = None  # last `ahead` released gains, for the moving average
        self._last_gain: float | None = None

    def process(self, block: np.ndarray) -> np.ndarray:
        """Feed a float32 (channels, n) block; return the limited samples that are ready (delayed)."""
        self.samples_in += block.shape[1]
        data = np.concatenate([self._carry, block], axis=1) if self._carry.shape[1] else block
        whole = (data.shape[1] // FRAME) * FRAME
        self._carry = data[:, whole:]
        return self._frames(np.asarray(data[:, :whole], dtype=np.float32))

    def flush(self) -> np.ndarray:
        """Return all remaining output, ending exactly at the input's length."""
        pad = (-self._carry.shape[1]) % FRAME
        # Silent frames past the end need no gain reduction and push the last real frames out.
        extra = (self.ahead + BACK_FRAMES + 2) * FRAME
        tail = np.concatenate([self._carry, np.zeros((self.channels, pad + extra), dtype=np.float32)], axis=1)
        self._carry = np.zeros((self.channels, 0), dtype=np.float32)
        return self._frames(tail)

    def _frames(self, data: np.ndarray) -> np.ndarray:
        if data.shape[1] == 0:
            return np.zeros((self.channels, 0), dtype=np.float32)
        self._audio.append(data)
        self._required = np.concatenate([self._required, self._requirements(data)])
        gains = self._envelope()
        return self._apply(gains)

    def _requirements(self, data: np.ndarray) -> np.ndarray:
        """Per frame, the largest linear gain that keeps every window ending in it under the ceiling."""
        frames = data.shape[1] // FRAME
        extended = np.concatenate([self._history, data], axis=1)
        self._history = extended[:, -HISTORY:].copy()
        spans = np.abs(extended)
        # Sample peaks count too: the interpolator's phase 0 only approximates the samples.
        peak = spans[:, HISTORY:].max(axis=0).reshape(frames, FRAME).max(axis=1).astype(np.float64)
        count = -(-data.shape[1] // SEGMENT)
        for ch in range(self.channels):
            padded = np.zeros(count * SEGMENT + HISTORY, dtype=np.float32)
            padded[: extended.shape[1]] = spans[ch]
            limits = sliding_window_view(padded, SEGMENT + HISTORY)[::SEGMENT][:count].max(axis=1) * self.bound
            for seg in np.flatnonzero(limits > self.ceiling).tolist():
                start, stop = seg * SEGMENT, min((seg + 1) * SEGMENT, data.shape[1])
                window_peak = np.abs(self.interpolator.outputs(extended[ch], start, stop)).max(axis=1)
                np.maximum(
                    peak[start // FRAME : stop // FRAME],
                    window_peak.reshape(-1, FRAME).max(axis=1),
                    out=peak[start // FRAME : stop // FRAME],
                )
        required = np.ones(frames)
        over = peak > self.ceiling
        required[over] = self.ceiling / peak[over]
        return required

    def _envelope(self) -> np.ndarray:
        """Gains for every frame whose look-ahead requirements are all known."""
        span = BACK_FRAMES + self.ahead + 2
        ready = self._required.shape[0] - span + 1
        if ready <= 0:
            return np.zeros(0)
        needed = sliding_window_view(self._required, span).min(axis=1)[:ready]
        self._required = self._required[ready:]
        # Exponential release of the dB reduction d: d[k] = max(need[k], d[k-1] * r). In log terms
        # that is a running maximum of straight lines, which numpy computes without a Python loop.
        with np.errstate(divide="ignore"):
            log_need = np.log(-20 * np.log10(needed))
        slopes = np.arange(1, ready + 1) * self.release_log
        log_depth = slopes + np.maximum(self._log_depth, np.maximum.accumulate(log_need - slopes))
        # A reduction under 0.001 dB is inaudible; ending it lets untouched audio skip the multiply.
        log_depth[log_depth < RELEASED_LOG_DEPTH] = -math.inf
        self._log_depth = float(log_depth[-1])
        released_db = -np.exp(log_depth)
        released = np.ones(ready)
        low = released_db < 0
        released[low] = 10 ** (released_db[low] / 20)
        if self._box is None:
            # Before the stream there is no audio, so its gain is free: start at the first released
            # gain, which already covers every frame within the look-ahead. Starting at 1.0 let
            # peaks in the first `lookahead` seconds through barely reduced.
            self._box = np.full(self.ahead, released[0])
        box = np.concatenate([self._box, released])
        csum = np.concatenate([[0.0], np.cumsum(box)])
        width = self.ahead + 1
        gains = (csum[width:] - csum[:-width]) / width
        self._box = box[-self.ahead :]
        return gains

    def _apply(self, gains: np.ndarray) -> np.ndarray:
        """Multiply the oldest buffered frames by gains interpolated between frame starts."""
        if gains.size == 0:
            return np.zeros((self.channels, 0), dtype=np.float32)
        points = gains if self._last_gain is None else np.concatenate([[self._last_gain], gains])
        count = points.size - 1
        self._last_gain = float(points[-1])
        if count == 0:
            return np.zeros((self.channels, 0), dtype=np.float32)
        audio = np.concatenate(self._audio, axis=1) if len(self._audio) > 1 else self._audio[0]
        frames_out = audio[:, : count * FRAME]
        rest = audio[:, count * FRAME :]
        self._audio = [rest] if rest.shape[1] else []
        lows = points[:-1]
        if lows.min() < 1.0 or points[1:].min() < 1.0:
            self.min_gain = min(self.min_gain, float(points.min()))
            self.limited_frames += int(np.count_nonzero(lows < AUDIBLE_GAIN))
            ramp = np.arange(FRAME) / FRAME
            envelope = (lows[:, None] + (points[1:] - lows)[:, None] * ramp[None, :]).ravel().astype(np.float32)
            frames_out = frames_out * envelope
        return self._trim(frames_out)

    def _trim(self, out: np.ndarray) -> np.ndarray:
        """Drop the zero padding that `flush` appended past the input's end."""
        room = self.samples_in - self.samples_out
        if out.shape[1] > room:
            out = out[:, :room]
        self.samples_out += out.shape[1]
        return out
