"""Why one request cannot reuse another's cached prompt prefix, and where: the cache lever's pair diagnosis.

Two requests are compared the way the cache compares them: `parity.prompt.render` lays out tools → system →
messages and `parity.prompt.first_divergence` names the first block that differs and the offset in it (the one
implementation, shared with the emulator). On top of that this module says *why* the bytes differ:

* the differing characters sit inside a date/time or an id in both requests → `volatile_timestamp` /
  `volatile_uuid`;
* the block (or a JSON document inside its text) is the same JSON with keys in another order →
  `unsorted_json_keys`;
* the tools have the same names in another order → `tool_order_changed`, other names → `tool_set_varies`;
* an image appeared or disappeared (invalidates the messages level) → `image_added`; another model → `model_switched`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from parity import prompt as prompts
from parity.fingerprint import DATE_TIME, ID_LIKE

_FIX = {
    "volatile_timestamp": (
        "{where} holds a date/time that changes on every request ({example}), so nothing after it is ever read "
        "from the cache: move it after the last cache breakpoint (e.g. into the final user message) or round it "
        "to the day"
    ),
    "volatile_uuid": (
        "{where} holds an id that changes on every request ({example}): keep ids out of the cached prefix "
        "(send them in `metadata` or the final user message)"
    ),
    "unsorted_json_keys": (
        "{where} is the same JSON with its keys in another order{example}: the cache hashes bytes, so serialise "
        "with sorted keys (json.dumps(..., sort_keys=True)) or build the object in one fixed order"
    ),
    "tool_order_changed": (
        "the same tools arrive in another order ({example}); tool definitions are the first cache level, so every "
        "reorder re-writes everything: sort tools by name before sending"
    ),
    "tool_set_varies": (
        "the tool set differs between requests ({example}); tools are the first cache level, so each variant "
        "re-writes tools, system and messages: send every user the same full tool list (enforce permissions "
        "where the tool runs), or put the varying tools last with a breakpoint on the last shared tool"
    ),
    "image_added": (
        "an image appears in some requests and not others ({example}): that invalidates the messages-level "
        "cache; keep images out of the cached turns or put them after the last breakpoint"
    ),
    "model_switched": (
        "consecutive requests of this template go to different models ({example}); the cache is per model, "
        "so each switch re-writes the whole prefix: pin one model per task, or route whole conversations"
    ),
}



@dataclass(frozen=True)
class PairDiagnosis:
    """Where and why request b cannot reuse a's cached prefix (cause None: a difference with no known cause)."""

    cause: str | None
    block_path: str | None
    offset: int | None
    level: str
    invalidated_from: str | None
    reason: str  # first_divergence's reason: content, added, removed, model, images, tool_choice, ...
    example: str = ""
    in_last_message: bool = False

    def fix(self) -> str:
        template = _FIX.get(self.cause or "")
        if template is None:
            return ""
        where = self.block_path or self.level
        if self.offset is not None:
            where = f"{where} offset {self.offset}"
        return template.format(where=where, example=self.example)


def diagnose(a: Mapping[str, Any], b: Mapping[str, Any], ra: prompts.RenderedPrompt | None = None,
             rb: prompts.RenderedPrompt | None = None) -> PairDiagnosis | None:
    """Why b's prompt diverges from a's as the cache sees it; None when b reuses all of a (same or appended)."""
    ra = ra or prompts.render(a)
    rb = rb or prompts.render(b)
    div = prompts.first_divergence(ra, rb)
    if div is None:
        return None
    if div.reason == "model":
        return PairDiagnosis("model_switched", "model", None, "tools", "tools", "model",
                             f"{a.get('model')!r} then {b.get('model')!r}")
    if div.path is None:  # a request setting changed
        cause = "image_added" if div.reason == "images" else None
        example = f"{_count_images(a)} image(s) then {_count_images(b)}" if cause else f"{div.reason} changed"
        return PairDiagnosis(cause, div.reason, None, div.level, div.invalidated_from, div.reason, example)
    last = _in_last_message(div.path, b)
    if div.level == "tools":
        return _tools_diagnosis(a, b, div, ra, rb)
    seg_a = _segment(ra, div.path)
    seg_b = _segment(rb, div.path)
    if seg_a is None or seg_b is None:
        return PairDiagnosis(None, div.path, div.offset, div.level, div.invalidated_from, div.reason,
                             f"block {div.reason}", last)
    path, offset, text_a, text_b = _refine(div.path, div.offset or 0, seg_a, seg_b)
    cause, example = text_cause(text_a, text_b, offset)
    if cause is None and _same_json(seg_a.text, seg_b.text):
        cause, example = "unsorted_json_keys", _key_order_example(seg_a.block, seg_b.block, div.path)
    return PairDiagnosis(cause, path, offset, div.level, div.invalidated_from, div.reason, example, last)


def _tools_diagnosis(a: Mapping[str, Any], b: Mapping[str, Any], div: Any, ra: Any, rb: Any) -> PairDiagnosis:
    names_a, names_b = tool_names(a), tool_names(b)
    if sorted(names_a) != sorted(names_b):
        gone = sorted(set(names_a) - set(names_b))
        new = sorted(set(names_b) - set(names_a))
        bits = ([f"without {', '.join(gone)}"] if gone else []) + ([f"with {', '.join(new)}"] if new else [])
        if not bits:
            bits = [f"{len(names_a)} tools then {len(names_b)}"]
        return PairDiagnosis("tool_set_varies", div.path, div.offset, "tools", "tools", div.reason,
                             "; ".join(bits))
    if names_a != names_b:
        return PairDiagnosis("tool_order_changed", div.path, div.offset, "tools", "tools", div.reason,
                             f"[{', '.join(names_a[:4])}{', …' if len(names_a) > 4 else ''}] then "
                             f"[{', '.join(names_b[:4])}{', …' if len(names_b) > 4 else ''}]")
    seg_a, seg_b = _segment(ra, div.path), _segment(rb, div.path)
    if seg_a is not None and seg_b is not None:
        if _same_json(seg_a.text, seg_b.text):
            return PairDiagnosis("unsorted_json_keys", div.path, div.offset, "tools", "tools", div.reason,
                                 _key_order_example(seg_a.block, seg_b.block, div.path))
        cause, example = text_cause(seg_a.text, seg_b.text, div.offset or 0)
        return PairDiagnosis(cause, div.path, div.offset, "tools", "tools", div.reason, example)
    return PairDiagnosis(None, div.path, div.offset, "tools", "tools", div.reason, "tool definition changed")


def text_cause(a: str, b: str, offset: int) -> tuple[str | None, str]:
    """Classify the first difference of two texts at `offset`: (cause or None, a short 'x then y' example)."""
    for cause, pattern in (("volatile_uuid", ID_LIKE), ("volatile_timestamp", DATE_TIME)):
        ma, mb = _covering(pattern, a, offset), _covering(pattern, b, offset)
        if ma and mb:
            return cause, f"{ma!r} then {mb!r}"
    embedded = _embedded_json_reordered(a, b, offset)
    if embedded:
        return "unsorted_json_keys", f" (JSON at offset {embedded})"
    return None, ""


def _covering(pattern: Any, text: str, offset: int) -> str | None:
    lo = max(0, offset - 120)
    for match in pattern.finditer(text, lo, min(len(text), offset + 120)):
        if match.start() <= offset <= match.end() and match.end() > match.start():
            return match.group(0)
        if match.start() > offset:
            break
    return None


def _embedded_json_reordered(a: str, b: str, offset: int) -> int | None:
    """Start of a JSON object/array in both texts that spans `offset` and is equal but for key order."""
    decoder = json.JSONDecoder()
    tries = 0
    pos = offset
    while tries < 64:
        pos = max(a.rfind("{", 0, pos + 1), a.rfind("[", 0, pos + 1))
        if pos < 0:
            return None
        tries += 1
        try:
            obj_a, end_a = decoder.raw_decode(a, pos)
            obj_b, end_b = decoder.raw_decode(b, pos)
        except ValueError:
            pos -= 1
            continue
        if end_a > offset and obj_a == obj_b and a[pos:end_a] != b[pos:end_b]:
            return pos
        pos -= 1
        if pos < 0:
            return None
    return None


def _same_json(x: str, y: str) -> bool:
    try:
        return x != y and json.loads(x) == json.loads(y)
    except ValueError:
        return False


def _key_order_example(a: Any, b: Any, path: str) -> str:
    where = _reordered_path(a, b, path)
    return f" (keys of {where} in another order)" if where else ""


def _reordered_path(a: Any, b: Any, path: str) -> str | None:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        ka = [k for k in a if k != "cache_control"]
        kb = [k for k in b if k != "cache_control"]
        if ka != kb and sorted(ka) == sorted(kb):
            return path
        for k in ka:
            if k in b:
                found = _reordered_path(a[k], b[k], f"{path}.{k}")
                if found:
                    return found
    elif isinstance(a, list) and isinstance(b, list):
        for i, (x, y) in enumerate(zip(a, b)):
            found = _reordered_path(x, y, f"{path}.{i}")
            if found:
                return found
    return None


def _refine(path: str, offset: int, seg_a: Any, seg_b: Any) -> tuple[str, int, str, str]:
    """For text blocks that differ only in their text, point into the text itself: `system.0.text` offset N."""
    ba, bb = seg_a.block, seg_b.block
    ta, tb = ba.get("text"), bb.get("text")
    if isinstance(ta, str) and isinstance(tb, str) and ta != tb:
        rest_a = {k: v for k, v in ba.items() if k not in ("text", "cache_control")}
        rest_b = {k: v for k, v in bb.items() if k not in ("text", "cache_control")}
        if rest_a == rest_b and list(rest_a) == list(rest_b):
            return f"{path}.text", prompts._common_prefix(ta, tb), ta, tb
    return path, offset, seg_a.text, seg_b.text


def _segment(rendered: prompts.RenderedPrompt, path: str) -> prompts.Segment | None:
    index = rendered.index_of(path)
    return None if index is None else rendered.segments[index]


def tool_names(request: Mapping[str, Any]) -> list[str]:
    tools = request.get("tools") or []
    return [str(t.get("name")) for t in tools if isinstance(t, Mapping)]


def _count_images(request: Mapping[str, Any]) -> int:
    count = 0
    for message in request.get("messages") or []:
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, list):
            count += sum(1 for b in content if isinstance(b, Mapping) and b.get("type") == "image")
    return count


def _in_last_message(path: str, request: Mapping[str, Any]) -> bool:
    if not path.startswith("messages."):
        return False
    messages = request.get("messages") or []
    try:
        return int(path.split(".")[1]) >= len(messages) - 1
    except (IndexError, ValueError):
        return False


def suggest_breakpoint(rendered: prompts.RenderedPrompt) -> str | None:
    """Where a breakpoint should go: the last system block, else the last tool (the template's stable end)."""
    for level in ("system", "tools"):
        segs = [s for s in rendered.level_segments(level) if s.cacheable]
        if segs:
            return segs[-1].path
    return None


__all__ = ["PairDiagnosis", "diagnose", "suggest_breakpoint", "text_cause", "tool_names"]
