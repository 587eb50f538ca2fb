"""The brain's answer shaped as the API would return it: tool_choice and strict tools honoured, structured output
made to conform, stop sequences and the max_tokens budget applied in generation order, and the usage to match."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from parity import tokenizer
from parity.api import ids
from parity.emulator.brains.base import BrainReply
from parity.emulator.schema_instance import instance_for, is_valid, repair


@dataclass
class Shaped:
    """The answer as the API returns it: content blocks, why it stopped, and the output tokens it cost."""

    content: list[dict[str, Any]]
    stop_reason: str
    stop_sequence: str | None
    stop_details: dict[str, Any] | None
    output_tokens: int


def normalise(content: Any) -> list[dict[str, Any]]:
    """Keep the text and tool_use blocks of a brain's answer, in order, with ids on every tool_use."""
    out: list[dict[str, Any]] = []
    for block in content or []:
        if not isinstance(block, Mapping):
            continue
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            out.append({"type": "text", "text": block["text"]})
        elif block.get("type") == "tool_use" and isinstance(block.get("name"), str):
            tool_input = block.get("input")
            out.append(
                {
                    "type": "tool_use",
                    "id": block.get("id") or ids.tool_use_id(),
                    "name": block["name"],
                    "input": dict(tool_input) if isinstance(tool_input, Mapping) else {},
                }
            )
    return out


def _tools_by_name(body: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in body.get("tools") or [] if isinstance(t, dict) and "name" in t}


def apply_tool_choice(content: list[dict[str, Any]], body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """`none` removes tool calls; `any`/`tool` guarantee one (prefilled, so no text before it); parallel off."""
    choice = body.get("tool_choice") or {"type": "auto"}
    kind = choice["type"]
    if kind == "none" or not body.get("tools"):
        return [b for b in content if b["type"] != "tool_use"]
    if kind in ("any", "tool"):
        tools = _tools_by_name(body)
        wanted = choice.get("name") if kind == "tool" else None
        calls = [b for b in content if b["type"] == "tool_use" and (wanted is None or b["name"] == wanted)]
        if not calls:
            name = wanted or next((n for n, t in tools.items() if "input_schema" in t), next(iter(tools)))
            schema = tools[name].get("input_schema") or {"type": "object"}
            calls = [{"type": "tool_use", "id": ids.tool_use_id(), "name": name, "input": instance_for(schema)}]
        content = calls
    if choice.get("disable_parallel_tool_use"):
        first = next((i for i, b in enumerate(content) if b["type"] == "tool_use"), None)
        if first is not None:
            content = content[: first + 1]
    return content


def enforce_strict_tools(content: list[dict[str, Any]], body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """`strict: true` tools get inputs that validate against their schema (constrained decoding)."""
    tools = _tools_by_name(body)
    for block in content:
        tool = tools.get(block["name"]) if block["type"] == "tool_use" else None
        if tool and tool.get("strict") and "input_schema" in tool:
            block["input"] = repair(block["input"], tool["input_schema"])
    return content


def shape(content: list[dict[str, Any]], reply: BrainReply, body: Mapping[str, Any], model: str) -> Shaped:
    """Stop sequences, then the max_tokens budget, in generation order; stop_reason and output_tokens to match."""
    stop_sequence = None
    stop_sequences = [s for s in body.get("stop_sequences") or [] if s]
    if stop_sequences:
        for i, block in enumerate(content):
            if block["type"] != "text":
                continue
            hits = [(block["text"].find(s), -len(s), s) for s in stop_sequences if s in block["text"]]
            if hits:
                at, _, stop_sequence = min(hits)
                content = content[:i] + [{"type": "text", "text": block["text"][:at]}]
                break
    budget = body["max_tokens"]
    kept: list[dict[str, Any]] = []
    used = 0
    truncated = False
    for block in content:
        cost = _block_tokens(block, model)
        if used + cost <= budget:
            kept.append(block)
            used += cost
            continue
        truncated = True
        if block["type"] == "text":
            text = truncate_text(block["text"], budget - used, model)
            if text:
                kept.append({"type": "text", "text": text})
        used = budget
        break
    kept = [b for b in kept if b["type"] != "text" or b["text"]]
    if truncated:
        stop_reason, stop_sequence = "max_tokens", None
    elif stop_sequence is not None:
        stop_reason = "stop_sequence"
    elif any(b["type"] == "tool_use" for b in kept):
        stop_reason = "tool_use"
    elif reply.stop_reason in ("refusal", "pause_turn", "model_context_window_exceeded"):
        stop_reason = reply.stop_reason
    else:
        stop_reason = "end_turn"
    details = reply.stop_details if stop_reason == "refusal" else None
    output_tokens = budget if truncated else max(1, used)
    return Shaped(kept, stop_reason, stop_sequence, details, output_tokens)


def _block_tokens(block: dict[str, Any], model: str) -> int:
    if block["type"] == "text":
        return tokenizer.count_text(block["text"], model)
    tool_use = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": block["input"]}
    return tokenizer.count_block(tool_use, model)


def truncate_text(text: str, tokens: int, model: str | None = None) -> str:
    """The longest prefix of `text` that costs at most `tokens` tokens (what a generation cut at max_tokens left)."""
    if tokens <= 0:
        return ""
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if tokenizer.count_text(text[:mid], model) <= tokens:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo]


# ---- structured outputs --------------------------------------------------------------------------------------------


def parsed_json(content: list[dict[str, Any]]) -> Any:
    """The JSON value in the answer's text (whole text, a ```json fence, or the outermost {...}/[...]), else None."""
    text = "".join(b["text"] for b in content if b["type"] == "text").strip()
    candidates = [text]
    if "```" in text:
        inner = text.split("```", 2)[1]
        candidates.append(inner.split("\n", 1)[1] if inner.startswith(("json", "JSON")) else inner)
    for opener, closer in (("{", "}"), ("[", "]")):
        start, end = text.find(opener), text.rfind(closer)
        if 0 <= start < end:
            candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except (ValueError, RecursionError):
            continue
    return None


def conforming(content: list[dict[str, Any]], schema: dict[str, Any]) -> Any:
    """The answer's JSON if its whole text is exactly a value valid under `schema`, else None."""
    text = "".join(b["text"] for b in content if b["type"] == "text").strip()
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if is_valid(value, schema) else None


def usage_of(plan: Any) -> dict[str, Any]:
    """The input counters of a `CachePlan`, as the usage object carries them."""
    usage = plan.usage
    creation = usage.get("cache_creation") or {}
    return {
        "input_tokens": int(usage["input_tokens"]),
        "cache_creation_input_tokens": int(usage.get("cache_creation_input_tokens") or 0),
        "cache_read_input_tokens": int(usage.get("cache_read_input_tokens") or 0),
        "cache_creation": dict(creation),
    }
