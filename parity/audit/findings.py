"""The Finding record and the JSON Schema of `parity audit --json` (documented in docs/audit-json.md).

A finding is one thing a lever found in one family, with the evidence to check it (the 1-based lines of
requests that show it), what it costs now and what fixing it would save. Money is a decimal string in the
JSON, never a float. The schema is versioned (`schema: "parity.audit/1"`); fields are only ever added.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import jsonschema

from parity.audit.cost import usd

__all__ = [
    "CACHE_CAUSES",
    "LEVERS",
    "REPORT_SCHEMA",
    "SCHEMA_ID",
    "Finding",
    "validate_report",
]

SCHEMA_ID = "parity.audit/1"
LEVERS = ("cost", "tokens", "cache", "batch", "rightsize")

#: The causes the cache lever names (issue 5): what breaks a prefix, or why a stable one is not read.
CACHE_CAUSES = (
    "volatile_timestamp",
    "volatile_uuid",
    "unsorted_json_keys",
    "tool_order_changed",
    "tool_set_varies",
    "image_added",
    "model_switched",
    "no_breakpoint",
    "below_min_cacheable",
    "ttl_expired",
)


@dataclass
class Finding:
    """One lever's finding in one family, with evidence, cost now and the saving if acted on."""

    lever: str
    family: str
    cause: str
    fix: str
    requests: int = 0
    cost_usd: Decimal = Decimal(0)
    saving_usd: Decimal = Decimal(0)
    block_path: str | None = None
    offset: int | None = None
    example_lines: list[int] = field(default_factory=list)
    example_files: list[str] = field(default_factory=list)
    label: str = ""
    hypothesis: bool = False
    detail: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.lever not in LEVERS:
            raise ValueError(f"unknown lever {self.lever!r}; expected one of {LEVERS}")
        if self.lever == "cache" and self.cause not in CACHE_CAUSES:
            raise ValueError(f"unknown cache cause {self.cause!r}; expected one of {CACHE_CAUSES}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "lever": self.lever,
            "family": self.family,
            "label": self.label,
            "cause": self.cause,
            "block_path": self.block_path,
            "offset": self.offset,
            "example_lines": list(self.example_lines),
            "example_files": list(self.example_files),
            "requests": self.requests,
            "cost_usd": usd(self.cost_usd),
            "saving_usd": usd(self.saving_usd),
            "hypothesis": self.hypothesis,
            "fix": self.fix,
            "detail": self.detail,
        }


_MONEY = {"type": "string", "pattern": r"^-?\d+(\.\d+)?$"}
_MONEY_OR_NULL = {"anyOf": [_MONEY, {"type": "null"}]}
_TOKENS = {
    "type": "object",
    "required": ["input", "cache_write_5m", "cache_write_1h", "cache_read", "output"],
    "additionalProperties": {"type": "integer"},
}
_BREAKDOWN = {
    "type": "object",
    "required": ["input", "cache_write_5m", "cache_write_1h", "cache_read", "output", "batch_discount", "total"],
    "properties": {k: _MONEY for k in ("input", "cache_write_5m", "cache_write_1h", "cache_read", "output",
                                        "batch_discount", "total")},
}
_COST_ROW = {
    "type": "object",
    "required": ["requests", "cost_usd", "breakdown", "tokens"],
    "properties": {"requests": {"type": "integer"}, "cost_usd": _MONEY, "breakdown": _BREAKDOWN, "tokens": _TOKENS},
}

#: JSON Schema (draft 2020-12) of the report `parity audit --json` writes.
REPORT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://parity.dev/schemas/audit-1.json",
    "title": "parity audit report",
    "type": "object",
    "required": ["schema", "generated_at", "inputs", "totals", "malformed", "by_model", "by_family", "by_day",
                 "top_templates", "cache", "batch", "rightsize", "tokens", "findings", "savings"],
    "properties": {
        "schema": {"const": SCHEMA_ID},
        "generated_at": {"type": "string"},
        "inputs": {"type": "array", "items": {
            "type": "object", "required": ["file", "lines", "records"],
            "properties": {"file": {"type": "string"}, "lines": {"type": "integer"}, "records": {"type": "integer"}},
        }},
        "period": {"type": "object", "properties": {"first": {"type": ["string", "null"]},
                                                      "last": {"type": ["string", "null"]}}},
        "totals": {
            "type": "object",
            "required": ["requests", "cost_usd", "input_cost_usd", "output_cost_usd", "breakdown", "tokens",
                         "errors", "malformed"],
            "properties": {
                "requests": {"type": "integer"},
                "cost_usd": _MONEY,
                "input_cost_usd": _MONEY,
                "output_cost_usd": _MONEY,
                "output_share": {"type": "number"},
                "breakdown": _BREAKDOWN,
                "tokens": _TOKENS,
                "errors": {"type": "integer"},
                "malformed": {"type": "integer"},
            },
        },
        "malformed": {"type": "array", "items": {
            "type": "object", "required": ["file", "line", "reason"],
            "properties": {"file": {"type": "string"}, "line": {"type": "integer"}, "reason": {"type": "string"}},
        }},
        "malformed_listed_max": {"type": "integer"},
        "by_model": {"type": "array", "items": {"allOf": [_COST_ROW, {"required": ["model"]}]}},
        "by_family": {"type": "array", "items": {"allOf": [_COST_ROW, {
            "required": ["family", "kind", "label", "models", "example_line"],
            "properties": {"family": {"type": "string"}, "kind": {"enum": ["tag", "fingerprint", "other"]},
                           "label": {"type": "string"}, "models": {"type": "object"}},
        }]}},
        "by_day": {"type": "array", "items": {"allOf": [_COST_ROW, {"required": ["day"]}]}},
        "top_templates": {"type": "array", "items": {"type": "object", "required": ["family", "cost_usd", "share"]}},
        "cache": {"type": "object", "required": ["families"], "properties": {"families": {"type": "array", "items": {
            "type": "object",
            "required": ["family", "requests", "hit_ratio", "read_tokens", "written_tokens", "uncached_tokens",
                         "missed_tokens", "breakpoint", "ttl", "causes"],
        }}}},
        "batch": {"type": "object", "required": ["families", "cost_now_usd", "cost_batched_usd", "saving_usd"],
                  "properties": {"cost_now_usd": _MONEY, "cost_batched_usd": _MONEY, "saving_usd": _MONEY}},
        "rightsize": {"type": "object", "required": ["candidates", "status"]},
        "tokens": {"type": "object", "required": ["recounted"]},
        "findings": {"type": "array", "items": {
            "type": "object",
            "required": ["lever", "family", "cause", "block_path", "offset", "example_lines", "requests",
                         "cost_usd", "saving_usd", "fix"],
            "properties": {
                "lever": {"enum": list(LEVERS)},
                "family": {"type": "string"},
                "cause": {"type": "string"},
                "block_path": {"type": ["string", "null"]},
                "offset": {"type": ["integer", "null"]},
                "example_lines": {"type": "array", "items": {"type": "integer", "minimum": 1}},
                "example_files": {"type": "array", "items": {"type": "string"}},
                "requests": {"type": "integer"},
                "cost_usd": _MONEY,
                "saving_usd": _MONEY,
                "hypothesis": {"type": "boolean"},
                "fix": {"type": "string"},
                "detail": {"type": "object"},
            },
            "allOf": [{"if": {"properties": {"lever": {"const": "cache"}}},
                       "then": {"properties": {"cause": {"enum": list(CACHE_CAUSES)}}}}],
        }},
        "savings": {
            "type": "object",
            "required": ["levers", "stacked", "assumptions"],
            "properties": {
                "levers": {"type": "array", "items": {"type": "object",
                                                       "required": ["lever", "saving_usd", "applies_to_usd"]}},
                "stacked": {"type": "object", "required": ["steps", "cost_before_usd", "cost_after_usd",
                                                           "saving_usd", "blended_saving_pct"]},
                "assumptions": {"type": "array", "items": {"type": "string"}},
            },
        },
    },
}


def validate_report(report: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError if `report` does not follow the documented schema."""
    jsonschema.validate(report, REPORT_SCHEMA)
