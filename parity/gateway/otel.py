"""OpenTelemetry GenAI spans for every exchange the gateway records, with the exact cost (reference landscape §5).

Why these attributes: Langfuse, Phoenix, SigNoz and CloudZero ingest the GenAI semantic conventions unchanged,
and most of them get Anthropic's cache tiers wrong. The span follows the convention's Anthropic rule:
`gen_ai.usage.input_tokens = input_tokens + cache_read_input_tokens + cache_creation_input_tokens` (Anthropic's
own `input_tokens` excludes cached tokens), with cache read and creation also reported on their own. The cost is
`gen_ai.usage.cost` (the de facto attribute Langfuse maps) in USD, plus a breakdown by tier
(`parity.cost.*`) and the exact decimal string (`parity.cost_usd`), because a float cannot carry Decimal money.

Where spans go: `configure(exporter)` installs a private SDK `TracerProvider` (tests pass an
`InMemorySpanExporter`; `simple=True` exports synchronously). `parity serve` configures `exporters(otel_file)`:
with `--otel-file spans.jsonl`, `JsonlSpanExporter` (OTLP JSON, one `ExportTraceServiceRequest` per line, the
collector's file-exporter format, which `parity.readers.otel` (so `parity audit`) and any OTLP tool read); and,
when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set, the OTLP/HTTP (protobuf)
exporter, which reads those and the other standard variables (`..._HEADERS`, `..._TIMEOUT`, `..._COMPRESSION`,
`..._CERTIFICATE`) itself; `OTEL_EXPORTER_OTLP_PROTOCOL=grpc` needs the gRPC exporter, which is not a dependency.
Without any, spans go to the process's global tracer provider, which is the API's no-op unless the application
set one up, so an unconfigured gateway pays ~nothing.
`record_span` is called by the gateway's recorder thread, never on the request path.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping, Sequence
from datetime import timedelta
from decimal import Decimal
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode

from parity.errors import InputError
from parity.exchange import Exchange

TRACER_NAME = "parity.gateway"
PROVIDER = "anthropic"
_COST_LINES = ("input", "cache_write_5m", "cache_write_1h", "cache_read", "output", "batch_discount")

_provider: TracerProvider | None = None


def configure(exporter: SpanExporter | Sequence[SpanExporter] | None = None, *, provider: TracerProvider | None = None,
              simple: bool = False, service_name: str = "parity-gateway") -> TracerProvider | None:
    """Send spans to `exporter` (or to each of several, through a private TracerProvider) or to `provider`;
    `configure()` resets to global. OTEL_SERVICE_NAME, when set, names the service instead of `service_name`."""
    global _provider
    if _provider is not None and _provider is not provider:
        _provider.shutdown()
    targets = [exporter] if isinstance(exporter, SpanExporter) else list(exporter or [])
    if provider is not None:
        _provider = provider
    elif targets:
        attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": service_name}
        _provider = TracerProvider(resource=Resource.create(attributes))
        for target in targets:
            _provider.add_span_processor(SimpleSpanProcessor(target) if simple else BatchSpanProcessor(target))
    else:
        _provider = None
    return _provider


def otlp_exporter() -> SpanExporter | None:
    """The OTLP exporter the standard variables ask for, or None when no endpoint is set (or
    OTEL_TRACES_EXPORTER=none). Raises InputError for a protocol whose exporter is not installed."""
    env = os.environ
    if not (env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")):
        return None
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return None
    name = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL" if env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") else \
        "OTEL_EXPORTER_OTLP_PROTOCOL"
    protocol = (env.get(name) or "http/protobuf").strip().lower()
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()  # endpoint (+ /v1/traces), headers, timeout, compression: from the variables
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
        except ImportError:
            raise InputError(
                "asks for OTLP over gRPC, whose exporter is not installed: `pip install "
                "opentelemetry-exporter-otlp-proto-grpc`, or set it to http/protobuf and point the endpoint at the "
                "collector's OTLP/HTTP port (4318)", field=name,
            ) from None
        return GrpcExporter()
    raise InputError(f"{protocol!r} is not a protocol the OTLP exporter speaks here; use http/protobuf (or grpc with "
                     "opentelemetry-exporter-otlp-proto-grpc installed)", field=name)


def exporters(file: str | None = None) -> list[SpanExporter]:
    """What `parity serve` exports spans to: the JSONL `file` when given, and OTLP when the variables ask for it."""
    remote = otlp_exporter()  # first: a protocol that cannot work is refused before the file is opened
    out: list[SpanExporter] = [JsonlSpanExporter(file)] if file else []
    if remote is not None:
        out.append(remote)
    return out


def describe(exporter: SpanExporter) -> str:
    """Where an exporter sends spans, for the start-up banner."""
    if isinstance(exporter, JsonlSpanExporter):
        return exporter.path
    endpoint = getattr(exporter, "_endpoint", None)
    return f"OTLP {endpoint}" if endpoint else type(exporter).__name__


def flush(timeout_ms: int = 10_000) -> None:
    """Export what the private provider still holds (the gateway calls it when it stops)."""
    if _provider is not None:
        _provider.force_flush(timeout_ms)


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


# ---- a file exporter in OTLP JSON ----------------------------------------------------------------------------


def _any_value(value: Any) -> dict[str, Any]:
    """An attribute value as OTLP JSON `AnyValue` (ints as strings, per the protobuf JSON mapping)."""
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, (list, tuple)):
        return {"arrayValue": {"values": [_any_value(v) for v in value]}}
    return {"stringValue": str(value)}


def _attributes(attrs: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    return [{"key": k, "value": _any_value(v)} for k, v in (attrs or {}).items()]


def otlp_json(spans: Sequence[ReadableSpan]) -> dict[str, Any]:
    """An OTLP JSON `ExportTraceServiceRequest` for `spans` (grouped by resource and instrumentation scope)."""
    by_resource: dict[int, tuple[Any, dict[str, list[dict[str, Any]]]]] = {}
    for span in spans:
        resource, scopes = by_resource.setdefault(id(span.resource), (span.resource, {}))
        scope = span.instrumentation_scope.name if span.instrumentation_scope is not None else TRACER_NAME
        ctx = span.context
        out: dict[str, Any] = {
            "traceId": format(ctx.trace_id, "032x"), "spanId": format(ctx.span_id, "016x"), "name": span.name,
            "kind": int(span.kind.value) + 1,  # the API's SpanKind starts at 0 (INTERNAL); OTLP's at 1
            "startTimeUnixNano": str(span.start_time), "endTimeUnixNano": str(span.end_time),
            "attributes": _attributes(span.attributes),
            "status": {"code": {StatusCode.UNSET: 0, StatusCode.OK: 1, StatusCode.ERROR: 2}[span.status.status_code]},
        }
        if span.parent is not None:
            out["parentSpanId"] = format(span.parent.span_id, "016x")
        if span.status.description:
            out["status"]["message"] = span.status.description
        scopes.setdefault(scope, []).append(out)
    return {"resourceSpans": [
        {"resource": {"attributes": _attributes(resource.attributes if resource is not None else None)},
         "scopeSpans": [{"scope": {"name": name}, "spans": items} for name, items in scopes.items()]}
        for resource, scopes in by_resource.values()
    ]}


class JsonlSpanExporter(SpanExporter):
    """Appends each exported batch of spans to a file as one line of OTLP JSON (see the module docstring)."""

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()
        self._handle = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed by shutdown)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not spans:
            return SpanExportResult.SUCCESS
        line = json.dumps(otlp_json(spans), separators=(",", ":"), ensure_ascii=False)
        with self._lock:
            if self._handle.closed:
                return SpanExportResult.FAILURE
            self._handle.write(line + "\n")
            self._handle.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            self._handle.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


__all__ = ["JsonlSpanExporter", "configure", "cost_attributes", "describe", "exporters", "flush", "otlp_exporter",
           "otlp_json", "record_span", "span_attributes", "usage_attributes"]
