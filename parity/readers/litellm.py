"""LiteLLM spend logs → Exchanges: a CSV export of the `LiteLLM_SpendLogs` table, or the JSON rows `/spend/logs`
returns (a JSON array, or one row per line).

Columns (BerriAI/litellm `schema.prisma`): `request_id`, `call_type`, `spend`, `prompt_tokens`,
`completion_tokens`, `startTime`, `endTime`, `model`, `custom_llm_provider`, `metadata` (JSON), `cache_hit`,
`messages`, `response`, `status`, ...

Tokens: cache tokens are not columns; they sit in `metadata.usage_object` (`cache_read_input_tokens`,
`cache_creation_input_tokens`, or `prompt_tokens_details.{cached_tokens, cache_creation_tokens,
cache_creation_token_details.{ephemeral_5m_input_tokens, ephemeral_1h_input_tokens}}`). LiteLLM's `prompt_tokens`
counts input *inclusive* of cache reads and writes, so uncached input = prompt_tokens - reads - writes; a row whose
prompt_tokens is smaller than its cache tokens contradicts that and stops the read (`SemanticsError`). Writes with no
TTL split are 5-minute writes, as the API counts them.

Other rules: `cache_hit` true is LiteLLM's own *response* cache (no call reached Anthropic, nothing billed), so the
row is skipped, not priced; `status` "failure" is an error, not billed; a batch call is one whose usage object says
`service_tier: "batch"` or whose `call_type` names a batch. `spend` is LiteLLM's own cost, kept beside Parity's.
`messages` is `{}` unless `store_prompts_in_spend_logs` was on; without it the audit is cost-level only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from parity.exchange import Exchange, Rejected
from parity.readers.common import (
    RowError,
    count,
    exchange,
    json_cell,
    model_id,
    money,
    rows,
    split_inclusive,
    timestamp,
    usage,
)

FORMAT = "litellm"
COLUMNS = frozenset({"request_id", "spend", "startTime", "call_type"})
"""Columns whose presence marks a LiteLLM spend-log row (CSV header or JSON keys)."""


def is_litellm_row(keys: Any) -> bool:
    return COLUMNS <= set(keys)


def read_litellm(path: str | Path, *, is_csv: bool | None = None) -> Iterator[tuple[int, Exchange | Rejected]]:
    """Yield (line, Exchange | Rejected) for every row; skipped rows (response-cache hits) yield nothing."""
    file = str(path)
    if is_csv is None:
        with open(path, "rb") as handle:
            is_csv = handle.read(1).lstrip() not in (b"{", b"[")

    def read_row(line: int, row: Any) -> Exchange | None:
        return _row(row, file, line)

    return rows(path, read_row, is_csv=is_csv)


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() in ("true", "1", "t", "yes"))


def _row(row: Any, file: str, line: int) -> Exchange | None:
    if not isinstance(row, Mapping):
        raise RowError(f"expected a spend-log row object, got {type(row).__name__}")
    if _truthy(row.get("cache_hit")):
        return None  # LiteLLM's response cache answered: Anthropic never saw (or billed) this call
    model = model_id(row.get("model") or row.get("model_group"), "model")
    started = timestamp(row.get("startTime"), "startTime")
    ended = timestamp(row["endTime"], "endTime") if row.get("endTime") else started
    metadata = json_cell(row.get("metadata"), "metadata") or {}
    if not isinstance(metadata, Mapping):
        raise RowError("metadata must be a JSON object")
    usage_obj = metadata.get("usage_object") or {}
    if not isinstance(usage_obj, Mapping):
        raise RowError("metadata.usage_object must be an object")
    spend = money(row.get("spend"), "spend")
    tier = usage_obj.get("service_tier")
    call_type = str(row.get("call_type") or "")
    batch = tier == "batch" or "batch" in call_type.lower()
    tags = {"litellm.request_id": str(row.get("request_id") or "")}
    for key in ("team_id", "user", "end_user"):
        if row.get(key):
            tags[f"litellm.{key}"] = str(row[key])
    request = _request(row, model)
    if str(row.get("status") or "").lower() == "failure":
        return exchange(fmt=FORMAT, model=model, usage_obj={}, started_at=started, source_cost=spend, batch=batch,
                        duration_ms=int((ended - started).total_seconds() * 1000), tags=tags, request=request,
                        error=str(metadata.get("error_information") or "LiteLLM logged the call as failed"))

    details = usage_obj.get("prompt_tokens_details") or {}
    if not isinstance(details, Mapping):
        raise RowError("metadata.usage_object.prompt_tokens_details must be an object")
    read = count(usage_obj.get("cache_read_input_tokens"), "metadata.usage_object.cache_read_input_tokens") or \
        count(details.get("cached_tokens"), "metadata.usage_object.prompt_tokens_details.cached_tokens")
    write = count(usage_obj.get("cache_creation_input_tokens"),
                  "metadata.usage_object.cache_creation_input_tokens") or \
        count(details.get("cache_creation_tokens"), "metadata.usage_object.prompt_tokens_details.cache_creation_tokens")
    split = details.get("cache_creation_token_details") or usage_obj.get("cache_creation") or {}
    if not isinstance(split, Mapping):
        raise RowError("metadata.usage_object...cache_creation_token_details must be an object")
    hour = count(split.get("ephemeral_1h_input_tokens"), "cache_creation_token_details.ephemeral_1h_input_tokens")
    five = count(split.get("ephemeral_5m_input_tokens"), "cache_creation_token_details.ephemeral_5m_input_tokens")
    if split and five + hour != write:
        if write == 0:
            write = five + hour
        else:
            raise RowError(f"cache_creation_token_details splits {five} 5m + {hour} 1h tokens, but "
                           f"cache_creation_input_tokens is {write}; they must agree")
    five = write - hour
    prompt_raw = row.get("prompt_tokens")
    prompt = count(prompt_raw if prompt_raw not in (None, "") else usage_obj.get("prompt_tokens"), "prompt_tokens")
    output = count(row.get("completion_tokens") if row.get("completion_tokens") not in (None, "")
                   else usage_obj.get("completion_tokens"), "completion_tokens")
    uncached = split_inclusive(prompt, read, write, field="prompt_tokens", file=file, line=line, source="LiteLLM")
    return exchange(fmt=FORMAT, model=model, usage_obj=usage(uncached, read, five, hour, output, service_tier=tier),
                    started_at=started, duration_ms=int((ended - started).total_seconds() * 1000),
                    ident=str(row.get("request_id") or ""), source_cost=spend, batch=batch, request=request, tags=tags)


def _request(row: Mapping[str, Any], model: str) -> dict[str, Any] | None:
    """The request body when `store_prompts_in_spend_logs` kept it (OpenAI-style messages; system turns lifted)."""
    messages = json_cell(row.get("messages"), "messages")
    if isinstance(messages, Mapping):
        messages = messages.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    system = [m.get("content") for m in messages if isinstance(m, Mapping) and m.get("role") == "system"]
    turns = [{"role": "assistant" if m.get("role") == "assistant" else "user", "content": m.get("content", "")}
             for m in messages if isinstance(m, Mapping) and m.get("role") != "system"]
    request: dict[str, Any] = {"model": model, "messages": turns}
    if system:
        request["system"] = system[0] if len(system) == 1 and isinstance(system[0], (str, list)) else \
            "\n".join(str(s) for s in system)
    return request


__all__ = ["COLUMNS", "FORMAT", "is_litellm_row", "read_litellm"]
