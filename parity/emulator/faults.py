"""Failures on demand: a request header asks for one, or a seeded schedule injects them at given rates.

Two sources, two behaviours (decided here, documented in `parity emulate --help`):

* `x-emulator-fault: <kind>` (optionally `x-emulator-fault-after: <tokens>` for cut_stream and stall) applies to
  every attempt that carries the header, and error answers carry `x-should-retry: false`, so the SDK makes exactly
  one attempt and the test sees exactly one failure. (A `timeout` the client gives up on never reaches the SDK's
  retry logic through a header, so the client's own timeout retries still apply to it.)
* A `FaultSchedule` with rates (`overloaded=0.02,rate_limit=0.01`) behaves like the real API: no `x-should-retry`,
  so the SDK retries 429/5xx as it would in production. Draws come from `random.Random(seed)` in request order,
  so a run is reproducible.

Kinds: rate_limit (429 + retry-after), server_error (500), overloaded (529), timeout (the answer is held for
`timeout_s` wall-clock seconds, then 504), cut_stream (the connection drops mid-answer, no message_stop, no error
event), stall (after message_start nothing is sent for `stall_s` seconds, then the answer resumes),
malformed_json (200 with a truncated JSON body).
"""

from __future__ import annotations

import math
import random
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from parity.api.errors import APIError, invalid
from parity.errors import InputError

FAULT_KINDS = ("rate_limit", "server_error", "overloaded", "timeout", "cut_stream", "stall", "malformed_json")
FAULT_HEADER = "x-emulator-fault"
FAULT_AFTER_HEADER = "x-emulator-fault-after"


@dataclass(frozen=True)
class Fault:
    """One fault to inject into one request; `after_tokens` says where a cut or stall happens (None: default)."""

    kind: str
    source: str  # "header" | "schedule"
    after_tokens: int | None = None

    @property
    def single_shot(self) -> bool:
        """Header faults tell the SDK not to retry (exactly one failure per attempt)."""
        return self.source == "header"


def parse_rates(spec: str | Mapping[str, float] | None) -> dict[str, float]:
    """`"overloaded=0.02,rate_limit=0.01"` (or a mapping) as {kind: probability}, checked."""
    if spec is None:
        return {}
    if isinstance(spec, str):
        items: list[tuple[str, object]] = []
        for part in spec.split(","):
            part = part.strip()
            if not part:
                continue
            name, sep, value = part.partition("=")
            if not sep:
                raise InputError(f"expected KIND=RATE (e.g. overloaded=0.02), got {part!r}", field="faults")
            items.append((name.strip(), value.strip()))
    else:
        items = list(spec.items())
    rates: dict[str, float] = {}
    for name, value in items:
        if name not in FAULT_KINDS:
            raise InputError(f"unknown fault {name!r}; use one of {', '.join(FAULT_KINDS)}", field="faults")
        try:
            rate = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise InputError(f"rate of {name!r} must be a number in [0, 1], got {value!r}", field="faults") from None
        if not (math.isfinite(rate) and 0.0 <= rate <= 1.0):
            raise InputError(f"rate of {name!r} must be in [0, 1], got {rate}", field="faults")
        rates[name] = rates.get(name, 0.0) + rate
    if sum(rates.values()) > 1.0 + 1e-12:
        raise InputError(f"fault rates add up to {sum(rates.values()):.4g} > 1; lower them", field="faults")
    return rates


class FaultSchedule:
    """Fault rates plus the knobs every fault uses, and counters of what was injected.

    `timeout_s`: how long a `timeout` fault holds the answer before its 504 (set it above the client's timeout).
    `stall_s`: how long a `stall` pauses a stream. `retry_after_s`: the 429's `retry-after`.
    `retry_after_ms`: if set, scheduled 429/500/529/504 answers also carry `retry-after-ms` (lets tests retry fast).
    """

    def __init__(
        self,
        rates: str | Mapping[str, float] | None = None,
        *,
        seed: int = 0,
        timeout_s: float = 30.0,
        stall_s: float = 30.0,
        retry_after_s: float = 1.0,
        retry_after_ms: int | None = None,
    ):
        self.rates = parse_rates(rates)
        self.seed = seed
        self.timeout_s = float(timeout_s)
        self.stall_s = float(stall_s)
        self.retry_after_s = float(retry_after_s)
        self.retry_after_ms = retry_after_ms
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()

    def draw(self) -> Fault | None:
        """The scheduled fault for the next request, if any (one uniform draw per request, in order)."""
        if not self.rates:
            return None
        with self._lock:
            u = self._random.random()
        edge = 0.0
        for kind in FAULT_KINDS:
            edge += self.rates.get(kind, 0.0)
            if u < edge:
                return Fault(kind, "schedule")
        return None

    def record(self, fault: Fault) -> None:
        with self._lock:
            self._counts[(fault.kind, fault.source)] += 1

    @property
    def counts(self) -> dict[str, int]:
        """Faults injected so far, by kind (both sources together)."""
        with self._lock:
            total: Counter[str] = Counter()
            for (kind, _source), n in self._counts.items():
                total[kind] += n
            return dict(total)

    def counts_by_source(self) -> dict[str, dict[str, int]]:
        with self._lock:
            out: dict[str, dict[str, int]] = {}
            for (kind, source), n in self._counts.items():
                out.setdefault(source, {})[kind] = n
            return out

    def error_for(self, fault: Fault) -> APIError:
        """The error answer of a status fault (rate_limit, server_error, overloaded, timeout)."""
        headers: dict[str, str] = {}
        if fault.single_shot:
            headers["x-should-retry"] = "false"
        if fault.kind == "rate_limit":
            headers["retry-after"] = str(max(1, math.ceil(self.retry_after_s)))
            headers["retry-after-ms"] = str(
                self.retry_after_ms if self.retry_after_ms is not None else int(self.retry_after_s * 1000)
            )
        elif self.retry_after_ms is not None and not fault.single_shot:
            headers["retry-after-ms"] = str(self.retry_after_ms)
        source = "x-emulator-fault header" if fault.single_shot else "fault schedule"
        why = f"(emulated fault {fault.kind!r} from the {source})"
        if fault.kind == "rate_limit":
            return APIError(
                429,
                "Number of requests has exceeded your per-minute rate limit "
                f"(https://docs.claude.com/en/api/rate-limits); see the response headers for current usage. {why}",
                headers=headers,
            )
        if fault.kind == "server_error":
            return APIError(500, f"Internal server error {why}", headers=headers)
        if fault.kind == "overloaded":
            return APIError(529, f"Overloaded {why}", headers=headers)
        if fault.kind == "timeout":
            return APIError(504, f"Request timed out {why}", headers=headers)
        raise ValueError(f"fault {fault.kind!r} is not answered with an error status")


def requested_fault(headers: Mapping[str, str]) -> Fault | None:
    """The fault a request asks for with `x-emulator-fault` (400 for an unknown kind or a bad `-after`)."""
    kind = headers.get(FAULT_HEADER)
    if kind is None or not kind.strip():
        return None
    kind = kind.strip().lower()
    if kind not in FAULT_KINDS:
        raise invalid(f"{FAULT_HEADER}: unknown fault {kind!r}; use one of {', '.join(FAULT_KINDS)}")
    after = headers.get(FAULT_AFTER_HEADER)
    after_tokens = None
    if after is not None and after.strip():
        try:
            after_tokens = int(after.strip())
        except ValueError:
            raise invalid(f"{FAULT_AFTER_HEADER}: expected a whole number of output tokens, got {after!r}") from None
        if after_tokens < 0:
            raise invalid(f"{FAULT_AFTER_HEADER}: must be >= 0, got {after_tokens}")
    return Fault(kind, "header", after_tokens)
