"""OpenTelemetry GenAI spans for every exchange the gateway records, with the exact cost (reference landscape §5).

Why these attributes: Langfuse, Phoenix, SigNoz and CloudZero ingest the GenAI semantic conventions unchanged,
and most of them get Anthropic's cache tiers wrong. The span follows the convention's Anthropic rule:
`gen_ai.usage.input_tokens = input_tokens + cache_read_input_tokens + cache_creation_input_tokens` (Anthropic's
own `input_tokens` excludes cached tokens), with cache read and creation also reported on their own. The cost is
`gen_ai.usage.cost` (the de facto attribute Langfuse maps) in USD, plus a breakdown by tier
(`parity.cost.*`) and the exact decimal string (`parity.cost_usd`), because a float cannot carry Decimal money.

Where spans go: `configure(exporter)` installs a private SDK `TracerProvider` (tests pass an
`InMemorySpanExporter`; `simple=True` exports synchronously). Without it, spans go to the process's global tracer
provider, which is the API's no-op unless the application set one up, so an unconfigured gateway pays ~nothing.
`record_span` is called by the gateway's recorder thread, never on the request path.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from parity.exchange import Exchange

TRACER_NAME = "parity.gateway"
PROVIDER = "anthropic"
_COST_LINES = ("input", "cache_write_5m", "cache_write_1h", "cache_read", "output", "batch_discount")

_provider: TracerProvider | None = None


def configure(exporter: SpanExporter | None = None, *, provider: TracerProvider | None = None, simple: bool = False,
              service_name: str = "parity-gateway") -> TracerProvider | None:
    """Send spans to `exporter` (through a private TracerProvider) or to `provider`; `configure()` resets to global."""
    global _provider
    if _provider is not None and _provider is not provider:
        _provider.shutdown()
    if provider is not None:
        _provider = provider
    elif exporter is not None:
        _provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        _provider.add_span_processor(SimpleSpanProcessor(exporter) if simple else BatchSpanProcessor(exporter))
    else:
        _provider = None
    return _provider


def _tracer() -> trace.Tracer:
    if _provider is not None:
        return _provider.get_tracer(TRACER_NAME)
    return trace.get_tracer(TRACER_NAME)


def usage_attributes(usage: Mapping[str, Any]) -> dict[str, int]:
    """The GenAI token attributes of an Anthropic usage block (input by the Anthropic rule)."""
    raw = int(usage.get("input_tokens") or 0)
    read = int(usage.get("cache_read_input_tokens") or 0)
    write = int(usage.get("cache_creation_input_tokens") or 0)
    out = {
        "gen_ai.usage.input_tokens": raw + read + write,
        "gen_ai.usage.output_tokens": int(usage.get("output_tokens") or 0),
        "gen_ai.usage.cache_read.input_tokens": read,
        "gen_ai.usage.cache_creation.input_tokens": write,
    }
    tiers = usage.get("cache_creation")
    if isinstance(tiers, Mapping):
        out["parity.usage.cache_creation.ephemeral_5m_input_tokens"] = int(tiers.get("ephemeral_5m_input_tokens") or 0)
        out["parity.usage.cache_creation.ephemeral_1h_input_tokens"] = int(tiers.get("ephemeral_1h_input_tokens") or 0)
    return out


def cost_attributes(cost: Any) -> dict[str, Any]:
    """`gen_ai.usage.cost` (float USD), the exact string, and the per-tier lines of a CostBreakdown."""
    if cost is None:
        return {}
    total = cost.total if hasattr(cost, "total") else Decimal(str(cost))
    out: dict[str, Any] = {"gen_ai.usage.cost": float(total), "parity.cost_usd": format(total, "f")}
    for line in _COST_LINES:
        value = getattr(cost, line, None)
        if isinstance(value, Decimal):
            out[f"parity.cost.{line}"] = float(value)
    return out


def span_attributes(exchange: Exchange, cost: Any) -> dict[str, Any]:
    """Every attribute of the span for `exchange` (see the module docstring)."""
    request = exchange.request if isinstance(exchange.request, Mapping) else {}
    response = exchange.response if isinstance(exchange.response, Mapping) else None
    attrs: dict[str, Any] = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": PROVIDER}
    if isinstance(request.get("model"), str):
        attrs["gen_ai.request.model"] = request["model"]
    for key, name in (("max_tokens", "gen_ai.request.max_tokens"), ("temperature", "gen_ai.request.temperature"),
                      ("top_p", "gen_ai.request.top_p"), ("top_k", "gen_ai.request.top_k")):
        if isinstance(request.get(key), (int, float)) and not isinstance(request.get(key), bool):
            attrs[name] = request[key]
    if isinstance(request.get("stop_sequences"), list):
        attrs["gen_ai.request.stop_sequences"] = [str(s) for s in request["stop_sequences"]]
    attrs["gen_ai.request.stream"] = request.get("stream") is True
    if response is not None:
        if isinstance(response.get("model"), str):
            attrs["gen_ai.response.model"] = response["model"]
        if isinstance(response.get("id"), str):
            attrs["gen_ai.response.id"] = response["id"]
        if isinstance(response.get("stop_reason"), str):
            attrs["gen_ai.response.finish_reasons"] = [response["stop_reason"]]
        usage = response.get("usage")
        if isinstance(usage, Mapping):
            attrs.update(usage_attributes(usage))
            if isinstance(usage.get("service_tier"), str):
                attrs["gen_ai.response.service_tier"] = usage["service_tier"]
    attrs.update(cost_attributes(cost))
    if exchange.route:
        attrs["parity.route"] = exchange.route
    task = exchange.tags.get("task") if exchange.tags else None
    if task:
        attrs["parity.task"] = task
    attrs["parity.batch"] = bool(exchange.batch)
    for key in ("gateway_request_id", "parity_deferred_id", "shadow_of"):
        if exchange.tags and exchange.tags.get(key):
            attrs[f"parity.{key}"] = exchange.tags[key]
    if exchange.error is not None:
        attrs["error.type"] = _error_type(exchange.error)
    return attrs


def _error_type(error: Any) -> str:
    if isinstance(error, Mapping):
        inner = error.get("error") if isinstance(error.get("error"), Mapping) else error
        if isinstance(inner.get("type"), str):
            return inner["type"]
    return "error"


def record_span(exchange: Exchange, cost_usd: Any = None) -> None:
    """Emit one finished `chat {model}` CLIENT span for `exchange`, timed by its start and duration.

    `cost_usd`: a `parity.pricing.CostBreakdown` (preferred: the tiers are reported), a Decimal, or None."""
    attrs = span_attributes(exchange, cost_usd)
    model = attrs.get("gen_ai.request.model") or attrs.get("gen_ai.response.model") or "unknown"
    start = exchange.started_at
    start_ns = int(start.timestamp() * 1e9)
    end_ns = int((start + timedelta(milliseconds=max(0, exchange.duration_ms))).timestamp() * 1e9)
    span = _tracer().start_span(f"chat {model}", kind=SpanKind.CLIENT, attributes=attrs, start_time=start_ns)
    if exchange.error is not None:
        message = exchange.error.get("error", {}).get("message") if isinstance(exchange.error, Mapping) else None
        span.set_status(Status(StatusCode.ERROR, str(message or json.dumps(exchange.error)[:200])))
    span.end(end_time=end_ns)


__all__ = ["configure", "cost_attributes", "record_span", "span_attributes", "usage_attributes"]
