"""The output contract of a routed task, checked on every complete answer before the client sees any of it.

Gateways usually fall back on HTTP errors only; the answers that hurt look fine on the wire: cut at max_tokens,
empty, a refusal, JSON of the wrong shape, a label outside the set. `check` returns the first way a Message
breaks its task's `Contract` (a `ContractViolation` with a short machine `reason` and a human `detail`), or None.

What is checked, in order: truncation (`stop_reason == "max_tokens"`), refusal (only when the contract says
`refusal: "fallback"`; by default a refusal is the answer and is passed on, never silently routed around),
then, unless the model stopped to call a tool: empty output, length, JSON (parsed from the whole text, a
```json fence, or the outermost object), schema, required fields, label set, regex (`re.fullmatch` on the
stripped text). A tool call's `input` is the JSON checked when the answer has no text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jsonschema

from parity.policy import Contract


@dataclass(frozen=True)
class ContractViolation:
    """Why an answer is not acceptable: `reason` is one of truncated, refusal, empty, too_short, too_long,
    not_json, schema, missing_field, label, regex, malformed."""

    reason: str
    detail: str

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


def check(message: Any, contract: Contract) -> ContractViolation | None:
    """The first way `message` (a Message dict) breaks `contract`, or None if it keeps it."""
    if not isinstance(message, dict) or not isinstance(message.get("content"), list):
        return ContractViolation("malformed", "the answer is not a Message with a content list")
    stop = message.get("stop_reason")
    if stop == "max_tokens":
        return ContractViolation("truncated", "stop_reason is max_tokens: the answer was cut at the token limit")
    if stop == "refusal":
        if contract.refusal == "fallback":
            return ContractViolation("refusal", "the model refused (the task's contract says to fall back)")
        return None  # the refusal is the answer; the policy did not ask to route around it
    if stop == "tool_use":
        return None  # a tool call is not the final answer the contract describes
    blocks = message["content"]
    text = "".join(b.get("text", "") for b in blocks if isinstance(b, dict) and b.get("type") == "text")
    tool_inputs = [b.get("input") for b in blocks if isinstance(b, dict) and b.get("type") == "tool_use"]
    stripped = text.strip()
    if not stripped and not tool_inputs:
        return ContractViolation("empty", "the answer has no text")
    if stripped:
        if len(stripped) < max(contract.min_chars, 0):
            return ContractViolation("too_short", f"{len(stripped)} characters < min_chars {contract.min_chars}")
        if contract.max_chars is not None and len(stripped) > contract.max_chars:
            return ContractViolation("too_long", f"{len(stripped)} characters > max_chars {contract.max_chars}")
    if contract.json_schema is not None or contract.required_fields:
        value, ok = _json_value(stripped) if stripped else (tool_inputs[0], True)
        if not ok:
            return ContractViolation("not_json", "the answer is not JSON (the contract has a schema or required fields)")
        if contract.json_schema is not None:
            error = _schema_error(value, contract.json_schema)
            if error is not None:
                return ContractViolation("schema", error)
        missing = [f for f in contract.required_fields if not _has_field(value, f)]
        if missing:
            return ContractViolation("missing_field", f"required field(s) {', '.join(missing)} absent")
    if contract.labels is not None:
        if stripped not in contract.labels:
            shown = stripped if len(stripped) <= 60 else stripped[:57] + "..."
            return ContractViolation("label", f"{shown!r} is not one of the labels {contract.labels}")
    if contract.regex is not None:
        try:
            pattern = _pattern(contract.regex)
        except re.error as exc:
            return ContractViolation("regex", f"the contract's regex {contract.regex!r} is invalid ({exc}); fix the policy file")
        if pattern.fullmatch(stripped) is None:
            return ContractViolation("regex", f"the answer does not match {contract.regex!r}")
    return None


def _json_value(text: str) -> tuple[Any, bool]:
    candidates = [text]
    if "```" in text:
        inner = text.split("```", 2)[1]
        candidates.append(inner.split("\n", 1)[1] if inner.lower().startswith("json") else inner)
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            return json.loads(candidate), True
        except (ValueError, RecursionError):
            continue
    return None, False


@lru_cache(maxsize=256)
def _validator(schema_json: str) -> jsonschema.protocols.Validator:
    schema = json.loads(schema_json)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return cls(schema)


def _schema_error(value: Any, schema: dict[str, Any]) -> str | None:
    try:
        validator = _validator(json.dumps(schema, sort_keys=True))
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    except (jsonschema.exceptions.SchemaError, ValueError, TypeError) as exc:
        return f"the contract's schema cannot be used ({type(exc).__name__}); fix the policy file"
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return f"at {where}: {error.message[:200]}"


def _has_field(value: Any, path: str) -> bool:
    """`path` is a dotted path ("result.label"); list indices are numbers ("items.0.id")."""
    node = value
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    return node is not None


@lru_cache(maxsize=256)
def _pattern(regex: str) -> re.Pattern[str]:
    return re.compile(regex, re.DOTALL)
