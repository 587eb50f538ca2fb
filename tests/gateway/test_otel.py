"""OTel GenAI spans: the Anthropic input-token rule, exact cost with its tiers, route and task, a round trip
through the audit's own OTel reader that re-prices the span to the same cost, and OTLP/HTTP export to a real
collector configured by the standard OTEL_EXPORTER_OTLP_* variables."""

from __future__ import annotations

import gzip
import http.server
import os
import signal
import subprocess
import sys
import threading
from datetime import datetime, timezone
from decimal import Decimal

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from parity import pricing
from parity.emulator.service import Emulator
from parity.errors import InputError
from parity.exchange import Exchange
from parity.gateway import otel
from parity.readers.otel import span_to_exchange

from servers import start_serve

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


# ---- OTLP/HTTP to a collector, configured by the standard variables -------------------------------------------


class Collector:
    """A tiny OTLP/HTTP trace collector on a free port: keeps each POST (path, headers, decoded request)."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        received = self.received = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                body = self.rfile.read(int(self.headers["content-length"]))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                received.append((self.path, {k.lower(): v for k, v in self.headers.items()}, request))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def spans(self) -> list[tuple[str, dict, dict]]:
        """(path, headers, {attribute: value}) of every span received."""
        out = []
        for path, headers, request in self.received:
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    for span in scope.spans:
                        out.append((path, headers, {a.key: _value(a.value) for a in span.attributes}))
        return out

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _value(value):
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind)


@pytest.fixture
def collector():
    server = Collector()
    yield server
    server.close()


def test_spans_reach_an_otlp_http_collector_with_cost_and_headers(collector, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20t0ken,x-team=search")
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_PROTOCOL", raising=False)
    exchange = cached_exchange()
    cost = pricing.cost(MODEL, exchange.response["usage"])
    try:
        (exporter,) = otel.exporters()
        otel.configure(exporter)
        otel.record_span(exchange, cost)
        otel.flush()
    finally:
        otel.configure()
    ((path, headers, attrs),) = collector.spans()
    assert path == "/v1/traces" and headers["content-type"] == "application/x-protobuf"
    assert headers["authorization"] == "Bearer t0ken" and headers["x-team"] == "search"
    usage = exchange.response["usage"]
    assert attrs["gen_ai.usage.cost"] == pytest.approx(float(cost.total)) and Decimal(attrs["parity.cost_usd"]) == cost.total
    assert attrs["gen_ai.usage.input_tokens"] == usage["input_tokens"] + usage["cache_read_input_tokens"] + \
        usage["cache_creation_input_tokens"]
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == usage["cache_read_input_tokens"] > 0
    assert attrs["gen_ai.request.model"] == MODEL and attrs["gen_ai.provider.name"] == "anthropic"
    assert attrs["parity.route"] == "routed" and attrs["parity.task"] == "triage"


def test_parity_serve_exports_to_the_collector_and_the_file(collector, tmp_path):
    """The gateway as deployed: the traces endpoint from the environment, spans to the file too."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=f"{collector.url}/otlp/v1/traces", OTEL_SERVICE_NAME="gw-test")
    spans_file = tmp_path / "spans.jsonl"
    process, base = start_serve(["--upstream", "emulator", "--ledger", "off", "--otel-file", str(spans_file)],
                                cwd=tmp_path, env=env)
    try:
        answer = httpx.post(f"{base}/v1/messages", json={"model": MODEL, "max_tokens": 20, "messages": [
            {"role": "user", "content": "Say hi"}]}, headers={"x-api-key": "k", "anthropic-version": "2023-06-01"})
        assert answer.status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    assert f"OTLP {collector.url}/otlp/v1/traces" in " ".join(output.split())
    ((path, _, attrs),) = collector.spans()
    assert path == "/otlp/v1/traces" and attrs["gen_ai.usage.cost"] > 0
    expected = pricing.cost(MODEL, answer.json()["usage"]).total
    assert Decimal(attrs["parity.cost_usd"]) == expected
    resource = collector.received[0][2].resource_spans[0].resource.attributes
    assert {a.key: _value(a.value) for a in resource}["service.name"] == "gw-test"
    assert "gen_ai.usage.cost" in spans_file.read_text()


def test_grpc_without_its_exporter_is_refused_saying_what_to_install(monkeypatch, tmp_path):
    try:  # the gRPC exporter is not a dependency
        import opentelemetry.exporter.otlp.proto.grpc  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("the gRPC exporter is installed here")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:4317", OTEL_EXPORTER_OTLP_PROTOCOL="grpc")
    done = subprocess.run([sys.executable, "-m", "parity", "serve", "--upstream", "emulator", "--port", "1",
                           "--ledger", "off"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    output = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 2 and "Traceback" not in output, output
    assert "OTEL_EXPORTER_OTLP_PROTOCOL" in output and "opentelemetry-exporter-otlp-proto-grpc" in output
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")  # the signal's own variable wins
    with pytest.raises(InputError, match="OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"):
        otel.exporters()
