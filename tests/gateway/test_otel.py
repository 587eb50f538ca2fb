"""OTel GenAI spans: the Anthropic input-token rule, exact cost with its tiers, route and task, and a round trip
through the audit's own OTel reader that re-prices the span to the same cost."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from parity import pricing
from parity.emulator.service import Emulator
from parity.exchange import Exchange
from parity.gateway import otel
from parity.readers.otel import span_to_exchange

MODEL = "claude-haiku-4-5"


@pytest.fixture
def exporter():
    exp = InMemorySpanExporter()
    otel.configure(exp, simple=True)
    yield exp
    otel.configure()


def cached_exchange() -> Exchange:
    """A real emulator answer that both wrote and read the cache (system long enough for Haiku's 4,096 minimum)."""
    client = Emulator().client()
    system = [{"type": "text", "text": "Policy clause. " * 2500, "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    body = {"model": MODEL, "max_tokens": 50, "system": system, "messages": [{"role": "user", "content": "hi"}]}
    client.messages.create(**body)
    second = {**body, "messages": [{"role": "user", "content": "hello again"}]}
    message = client.messages.create(**second).model_dump(mode="json")
    assert message["usage"]["cache_read_input_tokens"] > 0
    return Exchange(request=second, response=message, started_at=datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc),
                    duration_ms=840, tags={"task": "triage", "gateway_request_id": "req_01abc"}, route="routed")


def test_span_has_the_genai_attributes_and_the_anthropic_input_rule(exporter):
    exchange = cached_exchange()
    usage = exchange.response["usage"]
    cost = pricing.cost(MODEL, usage)
    otel.record_span(exchange, cost)
    (span,) = exporter.get_finished_spans()
    a = span.attributes
    assert span.name == f"chat {MODEL}" and span.kind == SpanKind.CLIENT
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.provider.name"] == "anthropic"
    assert a["gen_ai.request.model"] == MODEL and a["gen_ai.response.model"] == exchange.response["model"]
    total_in = usage["input_tokens"] + usage["cache_read_input_tokens"] + usage["cache_creation_input_tokens"]
    assert a["gen_ai.usage.input_tokens"] == total_in
    assert a["gen_ai.usage.cache_read.input_tokens"] == usage["cache_read_input_tokens"]
    assert a["gen_ai.usage.cache_creation.input_tokens"] == usage["cache_creation_input_tokens"]
    assert a["gen_ai.usage.output_tokens"] == usage["output_tokens"]
    assert a["gen_ai.response.finish_reasons"] == (exchange.response["stop_reason"],)
    assert a["gen_ai.usage.cost"] == pytest.approx(float(cost.total))
    assert Decimal(a["parity.cost_usd"]) == cost.total  # exact, not a float
    assert a["parity.cost.cache_read"] == pytest.approx(float(cost.cache_read)) and cost.cache_read > 0
    assert a["parity.route"] == "routed" and a["parity.task"] == "triage"
    assert span.start_time == int(exchange.started_at.timestamp() * 1e9)
    assert span.end_time - span.start_time == 840 * 1_000_000
    assert span.status.status_code != StatusCode.ERROR


def test_the_audit_reader_reprices_our_span_to_the_same_cost(exporter):
    exchange = cached_exchange()
    cost = pricing.cost(MODEL, exchange.response["usage"])
    otel.record_span(exchange, cost)
    (span,) = exporter.get_finished_spans()
    back = span_to_exchange({"attributes": dict(span.attributes), "startTimeUnixNano": span.start_time,
                             "endTimeUnixNano": span.end_time, "spanId": format(span.context.span_id, "016x")})
    assert back is not None and back.response is not None
    assert back.response["usage"]["cache_read_input_tokens"] == exchange.response["usage"]["cache_read_input_tokens"]
    assert back.response["usage"]["input_tokens"] == exchange.response["usage"]["input_tokens"]
    assert exchange.response["usage"]["cache_creation_input_tokens"] == 0  # a pure read: no 5m/1h split to lose
    assert pricing.cost(MODEL, back.response["usage"]).total == cost.total
    assert back.duration_ms == 840


def test_batch_and_error_spans(exporter):
    ok = Exchange(request={"model": MODEL, "max_tokens": 5, "messages": []},
                  response={"id": "msg_1", "model": MODEL, "stop_reason": "end_turn",
                            "usage": {"input_tokens": 1000, "output_tokens": 200, "service_tier": "batch"}},
                  route="deferred", batch=True)
    cost = pricing.cost(MODEL, ok.response["usage"], batch=True)
    otel.record_span(ok, cost)
    failed = Exchange(request={"model": MODEL, "max_tokens": 5, "messages": []},
                      error={"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
                      route="fallback")
    otel.record_span(failed, None)
    first, second = exporter.get_finished_spans()
    assert first.attributes["parity.batch"] is True and first.attributes["parity.cost.batch_discount"] < 0
    assert first.attributes["gen_ai.usage.cost"] == pytest.approx(float(cost.total))
    assert first.attributes["gen_ai.response.service_tier"] == "batch"
    assert second.status.status_code == StatusCode.ERROR and second.attributes["error.type"] == "overloaded_error"
    assert "gen_ai.usage.cost" not in second.attributes


def test_unconfigured_spans_go_to_the_global_provider_without_error():
    otel.configure()
    otel.record_span(Exchange(request={"model": MODEL, "messages": []}), Decimal("0.01"))
