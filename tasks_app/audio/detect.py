"""Streaming detectors for silent stretches and clipped-sample runs."""

import math

import numpy as np

from tasks_app.audio.loudness import FrameEnergies

SILENCE_FRAMES_PER_SECOND = 100  # 10 ms frames
MAX_LISTED_RUNS = 100


class SilenceDetector:
    """Find stretches whose 10 ms RMS (mean over channels) stays below a dBFS threshold.

    Runs are followed as the frames complete, so only the segments found are kept.
    """

    def __init__(self, sample_rate: int, threshold_db: float, min_duration: float) -> None:
        self.threshold_db = threshold_db
        self.min_duration = min_duration
        self.sample_rate = sample_rate
        self.limit = 10 ** (threshold_db / 10)
        self.frames = FrameEnergies(sample_rate, SILENCE_FRAMES_PER_SECOND)
        self.segments: list[dict[str, float]] = []
        self._run_start: int | None = None  # first frame of the silent run in progress

    def add_power(self, mean_square: np.ndarray) -> None:
        """Feed the per-sample mean square across channels of the next block."""
        sums, lengths = self.frames.add(mean_square)
        if sums.size:
            self._follow(sums / lengths < self.limit, self.frames.frames - sums.size)

    def _follow(self, silent: np.ndarray, first: int) -> None:
        """Open and close runs over consecutive frames starting at frame `first`."""
        before = np.array([self._run_start is not None])
        for index in np.flatnonzero(np.diff(np.concatenate([before, silent]).astype(np.int8))).tolist():
            if silent[index]:
                self._run_start = first + index
            else:
                self._close(first + index)

    def _close(self, stop: int) -> None:
        """End the run in progress at frame `stop`; keep it if it is long enough."""
        if self._run_start is None:
            return
        start_s = self._run_start / SILENCE_FRAMES_PER_SECOND
        end_s = min(stop / SILENCE_FRAMES_PER_SECOND, self.frames.samples / self.sample_rate)
        if end_s - start_s >= self.min_duration - 1e-9:
            self.segments.append({"start": round(start_s, 3), "end": round(end_s, 3)})
        self._run_start = None

    def result(self) -> dict[str, object]:
        """Silent segments (seconds) at least `min_duration` long, and their total length."""
        stop = self.frames.frames
        tail = self.frames.tail()
        if tail > 0:
            # The trailing partial frame counts by its own mean.
            self._follow(np.array([self.frames.partial / tail < self.limit]), stop)
            stop += 1
        self._close(stop)
        return {
            "threshold_db": self.threshold_db,
            "min_duration": self.min_duration,
            "total_duration": round(sum(s["end"] - s["start"] for s in self.segments), 3),
            "segments": self.segments,
        }


class ClipDetector:
    """Count sample frames where any channel reaches the clip threshold, grouped into runs."""

    def __init__(self, sample_rate: int, threshold: float) -> None:
        self.sample_rate = sample_rate
        self.threshold = threshold
        self.samples = 0
        self.clipped = 0
        self.run_count = 0
        self.runs: list[dict[str, float | int]] = []
        self._open_start: int | None = None
        self._open_length = 0

    def add(self, block: np.ndarray, block_peak: float) -> None:
        """Feed the next (channels, n) block and its absolute peak."""
        n = block.shape[1]
        if block_peak < self.threshold:
            self._close()
        else:
            mask = (np.abs(block) >= self.threshold).any(axis=0)
            self.clipped += int(mask.sum())
            edges = np.flatnonzero(np.diff(np.concatenate([[False], mask, [False]]).astype(np.int8)))
            for first, stop in zip(edges[::2].tolist(), edges[1::2].tolist()):
                if first == 0 and self._open_start is not None:
                    self._open_length += stop
                else:
                    self._close()
                    self._open_start = self.samples + first
                    self._open_length = stop - first
                if stop < n:
                    self._close()
        self.samples += n

    def _close(self) -> None:
        if self._open_start is None:
            return
        self.run_count += 1
        if len(self.runs) < MAX_LISTED_RUNS:
            self.runs.append({"start": round(self._open_start / self.sample_rate, 6), "length": self._open_length})
        self._open_start = None
        self._open_length = 0

    def result(self) -> dict[str, object]:
        """Clipped sample count and the first runs ({start seconds, length samples})."""
        self._close()
        return {
            "threshold": self.threshold,
            "threshold_dbfs": round(20 * math.log10(self.threshold), 3),
            "clipped_samples": self.clipped,
            "run_count": self.run_count,
            "runs": self.runs,
            "runs_truncated": self.run_count > len(self.runs),
        }
