"""Langfuse observations export → Exchanges: the blob-storage export (`observations_v2/`, JSONL, CSV, or Parquet
when `pyarrow` is installed: `pip install 'parity[parquet]'`) and the Observations API's rows (camelCase), one
observation per line or as a JSON array. Every shape carries the same columns; in Parquet the maps are map
columns and the times timestamps.

Fields (langfuse-docs `blob-storage-export-fields.mdx`): `id`, `trace_id`, `type`, `start_time`, `end_time`,
`provided_model_name`, `usage_details` (map), `cost_details` (map), `total_cost`, `input`, `output`, `metadata`,
`model_parameters`; in CSV the maps are JSON strings. Only `type` GENERATION rows are calls; spans, events, tools
and the like are skipped.

Tokens: the Claude keys Langfuse prices in `usage_details` are `input`/`input_tokens`, `output`/`output_tokens`,
cache reads as `cache_read_input_tokens`/`input_cache_read`/`input_cached_tokens`, writes as
`cache_creation_input_tokens`/`input_cache_creation`, split as `input_cache_creation_5m`/`input_cache_creation_1h`.
Langfuse prices each key separately, so `input` is read as *exclusive* of cache tokens (as Anthropic reports it);
an emitter that logged inclusive input makes Langfuse count the cache twice (langfuse #12306). Checked per row:
when `usage_details.total` equals input + output alone although the row has cache tokens, the input was inclusive,
and the read stops (`SemanticsError`) rather than guess; otherwise the audit's side-by-side cost names the bug. Writes without a split are 5-minute writes. A batch call is one whose `metadata` or
`model_parameters` say `service_tier: "batch"`. `total_cost` is Langfuse's own cost, kept beside Parity's.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from parity.exchange import Exchange, Rejected
from parity.readers.common import (
    RowError,
    SemanticsError,
    count,
    exchange,
    json_cell,
    model_id,
    money,
    records,
    rows,
    timestamp,
    usage,
)

FORMAT = "langfuse"
READ_KEYS = ("cache_read_input_tokens", "input_cache_read", "input_cached_tokens", "cache_read")
WRITE_KEYS = ("cache_creation_input_tokens", "input_cache_creation", "cache_creation")


def is_langfuse_row(keys: Any) -> bool:
    names = set(keys)
    return ("trace_id" in names or "traceId" in names) and bool(
        names & {"usage_details", "usageDetails", "provided_model_name", "providedModelName", "total_cost",
                 "totalCost", "calculatedTotalCost"})


def read_langfuse(path: str | Path, *, shape: str | None = None) -> Iterator[tuple[int, Exchange | Rejected]]:
    """Yield (line, or row of a Parquet file; Exchange | Rejected) for every GENERATION observation."""
    file = str(path)
    return rows(file, records(path, shape), lambda line, row: _row(row, file, line))


def _get(row: Mapping[str, Any], snake: str, camel: str) -> Any:
    value = row.get(snake)
    return row.get(camel) if value is None or value == "" else value


def _first(details: Mapping[str, Any], keys: tuple[str, ...]) -> int:
    for key in keys:
        if details.get(key) not in (None, ""):
            return count(details[key], f"usage_details.{key}")
    return 0


def _row(row: Any, file: str, line: int) -> Exchange | None:
    if not isinstance(row, Mapping):
        raise RowError(f"expected an observation object, got {type(row).__name__}")
    kind = str(row.get("type") or "GENERATION").upper()
    if kind != "GENERATION":
        return None
    model = model_id(_get(row, "provided_model_name", "providedModelName") or row.get("model"),
                     "provided_model_name")
    started = timestamp(_get(row, "start_time", "startTime"), "start_time")
    end_raw = _get(row, "end_time", "endTime")
    ended = timestamp(end_raw, "end_time") if end_raw else started
    details = json_cell(_get(row, "usage_details", "usageDetails"), "usage_details") or {}
    if not isinstance(details, Mapping):
        raise RowError("usage_details must be an object of token counts")
    uncached = _first(details, ("input", "input_tokens"))
    output = _first(details, ("output", "output_tokens"))
    read = _first(details, READ_KEYS)
    five = count(details.get("input_cache_creation_5m"), "usage_details.input_cache_creation_5m")
    hour = count(details.get("input_cache_creation_1h"), "usage_details.input_cache_creation_1h")
    write = _first(details, WRITE_KEYS)
    if five or hour:
        if write and write != five + hour:
            raise RowError(f"usage_details splits cache writes into {five} 5m + {hour} 1h tokens, but its "
                           f"cache_creation total is {write}; they must agree")
    else:
        five = write
    total = details.get("total")
    if total not in (None, "") and read + five + hour and count(total, "usage_details.total") == uncached + output:
        raise SemanticsError(
            f"usage_details.total ({total}) is input + output alone although the row has {read + five + hour} cache "
            "tokens: the emitter counted `input` inclusive of the cache, so Langfuse's separate cache keys count it "
            "twice (langfuse #12306). Parity reads Langfuse's `input` as exclusive of cache and stops rather than "
            "guess; re-export with the emitter's raw Anthropic usage", file=file, line=line, field="usage_details.input")
    cost = money(_get(row, "total_cost", "totalCost"), "total_cost")
    if cost is None:
        cost = money(row.get("calculatedTotalCost"), "calculatedTotalCost")
    tier = None
    for field in ("metadata", "model_parameters", "modelParameters"):
        value = json_cell(row.get(field), field) if isinstance(row.get(field), str) and \
            row[field].strip().startswith("{") else row.get(field)
        if isinstance(value, Mapping) and value.get("service_tier"):
            tier = str(value["service_tier"])
            break
    tags = {"langfuse.trace_id": str(_get(row, "trace_id", "traceId") or ""),
            "langfuse.observation_id": str(row.get("id") or "")}
    if row.get("name"):
        tags["task"] = str(row["name"])
    return exchange(fmt=FORMAT, model=model, usage_obj=usage(uncached, read, five, hour, output, service_tier=tier),
                    started_at=started, duration_ms=int((ended - started).total_seconds() * 1000),
                    ident=str(row.get("id") or ""), source_cost=cost, batch=tier == "batch",
                    request=_request(row, model), tags=tags)


def _request(row: Mapping[str, Any], model: str) -> dict[str, Any] | None:
    """The request when the export carried `input` as a message list (content capture on)."""
    value = row.get("input")
    if isinstance(value, str):
        try:
            value = json_cell(value, "input")
        except RowError:
            return None
    if isinstance(value, Mapping) and isinstance(value.get("messages"), list):
        value = value["messages"]
    if not isinstance(value, list) or not value or not all(isinstance(m, Mapping) for m in value):
        return None
    system = [m.get("content") for m in value if m.get("role") == "system"]
    turns = [{"role": "assistant" if m.get("role") == "assistant" else "user", "content": m.get("content", "")}
             for m in value if m.get("role") != "system"]
    request: dict[str, Any] = {"model": model, "messages": turns}
    if system and isinstance(system[0], (str, list)):
        request["system"] = system[0]
    return request


__all__ = ["FORMAT", "is_langfuse_row", "read_langfuse"]
