"""Helicone export (`npx @helicone/export`, JSONL or a JSON array) → Exchanges.

Fields (`HeliconeRequest` in Helicone's `packages/llm-mapper/types.ts`): `request_id`, `request_created_at`,
`request_model`, `response_model`, `model`, `provider`, `prompt_tokens`, `completion_tokens`,
`prompt_cache_read_tokens`, `prompt_cache_write_tokens`, `costUSD`, `delay_ms`, `response_status`, and with
`--include-body` the `request_body` and `response_body`. `cache_enabled`/`cache_reference_id` are Helicone's own
response cache (a row served from it is skipped: Anthropic billed nothing).

Tokens: whether `prompt_tokens` includes the cache tokens is not documented, and Helicone has no 5m/1h split. So:

* when a row carries the Anthropic response body, its `usage` is the truth (exclusive input, the TTL split), and
  the columns are checked against it: they must read as inclusive or as exclusive, the same way throughout the file;
* otherwise the file's convention is found per file: if any row has `prompt_tokens` below its cache reads + writes,
  the file counts input exclusive of cache, else inclusive; all writes are then 5-minute writes.

A batch call is one whose response body says `service_tier: "batch"` or whose `request_path` is a batch path.
`costUSD` is Helicone's own cost, kept beside Parity's.
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
    json_records,
    model_id,
    money,
    records,
    rows,
    timestamp,
    usage,
)

FORMAT = "helicone"


def is_helicone_row(keys: Any) -> bool:
    names = set(keys)
    return "request_id" in names and bool(names & {"costUSD", "prompt_cache_read_tokens", "request_created_at",
                                                   "prompt_cache_write_tokens"})


def read_helicone(path: str | Path) -> Iterator[tuple[int, Exchange | Rejected]]:
    """Yield (line, Exchange | Rejected) for every exported request; the file's input convention is found first."""
    file = str(path)
    inclusive = _file_convention(path)
    state: dict[str, Any] = {"columns": None}

    def read_row(line: int, row: Any) -> Exchange | None:
        return _row(row, file, line, inclusive, state)

    return rows(file, records(path, "json"), read_row)


def _file_convention(path: str | Path) -> bool:
    """True when the file's prompt_tokens include cache tokens (no row has fewer prompt tokens than cache tokens)."""
    for _, row, _ in json_records(path):
        if not isinstance(row, Mapping):
            continue
        try:
            prompt = count(row.get("prompt_tokens"), "prompt_tokens")
            cache = count(row.get("prompt_cache_read_tokens"), "p") + count(row.get("prompt_cache_write_tokens"), "p")
        except RowError:
            continue
        if prompt < cache:
            return False
    return True


def _row(row: Any, file: str, line: int, inclusive: bool, state: dict[str, Any]) -> Exchange | None:
    if not isinstance(row, Mapping):
        raise RowError(f"expected an exported request object, got {type(row).__name__}")
    if row.get("cache_reference_id") not in (None, "", "00000000-0000-0000-0000-000000000000"):
        return None  # answered from Helicone's response cache: no call reached Anthropic
    model = model_id(row.get("response_model") or row.get("request_model") or row.get("model"), "model")
    started = timestamp(row.get("request_created_at"), "request_created_at")
    delay = count(row.get("delay_ms"), "delay_ms")
    prompt = count(row.get("prompt_tokens"), "prompt_tokens")
    output = count(row.get("completion_tokens"), "completion_tokens")
    read = count(row.get("prompt_cache_read_tokens"), "prompt_cache_read_tokens")
    write = count(row.get("prompt_cache_write_tokens"), "prompt_cache_write_tokens")
    cost = money(row.get("costUSD", row.get("cost")), "costUSD")
    body = json_cell(row.get("response_body"), "response_body")
    req_body = json_cell(row.get("request_body"), "request_body")
    body_usage = body.get("usage") if isinstance(body, Mapping) else None
    path_batch = "batches" in str(row.get("request_path") or "")
    status = row.get("response_status")
    tags = {"helicone.request_id": str(row.get("request_id") or "")}
    request = dict(req_body) if isinstance(req_body, Mapping) and isinstance(req_body.get("messages"), list) else None
    if _status(status) >= 400:
        return exchange(fmt=FORMAT, model=model, usage_obj={}, started_at=started, duration_ms=delay, tags=tags,
                        source_cost=cost, request=request, error=f"HTTP {status}")
    if isinstance(body_usage, Mapping):
        uncached = count(body_usage.get("input_tokens"), "response_body.usage.input_tokens")
        b_read = count(body_usage.get("cache_read_input_tokens"), "response_body.usage.cache_read_input_tokens")
        b_write = count(body_usage.get("cache_creation_input_tokens"),
                        "response_body.usage.cache_creation_input_tokens")
        split = body_usage.get("cache_creation") or {}
        hour = count(split.get("ephemeral_1h_input_tokens") if isinstance(split, Mapping) else 0,
                     "response_body.usage.cache_creation.ephemeral_1h_input_tokens")
        inclusive_row, exclusive_row = prompt == uncached + b_read + b_write, prompt == uncached
        columns = None if inclusive_row and exclusive_row else "inclusive" if inclusive_row else \
            "exclusive" if exclusive_row else "neither"
        if columns == "neither" or (columns and state["columns"] not in (None, columns)):
            raise SemanticsError(
                f"prompt_tokens is {prompt}, but the response body's usage has {uncached} uncached input + {b_read} "
                f"cache reads + {b_write} cache writes: the column reads "
                + ("neither as inclusive nor as exclusive of cache tokens" if columns == "neither" else
                   f"as {columns} of cache tokens, unlike the rows before it (they read as {state['columns']})")
                + ". Parity stops rather than guess which count was billed", file=file, line=line,
                field="prompt_tokens")
        state["columns"] = columns or state["columns"]
        tier = body_usage.get("service_tier")
        usage_obj = usage(uncached, b_read, b_write - hour, hour, count(body_usage.get("output_tokens"),
                          "response_body.usage.output_tokens"), service_tier=tier if isinstance(tier, str) else None)
    else:
        uncached = prompt - read - write if inclusive else prompt
        usage_obj = usage(uncached, read, write, 0, output)
        tags["helicone.cache_ttl"] = "unknown: writes priced as 5-minute"
    content = body.get("content") if isinstance(body, Mapping) and isinstance(body.get("content"), list) else None
    batch = path_batch or usage_obj.get("service_tier") == "batch"
    return exchange(fmt=FORMAT, model=model, usage_obj=usage_obj, started_at=started, duration_ms=delay,
                    ident=str(row.get("response_id") or row.get("request_id") or ""), source_cost=cost, batch=batch,
                    request=request, content=content, tags=tags)


def _status(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return int(value) if isinstance(value, str) and value.strip().isdigit() else 0


__all__ = ["FORMAT", "is_helicone_row", "read_helicone"]
