"""The official SDK works through the gateway unchanged: create, stream, tools, count_tokens, batches, models;
both auth styles and both API versions; the upstream key stays inside the gateway; everything is recorded."""

from __future__ import annotations

import json
import logging

import anthropic
import httpx2
import pytest

from parity import pricing
from parity.emulator.brains.base import BrainReply
from parity.gateway.app import create_gateway
from parity.gateway.local import emulator_config
from parity.gateway.upstream import Upstream
from parity.policy import Contract, Match, Policy, TaskPolicy

from servers import uvicorn_on_socket

from .conftest import BASELINE, GOOD_BASELINE, TASK, UPSTREAM_KEY, USER, certified, policy, text

PARAMS = dict(model=BASELINE, max_tokens=200, messages=USER)
TOOL = {"name": "get_weather", "description": "Weather for a city", "input_schema": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def test_create_is_relayed_and_recorded_with_exact_cost(make):
    harness = make()
    with harness.sdk() as sdk:
        raw = sdk.messages.with_raw_response.create(**PARAMS, metadata={"user_id": "u-1"})
    message = raw.parse()
    assert message.content[0].text == GOOD_BASELINE and message.model == BASELINE
    assert raw.http_response.headers["request-id"] == message._request_id  # the upstream's id, relayed
    assert raw.http_response.headers["x-parity-route"] == "passthrough"
    assert "anthropic-ratelimit-requests-remaining" in raw.http_response.headers
    (row, ex), = harness.ledger()
    assert ex.request == {**PARAMS, "metadata": {"user_id": "u-1"}} and ex.response["id"] == message.id
    expected = pricing.cost(BASELINE, message.usage.model_dump()).total
    assert row.cost_usd == str(expected) and expected > 0
    assert row.route == "passthrough" and row.status_code == 200 and row.model_served == BASELINE


def test_stream_is_relayed_and_accumulated_in_the_ledger(make):
    harness = make()
    harness.brain.answers[BASELINE] = text("one two three four five six seven eight nine ten " * 3)
    with harness.sdk() as sdk:
        with sdk.messages.stream(**PARAMS) as s:
            kinds = [event.type for event in s]
            message = s.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop" and "text" in kinds
    (row, ex), = harness.ledger()
    assert ex.response["content"][0]["text"] == message.content[0].text
    assert ex.response["usage"]["output_tokens"] == message.usage.output_tokens
    assert row.cost_usd == str(pricing.cost(BASELINE, ex.response["usage"]).total)


SSE = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant",'
    b'"model":"claude-opus-4-8","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":5,'
    b'"output_tokens":1}}}\n\n'
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n'
    b'event: ping\ndata: {"type": "ping"}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}\n\n'
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},'
    b'"usage":{"output_tokens":3}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)


class Chunked(httpx2.AsyncByteStream):
    def __init__(self, data: bytes, size: int):
        self.data, self.size = data, size

    async def __aiter__(self):
        for i in range(0, len(self.data), self.size):
            yield self.data[i : i + self.size]


def test_unrouted_stream_is_byte_for_byte(make):
    """Chunks cut mid-event upstream; the client still receives exactly the upstream's bytes."""
    async def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, stream=Chunked(SSE, 7))

    harness = make(upstream_transport=httpx2.MockTransport(handler))
    with harness.http() as http:
        body = {**PARAMS, "stream": True}
        with http.stream("POST", "/v1/messages", json=body, headers={"x-api-key": "k", "anthropic-version": "2023-06-01"}) as r:
            received = b"".join(r.iter_bytes())
    assert r.status_code == 200 and received == SSE


def test_tools(make):
    harness = make()
    harness.brain.answers[BASELINE] = BrainReply(
        [{"type": "tool_use", "id": "", "name": "get_weather", "input": {"city": "Paris"}}], stop_reason="tool_use")
    with harness.sdk() as sdk:
        message = sdk.messages.create(**PARAMS, tools=[TOOL])
        with sdk.messages.stream(**PARAMS, tools=[TOOL]) as s:
            streamed = s.get_final_message()
    for m in (message, streamed):
        assert m.stop_reason == "tool_use" and m.content[0].name == "get_weather" and m.content[0].input == {"city": "Paris"}


def test_count_tokens_models_and_versions(make):
    harness = make()
    with harness.sdk() as sdk:
        counted = sdk.messages.count_tokens(model=BASELINE, messages=USER)
        assert counted.input_tokens > 0
        models = sdk.models.list()
        assert any(m.id == BASELINE for m in models.data)
        assert sdk.models.retrieve(BASELINE).id == BASELINE
        with pytest.raises(anthropic.NotFoundError):
            sdk.models.retrieve("claude-nonexistent-9")


def test_batches_through_the_gateway(make):
    harness = make()
    with harness.sdk() as sdk:
        batch = sdk.messages.batches.create(requests=[
            {"custom_id": "a", "params": {**PARAMS}},
            {"custom_id": "b", "params": {**PARAMS, "max_tokens": 50}},
        ])
        ended = sdk.messages.batches.retrieve(batch.id)
        assert ended.processing_status == "ended"
        assert ended.results_url.startswith("http://gateway.test/v1/messages/batches/")  # not the upstream's host
        results = {r.custom_id: r.result for r in sdk.messages.batches.results(batch.id)}
        listed = sdk.messages.batches.list()
    assert set(results) == {"a", "b"} and all(r.type == "succeeded" for r in results.values())
    assert results["a"].message.usage.service_tier == "batch"
    assert any(b.id == batch.id for b in listed.data)
    assert all(b.results_url is None or b.results_url.startswith("http://gateway.test/") for b in listed.data)


@pytest.mark.parametrize(
    "credential, version",
    [({"x-api-key": "client-key-1"}, "2023-06-01"), ({"authorization": "Bearer client-key-2"}, "2026-10-21")],
)
def test_both_auth_styles_and_versions_reach_the_upstream_with_its_own_key(make, credential, version):
    harness = make()
    with harness.http() as http:
        r = http.post("/v1/messages", json=PARAMS, headers={**credential, "anthropic-version": version,
                                                              "x-parity-task": "nothing", "x-emulator-fault": ""})
    assert r.status_code == 200 and r.json()["content"][0]["text"] == GOOD_BASELINE
    _, seen = harness.shim.seen[-1]
    assert seen["x-api-key"] == UPSTREAM_KEY and "authorization" not in seen
    assert seen["anthropic-version"] == version
    assert not any(name.startswith("x-parity-") for name in seen)  # the gateway's own headers stay here


def test_sdk_v2_and_legacy_style_clients(make):
    harness = make()
    with harness.sdk() as sdk:  # SDK 2.x: Bearer, 2026-10-21
        assert sdk.messages.create(**PARAMS).model == BASELINE
    with harness.sdk(default_headers={"anthropic-version": "2023-06-01"}) as legacy:
        assert legacy.messages.create(**PARAMS).model == BASELINE
    versions = [h["anthropic-version"] for _, h in harness.shim.seen]
    assert versions == ["2026-10-21", "2023-06-01"]


def test_upstream_headers_pass_through(make):
    harness = make()
    with harness.sdk() as sdk:
        with pytest.raises(anthropic.OverloadedError):
            sdk.messages.create(**PARAMS, extra_headers={"x-emulator-fault": "overloaded", "anthropic-beta": "token-counting-2024-11-01"})
    _, seen = harness.shim.seen[-1]
    assert seen["x-emulator-fault"] == "overloaded" and seen["anthropic-beta"] == "token-counting-2024-11-01"


def test_upstream_key_never_leaves_the_gateway(make, caplog):
    """Not in responses (even when a buggy upstream echoes it), errors, the ledger, or the logs."""
    caplog.set_level(logging.DEBUG)

    async def echo(request: httpx2.Request) -> httpx2.Response:
        key = request.headers["x-api-key"]
        if b'"stream":true' in request.content:
            raise httpx2.ConnectError(f"refused while using {key}", request=request)
        body = {"type": "error", "error": {"type": "authentication_error", "message": f"key {key} was rejected"}}
        return httpx2.Response(401, json=body)

    harness = make(upstream_transport=httpx2.MockTransport(echo))
    seen: list[bytes] = []
    with harness.http() as http:
        headers = {"x-api-key": "client", "anthropic-version": "2023-06-01"}
        for body in (PARAMS, {**PARAMS, "stream": True}):
            seen.append(http.post("/v1/messages", json=body, headers=headers).content)
        seen.append(http.get("/v1/models", headers=headers).content)
        seen.append(http.get("/metrics").content)
    harness.ledger(at_least=2)
    assert all(UPSTREAM_KEY.encode() not in body for body in seen)
    assert b"[upstream-key]" in seen[0]
    assert UPSTREAM_KEY.encode() not in harness.ledger_path.read_bytes()
    wal = harness.ledger_path.with_name(harness.ledger_path.name + "-wal")
    assert not wal.exists() or UPSTREAM_KEY.encode() not in wal.read_bytes()
    assert UPSTREAM_KEY not in caplog.text


def test_requests_never_go_anywhere_but_the_upstream(make):
    harness = make()
    with harness.http() as http:
        headers = {"x-api-key": "k", "anthropic-version": "2023-06-01", "host": "evil.example"}
        for path in (b"//evil.example/v1/messages", b"/v1//evil.example/x", b"/v1/../admin", b"/admin"):
            request = http.build_request("POST", "/", json=PARAMS, headers=headers)
            request.url = request.url.copy_with(raw_path=path)
            r = http.send(request)
            assert r.status_code in (404, 405) and r.json()["type"] == "error", path
    assert harness.shim.seen == []
    with pytest.raises(ValueError):
        Upstream("https://api.anthropic.com").url("//evil.example/v1/messages")
    assert str(Upstream("https://api.anthropic.com/base").url("/v1/messages", b"a=1")) == "https://api.anthropic.com/base/v1/messages?a=1"


def test_task_identification_by_metadata(make):
    harness = make(policy=policy("route"))
    with harness.sdk() as sdk:
        a = sdk.messages.create(**PARAMS, metadata={"user_id": "task:triage;user:42"})
        b = sdk.messages.create(**PARAMS, extra_body={"metadata": {"task": "triage", "user_id": "u"}})
    assert a.model == b.model == "claude-haiku-4-5"
    (_, first), (_, second) = harness.ledger(at_least=2)
    assert first.tags["task"] == second.tags["task"] == "triage"
    assert harness.brain.requests[-1].model == "claude-haiku-4-5"  # the non-API key was removed upstream


def test_task_identification_by_fingerprint(make):
    from parity.fingerprint import fingerprint

    system = "You label support tickets. Today is 2026-11-24."
    task = certified(TaskPolicy(task="labels", mode="route", baseline_model=BASELINE, candidate_model="claude-haiku-4-5",
                                contract=Contract(), match=Match(fingerprint=fingerprint({"system": system, "messages": USER}))))
    harness = make(policy=Policy({"labels": task}))
    with harness.sdk() as sdk:
        routed = sdk.messages.create(**PARAMS, system="You label support tickets. Today is 2026-12-01.")
        other = sdk.messages.create(**PARAMS, system="Something else entirely.")
    assert routed.model == "claude-haiku-4-5" and other.model == BASELINE


def test_observe_mode_and_other_models_pass_through(make):
    harness = make(policy=policy("observe"))
    with harness.sdk() as sdk:
        assert sdk.messages.create(**PARAMS, extra_headers=TASK).model == BASELINE
    routed = make(policy=policy("route"))
    with routed.sdk() as sdk:
        raw = sdk.messages.with_raw_response.create(**{**PARAMS, "model": "claude-sonnet-4-6"}, extra_headers=TASK)
    assert raw.parse().model == "claude-sonnet-4-6" and raw.http_response.headers["x-parity-reason"] == "model_not_baseline"
    (row, ex), = harness.ledger()
    assert row.route == "passthrough" and ex.tags["task"] == "triage"


def test_shadow_mode_answers_with_the_baseline_and_records_the_candidate(make):
    harness = make(policy=policy("shadow"))
    with harness.sdk() as sdk:
        message = sdk.messages.create(**PARAMS, extra_headers=TASK)
    assert message.model == BASELINE
    rows = harness.ledger(at_least=2)
    routes = sorted(row.route for row, _ in rows)
    assert routes == ["passthrough", "shadow"]
    shadow = next(ex for row, ex in rows if row.route == "shadow")
    assert shadow.model_served == "claude-haiku-4-5" and shadow.tags["shadow_of"]
    assert shadow.request["system"] == "Classify the report. Answer with JSON only."


def test_policy_file_is_reloaded(make, tmp_path):
    import os

    from parity.policy import save_policy

    path = tmp_path / "policy.json"
    save_policy(policy("observe"), path)
    harness = make(policy_path=str(path))
    with harness.sdk() as sdk:
        assert sdk.messages.create(**PARAMS, extra_headers=TASK).model == BASELINE
        save_policy(policy("route"), path)
        os.utime(path, (os.stat(path).st_atime + 5, os.stat(path).st_mtime + 5))
        harness.gateway.tasks._checked = 0.0
        assert sdk.messages.create(**PARAMS, extra_headers=TASK).model == "claude-haiku-4-5"


def test_redaction_keeps_costs_and_hides_text(make):
    harness = make(redact=True)
    with harness.sdk() as sdk:
        sdk.messages.create(**PARAMS, system="secret system prompt")
    (row, ex), = harness.ledger()
    dumped = json.dumps(ex.to_dict())
    assert "crashes" not in dumped and "secret system" not in dumped and "baseline" not in dumped
    assert ex.request["messages"][0]["content"].startswith("[redacted sha256:")
    assert row.cost_usd and float(row.cost_usd) > 0 and ex.response["usage"]["input_tokens"] > 0


def test_metrics(make):
    harness = make(policy=policy("route"))
    harness.brain.answers["claude-haiku-4-5"] = text("not json")
    with harness.sdk() as sdk:
        sdk.messages.create(**PARAMS, extra_headers=TASK)
        sdk.messages.create(**PARAMS)
    harness.ledger(at_least=3)
    with harness.http() as http:
        body = http.get("/metrics").text
    assert 'parity_gateway_requests_total{endpoint="messages",outcome="ok",route="fallback",task="triage"} 1.0' in body
    assert 'parity_gateway_requests_total{endpoint="messages",outcome="ok",route="passthrough",task=""} 1.0' in body
    assert 'parity_gateway_fallbacks_total{reason="contract_not_json",task="triage"} 1.0' in body
    assert "parity_gateway_request_duration_seconds_bucket" in body and "parity_gateway_cost_usd_total" in body


def test_served_on_a_socket_with_the_emulator_upstream(tmp_path):
    """`parity serve --upstream emulator` as a user runs it: uvicorn on a port, the SDK pointed at it."""
    from parity.emulator.clock import ManualClock
    from parity.emulator.service import Emulator

    from .conftest import ModelBrain

    config = emulator_config(Emulator(brain=ModelBrain(), clock=ManualClock()), ledger_url=str(tmp_path / "l.db"))
    app = create_gateway(config)
    with uvicorn_on_socket(app) as base_url:
        with anthropic.Anthropic(base_url=base_url, api_key="any", max_retries=0) as sdk:
            assert sdk.messages.create(**PARAMS).content[0].text == GOOD_BASELINE
            with sdk.messages.stream(**PARAMS) as s:
                assert s.get_final_message().content[0].text == GOOD_BASELINE
    rows = list(__import__("parity.ledger.reader", fromlist=["read_ledger"]).read_ledger(str(tmp_path / "l.db")))
    assert len(rows) == 2  # the lifespan shutdown drained the recorder into the ledger
