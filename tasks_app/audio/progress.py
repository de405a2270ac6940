"""Progress reporting helper: maps work done in one pass onto a slice of the whole job's 0..1 range."""

import time
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
