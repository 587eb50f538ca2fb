"""Helpers for the audit tests: Exchange logs whose usage comes from the emulator's real caching arithmetic."""

from __future__ import annotations

import copy
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from parity.emulator.clock import ManualClock
from parity.emulator.service import Emulator
from parity.exchange import Exchange

START = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)

# About 1,500 tokens of stable instructions: long enough to cache on every model.
POLICY = " ".join(
    f"Rule {i}: when a customer writes about topic {i}, answer politely, cite the relevant policy section {i}, "
    "and never promise a refund you cannot authorise." for i in range(40)
)


class LogBuilder:
    """Sends requests to an in-process emulator on a manual clock and keeps them as Exchange JSONL lines."""

    def __init__(self, start: datetime = START) -> None:
        self.clock = ManualClock(start.timestamp())
        self.emulator = Emulator(clock=self.clock)
        self.lines: list[str] = []
        self.costs: list[Any] = []

    def send(self, request: dict[str, Any], *, gap: float = 30.0, tags: dict[str, str] | None = None,
             duration_ms: int = 800, stream: bool = False, batch: bool = False) -> int:
        """Advance the clock by `gap` seconds, send, log; returns the 1-based line number of the record."""
        self.clock.advance(gap)
        started = datetime.fromtimestamp(self.clock.now(), timezone.utc)
        message = self.emulator.create_message(copy.deepcopy(request), batch=batch)
        logged = dict(request)
        if stream:
            logged["stream"] = True
        exchange = Exchange(request=logged, response=message, started_at=started, duration_ms=duration_ms,
                            tags=dict(tags or {}), batch=batch)
        self.lines.append(exchange.to_json())
        return len(self.lines)

    def raw(self, text: str) -> int:
        self.lines.append(text)
        return len(self.lines)

    def write(self, path: Path) -> Path:
        path.write_text("\n".join(self.lines) + "\n", encoding="utf-8")
        return path


def system_block(text: str, *, cache: bool = True, ttl: str | None = None) -> list[dict[str, Any]]:
    block: dict[str, Any] = {"type": "text", "text": text}
    if cache:
        block["cache_control"] = {"type": "ephemeral", **({"ttl": ttl} if ttl else {})}
    return [block]


def tool(name: str, props: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {
        "name": name,
        "description": description or f"Look up {name.replace('_', ' ')} for the current customer account.",
        "input_schema": {"type": "object", "properties": props, "required": list(props)[:1]},
    }


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]
