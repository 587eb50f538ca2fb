"""parity.wrap: the real anthropic SDK behaves exactly as before and every call lands as an Exchange.

The SDK talks to parity's emulator in-process; a MockTransport serving canned answers (FakeAPI) covers what
needs exact control of the wire: retries, dropped connections, SSE edge cases.
"""

from __future__ import annotations

import io
import json
from typing import Any

import anthropic
import httpx2
import pytest

import parity
from parity.emulator.clock import ManualClock
from parity.emulator.service import Emulator
from parity.exchange import Exchange, read_jsonl
from parity.wrap import accumulate_sse, flush, recorder_of, tagged

MODEL = "claude-haiku-4-5"


def _message(text: str, model: str = MODEL) -> dict[str, Any]:
    return {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 30, "output_tokens": 5},
    }


def _sse(events: list[dict[str, Any]]) -> bytes:
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


def _stream_events(text: str) -> list[dict[str, Any]]:
    start = {k: v for k, v in _message("").items()}
    start.update(content=[], stop_reason=None, usage={"input_tokens": 12, "cache_read_input_tokens": 30, "cache_creation_input_tokens": 0, "output_tokens": 1})
    half = len(text) // 2
    return [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text[:half]}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text[half:]}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ""}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"a": 1'}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "}"}},
        {"type": "content_block_stop", "index": 1},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None}, "usage": {"output_tokens": 9}},
        {"type": "message_stop"},
    ]


class FakeAPI:
    """Canned Claude API answers over httpx2.MockTransport (the wire format of reference §3, §4, §5, §8)."""

    def __init__(self, chunked: bool = False) -> None:
        self.chunked = chunked  # one chunk per SSE event (a sync iterator: sync clients only)
        self.batch_params: list[dict[str, Any]] = []
        self.calls = 0

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        self.calls += 1
        path = request.url.path
        headers = {"request-id": f"req_{self.calls}"}
        if request.method == "POST" and path == "/v1/messages":
            body = json.loads(request.content)
            prompt = body["messages"][-1]["content"]
            if prompt == "bad":
                return httpx2.Response(
                    400,
                    headers=headers,
                    json={"type": "error", "error": {"type": "invalid_request_error", "message": "bad prompt"}, "request_id": "req_x"},
                )
            if prompt == "overloaded" and self.calls == 1:
                return httpx2.Response(529, headers=headers, json={"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
            if body.get("stream"):
                events = _stream_events("streamed " + prompt)
                if prompt == "cut":
                    events = events[:4] + [{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}]
                content = iter([_sse([e]) for e in events]) if self.chunked else _sse(events)
                return httpx2.Response(200, headers={**headers, "content-type": "text/event-stream"}, content=content)
            return httpx2.Response(200, headers=headers, json=_message("echo " + prompt, body["model"]))
        if request.method == "POST" and path == "/v1/messages/batches":
            self.batch_params = json.loads(request.content)["requests"]
            return httpx2.Response(200, headers=headers, json=self._batch("in_progress"))
        if request.method == "GET" and path == "/v1/messages/batches/msgbatch_1":
            return httpx2.Response(200, headers=headers, json=self._batch("ended"))
        if request.method == "GET" and path == "/v1/messages/batches/msgbatch_1/results":
            lines = []
            for item in self.batch_params:
                if item["custom_id"] == "broken":
                    result = {"type": "errored", "error": {"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: must be >= 1"}}}
                else:
                    msg = _message("batched " + item["params"]["messages"][0]["content"], item["params"]["model"])
                    msg["usage"]["service_tier"] = "batch"
                    result = {"type": "succeeded", "message": msg}
                lines.append(json.dumps({"custom_id": item["custom_id"], "result": result}))
            return httpx2.Response(200, headers={**headers, "content-type": "application/x-jsonl"}, content=("\n".join(lines) + "\n").encode())
        return httpx2.Response(404, json={"type": "error", "error": {"type": "not_found_error", "message": path}})

    def _batch(self, status: str) -> dict[str, Any]:
        n = len(self.batch_params)
        ended = status == "ended"
        return {
            "id": "msgbatch_1",
            "type": "message_batch",
            "processing_status": status,
            "request_counts": {"processing": 0 if ended else n, "succeeded": n if ended else 0, "errored": 0, "canceled": 0, "expired": 0},
            "created_at": "2026-11-24T10:00:00Z",
            "expires_at": "2026-11-25T10:00:00Z",
            "ended_at": "2026-11-24T10:30:00Z" if ended else None,
            "cancel_initiated_at": None,
            "archived_at": None,
            "results_url": "http://api.test/v1/messages/batches/msgbatch_1/results" if ended else None,
        }


@pytest.fixture
def emulator() -> Emulator:
    return Emulator(clock=ManualClock(1_790_000_000.0))


@pytest.fixture
def client(emulator: Emulator) -> anthropic.Anthropic:
    return emulator.client(max_retries=0)


@pytest.fixture
def aclient(emulator: Emulator) -> anthropic.AsyncAnthropic:
    return emulator.async_client(max_retries=0)


@pytest.fixture
def api() -> FakeAPI:
    return FakeAPI()


@pytest.fixture
def mock_client(api: FakeAPI) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        api_key="sk-test", base_url="http://api.test", max_retries=2,
        http_client=httpx2.Client(transport=httpx2.MockTransport(api.handle)),
    )


@pytest.fixture
def chunked_client() -> anthropic.Anthropic:
    transport = httpx2.MockTransport(FakeAPI(chunked=True).handle)
    return anthropic.Anthropic(api_key="sk-test", base_url="http://api.test", http_client=httpx2.Client(transport=transport))


def _records(path) -> list[Exchange]:
    out = []
    for _, item in read_jsonl(path):
        assert isinstance(item, Exchange), item
        out.append(item)
    return out


def _ask(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 60, "messages": [{"role": "user", "content": text}], **extra}


def _same(a: Any, b: Any) -> dict[str, Any]:
    """A Message's dump without the per-call id, to compare a wrapped call with a plain one."""
    a, b = a.model_dump(), b.model_dump()
    a.pop("id"), b.pop("id")
    assert a == b
    return a


# -- against the emulator -------------------------------------------------------------------------------------


def test_create_is_recorded_and_unchanged(client, tmp_path):
    log = tmp_path / "log.jsonl"
    wrapped = parity.wrap(client, sink=log, tags={"team": "search"})
    assert type(wrapped) is type(client)
    assert wrapped.base_url == client.base_url and wrapped.max_retries == client.max_retries
    plain = client.messages.create(**_ask("What is the capital of France?"))
    seen = wrapped.messages.create(**_ask("What is the capital of France?"), metadata={"user_id": "u1"})
    assert type(seen) is type(plain) and seen._request_id
    _same(seen, plain)
    assert flush(wrapped)
    (ex,) = _records(log)
    assert ex.request == {"max_tokens": 60, "messages": [{"role": "user", "content": "What is the capital of France?"}],
                          "model": MODEL, "metadata": {"user_id": "u1"}}
    assert ex.response == seen.model_dump(mode="json", exclude_unset=True) | {"id": seen.id}
    assert ex.usage["input_tokens"] == seen.usage.input_tokens and ex.usage["service_tier"] == "standard"
    assert ex.tags == {"team": "search"} and ex.batch is False and ex.error is None and ex.duration_ms >= 0


def test_clock_sets_the_recorded_start_time(emulator, client):
    """A replay of a simulated day records the day's times, not the wall clock's."""
    seen: list[Exchange] = []
    wrapped = parity.wrap(client, sink=seen.append, clock=emulator.clock.now)
    wrapped.messages.create(**_ask("first"))
    emulator.clock.advance(3600)
    wrapped.messages.create(**_ask("an hour later"))
    assert flush(wrapped)
    assert [e.started_at.timestamp() for e in seen] == [1_790_000_000.0, 1_790_003_600.0]


def test_request_body_is_the_exact_wire_bytes(client, tmp_path):
    log = tmp_path / "log.jsonl"
    wrapped = parity.wrap(client, sink=log)
    tool = {"name": "lookup", "input_schema": {"type": "object", "properties": {"z": {"type": "string"}, "a": {"type": "string"}}}}
    wrapped.messages.create(**_ask("x"), tools=[tool], extra_body={"service_tier": "auto"})
    flush(wrapped)
    (ex,) = _records(log)
    assert list(ex.request["tools"][0]["input_schema"]["properties"]) == ["z", "a"]  # key order kept, as hashed
    assert ex.request["service_tier"] == "auto"


def test_stream_true_recorded_as_accumulated_message(client, tmp_path):
    log = tmp_path / "log.jsonl"
    wrapped = parity.wrap(client, sink=log)
    plain = "".join(e.delta.text for e in client.messages.create(**_ask("Tell me a story"), stream=True)
                    if e.type == "content_block_delta")
    events = list(wrapped.messages.create(**_ask("Tell me a story"), stream=True))
    assert events[0].type == "message_start" and events[-1].type == "message_stop"
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta")
    assert text == plain
    flush(wrapped)
    (ex,) = _records(log)
    assert ex.request["stream"] is True and ex.error is None
    assert [(b["type"], b["text"]) for b in ex.response["content"]] == [("text", text)]
    assert ex.response["stop_reason"] == events[-2].delta.stop_reason
    assert ex.usage["output_tokens"] == events[-2].usage.output_tokens
    assert ex.usage["input_tokens"] == events[0].message.usage.input_tokens


def test_messages_stream_helper_matches_unwrapped(client, tmp_path):
    log = tmp_path / "log.jsonl"
    wrapped = parity.wrap(client, sink=log)
    with client.messages.stream(**_ask("yo")) as s:
        plain_text = "".join(s.text_stream)
        plain_final = s.get_final_message()
    with wrapped.messages.stream(**_ask("yo")) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == plain_text
    dumped = _same(final, plain_final)
    flush(wrapped)
    (ex,) = _records(log)
    assert ex.response["id"] == final.id
    assert {k: v for k, v in ex.response.items() if k != "id"} == {k: v for k, v in dumped.items() if k in ex.response}
    assert ex.response["content"] == final.model_dump(mode="json")["content"]
    assert ex.usage == final.usage.model_dump(mode="json", exclude_unset=True)


def test_api_error_recorded_with_envelope_and_reraised(client, tmp_path):
    log = tmp_path / "log.jsonl"
    wrapped = parity.wrap(client, sink=log)
    with pytest.raises(anthropic.NotFoundError) as wrapped_err:
        wrapped.messages.create(**{**_ask("hi"), "model": "claude-nope-1"})
    with pytest.raises(anthropic.NotFoundError) as plain_err:
        client.messages.create(**{**_ask("hi"), "model": "claude-nope-1"})
    assert wrapped_err.value.status_code == 404
    assert wrapped_err.value.body["error"] == plain_err.value.body["error"]
    flush(wrapped)
    (ex,) = _records(log)
    assert ex.response is None and ex.error == wrapped_err.value.body


def test_fault_overloaded_recorded_and_raised(client, tmp_path):
    log = tmp_path / "log.jsonl"
    wrapped = parity.wrap(client, sink=log)
    with pytest.raises(anthropic.OverloadedError):
        wrapped.messages.create(**_ask("hi"), extra_headers={"x-emulator-fault": "overloaded"})
    flush(wrapped)
    (ex,) = _records(log)
    assert ex.error["error"]["type"] == "overloaded_error" and ex.response is None


def test_cut_stream_recorded_as_incomplete_and_raised(client, tmp_path):
    log = tmp_path / "log.jsonl"
    wrapped = parity.wrap(client, sink=log)
    raised = []
    for c in (client, wrapped):
        with pytest.raises(Exception) as info:
            with c.messages.stream(**_ask("Tell me a long story"), extra_headers={"x-emulator-fault": "cut_stream"}) as s:
                for _ in s.text_stream:
                    pass
        raised.append(type(info.value))
    assert raised[0] is raised[1]  # the same exception as without the wrapper
    flush(wrapped)
    (ex,) = _records(log)
    assert ex.error["error"]["type"] == "incomplete_stream" and ex.response["stop_reason"] is None


def test_batches_create_and_results_become_batch_exchanges(emulator, client, tmp_path):
    log = tmp_path / "log.jsonl"
    wrapped = parity.wrap(client, sink=log, tags={"job": "nightly"})
    requests = [
        {"custom_id": "a", "params": _ask("Summarise: the cat sat on the mat.")},
        {"custom_id": "broken", "params": {**_ask("two"), "max_tokens": 0}},
    ]
    batch = wrapped.messages.batches.create(requests=requests)
    emulator.clock.advance(emulator.batches.processing_s + 1)
    results = {r.custom_id: r for r in wrapped.messages.batches.results(batch.id)}
    assert set(results) == {"a", "broken"}
    flush(wrapped)
    records = {e.tags["parity.custom_id"]: e for e in _records(log)}
    good, bad = records["a"], records["broken"]
    assert good.batch and bad.batch
    assert good.request == requests[0]["params"] and good.response["usage"]["service_tier"] == "batch"
    assert good.response == results["a"].result.message.model_dump(mode="json", exclude_unset=True)
    assert good.duration_ms == emulator.batches.processing_s * 1000
    assert good.started_at == batch.created_at and good.tags["job"] == "nightly"
    assert bad.response is None and bad.error == results["broken"].result.error.model_dump(mode="json", exclude_unset=True)


def test_other_endpoints_pass_through_unrecorded(client, tmp_path):
    log = tmp_path / "log.jsonl"
    wrapped = parity.wrap(client, sink=log)
    assert wrapped.models.retrieve(MODEL).id == MODEL
    assert wrapped.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "hi"}]).input_tokens > 0
    flush(wrapped)
    assert log.read_text() == ""


def test_callable_and_file_sinks_and_call_tags(client):
    got: list[Exchange] = []
    wrapped = parity.wrap(client, sink=got.append, tags={"env": "test"})
    with tagged(task="triage"):
        wrapped.messages.create(**_ask("a"))
    wrapped.messages.create(**_ask("b"))
    flush(wrapped)
    assert [e.tags for e in got] == [{"env": "test", "task": "triage"}, {"env": "test"}]
    buffer = io.StringIO()
    wrapped2 = parity.wrap(client, sink=buffer)
    msg = wrapped2.messages.create(**_ask("c"))
    flush(wrapped2)
    assert json.loads(buffer.getvalue())["response"]["id"] == msg.id


def test_sink_failure_never_reaches_the_caller(client, caplog):
    def broken(_: Exchange) -> None:
        raise RuntimeError("disk full")

    wrapped = parity.wrap(client, sink=broken)
    assert wrapped.messages.create(**_ask("a")).content
    assert flush(wrapped)
    assert "sink failed" in caplog.text


def test_wrap_rejects_non_clients_and_finds_its_recorder(client, tmp_path):
    with pytest.raises(parity.errors.ParityError, match="anthropic 2.x client"):
        parity.wrap(object(), sink=tmp_path / "x.jsonl")
    with pytest.raises(parity.errors.ParityError, match="does not exist"):
        parity.wrap(client, sink=tmp_path / "nowhere" / "x.jsonl")
    wrapped = parity.wrap(client, sink=tmp_path / "x.jsonl")
    assert recorder_of(wrapped) is not None and recorder_of(client) is None


async def test_async_create_stream_and_error(aclient, tmp_path):
    log = tmp_path / "log.jsonl"
    wrapped = parity.wrap(aclient, sink=log)
    assert isinstance(wrapped, anthropic.AsyncAnthropic)
    msg = await wrapped.messages.create(**_ask("a"))
    async with wrapped.messages.stream(**_ask("b")) as s:
        final = await s.get_final_message()
    with pytest.raises(anthropic.NotFoundError):
        await wrapped.messages.create(**{**_ask("c"), "model": "claude-nope-1"})
    flush(wrapped)
    a, b, c = _records(log)
    assert a.response["id"] == msg.id and a.response["content"][0]["text"] == msg.content[0].text
    assert b.response["content"] == final.model_dump(mode="json")["content"]
    assert b.usage["output_tokens"] == final.usage.output_tokens
    assert c.error["error"]["type"] == "not_found_error"


# -- exact wire control (MockTransport) -----------------------------------------------------------------------


def test_stream_error_event_is_recorded_and_raised(mock_client, tmp_path):
    log = tmp_path / "log.jsonl"
    wrapped = parity.wrap(mock_client, sink=log)
    with pytest.raises(anthropic.APIStatusError) as info:
        for _ in wrapped.messages.create(model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "cut"}], stream=True):
            pass
    assert "Overloaded" in str(info.value)
    flush(wrapped)
    (ex,) = _records(log)
    assert ex.error["error"]["type"] == "overloaded_error"
    assert ex.response["content"][0]["text"].startswith("stre")  # what arrived before the error


def test_tool_use_stream_accumulates_partial_json(chunked_client, tmp_path):
    log = tmp_path / "log.jsonl"
    wrapped = parity.wrap(chunked_client, sink=log)
    with wrapped.messages.stream(model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "hello"}]) as s:
        final = s.get_final_message()
    flush(wrapped)
    (ex,) = _records(log)
    assert ex.response["content"][1] == {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}
    assert ex.response["content"] == final.model_dump(mode="json", exclude_none=True)["content"]
    assert ex.response["stop_reason"] == "tool_use" and ex.usage["output_tokens"] == 9


def test_abandoned_stream_is_recorded_as_incomplete(chunked_client, tmp_path):
    log = tmp_path / "log.jsonl"
    wrapped = parity.wrap(chunked_client, sink=log)
    stream = wrapped.messages.create(model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "hi"}], stream=True)
    next(iter(stream))
    stream.close()
    flush(wrapped)
    (ex,) = _records(log)
    assert ex.error["error"] == {"type": "incomplete_stream", "message": "the caller closed the stream before message_stop"}
    assert ex.response["id"] == "msg_01" and ex.response["stop_reason"] is None


def test_retried_attempts_are_each_recorded(mock_client, tmp_path, monkeypatch):
    monkeypatch.setattr(anthropic.Anthropic, "_calculate_retry_timeout", lambda *a, **k: 0.0)
    log = tmp_path / "log.jsonl"
    wrapped = parity.wrap(mock_client, sink=log)
    msg = wrapped.messages.create(model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "overloaded"}])
    assert msg.content[0].text == "echo overloaded"
    flush(wrapped)
    first, second = _records(log)
    assert first.error["error"]["type"] == "overloaded_error" and "parity.attempt" not in first.tags
    assert second.response is not None and second.tags["parity.attempt"] == "2"


def test_connection_error_recorded_and_reraised(tmp_path):
    def down(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("connection refused", request=request)

    client = anthropic.Anthropic(api_key="k", base_url="http://api.test", max_retries=0, http_client=httpx2.Client(transport=httpx2.MockTransport(down)))
    log = tmp_path / "log.jsonl"
    wrapped = parity.wrap(client, sink=log)
    with pytest.raises(anthropic.APIConnectionError):
        wrapped.messages.create(model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    flush(wrapped)
    (ex,) = _records(log)
    assert ex.error["error"]["type"] == "api_connection_error"
    assert ex.request["messages"] == [{"role": "user", "content": "hi"}]


def test_batch_results_for_an_unseen_batch_keep_what_is_known(mock_client, tmp_path):
    creator = parity.wrap(mock_client, sink=tmp_path / "other.jsonl")
    batch = creator.messages.batches.create(requests=[{"custom_id": "a", "params": _ask("one")}])
    log = tmp_path / "log.jsonl"
    reader = parity.wrap(mock_client, sink=log)  # another recorder never saw the params
    list(reader.messages.batches.results(batch.id))
    flush(reader)
    (ex,) = _records(log)
    assert ex.request == {"model": MODEL} and ex.batch and ex.tags["parity.custom_id"] == "a"


def test_accumulate_sse_handles_crlf_and_thinking():
    events = [
        {"type": "message_start", "message": {"id": "m", "type": "message", "role": "assistant", "model": MODEL, "content": [], "stop_reason": None, "usage": {"input_tokens": 3, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hmm"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "sig"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 4, "input_tokens": None}},
        {"type": "message_stop"},
    ]
    message, error = accumulate_sse(_sse(events).replace(b"\n", b"\r\n"))
    assert error is None
    assert message["content"] == [{"type": "thinking", "thinking": "hmm", "signature": "sig"}]
    assert message["usage"] == {"input_tokens": 3, "output_tokens": 4}
    _, error = accumulate_sse(_sse(events[:3]))
    assert error["error"]["type"] == "incomplete_stream"
