"""Cache lever: why a family's stable prefix is not read from the prompt cache, where, and what it costs.

Family-level causes come from the usage fields and the gaps between requests: no `cache_control` on a long
repeated prefix → `no_breakpoint`; breakpoints but both cache counters 0 and a prefix under the model's minimum →
`below_min_cacheable`; a stable prefix re-written because the gap exceeded the 5-minute TTL where 1 hour would
have paid → `ttl_expired`. Why two consecutive requests of a family diverge is `parity.audit.cache_diagnosis`'s.

Savings are counterfactual token moves on each request's own token vector (see `CacheFamily.observe`): in the
world where the family's template prefix is byte-stable and cached, a request that could read it (the prefix was
written by an earlier request whose response had begun, within the TTL) bills those tokens as cache reads; one
that could not writes them. Costs stay exact; only the prefix size is an estimate (calibrated on logged usage).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from parity import prompt as prompts
from parity.audit.cache_diagnosis import PairDiagnosis, diagnose, suggest_breakpoint, tool_names
from parity.audit.cost import CostAcc, PriceKey
from parity.fingerprint import skeleton, system_text

def _json_dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8", "surrogatepass")


def _dumps(value: Any) -> bytes:
    """Compact JSON in the request's own key order; orjson is ~10x faster than json on the hot path."""
    try:
        return orjson.dumps(value)
    except TypeError:  # e.g. an integer beyond 64 bits, which the standard library reads
        return _json_dumps(value)




__all__ = ["CacheFamily", "CauseStats", "Shape", "shape_of", "ttl_advice"]

TTL_5M = 300
TTL_1H = 3600
_MOD_KEYS = ("tool_choice", "thinking", "output_config", "speed", "context_management")
_CALIBRATION_REQUESTS = 16
_EMPTY_HASH = hash(b"")
_MAX_RENDERS_PER_FAMILY = 24


# --- the cheap per-request view used on the hot path -------------------------------------------------------


@dataclass(slots=True)
class Shape:
    """What the hot path compares between consecutive requests of a family (no rendering)."""

    model: str
    prefix_bytes: int
    h_tools: int
    h_system: int
    h_mods: int
    h_first: int | None  # first message, when there is more history after it
    images: int
    ttl: int  # seconds of the first breakpoint's TTL; 0 without any breakpoint
    bp_level: str | None  # level of the first breakpoint ("top" for top-level automatic caching)


def shape_of(request: Mapping[str, Any], model: str) -> Shape:
    tools = request.get("tools")
    tools_b = _dumps(tools) if tools else b""
    system = request.get("system")
    if isinstance(system, str):
        system_b = system.encode("utf-8", "surrogatepass")
    else:
        system_b = _dumps(system) if system else b""
    mods = [request.get(k) for k in _MOD_KEYS]
    h_mods = hash(_dumps(mods)) if any(m is not None for m in mods) else 0
    ttl = 0
    bp_level = None
    if tools and isinstance(tools, list):
        for tool in tools:
            if isinstance(tool, dict) and tool.get("cache_control"):
                ttl, bp_level = _ttl(tool["cache_control"]), "tools"
                break
    if not ttl and isinstance(system, list):
        for block in system:
            if isinstance(block, dict) and block.get("cache_control"):
                ttl, bp_level = _ttl(block["cache_control"]), "system"
                break
    images = 0
    messages = request.get("messages")
    h_first = None
    if isinstance(messages, list):
        for message in messages:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, list):
                for block in content:
                    if not isinstance(block, dict):
                        continue
                    kind = block.get("type")
                    if kind == "image":
                        images += 1
                    elif kind == "tool_result" and isinstance(block.get("content"), list):
                        images += sum(1 for b in block["content"] if isinstance(b, dict) and b.get("type") == "image")
                    if not ttl and block.get("cache_control"):
                        ttl, bp_level = _ttl(block["cache_control"]), "messages"
        if len(messages) >= 2:
            h_first = hash(_dumps(messages[0]))
    if not ttl and isinstance(request.get("cache_control"), dict):
        ttl, bp_level = _ttl(request["cache_control"]), "top"
    return Shape(model, len(tools_b) + len(system_b), hash(tools_b), hash(system_b), h_mods, h_first, images, ttl,
                 bp_level)


def _ttl(cache_control: Any) -> int:
    if isinstance(cache_control, dict) and cache_control.get("ttl") == "1h":
        return TTL_1H
    return TTL_5M


# --- TTL arithmetic -----------------------------------------------------------------------------------------


def ttl_advice(gaps: Mapping[str, int], read_x: float, w5_x: float, w1_x: float, prefix_tokens: float,
               current: str) -> dict[str, Any]:
    """5m or 1h for a family, from its inter-arrival gap counts and the cache multipliers (× input price).

    Each request either reads the prefix (its predecessor of the family came within the TTL) or writes it.
    With 5m, gaps over 5 minutes (and the first request) write at `w5_x`; with 1h, only gaps over an hour
    write, at `w1_x`. The arithmetic is returned as text so the report can show it.
    """
    le5, le60, gt60, first = gaps.get("le_5m", 0), gaps.get("le_1h", 0), gaps.get("gt_1h", 0), gaps.get("first", 0)
    writes5, reads5 = first + le60 + gt60, le5
    writes1, reads1 = first + gt60, le5 + le60
    cost5 = writes5 * w5_x + reads5 * read_x
    cost1 = writes1 * w1_x + reads1 * read_x
    best = "1h" if cost1 < cost5 else "5m"
    per = f"× {prefix_tokens:,.0f}-token prefix" if prefix_tokens else ""
    text = (
        f"5m: {writes5} writes × {w5_x:g} + {reads5} reads × {read_x:g} = {cost5:,.2f} prefix-inputs; "
        f"1h: {writes1} writes × {w1_x:g} + {reads1} reads × {read_x:g} = {cost1:,.2f} prefix-inputs {per}".rstrip()
    )
    extra_writes = writes5 - writes1
    premium = w1_x - w5_x
    breakeven = (
        f"1h pays when the re-writes it avoids ({extra_writes} × {w5_x - read_x:g}) exceed its premium on the writes "
        f"left ({writes1} × {premium:g})"
    )
    return {
        "current": current,
        "recommended": best,
        "gaps": {"first": first, "le_5m": le5, "5m_to_1h": le60, "gt_1h": gt60},
        "cost_5m_prefix_inputs": round(cost5, 4),
        "cost_1h_prefix_inputs": round(cost1, 4),
        "arithmetic": f"{text}. {breakeven}.",
    }


# --- the per-family tracker -----------------------------------------------------------------------------------


@dataclass
class CauseStats:
    """One cause in one family: how many requests show it, what they cost, one example pair."""

    requests: int = 0
    cost: CostAcc = field(default_factory=CostAcc)
    lines: tuple[int, ...] = ()
    files: tuple[str, ...] = ()
    block_path: str | None = None
    offset: int | None = None
    invalidated_from: str | None = None
    example: str = ""
    fix: str = ""

    def merge(self, other: CauseStats) -> None:
        self.requests += other.requests
        self.cost.merge(other.cost)
        if not self.lines:
            self.lines, self.files = other.lines, other.files
            self.block_path, self.offset, self.invalidated_from = other.block_path, other.offset, other.invalidated_from
            self.example, self.fix = other.example, other.fix


@dataclass
class _Track:
    """Counterfactual cache state of the family's (fixed) template prefix under one TTL."""

    ttl: int
    last: float = -math.inf
    ready: float = math.inf
    started: bool = False

    def readable(self, t: float, ttft: float) -> bool:
        """Could a request starting at t read the prefix? Updates the state as that request would."""
        if not self.started or t - self.last > self.ttl:
            self.started, self.ready, self.last = True, t + ttft, max(self.last, t)
            return False
        self.last = max(self.last, t)
        if t < self.ready:  # written but the writer's response has not begun: this one writes too
            self.ready = min(self.ready, t + ttft)
            return False
        return True

    def gap_class(self, t: float) -> str:
        if not self.started:
            return "first"
        gap = t - self.last
        if gap <= TTL_5M:
            return "le_5m"
        return "le_1h" if gap <= TTL_1H else "gt_1h"


class CacheFamily:
    """Cache bookkeeping for one family while streaming: previous request, causes, counterfactual deltas."""

    def __init__(self) -> None:
        self.prev: Shape | None = None
        self.prev_request: Mapping[str, Any] | None = None
        self.prev_line = 0
        self.prev_file = ""
        self.prev_skeleton: str | None = None
        self.memo: dict[tuple[Any, ...], PairDiagnosis | None] = {}
        self.renders = 0
        self.causes: dict[str, CauseStats] = {}
        self.deltas: dict[tuple[str, str], CostAcc] = {}  # (cause | "ttl" | "unexplained", slice) -> token moves
        self.affected: dict[str, CostAcc] = {}  # bucket -> the requests it moves tokens of
        self.examples: dict[str, tuple[tuple[int, int], tuple[str, str]]] = {}  # bucket -> consecutive lines
        self.unclassified = 0
        self.unclassified_example: CauseStats | None = None
        self.requests = 0
        self.bp_requests = 0
        self.bp_1h = 0
        self.zero_counter_bp = 0
        self.gaps = {"first": 0, "le_5m": 0, "le_1h": 0, "gt_1h": 0}
        self.concurrent = 0
        self.prefix_tokens = 0  # sum of the estimated stable prefix (for the mean)
        self.below_min = 0
        self.misplaced_bp = 0
        self.cal_bytes = 0
        self.cal_tokens = 0
        self.cal_n = 0
        self.rendered_once = False
        self.bp_path: str | None = None
        self.bp_tokens: int | None = None
        self.suggested_path: str | None = None
        self.min_tokens = 0
        self.track5 = _Track(TTL_5M)
        self.track1h = _Track(TTL_1H)

    # one request -------------------------------------------------------------------------------------------

    def observe(
        self, request: Mapping[str, Any], shape: Shape, counts: tuple[int, int, int, int, int], key: PriceKey,
        slice_name: str, started: float, ttft: float, line: int, file: str, min_tokens: int,
    ) -> None:
        inp, w5, w1, cr, out = counts
        prompt_tokens = inp + w5 + w1 + cr
        self.requests += 1
        self.min_tokens = min_tokens
        if shape.ttl:
            self.bp_requests += 1
            if shape.ttl == TTL_1H:
                self.bp_1h += 1
            if cr == 0 and w5 == 0 and w1 == 0:
                self.zero_counter_bp += 1
        if self.cal_n < _CALIBRATION_REQUESTS and prompt_tokens:
            messages = request.get("messages")
            self.cal_bytes += shape.prefix_bytes + (len(_dumps(messages)) if messages else 0)
            self.cal_tokens += prompt_tokens
            self.cal_n += 1
        if not self.rendered_once:
            self._first_render(request, prompt_tokens)
        stable = min(prompt_tokens, int(shape.prefix_bytes * self.cal_tokens / self.cal_bytes)) if self.cal_bytes else 0
        self.prefix_tokens += stable

        diag: PairDiagnosis | None = None
        prev = self.prev
        if prev is not None and (
            prev.h_tools != shape.h_tools or prev.h_system != shape.h_system or prev.model != shape.model
            or prev.h_mods != shape.h_mods or prev.images != shape.images
            or (prev.h_first is not None and shape.h_first is not None and prev.h_first != shape.h_first)
        ):
            diag = self._pair(request, shape)
            if diag is not None and (diag.in_last_message or (
                diag.cause == "image_added" and (prev.h_first is None or prev.h_first != shape.h_first)
            )):
                diag = None  # the new input, or an image where no message history is cached: not a cache problem

        gap = self.track5.gap_class(started)
        read5 = self.track5.readable(started, ttft)
        read1h = self.track1h.readable(started, ttft)
        if not read5 and gap == "le_5m":
            self.concurrent += 1
        self.gaps[gap] += 1

        unclassified = False
        if diag is not None:
            if diag.cause is None:
                unclassified = True
                self._unclassified(diag, line, file)
            else:
                self.record_cause(diag, key, counts, line, file)
        if stable < min_tokens:
            self.below_min += 1
            self._remember(request, shape, line, file)
            return
        if unclassified:  # a real difference we cannot name (another user's system prompt...): no counterfactual
            self._remember(request, shape, line, file)
            return

        if cr >= stable:  # the whole stable prefix was read: nothing to move under either TTL
            self._remember(request, shape, line, file)
            return
        current_1h = shape.ttl == TTL_1H
        read_now = read1h if current_1h else read5
        delta_now = _target_delta(counts, stable, read_now, "1h" if current_1h else "5m")
        other = _target_delta(counts, stable, read5 if current_1h else read1h, "5m" if current_1h else "1h")
        if not shape.ttl:
            bucket = "no_breakpoint"
        elif diag is not None and diag.cause is not None:
            bucket = diag.cause
        elif shape.bp_level in ("top", "messages") or (shape.bp_level == "tools" and shape.h_system != _EMPTY_HASH):
            bucket = "no_breakpoint"  # the breakpoint is not at the end of the stable prefix
        else:
            bucket = "unexplained"
        if delta_now is not None:
            self._delta(bucket, slice_name).add(key, 0, *delta_now)
            self._affected(bucket, key, counts, line, file, example=read_now)
            if bucket == "no_breakpoint" and shape.ttl:
                self.misplaced_bp += 1
        ttl_delta = _minus(other, delta_now)
        if ttl_delta is not None:
            self._delta("ttl", slice_name).add(key, 0, *ttl_delta)
            self._affected("ttl", key, counts, line, file, example=gap == ("le_1h" if not current_1h else "le_5m"))
        self._remember(request, shape, line, file)

    def _affected(self, bucket: str, key: PriceKey, counts: tuple[int, ...], line: int, file: str,
                  example: bool) -> None:
        acc = self.affected.get(bucket)
        if acc is None:
            acc = self.affected[bucket] = CostAcc()
        acc.add(key, 1, *counts)
        if example and bucket not in self.examples and self.prev is not None:
            self.examples[bucket] = ((self.prev_line, line), (self.prev_file, file))

    def _remember(self, request: Mapping[str, Any], shape: Shape, line: int, file: str) -> None:
        self.prev, self.prev_request, self.prev_line, self.prev_file = shape, request, line, file

    def _delta(self, bucket: str, slice_name: str) -> CostAcc:
        acc = self.deltas.get((bucket, slice_name))
        if acc is None:
            acc = self.deltas[(bucket, slice_name)] = CostAcc()
        return acc

    def _first_render(self, request: Mapping[str, Any], prompt_tokens: int) -> None:
        self.rendered_once = True
        try:
            rendered = prompts.render(request)
        except Exception:  # a request the renderer cannot lay out is still priced; it just gets no advice
            return
        self.suggested_path = suggest_breakpoint(rendered)
        bps = prompts.breakpoints(rendered)
        if bps:
            scale = prompt_tokens / rendered.total_tokens if rendered.total_tokens and prompt_tokens else 1.0
            last = bps[-1]
            self.bp_path, self.bp_tokens = last.path, int(last.tokens * scale)

    def _pair(self, request: Mapping[str, Any], shape: Shape) -> PairDiagnosis | None:
        """Diagnose (prev, request), rendering only for a kind of change not seen before in this family."""
        prev, prev_request = self.prev, self.prev_request
        assert prev is not None and prev_request is not None
        signature = self._signature(prev, prev_request, shape, request)
        if signature in self.memo:
            return self.memo[signature]
        if self.renders >= _MAX_RENDERS_PER_FAMILY:
            return None
        self.renders += 1
        try:
            diag = diagnose(prev_request, request)
        except Exception:  # noqa: BLE001 - a request the renderer cannot lay out has no diagnosis
            diag = None
        self.memo[signature] = diag
        return diag

    def _signature(self, prev: Shape, prev_request: Mapping[str, Any], shape: Shape,
                   request: Mapping[str, Any]) -> tuple[Any, ...]:
        """A cheap description of how two requests differ; equal signatures get the same diagnosis."""
        if prev.model != shape.model:
            return ("model",)
        tools_kind = None
        if prev.h_tools != shape.h_tools:
            na, nb = tool_names(prev_request), tool_names(request)
            if sorted(na) != sorted(nb):
                tools_kind = "set"
            elif na != nb:
                tools_kind = "order"
            elif prev_request.get("tools") == request.get("tools"):
                tools_kind = "keys"
            else:
                tools_kind = ("content", _volatile_at(_dumps(prev_request.get("tools")).decode(),
                                                      _dumps(request.get("tools")).decode()))
        system_kind = None
        if prev.h_system != shape.h_system and tools_kind is None:
            if prev_request.get("system") == request.get("system"):
                system_kind = "keys"
            else:
                text_a, text_b = system_text(prev_request), system_text(request)
                # equal texts: only block metadata (cache_control...) changed, a different kind of change
                system_kind = ("content", text_a == text_b, _volatile_at(text_a, text_b))
        first_kind = None
        if tools_kind is None and system_kind is None and prev.h_first != shape.h_first:
            ma = (prev_request.get("messages") or [None])[0]
            mb = (request.get("messages") or [None])[0]
            first_kind = ("first", ma == mb, _volatile_at(_dumps(ma).decode(), _dumps(mb).decode()))
        return (tools_kind, system_kind, first_kind, prev.h_mods != shape.h_mods, prev.images != shape.images)

    def _unclassified(self, diag: PairDiagnosis, line: int, file: str) -> None:
        self.unclassified += 1
        if self.unclassified_example is None:
            self.unclassified_example = CauseStats(
                lines=(self.prev_line, line), files=(self.prev_file, file), block_path=diag.block_path,
                offset=diag.offset, invalidated_from=diag.invalidated_from, example=diag.example,
            )

    def record_cause(self, diag: PairDiagnosis, key: PriceKey, counts: tuple[int, ...], line: int, file: str) -> None:
        stats = self.causes.get(diag.cause or "")
        if stats is None:
            stats = self.causes[diag.cause or ""] = CauseStats(
                lines=(self.prev_line, line), files=(self.prev_file, file), block_path=diag.block_path,
                offset=diag.offset, invalidated_from=diag.invalidated_from, example=diag.example, fix=diag.fix(),
            )
        stats.requests += 1
        stats.cost.add(key, 1, *counts)

    # merging partial results (one per worker) ------------------------------------------------------------

    def merge(self, other: CacheFamily) -> None:
        for name, stats in other.causes.items():
            if name in self.causes:
                self.causes[name].merge(stats)
            else:
                self.causes[name] = stats
        for k, acc in other.deltas.items():
            self._delta(*k).merge(acc)
        for k, acc in other.affected.items():
            self.affected.setdefault(k, CostAcc()).merge(acc)
        for k, ex in other.examples.items():
            self.examples.setdefault(k, ex)
        self.unclassified += other.unclassified
        self.unclassified_example = self.unclassified_example or other.unclassified_example
        for name in ("requests", "bp_requests", "bp_1h", "zero_counter_bp", "concurrent", "prefix_tokens",
                     "below_min", "misplaced_bp"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for k, v in other.gaps.items():
            self.gaps[k] += v
        if not self.cal_bytes:
            self.cal_bytes, self.cal_tokens = other.cal_bytes, other.cal_tokens
        self.bp_path = self.bp_path or other.bp_path
        self.bp_tokens = self.bp_tokens if self.bp_tokens is not None else other.bp_tokens
        self.suggested_path = self.suggested_path or other.suggested_path
        self.min_tokens = self.min_tokens or other.min_tokens

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["prev_request"] = None  # the next worker starts its own chain; do not ship whole requests
        state["memo"] = {}
        return state

    @property
    def mean_prefix_tokens(self) -> float:
        return self.prefix_tokens / self.requests if self.requests else 0.0


def _volatile_at(a: str, b: str) -> bool:
    """Whether two texts differ only by volatile values around their first difference (a cheap signature)."""
    i = prompts._common_prefix(a, b)
    start = max(0, i - 60)
    wa, wb = a[start:i + 60].split()[:-1], b[start:i + 60].split()[:-1]
    return skeleton(" ".join(wa)) == skeleton(" ".join(wb))


def _target_delta(counts: tuple[int, int, int, int, int], stable: int, readable: bool, ttl: str
                  ) -> tuple[int, int, int, int, int] | None:
    """Token moves that turn this request's billing into the counterfactual for its `stable`-token prefix.

    Readable: the prefix's tokens not already read become reads (taken from writes first, then input).
    Not readable: the prefix is written at `ttl` (input and other-TTL writes of it become `ttl` writes).
    Returns (Δinput, Δ5m, Δ1h, Δread, Δoutput) or None when nothing moves.
    """
    inp, w5, w1, cr, _ = counts
    if readable:
        need = stable - cr
        if need <= 0:
            return None
        m5 = min(w5, need)
        m1 = min(w1, need - m5)
        mi = min(inp, need - m5 - m1)
        if not (m5 or m1 or mi):
            return None
        return (-mi, -m5, -m1, m5 + m1 + mi, 0)
    unread = stable - cr
    if unread <= 0:
        return None
    if ttl == "5m":
        from_other = min(w1, unread)
        from_input = min(inp, unread - from_other - min(w5, unread - from_other))
        if not (from_other or from_input):
            return None
        return (-from_input, from_other + from_input, -from_other, 0, 0)
    from_other = min(w5, unread)
    from_input = min(inp, unread - from_other - min(w1, unread - from_other))
    if not (from_other or from_input):
        return None
    return (-from_input, -from_other, from_other + from_input, 0, 0)


def _minus(a: tuple[int, ...] | None, b: tuple[int, ...] | None) -> tuple[int, ...] | None:
    if a is None and b is None:
        return None
    a = a or (0, 0, 0, 0, 0)
    b = b or (0, 0, 0, 0, 0)
    diff = tuple(x - y for x, y in zip(a, b))
    return diff if any(diff) else None
