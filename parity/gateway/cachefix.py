"""Cache hygiene for a task that opted in (`cache_hygiene: true` in its policy): make the stable prefix byte-stable
and cached, and say when something volatile sits inside it.

Why: the prompt cache matches the prefix (tools → system → messages) byte for byte, key order included
(reference claude-api.md §6.1). Clients that build tool lists from dicts or sets, or serialise schemas with
whatever key order they had, miss the cache on every call; a timestamp or request id in the system prompt does
the same silently (landscape §7 item 2). What `apply` changes, and only where meaning cannot change:

- **Tool order**: tools sorted by name (the model reads the set; the order is an accident of the client).
- **Canonical JSON** in tool definitions: every object's keys sorted, recursively (lists keep their order).
  Message and system text is never rewritten: JSON inside prose is the user's text.
- **A breakpoint at the end of the stable prefix** (the last system block, else the last tool; the audit's
  `suggest_breakpoint`) when the request has none there, the prefix reaches the model's minimum cacheable length,
  and a slot is free (at most 4 per request, the top-level automatic one included). Its TTL respects the
  ordering rule (a 1h breakpoint may not follow a 5m one): 1h when a later breakpoint is 1h, else the 5m default.
- **Warnings** for a date/time or id-like value inside the prefix (the audit's own patterns,
  `parity.fingerprint.DATE_TIME` / `ID_LIKE`): such a value changes per request and re-writes the cache.

The analysis of a prefix is memoised on its bytes: a task's prefix is stable by definition, so the request path
pays one dictionary lookup per request after the first. `CacheHygiene` is what the gateway holds: `apply` for the
tasks whose policy opted in, the request unchanged for the others.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from parity import pricing
from parity import prompt as prompts
from parity.audit.cache_diagnosis import suggest_breakpoint
from parity.fingerprint import DATE_TIME, ID_LIKE
from parity.policy import TaskPolicy

log = logging.getLogger("parity.gateway")

MAX_BREAKPOINTS = 4
DEFAULT_TTL = "5m"
_MEMO_SIZE = 512


@dataclass(frozen=True)
class _PrefixPlan:
    target: str | None  # "system.N" | "tools.N": where the stable prefix ends
    target_marked: bool  # it already carries cache_control
    prefix_tokens: int
    reaches_minimum: bool
    prefix_breakpoints: tuple[str, ...]  # TTLs of breakpoints inside tools/system, in order
    warnings: tuple[str, ...]


_memo: OrderedDict[str, _PrefixPlan] = OrderedDict()


def canonical(value: Any) -> Any:
    """`value` with every object's keys sorted, recursively; lists keep their order (it is meaningful)."""
    if isinstance(value, Mapping):
        return {k: canonical(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


def fix_tools(tools: Any) -> Any:
    """Tools sorted by name, each in canonical JSON; anything that is not a list of named tools is left alone."""
    if not isinstance(tools, list) or not all(isinstance(t, Mapping) and isinstance(t.get("name"), str) for t in tools):
        return tools
    return [canonical(t) for t in sorted(tools, key=lambda t: t["name"])]


def apply(request: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(the request with cache hygiene applied, warnings). Returns `request` itself when nothing changed."""
    if not isinstance(request, dict):
        return request, []
    fixed = request
    tools = request.get("tools")
    sorted_tools = fix_tools(tools)
    if _key_orders(sorted_tools) != _key_orders(tools):
        fixed = {**request, "tools": sorted_tools}
    plan = _plan(fixed)
    warnings = list(plan.warnings)
    if plan.target is None or plan.target_marked or not plan.reaches_minimum:
        return fixed, warnings
    later = _later_ttls(fixed, plan)
    used = len(plan.prefix_breakpoints) + len(later)
    if used >= MAX_BREAKPOINTS:
        warnings.append(
            f"{plan.target}: no breakpoint added at the end of the stable prefix: the request already uses "
            f"{used} of {MAX_BREAKPOINTS} cache_control slots"
        )
        return fixed, warnings
    ttl = "1h" if "1h" in later else DEFAULT_TTL
    control: dict[str, Any] = {"type": "ephemeral"} if ttl == DEFAULT_TTL else {"type": "ephemeral", "ttl": ttl}
    return _mark(fixed, plan.target, control), warnings


class CacheHygiene:
    """Cache hygiene on the gateway's request path: `fix` (default `apply`) for a task whose policy opted in
    (`cache_hygiene: true`), its warnings logged; a failure sends the request unchanged, never an error."""

    def __init__(self, fix: Callable[[dict[str, Any]], tuple[dict[str, Any], list[str]]] = apply):
        self.fix = fix

    def __call__(self, request: dict[str, Any], policy: TaskPolicy) -> dict[str, Any]:
        """`request` with hygiene applied when `policy` opted in; `request` itself otherwise."""
        if not policy.cache_hygiene:
            return request
        try:
            fixed, warnings = self.fix(request)
        except Exception:
            log.exception("cache hygiene failed for task %s; sending the request unchanged", policy.task)
            return request
        for warning in warnings:
            log.warning("task %s: %s", policy.task, warning)
        return fixed


def _key_orders(value: Any) -> Any:
    """Key order is invisible to `==`; this makes it visible (a canonical list differs from the original)."""
    if isinstance(value, Mapping):
        return [(k, _key_orders(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [_key_orders(v) for v in value]
    return value


def _plan(request: Mapping[str, Any]) -> _PrefixPlan:
    prefix = {"model": request.get("model"), "tools": request.get("tools"), "system": request.get("system")}
    key = json.dumps(prefix, ensure_ascii=False, separators=(",", ":"), default=str)
    plan = _memo.get(key)
    if plan is not None:
        _memo.move_to_end(key)
        return plan
    plan = _analyse(prefix)
    _memo[key] = plan
    while len(_memo) > _MEMO_SIZE:
        _memo.popitem(last=False)
    return plan


def _analyse(prefix: Mapping[str, Any]) -> _PrefixPlan:
    body = {k: v for k, v in prefix.items() if v is not None}
    body["messages"] = []
    try:
        rendered = prompts.render(body)
    except Exception:  # a malformed prefix: the upstream says what is wrong; hygiene stays out of the way
        return _PrefixPlan(None, False, 0, False, (), ())
    segments = [s for s in rendered.segments if s.level in ("tools", "system")]
    target = suggest_breakpoint(rendered)
    index = rendered.index_of(target) if target is not None else None
    marked = index is not None and rendered.segments[index].cache_control is not None
    tokens = rendered.cumulative[index] if index is not None else 0
    minimum = _minimum(prefix.get("model"))
    bps = tuple(s.ttl or DEFAULT_TTL for s in segments if s.cache_control is not None and s.cacheable)
    return _PrefixPlan(target, marked, tokens, minimum is None or tokens >= minimum, bps, tuple(_volatile(segments)))


def _minimum(model: Any) -> int | None:
    if not isinstance(model, str):
        return None
    try:
        return pricing.min_cacheable_tokens(model)
    except Exception:  # unknown model: do not guess its minimum; the breakpoint costs nothing if unused
        return None


def _volatile(segments: list[prompts.Segment]) -> list[str]:
    """Date/time and id-like values inside the prefix (values without a digit, like a weekday name, are skipped)."""
    out = []
    for seg in segments:
        block = seg.block
        text = block.get("text") if seg.level == "system" and isinstance(block.get("text"), str) else seg.text
        for kind, pattern in (("an id", ID_LIKE), ("a date/time", DATE_TIME)):
            for match in pattern.finditer(text):
                value = match.group(0)
                if not any(c.isdigit() for c in value):
                    continue
                out.append(
                    f"{seg.path}: {kind} {value!r} at character {match.start()} sits inside the cached prefix; if it "
                    "changes between requests every request re-writes the cache instead of reading it. Move it "
                    "after the prefix (into the last user message)"
                )
                break
    return out


def _later_ttls(request: Mapping[str, Any], plan: _PrefixPlan) -> list[str]:
    """TTLs of the breakpoints after the stable prefix: message blocks, and the top-level automatic one."""
    ttls: list[str] = []
    last_marked = False
    for message in request.get("messages") or []:
        content = message.get("content") if isinstance(message, Mapping) else None
        if not isinstance(content, list):
            last_marked = False
            continue
        for block in content:
            cc = block.get("cache_control") if isinstance(block, Mapping) else None
            last_marked = isinstance(cc, Mapping)
            if last_marked:
                ttls.append(str(cc.get("ttl") or DEFAULT_TTL))  # type: ignore[union-attr]
    top = request.get("cache_control")
    if isinstance(top, Mapping) and not last_marked:
        ttls.append(str(top.get("ttl") or DEFAULT_TTL))
    return ttls


def _mark(request: dict[str, Any], path: str, control: dict[str, Any]) -> dict[str, Any]:
    level, _, index_text = path.partition(".")
    index = int(index_text)
    if level == "system":
        system = request.get("system")
        blocks = [{"type": "text", "text": system}] if isinstance(system, str) else list(system or [])
        blocks[index] = {**blocks[index], "cache_control": control}
        return {**request, "system": blocks}
    tools = list(request.get("tools") or [])
    tools[index] = {**tools[index], "cache_control": control}
    return {**request, "tools": tools}


__all__ = ["CacheHygiene", "apply", "canonical", "fix_tools"]
