"""The `anthropic-ratelimit-*` response headers (reference §1.6, §6.11), from one-minute windows on the emulator
clock.

The emulator reports limits; it does not enforce them (ask for a 429 with a fault instead). Counting follows
the API: input tokens are `input_tokens + cache_creation_input_tokens` (cache reads are free of ITPM), output
tokens are what was generated, and `tokens-remaining` is the most restrictive of the two, rounded to 1,000.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from parity.emulator.clock import Clock

WINDOW_S = 60.0


@dataclass(frozen=True)
class Limits:
    """Per-minute limits; the defaults are a large tier, so ordinary tests never come near them."""

    requests: int = 4_000
    input_tokens: int = 2_000_000
    output_tokens: int = 400_000


class RateLimitMeter:
    """Requests and tokens seen in the last minute, rendered as the API's rate-limit headers."""

    def __init__(self, clock: Clock, limits: Limits | None = None):
        self.clock = clock
        self.limits = limits or Limits()
        self._events: deque[tuple[float, int, int, int]] = deque()  # (time, requests, input, output)
        self._lock = threading.Lock()

    def record(self, *, requests: int = 0, usage: dict[str, Any] | None = None) -> None:
        """Count one request, or the tokens of one answer (`usage` is the API usage dict)."""
        usage = usage or {}
        input_tokens = int(usage.get("input_tokens") or 0) + int(usage.get("cache_creation_input_tokens") or 0)
        output_tokens = int(usage.get("output_tokens") or 0)
        with self._lock:
            self._events.append((self.clock.now(), requests, input_tokens, output_tokens))

    def headers(self) -> dict[str, str]:
        """Limit, remaining and RFC 3339 reset for requests, tokens, input tokens and output tokens."""
        now = self.clock.now()
        with self._lock:
            while self._events and self._events[0][0] <= now - WINDOW_S:
                self._events.popleft()
            oldest = self._events[0][0] if self._events else now
            used_requests = sum(e[1] for e in self._events)
            used_in = sum(e[2] for e in self._events)
            used_out = sum(e[3] for e in self._events)
        reset = _rfc3339(oldest + WINDOW_S if self._events else now)
        limits = self.limits
        remaining_in = max(0, limits.input_tokens - used_in)
        remaining_out = max(0, limits.output_tokens - used_out)
        tokens_limit, tokens_remaining = min(
            (limits.input_tokens, remaining_in), (limits.output_tokens, remaining_out), key=lambda p: p[1]
        )
        out = {}
        for name, limit, remaining in (
            ("requests", limits.requests, max(0, limits.requests - used_requests)),
            ("tokens", tokens_limit, round(tokens_remaining, -3)),
            ("input-tokens", limits.input_tokens, remaining_in),
            ("output-tokens", limits.output_tokens, remaining_out),
        ):
            out[f"anthropic-ratelimit-{name}-limit"] = str(limit)
            out[f"anthropic-ratelimit-{name}-remaining"] = str(int(remaining))
            out[f"anthropic-ratelimit-{name}-reset"] = reset
        return out


def _rfc3339(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
