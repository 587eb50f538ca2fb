"""SSE streaming (reference §4): event names and order, indices, deltas, cumulative usage, and the SDK's
MessageStream."""

from __future__ import annotations

import json

import anthropic
import httpx2
import pytest

from parity.emulator.streaming import split_json, split_text

from .conftest import MODEL, USER, headers, text_reply, tool_reply

TOOL = {"name": "lookup", "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}}


def sse(raw_client, body: dict, **extra_headers: str) -> list[tuple[str, dict]]:
    """POST a streaming request and parse the raw SSE: (event name, data) pairs; every event has both lines."""
    response = raw_client.post("/v1/messages", json={**body, "stream": True}, headers=headers(**extra_headers))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["request-id"].startswith("req_")
    events = []
    for chunk in response.text.split("\n\n"):
        if not chunk.strip():
            continue
        lines = chunk.split("\n")
        assert lines[0].startswith("event: ") and lines[1].startswith("data: ") and len(lines) == 2, chunk
        name, data = lines[0][len("event: ") :], json.loads(lines[1][len("data: ") :])
        assert data["type"] == name
        events.append((name, data))
    return events


def test_event_order_indices_and_usage(raw, brain):
    brain.then(
        tool_reply("lookup", {"q": "a fairly long query string to split"}, text="Let me look that up for you now.")
    )
    events = sse(raw, {"model": MODEL, "max_tokens": 300, "messages": USER, "tools": [TOOL]})
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert names.count("ping") >= 1
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None and start["stop_sequence"] is None
    assert {"input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens"} <= set(
        start["usage"]
    )
    # blocks: start → deltas → stop, indices 0, 1, … in order
    blocks: dict[int, list[str]] = {}
    order = []
    for name, data in events:
        if name.startswith("content_block_"):
            blocks.setdefault(data["index"], []).append(name)
            if name == "content_block_start":
                order.append(data["index"])
    assert order == [0, 1]
    for names_of_block in blocks.values():
        assert names_of_block[0] == "content_block_start" and names_of_block[-1] == "content_block_stop"
        assert set(names_of_block[1:-1]) == {"content_block_delta"}
    text_deltas = [d["delta"]["text"] for n, d in events if n == "content_block_delta" and d["index"] == 0]
    assert len(text_deltas) > 1 and "".join(text_deltas) == "Let me look that up for you now."
    json_deltas = [d["delta"]["partial_json"] for n, d in events if n == "content_block_delta" and d["index"] == 1]
    assert json_deltas[0] == "" and len(json_deltas) > 2
    assert json.loads("".join(json_deltas)) == {"q": "a fairly long query string to split"}
    tool_start = next(d for n, d in events if n == "content_block_start" and d["index"] == 1)["content_block"]
    assert tool_start["type"] == "tool_use" and tool_start["id"].startswith("toolu_") and tool_start["input"] == {}
    delta = events[-2][1]
    assert delta["delta"]["stop_reason"] == "tool_use" and delta["delta"]["stop_sequence"] is None
    assert delta["usage"]["output_tokens"] > start["usage"]["output_tokens"]
    assert delta["usage"]["input_tokens"] == start["usage"]["input_tokens"]


def test_message_stream_accumulates_the_same_message_as_create(client, brain):
    brain.always(text_reply("The quick brown fox jumps over the lazy dog, twice over."))
    created = client.messages.create(model=MODEL, max_tokens=100, messages=USER)
    with client.messages.stream(model=MODEL, max_tokens=100, messages=USER) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 1 and "".join(pieces) == created.content[0].text == final.content[0].text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == created.usage.output_tokens
    assert final.usage.input_tokens == created.usage.input_tokens
    assert final.usage.cache_read_input_tokens == 0 and final.usage.cache_creation_input_tokens == 0
    assert final.id.startswith("msg_")


def test_stream_event_types_seen_by_the_sdk(client, brain):
    brain.then(text_reply("one two three four five six seven eight"))
    with client.messages.stream(model=MODEL, max_tokens=100, messages=USER) as stream:
        kinds = [event.type for event in stream]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_start" in kinds and "content_block_stop" in kinds and "message_delta" in kinds


def test_stop_sequence_and_max_tokens_in_a_stream(client, brain):
    brain.always(text_reply("first part HALT second part"))
    with client.messages.stream(model=MODEL, max_tokens=100, messages=USER, stop_sequences=["HALT"]) as stream:
        final = stream.get_final_message()
    assert (final.stop_reason, final.stop_sequence, final.content[0].text) == ("stop_sequence", "HALT", "first part ")
    brain.always(text_reply(" ".join(["lorem"] * 300)))
    with client.messages.stream(model=MODEL, max_tokens=10, messages=USER) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "max_tokens" and final.usage.output_tokens == 10


def test_raw_stream_via_create_stream_true(client, brain):
    brain.then(text_reply("streamed"))
    events = list(client.messages.create(model=MODEL, max_tokens=20, messages=USER, stream=True))
    assert events[0].type == "message_start" and events[-1].type == "message_stop"


def test_errors_before_the_stream_starts_are_plain_http_errors(client):
    with pytest.raises(anthropic.BadRequestError):
        with client.messages.stream(model=MODEL, max_tokens=-5, messages=USER) as stream:
            stream.get_final_message()
    with pytest.raises(anthropic.NotFoundError):
        with client.messages.stream(model="claude-nope", max_tokens=5, messages=USER) as stream:
            stream.get_final_message()


def test_the_sync_transport_streams_incrementally(emulator, brain):
    """A stalled stream delivers message_start first, then the client's read timeout fires: nothing is buffered."""
    emulator.faults.stall_s = 5.0
    brain.then(text_reply("words " * 50))
    seen = []
    with emulator.client(max_retries=0, timeout=httpx2.Timeout(5.0, read=0.3)) as sdk:
        with pytest.raises((httpx2.ReadTimeout, anthropic.APITimeoutError)):
            with sdk.messages.stream(
                model=MODEL, max_tokens=200, messages=USER, extra_headers={"x-emulator-fault": "stall"}
            ) as stream:
                for event in stream:
                    seen.append(event.type)
    assert seen[:1] == ["message_start"] and "message_stop" not in seen


async def test_async_stream(async_client, brain):
    brain.then(text_reply("async streaming works fine here"))
    async with async_client.messages.stream(model=MODEL, max_tokens=50, messages=USER) as stream:
        pieces = [piece async for piece in stream.text_stream]
        final = await stream.get_final_message()
    assert "".join(pieces) == "async streaming works fine here" == final.content[0].text


def test_splitters_lose_nothing():
    for text in ("", "a", "  leading and trailing  ", "multi\nline\n\ntext with   gaps", "x" * 100):
        assert "".join(split_text(text)) == text
    document = json.dumps({"k": "v" * 60, "n": [1, 2, 3]})
    chunks = split_json(document)
    assert chunks[0] == "" and "".join(chunks) == document


async def test_the_async_transport_streams_incrementally(emulator, brain):
    emulator.faults.stall_s = 5.0
    brain.then(text_reply("words " * 50))
    seen = []
    async with emulator.async_client(max_retries=0, timeout=httpx2.Timeout(5.0, read=0.3)) as sdk:
        with pytest.raises((httpx2.ReadTimeout, anthropic.APITimeoutError)):
            async with sdk.messages.stream(
                model=MODEL, max_tokens=200, messages=USER, extra_headers={"x-emulator-fault": "stall"}
            ) as stream:
                async for event in stream:
                    seen.append(event.type)
    assert seen[:1] == ["message_start"] and "message_stop" not in seen
