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

A task whose policy carries a `cache_plan` (written by `parity audit --plan`, `parity.audit.plan`) gets only the
fixes its plan names (`apply_plan`): `json_keys` and `tool_order` as above, `tool_use_inputs` (canonical key order
inside `tool_use` inputs of earlier turns), and `breakpoint` with the TTL the plan's gap analysis chose. The
gateway records which fixes changed each request in the ledger (`CacheHygiene.applied`, the `parity.cache_fix`
tag). A task with neither a plan nor `cache_hygiene` is never touched.

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
from parity.policy import CachePlan, TaskPolicy

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


def fix_tools(tools: Any, *, sort: bool = True, keys: bool = True) -> Any:
    """Tools sorted by name (`sort`), each in canonical JSON (`keys`); anything that is not a list of named tools
    is left alone."""
    if not isinstance(tools, list) or not all(isinstance(t, Mapping) and isinstance(t.get("name"), str) for t in tools):
        return tools
    ordered = sorted(tools, key=lambda t: t["name"]) if sort else list(tools)
    return [canonical(t) for t in ordered] if keys else ordered


def _sorted_only(tools: Any, sort: bool) -> Any:
    return fix_tools(tools, sort=sort, keys=False)


def apply(request: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(the request with cache hygiene applied, warnings). Returns `request` itself when nothing changed."""
    fixed, _, warnings = fix(request, ("json_keys", "tool_order", "breakpoint"))
    return fixed, warnings


def apply_plan(request: dict[str, Any], plan: CachePlan) -> tuple[dict[str, Any], list[str], list[str]]:
    """(the request with a plan's cache fixes applied, the fixes that changed it, warnings).

    Only the fixes the plan names run, and the breakpoint gets the TTL the plan's gap analysis chose (unless the
    ordering rule forbids it: a 1h breakpoint may not follow a 5m one)."""
    return fix(request, tuple(plan.fixes), plan.ttl)


def fix(request: dict[str, Any], fixes: tuple[str, ...], ttl: str | None = None
        ) -> tuple[dict[str, Any], list[str], list[str]]:
    """(request with `fixes` applied, the names of those that changed something, warnings); `request` itself
    when nothing changed. `ttl` None: the default TTL (1h only when a later breakpoint is 1h)."""
    if not isinstance(request, dict):
        return request, [], []
    fixed = request
    applied: list[str] = []
    tools = request.get("tools")
    if "tool_order" in fixes or "json_keys" in fixes:
        new_tools = fix_tools(tools, sort="tool_order" in fixes, keys="json_keys" in fixes)
        if _key_orders(new_tools) != _key_orders(tools):
            fixed = {**request, "tools": new_tools}
            if "tool_order" in fixes and [t.get("name") for t in new_tools] != [t.get("name") for t in tools]:
                applied.append("tool_order")
            if "json_keys" in fixes and _key_orders(new_tools) != _key_orders(_sorted_only(tools, "tool_order" in fixes)):
                applied.append("json_keys")
    if "tool_use_inputs" in fixes:
        messages = canonical_tool_inputs(fixed.get("messages"))
        if messages is not fixed.get("messages"):
            fixed = {**fixed, "messages": messages}
            applied.append("tool_use_inputs")
    if "breakpoint" not in fixes:
        return fixed, applied, []
    plan = _plan(fixed)
    warnings = list(plan.warnings)
    if plan.target is not None and plan.target_marked and ttl == "1h" and plan.prefix_breakpoints[-1:] == (
            DEFAULT_TTL,) and all(t == "1h" for t in plan.prefix_breakpoints[:-1]):
        # the client's own breakpoint, upgraded to the TTL the gaps chose (allowed: nothing 5m comes before it)
        return _mark(fixed, plan.target, {"type": "ephemeral", "ttl": "1h"}), [*applied, "ttl_1h"], warnings
    if plan.target is None or plan.target_marked or not plan.reaches_minimum:
        return fixed, applied, warnings
    later = _later_ttls(fixed, plan)
    used = len(plan.prefix_breakpoints) + len(later)
    if used >= MAX_BREAKPOINTS:
        warnings.append(
            f"{plan.target}: no breakpoint added at the end of the stable prefix: the request already uses "
            f"{used} of {MAX_BREAKPOINTS} cache_control slots"
        )
        return fixed, applied, warnings
    chosen = "1h" if "1h" in later else DEFAULT_TTL
    if ttl == "1h" and DEFAULT_TTL not in plan.prefix_breakpoints:
        chosen = "1h"
    control: dict[str, Any] = {"type": "ephemeral"} if chosen == DEFAULT_TTL else {"type": "ephemeral", "ttl": chosen}
    return _mark(fixed, plan.target, control), [*applied, "breakpoint" if chosen == DEFAULT_TTL else "breakpoint_1h"], warnings


def canonical_tool_inputs(messages: Any) -> Any:
    """`messages` with every `tool_use` block's `input` in canonical key order; `messages` itself if none moved."""
    if not isinstance(messages, list):
        return messages
    out = None
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, Mapping) else None
        if not isinstance(content, list):
            continue
        blocks = None
        for j, block in enumerate(content):
            if isinstance(block, Mapping) and block.get("type") == "tool_use" and isinstance(block.get("input"), Mapping):
                canon = canonical(block["input"])
                if _key_orders(canon) != _key_orders(block["input"]):
                    blocks = blocks if blocks is not None else list(content)
                    blocks[j] = {**block, "input": canon}
        if blocks is not None:
            out = out if out is not None else list(messages)
            out[i] = {**message, "content": blocks}
    return messages if out is None else out


class CacheHygiene:
    """Cache hygiene on the gateway's request path: `fix` (default `apply`) for a task whose policy opted in
    (`cache_hygiene: true`), its warnings logged; a failure sends the request unchanged, never an error."""

    def __init__(self, fix: Callable[[dict[str, Any]], tuple[dict[str, Any], list[str]]] = apply):
        self.fix = fix

    def __call__(self, request: dict[str, Any], policy: TaskPolicy) -> dict[str, Any]:
        """`request` with hygiene applied when `policy` opted in; `request` itself otherwise."""
        return self.applied(request, policy)[0]

    def applied(self, request: dict[str, Any], policy: TaskPolicy) -> tuple[dict[str, Any], list[str]]:
        """(`request` fixed, the names of the fixes that changed it): the task's `cache_plan` when it has one (only
        its fixes), else everything when it opted in (`cache_hygiene`); a task with neither is never touched."""
        if policy.cache_plan is None and not policy.cache_hygiene:
            return request, []
        try:
            if policy.cache_plan is not None:
                fixed, names, warnings = apply_plan(request, policy.cache_plan)
            else:
                fixed, warnings = self.fix(request)
                names = ["cache_hygiene"] if fixed is not request else []
        except Exception:
            log.exception("cache hygiene failed for task %s; sending the request unchanged", policy.task)
            return request, []
        for warning in warnings:
            log.warning("task %s: %s", policy.task, warning)
        return fixed, names


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


__all__ = ["CacheHygiene", "apply", "apply_plan", "canonical", "canonical_tool_inputs", "fix", "fix_tools"]
