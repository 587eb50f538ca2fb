"""Time for the emulator: the wall clock, or a manual clock tests and demos can move forward."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock that moves only when told to: cache TTLs and batch processing times become exact in tests."""

    def __init__(self, start: float = 1_790_000_000.0):
        self._now = float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a clock cannot move backwards")
        with self._lock:
            self._now += seconds
            return self._now
