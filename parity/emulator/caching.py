"""The emulator's prompt cache: the documented lookback, TTL and usage arithmetic (reference claude-api.md §6).

`plan()` decides, without changing anything, what one request reads and writes and what its usage says; the
emulator calls `commit()` when the response starts, and only then do the writes become readable and the read
entry's TTL is refreshed (so parallel identical requests all write, as on the real API). Lifetimes run from the
start of the request that wrote or read the entry.

Rules implemented (§6.2-6.7):
* breakpoints are the blocks with `cache_control` plus, with top-level `cache_control`, the last cacheable block
  (same TTL already there: no-op; another TTL: 400; 4 explicit already: 400); more than 4 in all: 400;
* a `1h` breakpoint after a `5m` one: 400 with the offending block's path;
* a breakpoint whose prefix is below the model's minimum neither reads nor writes (no error);
* each breakpoint checks its own position and up to 19 before it for a live entry a prior request wrote; the
  longest hit wins; every breakpoint beyond the hit writes an entry with its own TTL;
* usage: A = tokens through the hit, B = through the last 1h breakpoint after A (else A), C = through the last
  breakpoint: reads A, 1h writes B-A, 5m writes C-B, input_tokens = total - C.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from parity.api.errors import APIError, invalid
from parity.emulator.clock import Clock
from parity.prompt import DEFAULT_TTL, TTL_SECONDS, Breakpoint, RenderedPrompt, automatic_target, breakpoints

MAX_BREAKPOINTS = 4
LOOKBACK = 20  # positions checked per breakpoint, the breakpoint itself included
_PURGE_EVERY = 256  # commits between sweeps of expired entries

Key = tuple[str, str, bytes]  # (workspace, model, prefix hash)


@dataclass
class _Entry:
    expires_at: float
    ttl: str


@dataclass(frozen=True)
class Write:
    """An entry this request creates when it commits."""

    key: Key
    index: int
    path: str
    ttl: str
    tokens: int


@dataclass(frozen=True)
class CachePlan:
    """What one request reads and writes, and the input side of its usage."""

    workspace: str
    model: str
    breakpoints: tuple[Breakpoint, ...]  # effective ones (at or above the minimum), in prompt order
    hit_index: int | None  # position of the longest live entry found, None on a miss
    hit_key: Key | None
    writes: tuple[Write, ...]
    total_tokens: int
    read_tokens: int  # A
    write_1h_tokens: int  # B - A
    write_5m_tokens: int  # C - B
    input_tokens: int  # total - C

    @property
    def usage(self) -> dict[str, Any]:
        """The input counters of the API's usage object."""
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.write_1h_tokens + self.write_5m_tokens,
            "cache_read_input_tokens": self.read_tokens,
            "cache_creation": {
                "ephemeral_5m_input_tokens": self.write_5m_tokens,
                "ephemeral_1h_input_tokens": self.write_1h_tokens,
            },
        }


class PromptCache:
    """Live cache entries keyed by (workspace, model, prefix hash); thread-safe."""

    def __init__(self, clock: Clock):
        self.clock = clock
        self._entries: dict[Key, _Entry] = {}
        self._lock = threading.Lock()
        self._commits = 0

    def __len__(self) -> int:
        now = self.clock.now()
        with self._lock:
            return sum(1 for e in self._entries.values() if e.expires_at > now)

    def plan(
        self,
        model: str,
        rendered: RenderedPrompt,
        top_level_cache_control: Mapping[str, Any] | None,
        min_tokens: int,
        workspace: str,
    ) -> CachePlan:
        """Reads and writes for one request at the clock's current time; raises the API's 400s (see module doc)."""
        points = request_breakpoints(rendered, top_level_cache_control)
        effective = tuple(bp for bp in points if bp.tokens >= min_tokens)
        if effective:
            rendered.hash_at(effective[-1].index)  # hash outside the lock (the chain covers every earlier position)
        now = self.clock.now()
        hit_index: int | None = None
        hit_key: Key | None = None
        with self._lock:
            for bp in effective:
                for index in range(bp.index, max(-1, bp.index - LOOKBACK), -1):
                    if hit_index is not None and index <= hit_index:
                        break
                    key = (workspace, model, rendered.hash_at(index))
                    entry = self._entries.get(key)
                    if entry is not None and entry.expires_at > now:
                        hit_index, hit_key = index, key
                        break
        a = rendered.tokens_through(hit_index) if hit_index is not None else 0
        beyond = [bp for bp in effective if hit_index is None or bp.index > hit_index]
        b = max([a] + [bp.tokens for bp in beyond if bp.ttl == "1h"])
        c = max([a] + [bp.tokens for bp in beyond])
        writes = tuple(
            Write((workspace, model, rendered.hash_at(bp.index)), bp.index, bp.path, bp.ttl, bp.tokens)
            for bp in beyond
        )
        return CachePlan(
            workspace=workspace,
            model=model,
            breakpoints=effective,
            hit_index=hit_index,
            hit_key=hit_key,
            writes=writes,
            total_tokens=rendered.total_tokens,
            read_tokens=a,
            write_1h_tokens=b - a,
            write_5m_tokens=c - b,
            input_tokens=rendered.total_tokens - c,
        )

    def commit(self, plan: CachePlan, started_at: float) -> None:
        """The response has started: writes become readable and the read entry is refreshed, both measured from
        `started_at` (the request's start)."""
        with self._lock:
            if plan.hit_key is not None:
                entry = self._entries.get(plan.hit_key)
                if entry is not None:
                    entry.expires_at = max(entry.expires_at, started_at + TTL_SECONDS[entry.ttl])
            for write in plan.writes:
                expires = started_at + TTL_SECONDS[write.ttl]
                entry = self._entries.get(write.key)
                if entry is None or entry.expires_at < expires:
                    self._entries[write.key] = _Entry(expires, write.ttl)
            self._commits += 1
            if self._commits % _PURGE_EVERY == 0:
                now = self.clock.now()
                for key in [k for k, e in self._entries.items() if e.expires_at <= now]:
                    del self._entries[key]

    def clear(self) -> None:
        """Forget every entry (the real API has no purge; tests and demos do)."""
        with self._lock:
            self._entries.clear()


def request_breakpoints(
    rendered: RenderedPrompt, top_level_cache_control: Mapping[str, Any] | None
) -> list[Breakpoint]:
    """Explicit and automatic breakpoints in prompt order, with the API's 400s for the documented conflicts."""
    explicit = breakpoints(rendered, automatic=False)
    if len(explicit) > MAX_BREAKPOINTS:
        raise _too_many(len(explicit))
    points = list(explicit)
    if top_level_cache_control is not None:
        target = automatic_target(rendered)
        if target is not None:
            ttl = top_level_cache_control.get("ttl") or DEFAULT_TTL
            seg = rendered.segments[target]
            if seg.cache_control is not None:
                if seg.ttl != ttl:
                    raise invalid(
                        f"Top-level cache_control has ttl='{ttl}' but the target block already has cache_control "
                        f"with ttl='{seg.ttl}'"
                    )
            elif len(explicit) >= MAX_BREAKPOINTS:
                raise _too_many(len(explicit) + 1)
            else:
                points.append(Breakpoint(seg.index, seg.path, seg.level, ttl, rendered.tokens_through(seg.index), True))
                points.sort(key=lambda bp: bp.index)
    seen_5m = False
    for bp in points:
        if bp.ttl == "5m":
            seen_5m = True
        elif seen_5m:
            raise invalid(
                f"{bp.path}.cache_control.ttl: a ttl='1h' cache_control block must not come after a ttl='5m' "
                "cache_control block. Note that blocks are processed in the following order: `tools`, `system`, "
                "`messages`."
            )
    return points


def _too_many(found: int) -> APIError:
    return invalid(f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. Found {found}.")
