"""OpenTelemetry GenAI spans (OTLP JSON) → Exchanges, so a team's existing traces can be audited.

Input: an OTLP JSON `ExportTraceServiceRequest` (`resourceSpans → scopeSpans → spans`, attributes as
key/AnyValue pairs; snake_case protobuf-JSON spellings and the old `instrumentationLibrarySpans` are accepted too),
either one document per file (pretty-printed or not) or one per line (JSON lines, as the collector's file exporter
writes).

Which spans: those carrying `gen_ai.*` attributes for a chat/completion operation on Claude (provider
`anthropic`, `aws.bedrock`, `gcp.vertex_ai`, ... or a model id containing `claude`). Other spans (HTTP, tools,
embeddings, other providers) are not LLM calls Parity can price and are skipped without comment.

Tokens: the GenAI conventions' Anthropic rule (reference landscape.md §5) says
`gen_ai.usage.input_tokens = input_tokens + cache_read + cache_creation`, with cache read and creation
(`gen_ai.usage.cache_read.input_tokens`, `gen_ai.usage.cache_creation.input_tokens` or its proposed rename
`gen_ai.usage.cache_write.input_tokens`, the older `gen_ai.usage.cache_read_input_tokens` /
`gen_ai.usage.cache_creation_input_tokens`, pydantic-ai's `gen_ai.usage.cache_read_tokens` / `cache_write_tokens`,
OpenInference's `llm.token_count.prompt_details.cache_read` / `cache_write`: every alias in READ_ALIASES and
WRITE_ALIASES) reported separately. No convention names the 1-hour share of the writes; the
`...cache_creation.ephemeral_1h_input_tokens` attributes (Parity's gateway writes them) split it out when present,
else writes are 5-minute writes. The emitter's own cost (`gen_ai.usage.cost`, `llm.cost.total`, ...) is kept in the
tag `source.cost_usd`. Anthropic's
own `usage.input_tokens` excludes cached tokens, so by default we subtract them back out. Some instrumentations
report Anthropic's raw value instead; when the cache counts exceed `input_tokens` that must be so, and we take the
value as raw. Force either reading with `input_includes_cache=True/False`. The rule applied is recorded in the tag
`otel.input_tokens` (`"total"` or `"raw"`).

The Exchange: the request is synthesised from `gen_ai.request.*` (model, max_tokens, temperature, top_p, top_k,
stop_sequences, stream) and, when content capture was on, `gen_ai.system_instructions`, `gen_ai.input.messages`,
`gen_ai.tool.definitions` (or the older `gen_ai.prompt` / indexed `gen_ai.prompt.N.role|content`); the response
from `gen_ai.response.*`, `gen_ai.output.messages` (or `gen_ai.completion.N.*`) and the usage above. A span whose
status is ERROR becomes an error envelope typed from `error.type`. A span that cannot be priced or read (no model,
non-integer or negative token counts, missing times, unreadable content JSON) is yielded as Rejected with the
file, line and the span's path in the document.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from parity.exchange import Exchange, Rejected
from parity.readers.common import RowError, json_records

CLAUDE_PROVIDERS = frozenset({"anthropic", "aws.bedrock", "gcp.vertex_ai", "gcp.gen_ai", "azure.ai.inference", "azure.ai.foundry"})
CHAT_OPERATIONS = frozenset({"chat", "text_completion", "generate_content", "messages", "completion"})

_STOP_REASONS = {
    "stop": "end_turn",
    "end_turn": "end_turn",
    "length": "max_tokens",
    "max_tokens": "max_tokens",
    "tool_calls": "tool_use",
    "tool_call": "tool_use",
    "tool_use": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
    "refusal": "refusal",
    "stop_sequence": "stop_sequence",
    "pause_turn": "pause_turn",
    "model_context_window_exceeded": "model_context_window_exceeded",
}


INPUT_ALIASES = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt")
"""Input tokens: the current name, OpenLLMetry/LiteLLM's older one, OpenInference's."""
OUTPUT_ALIASES = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens", "llm.token_count.completion")
READ_ALIASES = (
    "gen_ai.usage.cache_read.input_tokens",  # semconv (v1.37+)
    "gen_ai.usage.cache_read_input_tokens",  # legacy
    "gen_ai.usage.cache_read_tokens",  # pydantic-ai / genai-prices
    "gen_ai.usage.cached_input_tokens",
    "llm.token_count.prompt_details.cache_read",  # OpenInference
)
WRITE_ALIASES = (
    "gen_ai.usage.cache_creation.input_tokens",  # semconv (v1.37+)
    "gen_ai.usage.cache_write.input_tokens",  # the proposed rename (semantic-conventions-genai, unreleased)
    "gen_ai.usage.cache_creation_input_tokens",  # legacy
    "gen_ai.usage.cache_write_tokens",  # pydantic-ai / genai-prices
    "llm.token_count.prompt_details.cache_write",  # OpenInference
)
HOUR_ALIASES = (
    "gen_ai.usage.cache_creation.ephemeral_1h_input_tokens",
    "gen_ai.usage.cache_write.ephemeral_1h_input_tokens",
    "parity.usage.cache_creation.ephemeral_1h_input_tokens",  # Parity's own gateway (no convention names a TTL)
)
FIVE_ALIASES = (
    "gen_ai.usage.cache_creation.ephemeral_5m_input_tokens",
    "gen_ai.usage.cache_write.ephemeral_5m_input_tokens",
    "parity.usage.cache_creation.ephemeral_5m_input_tokens",
)
COST_ALIASES = ("parity.cost_usd", "gen_ai.usage.cost", "llm.cost.total", "gen_ai.cost.usd")
"""The emitter's own cost of the call, kept beside Parity's (`source.cost_usd`)."""


class SpanError(ValueError):
    """A GenAI span that cannot become an Exchange; the message says which attribute and why."""


def read_otlp(
    path: str | Path, *, input_includes_cache: bool | None = None
) -> Iterator[tuple[int, Exchange | Rejected]]:
    """Yield (line, Exchange or Rejected) for each Claude GenAI span in an OTLP JSON file; never stops on bad input.

    `line` is the 1-based line of the span's `spanId` in a pretty-printed document, or the JSON line holding it
    (the file is read by `common.json_records`, as every JSON importer's is).
    """
    name = str(path)
    for line, doc, text in json_records(path):
        if isinstance(doc, RowError):
            yield line, Rejected(name, line, str(doc))
            continue
        yield from _document(doc, name, line, text, input_includes_cache)


def span_to_exchange(span: Mapping[str, Any], resource: Mapping[str, Any] | None = None, *,
                     input_includes_cache: bool | None = None) -> Exchange | None:
    """Map one OTLP JSON span to an Exchange; None if it is not a Claude chat span; SpanError if malformed."""
    attrs = attributes(span.get("attributes"))
    if not any(key.startswith("gen_ai.") for key in attrs):
        return None
    operation = attrs.get("gen_ai.operation.name")
    if operation is not None and str(operation) not in CHAT_OPERATIONS:
        return None
    provider = attrs.get("gen_ai.provider.name", attrs.get("gen_ai.system"))
    resource_attrs = attributes((resource or {}).get("attributes"))
    request_model = _str(attrs, "gen_ai.request.model")
    response_model = _str(attrs, "gen_ai.response.model")
    model = request_model or response_model
    if not model:
        if provider is None or str(provider).lower() in CLAUDE_PROVIDERS:
            raise SpanError("no gen_ai.request.model or gen_ai.response.model; the call cannot be priced")
        return None
    if not _is_claude(provider, model):
        return None

    start = _nanos(_field(span, "startTimeUnixNano", "start_time_unix_nano"), "startTimeUnixNano")
    end_raw = _field(span, "endTimeUnixNano", "end_time_unix_nano")
    end = _nanos(end_raw, "endTimeUnixNano") if end_raw not in (None, "", 0, "0") else start
    if end < start:
        raise SpanError(f"endTimeUnixNano ({end}) is before startTimeUnixNano ({start})")

    request: dict[str, Any] = {"model": request_model or model}
    for attr, key in (
        ("gen_ai.request.max_tokens", "max_tokens"),
        ("gen_ai.request.temperature", "temperature"),
        ("gen_ai.request.top_p", "top_p"),
        ("gen_ai.request.top_k", "top_k"),
        ("gen_ai.request.stop_sequences", "stop_sequences"),
        ("gen_ai.request.stream", "stream"),
    ):
        if attrs.get(attr) is not None:
            request[key] = attrs[attr]
    system = _system(attrs)
    if system is not None:
        request["system"] = system
    request["messages"] = _input_messages(attrs)
    tools = _tools(attrs)
    if tools is not None:
        request["tools"] = tools

    tags = {"source": "otel"}
    for key, value in (("otel.trace_id", _field(span, "traceId", "trace_id")),
                       ("otel.span_id", _field(span, "spanId", "span_id")),
                       ("service.name", resource_attrs.get("service.name")),
                       ("gen_ai.conversation.id", attrs.get("gen_ai.conversation.id"))):
        if value:
            tags[key] = str(value)

    status = span.get("status") or {}
    code = status.get("code")
    started_at = datetime.fromtimestamp(start / 1e9, timezone.utc)
    duration_ms = int((end - start) // 1_000_000)
    if code in (2, "2", "STATUS_CODE_ERROR", "ERROR"):
        kind = str(attrs.get("error.type") or "api_error")
        message = str(status.get("message") or attrs.get("exception.message") or "the span ended with status ERROR")
        return Exchange(request=request, error={"type": "error", "error": {"type": kind, "message": message}},
                        started_at=started_at, duration_ms=duration_ms, tags=tags)

    usage, rule = _usage(attrs, input_includes_cache)
    tags["otel.input_tokens"] = rule
    for key in COST_ALIASES:
        if attrs.get(key) not in (None, "") and not isinstance(attrs[key], bool):
            tags["source.cost_usd"] = str(attrs[key]) if isinstance(attrs[key], str) else repr(attrs[key])
            break
    if not request["messages"]:
        tags["source.bodies"] = "no"
    span_id = tags.get("otel.span_id", "")
    response: dict[str, Any] = {
        "id": _str(attrs, "gen_ai.response.id") or f"msg_otel_{span_id}",
        "type": "message",
        "role": "assistant",
        "model": response_model or model,
        "content": _output_content(attrs),
        "stop_reason": _stop_reason(attrs),
        "stop_sequence": None,
        "usage": usage,
    }
    batch = attrs.get("parity.batch") is True or usage.get("service_tier") == "batch"
    return Exchange(request=request, response=response, started_at=started_at, duration_ms=duration_ms, tags=tags,
                    batch=batch)


# -- document walking ---------------------------------------------------------------------------------------


def _document(doc: Any, name: str, line: int, text: str | None,
              input_includes_cache: bool | None) -> Iterator[tuple[int, Exchange | Rejected]]:
    if not isinstance(doc, dict):
        yield line, Rejected(name, line, f"expected an OTLP ExportTraceServiceRequest object, got {type(doc).__name__}")
        return
    resource_spans = _field(doc, "resourceSpans", "resource_spans")
    if not isinstance(resource_spans, list):
        yield line, Rejected(name, line, "no 'resourceSpans' list: not an OTLP JSON trace export")
        return
    cursor = 0
    for r_index, rs in enumerate(resource_spans):
        if not isinstance(rs, dict):
            yield line, Rejected(name, line, f"resourceSpans[{r_index}] is not an object")
            continue
        resource = rs.get("resource") if isinstance(rs.get("resource"), dict) else {}
        scopes = _field(rs, "scopeSpans", "scope_spans")
        if scopes is None:
            scopes = _field(rs, "instrumentationLibrarySpans", "instrumentation_library_spans")
        if not isinstance(scopes, list):
            yield line, Rejected(name, line, f"resourceSpans[{r_index}] has no 'scopeSpans' list")
            continue
        for s_index, scope in enumerate(scopes):
            spans = scope.get("spans") if isinstance(scope, dict) else None
            where = f"resourceSpans[{r_index}].scopeSpans[{s_index}]"
            if not isinstance(spans, list):
                yield line, Rejected(name, line, f"{where} has no 'spans' list")
                continue
            for index, span in enumerate(spans):
                here = line
                if text is not None and isinstance(span, dict):
                    here, cursor = _locate(text, span, cursor, line)
                if not isinstance(span, dict):
                    yield here, Rejected(name, here, f"{where}.spans[{index}] is not an object")
                    continue
                try:
                    exchange = span_to_exchange(span, resource, input_includes_cache=input_includes_cache)
                except SpanError as exc:
                    yield here, Rejected(name, here, f"{where}.spans[{index}] ({span.get('name', 'unnamed')}): {exc}")
                    continue
                if exchange is not None:
                    yield here, exchange


def _locate(text: str, span: Mapping[str, Any], cursor: int, default: int) -> tuple[int, int]:
    """The line of this span's spanId in a pretty-printed document (spans appear in document order)."""
    span_id = _field(span, "spanId", "span_id")
    if not isinstance(span_id, str) or not span_id:
        return default, cursor
    pos = text.find(json.dumps(span_id), cursor)
    if pos < 0:
        return default, cursor
    return text.count("\n", 0, pos) + 1, pos + 1


def _field(obj: Mapping[str, Any], camel: str, snake: str) -> Any:
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


# -- attribute values ---------------------------------------------------------------------------------------


def attributes(items: Any) -> dict[str, Any]:
    """OTLP `[{key, value: AnyValue}]` (or an already flat mapping) → a flat dict of Python values."""
    if isinstance(items, Mapping):
        return dict(items)
    out: dict[str, Any] = {}
    if not isinstance(items, list):
        return out
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("key"), str):
            out[item["key"]] = any_value(item.get("value"))
    return out


def any_value(value: Any) -> Any:
    """Decode an OTLP JSON AnyValue (camelCase or snake_case); plain JSON values pass through."""
    if not isinstance(value, dict):
        return value
    for key, kind in (("stringValue", "s"), ("string_value", "s"), ("boolValue", "b"), ("bool_value", "b"),
                      ("intValue", "i"), ("int_value", "i"), ("doubleValue", "d"), ("double_value", "d"),
                      ("arrayValue", "a"), ("array_value", "a"), ("kvlistValue", "k"), ("kvlist_value", "k"),
                      ("bytesValue", "y"), ("bytes_value", "y")):
        if key in value:
            raw = value[key]
            if kind == "i":
                try:
                    return int(raw)
                except (TypeError, ValueError):
                    return raw
            if kind == "d":
                try:
                    return float(raw)
                except (TypeError, ValueError):
                    return raw
            if kind == "a":
                return [any_value(v) for v in (raw or {}).get("values", [])]
            if kind == "k":
                return attributes((raw or {}).get("values", []))
            if kind == "y":
                try:
                    return base64.b64decode(raw)
                except (TypeError, ValueError):
                    return raw
            return raw
    return None


def _str(attrs: Mapping[str, Any], key: str) -> str | None:
    value = attrs.get(key)
    return value if isinstance(value, str) and value else None


def _is_claude(provider: Any, model: str) -> bool:
    if "claude" in model.lower():
        return True
    return provider is not None and str(provider).lower() == "anthropic"


def _nanos(value: Any, name: str) -> int:
    if value is None or value == "":
        raise SpanError(f"missing {name}")
    try:
        nanos = int(value)
    except (TypeError, ValueError):
        raise SpanError(f"{name} is not an integer number of nanoseconds: {value!r}") from None
    if nanos <= 0:
        raise SpanError(f"{name} must be positive, got {nanos}")
    return nanos


def _count(attrs: Mapping[str, Any], *keys: str) -> int | None:
    for key in keys:
        if key not in attrs or attrs[key] is None:
            continue
        value = attrs[key]
        if isinstance(value, bool):
            raise SpanError(f"{key} must be an integer token count, got {value!r}")
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, str):
            try:
                value = int(value)
            except ValueError:
                raise SpanError(f"{key} must be an integer token count, got {value!r}") from None
        if not isinstance(value, int):
            raise SpanError(f"{key} must be an integer token count, got {value!r}")
        if value < 0:
            raise SpanError(f"{key} must not be negative, got {value}")
        return value
    return None


def _usage(attrs: Mapping[str, Any], input_includes_cache: bool | None) -> tuple[dict[str, Any], str]:
    total_in = _count(attrs, *INPUT_ALIASES)
    output = _count(attrs, *OUTPUT_ALIASES)
    if total_in is None or output is None:
        missing = "gen_ai.usage.input_tokens" if total_in is None else "gen_ai.usage.output_tokens"
        raise SpanError(f"no {missing}; the call cannot be priced")
    read = _count(attrs, *READ_ALIASES) or 0
    write = _count(attrs, *WRITE_ALIASES) or 0
    hour = _count(attrs, *HOUR_ALIASES)
    five = _count(attrs, *FIVE_ALIASES)
    if write == 0 and (hour or five):
        write = (hour or 0) + (five or 0)
    if hour is not None and hour > write:
        raise SpanError(f"1-hour cache writes ({hour}) exceed all cache writes ({write})")
    if hour is not None and five is not None and hour + five != write:
        raise SpanError(f"cache writes split {five} 5m + {hour} 1h but {write} were written; they must agree")
    includes = input_includes_cache
    if includes is None:
        includes = read + write <= total_in
    if includes and read + write > total_in:
        raise SpanError(
            f"gen_ai.usage.input_tokens ({total_in}) is smaller than cache read + creation ({read + write}) "
            "although it was declared to include them (input_includes_cache=True)"
        )
    raw_in = total_in - read - write if includes else total_in
    usage: dict[str, Any] = {
        "input_tokens": raw_in,
        "cache_creation_input_tokens": write,
        "cache_read_input_tokens": read,
        "output_tokens": output,
    }
    if hour is not None:
        usage["cache_creation"] = {"ephemeral_5m_input_tokens": write - hour, "ephemeral_1h_input_tokens": hour}
    tier = _str(attrs, "gen_ai.response.service_tier") or _str(attrs, "anthropic.response.service_tier")
    if tier:
        usage["service_tier"] = tier
    return usage, "total" if includes else "raw"


def _stop_reason(attrs: Mapping[str, Any]) -> str | None:
    reasons = attrs.get("gen_ai.response.finish_reasons")
    if isinstance(reasons, str):
        reasons = [reasons]
    if not reasons:
        reason = attrs.get("gen_ai.completion.0.finish_reason")
        reasons = [reason] if reason else []
    if not reasons:
        return None
    first = str(reasons[0])
    return _STOP_REASONS.get(first, first)


# -- captured content ---------------------------------------------------------------------------------------


def _json_attr(attrs: Mapping[str, Any], key: str) -> Any:
    value = attrs.get(key)
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise SpanError(f"{key} is not valid JSON") from None
    return value


def _parts_to_blocks(parts: Any, key: str) -> list[dict[str, Any]]:
    """Semantic-convention message parts → Anthropic content blocks."""
    if isinstance(parts, str):
        return [{"type": "text", "text": parts}]
    if not isinstance(parts, list):
        raise SpanError(f"{key}: 'parts' must be a list")
    blocks: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, str):
            blocks.append({"type": "text", "text": part})
            continue
        if not isinstance(part, dict):
            raise SpanError(f"{key}: a part is not an object")
        kind = part.get("type")
        if kind == "text":
            blocks.append({"type": "text", "text": str(part.get("content", part.get("text", "")))})
        elif kind == "tool_call":
            blocks.append({"type": "tool_use", "id": str(part.get("id") or ""), "name": str(part.get("name") or ""),
                           "input": part.get("arguments") if isinstance(part.get("arguments"), dict) else {}})
        elif kind == "tool_call_response":
            response = part.get("response", part.get("result", ""))
            blocks.append({"type": "tool_result", "tool_use_id": str(part.get("id") or ""),
                           "content": response if isinstance(response, str) else json.dumps(response)})
        elif kind in ("reasoning", "thinking"):
            blocks.append({"type": "thinking", "thinking": str(part.get("content", "")), "signature": ""})
        else:
            blocks.append({"type": "text", "text": str(part.get("content", ""))})
    return blocks


def _simplify(blocks: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    if len(blocks) == 1 and blocks[0].get("type") == "text":
        return blocks[0]["text"]
    return blocks


def _input_messages(attrs: Mapping[str, Any]) -> list[dict[str, Any]]:
    messages = _json_attr(attrs, "gen_ai.input.messages")
    if messages is None and "gen_ai.prompt" in attrs:
        value = attrs["gen_ai.prompt"]
        try:
            messages = json.loads(value) if isinstance(value, str) else value
        except ValueError:
            messages = [{"role": "user", "content": value}]  # a plain prompt string
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
    if messages is None:
        messages = _indexed(attrs, "gen_ai.prompt")
    if not isinstance(messages, list):
        raise SpanError("gen_ai.input.messages must be a list of messages")
    out: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise SpanError(f"gen_ai.input.messages[{index}] is not an object")
        role = str(message.get("role") or "user")
        if role == "system":
            continue  # carried by `system` (gen_ai.system_instructions or the indexed prompt)
        role = "assistant" if role in ("assistant", "model") else "user"
        if "parts" in message:
            content: Any = _simplify(_parts_to_blocks(message["parts"], f"gen_ai.input.messages[{index}]"))
        else:
            content = message.get("content", "")
        out.append({"role": role, "content": content})
    return out


def _indexed(attrs: Mapping[str, Any], prefix: str) -> list[dict[str, Any]]:
    """OpenLLMetry's flattened `gen_ai.prompt.N.role` / `.content` attributes → a message list."""
    found: dict[int, dict[str, Any]] = {}
    for key, value in attrs.items():
        if not key.startswith(prefix + "."):
            continue
        index, _, field = key[len(prefix) + 1:].partition(".")
        if index.isdigit() and field in ("role", "content"):
            found.setdefault(int(index), {})[field] = value
    return [found[i] for i in sorted(found)]


def _system(attrs: Mapping[str, Any]) -> Any:
    value = _json_attr(attrs, "gen_ai.system_instructions")
    if value is None:
        system = [m for m in _indexed(attrs, "gen_ai.prompt") if m.get("role") == "system"]
        if not system:
            return None
        return "\n".join(str(m.get("content", "")) for m in system)
    if isinstance(value, str):
        return value
    blocks = _parts_to_blocks(value, "gen_ai.system_instructions")
    return [{"type": "text", "text": b.get("text", "")} for b in blocks]


def _tools(attrs: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    value = _json_attr(attrs, "gen_ai.tool.definitions")
    if value is None:
        return None
    if not isinstance(value, list):
        raise SpanError("gen_ai.tool.definitions must be a list")
    tools = []
    for tool in value:
        if not isinstance(tool, dict):
            raise SpanError("gen_ai.tool.definitions: a tool is not an object")
        if "input_schema" in tool:
            tools.append(tool)
            continue
        out = {"name": str(tool.get("name", ""))}
        if tool.get("description"):
            out["description"] = str(tool["description"])
        out["input_schema"] = tool.get("parameters") or {"type": "object"}
        tools.append(out)
    return tools


def _output_content(attrs: Mapping[str, Any]) -> list[dict[str, Any]]:
    messages = _json_attr(attrs, "gen_ai.output.messages")
    if messages is None:
        completions = _indexed(attrs, "gen_ai.completion")
        return [{"type": "text", "text": str(m.get("content", ""))} for m in completions if m.get("content")]
    if not isinstance(messages, list):
        raise SpanError("gen_ai.output.messages must be a list of messages")
    blocks: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise SpanError(f"gen_ai.output.messages[{index}] is not an object")
        blocks.extend(_parts_to_blocks(message.get("parts", []), f"gen_ai.output.messages[{index}]"))
    return blocks
