"""OTLP JSON GenAI spans → Exchanges, on fixtures written by hand from the OTel GenAI conventions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from parity.exchange import Exchange, Rejected
from parity.readers import detect_format, read_exchanges
from parity.readers.otel import any_value, read_otlp

T0 = 1_764_000_000_000_000_000  # 2025-11-24T16:00:00Z in ns


def s(v: str) -> dict:
    return {"stringValue": v}


def i(v: int) -> dict:
    return {"intValue": str(v)}  # OTLP JSON encodes int64 as a string


def attrs(**kv) -> list[dict]:
    return [{"key": k.replace("__", "."), "value": v} for k, v in kv.items()]


def chat_span(span_id: str, **extra) -> dict:
    base = dict(
        gen_ai__operation__name=s("chat"),
        gen_ai__provider__name=s("anthropic"),
        gen_ai__request__model=s("claude-sonnet-4-5"),
        gen_ai__response__model=s("claude-sonnet-4-5-20250929"),
        gen_ai__response__id=s("msg_abc"),
        gen_ai__request__max_tokens=i(1024),
        gen_ai__request__temperature={"doubleValue": 0.2},
        gen_ai__usage__input_tokens=i(1500),
        gen_ai__usage__output_tokens=i(200),
        gen_ai__usage__cache_read__input_tokens=i(1000),
        gen_ai__usage__cache_creation__input_tokens=i(300),
        gen_ai__response__finish_reasons={"arrayValue": {"values": [s("end_turn")]}},
    )
    base.update(extra)
    return {
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": span_id,
        "name": "chat claude-sonnet-4-5",
        "kind": 3,
        "startTimeUnixNano": str(T0),
        "endTimeUnixNano": str(T0 + 1_250_000_000),
        "attributes": attrs(**{k: v for k, v in base.items() if v is not None}),
        "status": {},
    }


def export(*spans: dict) -> dict:
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": attrs(service__name=s("support-bot"))},
                "scopeSpans": [{"scope": {"name": "opentelemetry.instrumentation.anthropic"}, "spans": list(spans)}],
            }
        ]
    }


def write(tmp_path: Path, doc: dict, *, pretty: bool = True) -> Path:
    path = tmp_path / "trace.json"
    path.write_text(json.dumps(doc, indent=2) if pretty else json.dumps(doc))
    return path


def only(items):
    out = list(items)
    assert len(out) == 1, out
    return out[0]


def test_chat_span_maps_to_exchange_with_spec_input_rule(tmp_path):
    content = chat_span(
        "a1",
        gen_ai__system_instructions=s(json.dumps([{"type": "text", "content": "You are terse."}])),
        gen_ai__input__messages=s(json.dumps([{"role": "user", "parts": [{"type": "text", "content": "Hi there"}]}])),
        gen_ai__output__messages=s(json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": "Hello."}], "finish_reason": "stop"}])),
    )
    line, ex = only(read_otlp(write(tmp_path, export(content))))
    assert isinstance(ex, Exchange)
    # §5: gen_ai.usage.input_tokens includes cache read + creation for Anthropic; the raw value is the rest
    assert ex.usage == {"input_tokens": 200, "cache_creation_input_tokens": 300, "cache_read_input_tokens": 1000, "output_tokens": 200}
    assert ex.tags["otel.input_tokens"] == "total" and ex.tags["service.name"] == "support-bot"
    assert ex.request == {
        "model": "claude-sonnet-4-5", "max_tokens": 1024, "temperature": 0.2,
        "system": [{"type": "text", "text": "You are terse."}],
        "messages": [{"role": "user", "content": "Hi there"}],
    }
    assert ex.response["model"] == "claude-sonnet-4-5-20250929" and ex.response["id"] == "msg_abc"
    assert ex.response["content"] == [{"type": "text", "text": "Hello."}]
    assert ex.response["stop_reason"] == "end_turn"
    assert ex.started_at.isoformat() == "2025-11-24T16:00:00+00:00" and ex.duration_ms == 1250
    lines = json.dumps(export(content), indent=2).splitlines()
    assert '"spanId": "a1"' in lines[line - 1] and line > 5


def test_raw_input_tokens_are_detected_or_forced(tmp_path):
    # cache counts larger than input_tokens: the instrumentation reported Anthropic's raw input_tokens
    span = chat_span("b1", gen_ai__usage__input_tokens=i(50), gen_ai__usage__cache_read__input_tokens=None,
                     gen_ai__usage__cache_creation__input_tokens=None, gen_ai__usage__cache_read_input_tokens=i(4000))
    _, ex = only(read_otlp(write(tmp_path, export(span))))
    assert ex.usage["input_tokens"] == 50 and ex.usage["cache_read_input_tokens"] == 4000
    assert ex.tags["otel.input_tokens"] == "raw"
    _, forced = only(read_otlp(write(tmp_path, export(chat_span("b2"))), input_includes_cache=False))
    assert forced.usage["input_tokens"] == 1500
    _, bad = only(read_otlp(write(tmp_path, export(span)), input_includes_cache=True))
    assert isinstance(bad, Rejected) and "smaller than cache read" in bad.reason


def test_error_span_becomes_error_envelope(tmp_path):
    span = chat_span("c1", error__type=s("overloaded_error"), gen_ai__usage__input_tokens=None, gen_ai__usage__output_tokens=None)
    span["status"] = {"code": 2, "message": "Overloaded"}
    _, ex = only(read_otlp(write(tmp_path, export(span))))
    assert ex.response is None
    assert ex.error == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


def test_malformed_spans_rejected_with_location_and_the_rest_read(tmp_path):
    good = chat_span("d0")
    no_model = chat_span("d1", gen_ai__request__model=None, gen_ai__response__model=None)
    bad_tokens = chat_span("d2", gen_ai__usage__output_tokens=s("lots"))
    negative = chat_span("d3", gen_ai__usage__output_tokens=i(-4))
    no_usage = chat_span("d4", gen_ai__usage__output_tokens=None)
    bad_content = chat_span("d5", gen_ai__input__messages=s("[{not json"))
    no_start = chat_span("d6")
    del no_start["startTimeUnixNano"]
    doc = export(good, no_model, bad_tokens, negative, no_usage, bad_content, no_start, "junk")
    items = list(read_otlp(write(tmp_path, doc)))
    assert isinstance(items[0][1], Exchange)
    rejected = [r for _, r in items[1:]]
    assert all(isinstance(r, Rejected) for r in rejected) and len(rejected) == 7
    reasons = [r.reason for r in rejected]
    assert "no gen_ai.request.model" in reasons[0] and "spans[1]" in reasons[0]
    assert "must be an integer token count, got 'lots'" in reasons[1]
    assert "must not be negative" in reasons[2]
    assert "no gen_ai.usage.output_tokens" in reasons[3]
    assert "gen_ai.input.messages is not valid JSON" in reasons[4]
    assert "missing startTimeUnixNano" in reasons[5]
    assert "spans[7] is not an object" in reasons[6]
    text = (tmp_path / "trace.json").read_text().splitlines()
    for (line, r), sid in zip(items[1:7], ["d1", "d2", "d3", "d4", "d5", "d6"]):
        assert f'"spanId": "{sid}"' in text[line - 1] and r.file.endswith("trace.json")


def test_non_genai_and_other_provider_spans_are_skipped(tmp_path):
    http = {"traceId": "t", "spanId": "h1", "name": "POST", "startTimeUnixNano": str(T0), "endTimeUnixNano": str(T0 + 1),
            "attributes": attrs(http__request__method=s("POST"))}
    openai = chat_span("o1", gen_ai__provider__name=s("openai"), gen_ai__request__model=s("gpt-4o"), gen_ai__response__model=s("gpt-4o"))
    tool = chat_span("t1", gen_ai__operation__name=s("execute_tool"))
    bedrock = chat_span("br", gen_ai__provider__name=s("aws.bedrock"),
                        gen_ai__request__model=s("anthropic.claude-3-5-haiku-20241022-v1:0"), gen_ai__response__model=None)
    _, ex = only(read_otlp(write(tmp_path, export(http, openai, tool, bedrock))))
    assert ex.request["model"] == "anthropic.claude-3-5-haiku-20241022-v1:0"


def test_json_lines_of_exports_and_older_attribute_names(tmp_path):
    legacy = chat_span(
        "e1",
        gen_ai__provider__name=None, gen_ai__operation__name=None,
        gen_ai__system=s("anthropic"),
        gen_ai__usage__cache_read__input_tokens=None, gen_ai__usage__cache_creation__input_tokens=None,
        gen_ai__usage__cache_creation_input_tokens=i(100),
        gen_ai__prompt__0__role=s("system"), gen_ai__prompt__0__content=s("Be brief."),
        gen_ai__prompt__1__role=s("user"), gen_ai__prompt__1__content=s("What is 2+2?"),
        gen_ai__completion__0__role=s("assistant"), gen_ai__completion__0__content=s("4"),
        gen_ai__completion__0__finish_reason=s("stop"),
        gen_ai__response__finish_reasons=None,
    )
    path = tmp_path / "spans.jsonl"
    path.write_text(json.dumps(export(chat_span("e0"))) + "\n\n" + "{broken\n" + json.dumps(export(legacy)) + "\n")
    items = list(read_otlp(path))
    assert [line for line, _ in items] == [1, 3, 4]
    assert isinstance(items[1][1], Rejected) and items[1][1].line == 3
    ex = items[2][1]
    assert ex.request["system"] == "Be brief."
    assert ex.request["messages"] == [{"role": "user", "content": "What is 2+2?"}]
    assert ex.response["content"] == [{"type": "text", "text": "4"}] and ex.response["stop_reason"] == "end_turn"
    assert ex.usage["input_tokens"] == 1400 and ex.usage["cache_creation_input_tokens"] == 100


def test_snake_case_protobuf_json_and_tool_parts(tmp_path):
    span = {
        "trace_id": "t", "span_id": "f1", "name": "chat",
        "start_time_unix_nano": T0, "end_time_unix_nano": T0 + 2_000_000,
        "attributes": [
            {"key": "gen_ai.operation.name", "value": {"string_value": "chat"}},
            {"key": "gen_ai.request.model", "value": {"string_value": "claude-haiku-4-5"}},
            {"key": "gen_ai.usage.input_tokens", "value": {"int_value": 10}},
            {"key": "gen_ai.usage.output_tokens", "value": {"int_value": 3}},
            {"key": "gen_ai.tool.definitions", "value": {"string_value": json.dumps(
                [{"type": "function", "name": "lookup", "description": "find", "parameters": {"type": "object"}}])}},
            {"key": "gen_ai.output.messages", "value": {"string_value": json.dumps(
                [{"role": "assistant", "parts": [{"type": "tool_call", "id": "toolu_1", "name": "lookup", "arguments": {"q": "x"}}]}])}},
            {"key": "gen_ai.response.finish_reasons", "value": {"array_value": {"values": [{"string_value": "tool_calls"}]}}},
        ],
    }
    doc = {"resource_spans": [{"scope_spans": [{"spans": [span]}]}]}
    _, ex = only(read_otlp(write(tmp_path, doc, pretty=False)))
    assert ex.request["tools"] == [{"name": "lookup", "description": "find", "input_schema": {"type": "object"}}]
    assert ex.response["content"] == [{"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "x"}}]
    assert ex.response["stop_reason"] == "tool_use" and ex.duration_ms == 2


def test_not_an_export_is_one_rejection(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{\n  "hello": 1\n}\n')
    (_, r), = list(read_otlp(path))
    assert isinstance(r, Rejected) and "resourceSpans" in r.reason
    path.write_text('{\n  "hello": \n')
    (_, r), = list(read_otlp(path))
    assert isinstance(r, Rejected) and "not valid JSON" in r.reason


def test_any_value_kinds():
    assert any_value({"kvlistValue": {"values": [{"key": "a", "value": {"boolValue": True}}]}}) == {"a": True}
    assert any_value({"bytesValue": "aGk="}) == b"hi"
    assert any_value({"doubleValue": "1.5"}) == 1.5


def test_read_exchanges_detects_the_format(tmp_path):
    otlp = write(tmp_path, export(chat_span("g1")))
    jsonl = tmp_path / "ex.jsonl"
    jsonl.write_text(json.dumps({"request": {"model": "claude-haiku-4-5", "messages": []}, "response": {"usage": {}},
                                 "started_at": "2026-01-01T00:00:00Z"}) + "\n")
    assert detect_format(otlp) == "otlp" and detect_format(jsonl) == "jsonl"
    assert detect_format("sqlite:///x.db") == "ledger"
    assert isinstance(only(read_exchanges(otlp))[1], Exchange)
    assert only(read_exchanges(jsonl))[1].request["model"] == "claude-haiku-4-5"
    from parity.errors import InputError

    with pytest.raises(InputError, match="no such file"):
        detect_format(tmp_path / "missing.jsonl")
