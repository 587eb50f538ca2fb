"""Streams: relayed in whole events and closed with an error event when cut; routed streams held, checked, and
replayed byte for byte; the SDK never sees a truncated success."""

from __future__ import annotations

import asyncio

import anthropic
import httpx2
import pytest

from parity.gateway import streaming
from parity.gateway.streaming import StreamOutcome, buffer, error_event, relay

from .conftest import BASELINE, CANDIDATE, GOOD_CANDIDATE, TASK, USER, scoped_fault, text
from .test_passthrough import SSE

PARAMS = dict(model=BASELINE, max_tokens=200, messages=USER)


class Script(httpx2.AsyncByteStream):
    """A response body: chunks, then an optional exception (a dropped connection or a read timeout)."""

    def __init__(self, chunks: list[bytes], error: Exception | None = None):
        self.chunks, self.error = chunks, error

    async def __aiter__(self):
        for chunk in self.chunks:
            yield chunk
        if self.error is not None:
            raise self.error


def _response(chunks: list[bytes], error: Exception | None = None) -> httpx2.Response:
    return httpx2.Response(200, headers={"content-type": "text/event-stream"}, stream=Script(chunks, error))


async def _relay(chunks: list[bytes], error: Exception | None = None) -> tuple[list[bytes], StreamOutcome]:
    ended: list[StreamOutcome] = []
    out = [piece async for piece in relay(_response(chunks, error), ended.append)]
    assert len(ended) == 1
    return out, ended[0]


def _pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


async def test_relay_passes_whole_events_unchanged():
    out, outcome = await _relay(_pieces(SSE, 5))
    assert b"".join(out) == SSE and outcome.complete and outcome.raw == SSE
    assert all(piece.endswith(b"\n\n") for piece in out)  # never half an event


async def test_relay_cut_mid_event_ends_with_an_error_event():
    cut = SSE.index(b"event: content_block_stop") + 10
    out, outcome = await _relay(_pieces(SSE[:cut], 9), httpx2.RemoteProtocolError("peer closed connection"))
    body = b"".join(out)
    assert outcome.failure == "cut" and body.endswith(b"\n\n")
    assert body.startswith(SSE[: SSE.index(b"event: content_block_stop")])  # everything before the broken event
    assert b"event: content_block_stop" not in body  # the half event never went out
    assert body.endswith(error_event("api_error", _error_text(body)))


def _error_text(body: bytes) -> str:
    import json

    return json.loads(body.rsplit(b"data: ", 1)[1])["error"]["message"]


async def test_relay_stream_ending_without_message_stop_is_a_cut():
    early = SSE[: SSE.index(b"event: message_delta")]
    out, outcome = await _relay([early])
    assert outcome.failure == "cut" and b"".join(out).endswith(b"\n\n") and b"event: error" in out[-1]


async def test_relay_stall_is_reported():
    out, outcome = await _relay([SSE[:200]], httpx2.ReadTimeout("timed out"))
    assert outcome.failure == "stall" and b"event: error" in out[-1]


async def test_relay_upstream_error_event_is_passed_on_as_is():
    error = error_event("overloaded_error", "Overloaded")
    head = SSE[: SSE.index(b"event: content_block_start")]
    out, outcome = await _relay([head + error])
    assert b"".join(out) == head + error and outcome.failure == "error_event"


async def test_relay_records_a_client_that_goes_away():
    ended: list[StreamOutcome] = []
    gen = relay(_response(_pieces(SSE, 40)), ended.append)
    await gen.__anext__()
    await gen.aclose()
    assert ended[0].failure == "client_disconnected"


async def test_buffer_rebuilds_the_message_or_says_what_broke():
    held = await buffer(_response(_pieces(SSE, 11)))
    assert held.failure is None and held.raw == SSE and held.message["content"][0]["text"] == "Hi"
    assert held.message["usage"]["output_tokens"] == 3
    cut = await buffer(_response([SSE[:300]], httpx2.RemoteProtocolError("gone")))
    assert cut.failure.kind == "cut"
    stalled = await buffer(_response([SSE[:300]], httpx2.ReadTimeout("slow")))
    assert stalled.failure.kind == "stall"
    short = await buffer(_response([SSE[: SSE.index(b"event: message_stop")]]))
    assert short.failure.kind == "cut"
    broken = await buffer(_response([b'event: message_start\ndata: {"type": "mess\n\n']))
    assert broken.failure.kind == "malformed"
    errored = await buffer(_response([SSE[:200].rsplit(b"\n\n", 1)[0] + b"\n\n" + error_event("api_error", "x")]))
    assert errored.failure is not None


def test_parse_outcome_for_the_ledger():
    message, error = streaming.parse_outcome(StreamOutcome(SSE))
    assert message["stop_reason"] == "end_turn" and error is None
    message, error = streaming.parse_outcome(StreamOutcome(SSE[:400], "cut", "dropped"))
    assert message is not None and error["error"]["type"] == "cut"


# ---- through the gateway, with the SDK -------------------------------------------------------------------------


def test_routed_stream_is_replayed_exactly_as_the_candidate_sent_it(gw):
    gw.brain.answers[CANDIDATE] = text(GOOD_CANDIDATE)
    with gw.http() as http:
        headers = {"x-api-key": "k", "anthropic-version": "2023-06-01", **TASK}
        with http.stream("POST", "/v1/messages", json={**PARAMS, "stream": True}, headers=headers) as r:
            body = b"".join(r.iter_bytes())
    assert r.headers["x-parity-route"] == "routed" and r.headers["content-type"].startswith("text/event-stream")
    names = [line[7:] for line in body.decode().splitlines() if line.startswith("event: ")]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    (row, ex), = gw.ledger()
    assert ex.response["content"][0]["text"] == GOOD_CANDIDATE and row.route == "routed"


def test_routed_stream_fault_before_any_byte_falls_back_to_streaming_the_baseline(gw):
    with gw.sdk() as sdk:
        with sdk.messages.stream(**PARAMS, extra_headers={**TASK, **scoped_fault("cut_stream")}) as s:
            first = next(iter(s))
            message = s.get_final_message()
    assert first.type == "message_start" and first.message.model == BASELINE  # the client only ever saw the baseline
    assert message.model == BASELINE


def test_unrouted_cut_raises_in_the_sdk_after_the_partial_text(gw):
    gw.brain.answers[BASELINE] = text("alpha beta gamma delta " * 20)
    seen = []
    with gw.sdk() as sdk, pytest.raises(anthropic.APIStatusError):
        with sdk.messages.stream(**PARAMS, extra_headers={"x-emulator-fault": "cut_stream"}) as s:
            for piece in s.text_stream:
                seen.append(piece)
    assert seen  # partial text arrived, then an exception, never a final message


async def test_async_sdk_streams_through_the_gateway(make):
    from parity.api.transport import AsyncASGITransport

    harness = make()
    http = httpx2.AsyncClient(transport=AsyncASGITransport(harness.app), base_url="http://gateway.test")
    async with anthropic.AsyncAnthropic(base_url="http://gateway.test", api_key="k", http_client=http, max_retries=0) as sdk:
        async with sdk.messages.stream(**PARAMS) as s:
            message = await s.get_final_message()
        created = await asyncio.gather(*[sdk.messages.create(**PARAMS) for _ in range(5)])
    assert message.model == BASELINE and all(m.model == BASELINE for m in created)
