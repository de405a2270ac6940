"""Progress reporting helper: maps work done in one pass onto a slice of the whole job's 0..1 range."""

import time
from collections import deque
from collections.abc import Callable

ProgressFn = Callable[[float, str], None]

# Callers may cancel from the callback, so it must run often; more often only costs them time.
REPORT_INTERVAL = 0.05


class Progress:
    """Report monotonic job-wide progress for one pass covering [start, end] of the job."""

    def __init__(self, callback: ProgressFn, stage: str, total: int, start: float = 0.0, end: float = 1.0) -> None:
        self.callback = callback
        self.stage = stage
        self.total = max(1, total)
        self.start = start
        self.end = end
        self.done = 0
        self._last_report = 0.0
        self._last_fraction = -1.0

    def advance(self, amount: int) -> None:
        """Record `amount` more units done; calls back at most every REPORT_INTERVAL seconds."""
        self.done += amount
        now = time.monotonic()
        if now - self._last_report >= REPORT_INTERVAL:
            self._report(now)

    def finish(self) -> None:
        """Report the end of this pass."""
        self.done = max(self.done, self.total)
        self._report(time.monotonic())

    def _report(self, now: float) -> None:
        fraction = self.start + (self.end - self.start) * min(1.0, self.done / self.total)
        # Decoded length can exceed the probed estimate; never let the bar go backwards.
        fraction = max(fraction, self._last_fraction)
        self._last_fraction = fraction
        self._last_report = now
        self.callback(round(fraction, 4), self.stage)


class EtaEstimator:
    """Seconds left from measured throughput over a sliding window; None until trustworthy.

    The rate is the progress made over the last WINDOW_SECONDS (the whole run, for shorter
    jobs): a momentary stall or burst on a busy machine barely moves it, while a long job
    whose speed really changes (a slower second pass) is followed within the window.
    """

    WINDOW_SECONDS = 30.0
    # The estimate stays None until this share of the job and this much time are measured.
    MIN_FRACTION = 0.01
    MIN_SECONDS = 0.5

    def __init__(self, started: float) -> None:
        self.started = started
        self.fraction = 0.0
        self.samples: deque[tuple[float, float]] = deque()

    def update(self, now: float, fraction: float) -> None:
        """Record that `fraction` of the job is done at monotonic time `now`."""
        self.fraction = max(self.fraction, fraction)
        self.samples.append((now, self.fraction))
        # Keep one sample at or beyond the window's start, so the window stays full.
        while len(self.samples) > 2 and now - self.samples[1][0] >= self.WINDOW_SECONDS:
            self.samples.popleft()

    @property
    def rate(self) -> float | None:
        """Share of the job done per second over the window."""
        if len(self.samples) < 2:
            return None
        (then, before), (now, after) = self.samples[0], self.samples[-1]
        if now - then <= 0:
            return None
        return (after - before) / (now - then)

    def remaining(self, now: float) -> float | None:
        """Estimated seconds left, or None while unknown."""
        rate = self.rate
        if rate is None or rate <= 0 or self.fraction < self.MIN_FRACTION or now - self.started < self.MIN_SECONDS:
            return None
        return max((1.0 - self.fraction) / rate, 0.0)
