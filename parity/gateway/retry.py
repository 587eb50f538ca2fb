"""When the gateway tries an upstream call again, how long it waits, and when it stops calling a model at all.

The retry rules are the official SDK's (reference claude-api.md §5.3), so a client sees the same behaviour
through the gateway as without it: `x-should-retry` decides when present; otherwise 408, 409, 429, >= 500,
connection errors and timeouts are retried; the wait is `retry-after-ms`, else `retry-after` (seconds or an
HTTP date), else `min(base * 2**n, cap)` with up to 25% jitter. One rule is added: a wait longer than
`max_wait_s` is not slept on the request path; the error goes back to the client with its `retry-after`, so the
client (or its SDK) decides.

`CircuitBreaker` keeps one breaker per model: after `threshold` consecutive failures (5xx, 529, timeouts, cut
streams, unreachable upstream; never 4xx) the model is "open" for `cooldown_s`: calls that have an alternative skip it (a routed
task goes straight to its baseline, a shadow copy is not made); a call with no alternative (passthrough, the
baseline itself) is never failed by the breaker: it goes upstream with its retries. Then one probe is let through ("half-open"); its success closes the breaker.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

RETRYABLE_STATUSES = frozenset({408, 409, 429})


@dataclass(frozen=True)
class RetryPolicy:
    """How many times and how long to retry one upstream call (SDK defaults; see the module docstring)."""

    max_retries: int = 2
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0
    max_wait_s: float = 10.0

    def should_retry(self, status: int | None, headers: Mapping[str, str] | None = None) -> bool:
        """Whether an answer with `status` (None: no answer at all: a timeout or a dropped connection) is retried."""
        hint = (headers or {}).get("x-should-retry")
        if hint is not None:
            if hint.strip().lower() == "true":
                return True
            if hint.strip().lower() == "false":
                return False
        if status is None:
            return True
        return status in RETRYABLE_STATUSES or status >= 500

    def delay(self, retries_taken: int, headers: Mapping[str, str] | None = None, *, rng: random.Random | None = None) -> float | None:
        """Seconds to wait before retry number `retries_taken + 1`, or None if that wait is too long to sleep."""
        wait = retry_after(headers or {})
        if wait is None:
            wait = min(self.base_delay_s * 2**retries_taken, self.max_delay_s)
            wait *= 1 - 0.25 * (rng or random).random()
        if wait > self.max_wait_s:
            return None
        return max(0.0, wait)


def retry_after(headers: Mapping[str, str]) -> float | None:
    """The server's requested wait in seconds: `retry-after-ms`, else `retry-after` (seconds or HTTP date)."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            value = float(raw_ms)
            if 0 <= value < 1e9:
                return value / 1000
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        value = float(raw)
        return value if 0 < value < 1e9 else None
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass
class _State:
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False


class CircuitBreaker:
    """One breaker per model name: closed → open after `threshold` consecutive failures → half-open after
    `cooldown_s` (a single probe) → closed on the probe's success, open again on its failure."""

    def __init__(self, threshold: int = 5, cooldown_s: float = 30.0, clock: Callable[[], float] = time.monotonic):
        if threshold < 1:
            raise ValueError(f"circuit breaker threshold must be >= 1, got {threshold}")
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._states: dict[str, _State] = {}
        self._lock = threading.Lock()

    def state(self, model: str) -> str:
        """"closed", "open" or "half_open" (the cooldown is over and the next call is the probe)."""
        with self._lock:
            s = self._states.get(model)
            if s is None or s.opened_at is None:
                return "closed"
            if self._clock() - s.opened_at >= self.cooldown_s:
                return "half_open"
            return "open"

    def allow(self, model: str) -> bool:
        """May a call to `model` go out now? In half-open state only one probe at a time is allowed."""
        with self._lock:
            s = self._states.get(model)
            if s is None or s.opened_at is None:
                return True
            if self._clock() - s.opened_at < self.cooldown_s or s.probing:
                return False
            s.probing = True
            return True

    def retry_after(self, model: str) -> float:
        """Seconds until `model` may be tried again (0 when it may be tried now)."""
        with self._lock:
            s = self._states.get(model)
            if s is None or s.opened_at is None:
                return 0.0
            return max(0.0, self.cooldown_s - (self._clock() - s.opened_at))

    def success(self, model: str) -> None:
        with self._lock:
            s = self._states.get(model)
            if s is not None:
                s.failures, s.opened_at, s.probing = 0, None, False

    def failure(self, model: str) -> None:
        with self._lock:
            s = self._states.setdefault(model, _State())
            s.failures += 1
            if s.probing or s.failures >= self.threshold:
                s.opened_at = self._clock()
            s.probing = False

    def release(self, model: str) -> None:
        """A call let through as a probe ended without telling anything (e.g. a 4xx): let the next one probe."""
        with self._lock:
            s = self._states.get(model)
            if s is not None:
                s.probing = False

    def open_models(self) -> list[str]:
        with self._lock:
            return sorted(m for m, s in self._states.items() if s.opened_at is not None)
