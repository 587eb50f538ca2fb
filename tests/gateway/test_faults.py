"""The fault suite: every way the upstream or the candidate can fail, driven by the emulator's own faults, seen
through the official SDK. In every scenario the client gets a correct baseline answer or the documented error,
never a truncated success, and the ledger says what happened.

Scenarios are the test functions (parametrized cases count one each); `test_fault_suite_size` counts them.
"""

from __future__ import annotations

import json
import sys

import anthropic
import httpx2
import pytest

from parity.emulator.brains.base import BrainReply
from parity.api.transport import AsyncASGITransport

from servers import free_port

from .conftest import BASELINE, CANDIDATE, GOOD_BASELINE, TASK, USER, policy, scoped_fault, text

PARAMS = dict(model=BASELINE, max_tokens=200, messages=USER)


def _baseline_answer(message) -> None:
    assert message.model == BASELINE
    assert message.content[0].text == GOOD_BASELINE
    assert message.stop_reason == "end_turn"


def _routes(harness) -> list[tuple[str, str | None, int]]:
    return [(row.route, (row.reason or "").split(":", 1)[0] or None, row.status_code) for row, _ in harness.ledger()]


# ---- routed task: the candidate fails, the client gets the baseline's answer --------------------------------------


@pytest.mark.parametrize(
    "kind, status",
    [("rate_limit", 429), ("server_error", 500), ("overloaded", 529)],
)
def test_candidate_http_error_falls_back(gw, kind, status):
    with gw.sdk() as sdk:
        raw = sdk.messages.with_raw_response.create(**PARAMS, extra_headers={**TASK, **scoped_fault(kind)})
    _baseline_answer(raw.parse())
    assert raw.http_response.headers["x-parity-route"] == "fallback"
    assert raw.http_response.headers["x-parity-reason"] == f"candidate_http_{status}"
    assert _routes(gw) == [("routed", f"candidate_http_{status}", status), ("fallback", f"candidate_http_{status}", 200)]
    assert gw.shim.models() == [CANDIDATE, BASELINE]  # no retry of the candidate: straight to the baseline


@pytest.mark.parametrize("stream", [False, True])
def test_candidate_timeout_falls_back(gw, stream):
    # the emulator holds the candidate's answer 0.3 s; the gateway gives a candidate 0.2 s (non-streaming) or
    # 0.25 s of silence (streaming) before it falls back
    with gw.sdk() as sdk:
        if stream:
            with sdk.messages.stream(**PARAMS, extra_headers={**TASK, **scoped_fault("timeout")}) as s:
                message = s.get_final_message()
        else:
            message = sdk.messages.create(**PARAMS, extra_headers={**TASK, **scoped_fault("timeout")})
    _baseline_answer(message)
    routes = _routes(gw)
    assert routes[-1][:2] == ("fallback", "candidate_timeout")
    assert routes[0][:2] == ("routed", "candidate_timeout")


class RefuseModel(httpx2.AsyncBaseTransport):
    """A network where connections for one model's calls are refused (as if its endpoint were down)."""

    def __init__(self, inner: httpx2.AsyncBaseTransport, model: str):
        self.inner, self.model = inner, model

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        body = await request.aread()
        if body and json.loads(body).get("model") == self.model:
            raise httpx2.ConnectError("[Errno 111] Connection refused", request=request)
        return await self.inner.handle_async_request(request)


def test_candidate_connection_refused_falls_back(make):
    harness = make(policy=policy("route"))
    harness.gateway.upstream.transport = RefuseModel(AsyncASGITransport(harness.shim), CANDIDATE)
    with harness.sdk() as sdk:
        message = sdk.messages.create(**PARAMS, extra_headers=TASK)
    _baseline_answer(message)
    assert _routes(harness) == [("routed", "candidate_connection", 502), ("fallback", "candidate_connection", 200)]


def test_candidate_stream_cut_mid_answer_falls_back(gw):
    gw.brain.answers[CANDIDATE] = text('{"label": "bug", "by": "candidate", "note": "' + "word " * 60 + '"}')
    with gw.sdk() as sdk:
        with sdk.messages.stream(**PARAMS, extra_headers={**TASK, **scoped_fault("cut_stream")}) as s:
            events = [e.type for e in s]
            message = s.get_final_message()
    _baseline_answer(message)
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert _routes(gw) == [("routed", "candidate_cut", 200), ("fallback", "candidate_cut", 200)]


def test_candidate_stream_stall_falls_back(gw):
    with gw.sdk() as sdk:
        with sdk.messages.stream(**PARAMS, extra_headers={**TASK, **scoped_fault("stall")}) as s:
            message = s.get_final_message()
    _baseline_answer(message)
    assert _routes(gw) == [("routed", "candidate_stall", 200), ("fallback", "candidate_stall", 200)]


@pytest.mark.parametrize("stream", [False, True])
def test_candidate_malformed_json_falls_back(gw, stream):
    with gw.sdk() as sdk:
        if stream:
            with sdk.messages.stream(**PARAMS, extra_headers={**TASK, **scoped_fault("malformed_json")}) as s:
                message = s.get_final_message()
        else:
            message = sdk.messages.create(**PARAMS, extra_headers={**TASK, **scoped_fault("malformed_json")})
    _baseline_answer(message)
    routes = _routes(gw)
    assert routes[-1][:2] == ("fallback", "candidate_malformed")


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("bad", ['{"label": "urgent"}', "It is clearly a bug.", '{"by": "candidate"}'])
def test_candidate_breaking_the_schema_falls_back(gw, bad, stream):
    gw.brain.answers[CANDIDATE] = text(bad)
    with gw.sdk() as sdk:
        if stream:
            with sdk.messages.stream(**PARAMS, extra_headers=TASK) as s:
                message = s.get_final_message()
        else:
            message = sdk.messages.create(**PARAMS, extra_headers=TASK)
    _baseline_answer(message)
    (routed, candidate), (fallback, ex) = gw.ledger()
    assert routed.route == "routed" and candidate.response["content"][0]["text"] == bad
    assert routed.reason.startswith(("contract_schema", "contract_not_json")) and candidate.tags["outcome"] == "rejected"
    assert routed.cost_usd is not None and float(routed.cost_usd) > 0  # the discarded answer was paid for
    assert fallback.route == "fallback" and fallback.reason == routed.reason.replace(": ", ": ", 1)
    assert ex.model_served == BASELINE


def test_candidate_refusal_falls_back_when_the_policy_says_so(make):
    harness = make(policy=policy("route", refusal="fallback"))
    harness.brain.answers[CANDIDATE] = text("I can't help with that.", stop_reason="refusal")
    with harness.sdk() as sdk:
        message = sdk.messages.create(**PARAMS, extra_headers=TASK)
    _baseline_answer(message)
    assert _routes(harness) == [("routed", "contract_refusal", 200), ("fallback", "contract_refusal", 200)]


def test_candidate_refusal_is_passed_on_by_default(gw):
    """A content-policy refusal is not silently routed around unless the policy says so."""
    gw.brain.answers[CANDIDATE] = text("I can't help with that.", stop_reason="refusal")
    with gw.sdk() as sdk:
        raw = sdk.messages.with_raw_response.create(**PARAMS, extra_headers=TASK)
    message = raw.parse()
    assert message.stop_reason == "refusal" and message.model == CANDIDATE
    assert raw.http_response.headers["x-parity-route"] == "routed"
    (row, _), = gw.ledger()
    assert row.route == "routed" and "refusal passed through" in row.reason


@pytest.mark.parametrize("stream", [False, True])
def test_candidate_truncated_at_max_tokens_falls_back(gw, stream):
    gw.brain.answers[CANDIDATE] = text('{"label": "bug", "by": "candidate", "why": "' + "because " * 80 + '"}')
    params = {**PARAMS, "max_tokens": 40}
    with gw.sdk() as sdk:
        if stream:
            with sdk.messages.stream(**params, extra_headers=TASK) as s:
                message = s.get_final_message()
        else:
            message = sdk.messages.create(**params, extra_headers=TASK)
    _baseline_answer(message)
    assert _routes(gw) == [("routed", "contract_truncated", 200), ("fallback", "contract_truncated", 200)]


def test_candidate_empty_answer_falls_back(gw):
    gw.brain.answers[CANDIDATE] = BrainReply([])
    with gw.sdk() as sdk:
        message = sdk.messages.create(**PARAMS, extra_headers=TASK)
    _baseline_answer(message)
    assert _routes(gw)[0][:2] == ("routed", "contract_empty")


def test_candidate_and_baseline_both_failing_gives_the_documented_error(gw):
    with gw.sdk() as sdk, pytest.raises(anthropic.OverloadedError) as info:
        sdk.messages.create(**PARAMS, extra_headers={**TASK, "x-emulator-fault": "overloaded"})
    assert info.value.status_code == 529 and info.value.body["type"] == "error"
    assert _routes(gw) == [("routed", "candidate_http_529", 529), ("fallback", "candidate_http_529", 529)]


def test_breaker_stops_calling_a_failing_candidate(make):
    harness = make(policy=policy("route"), breaker_threshold=2, breaker_cooldown_s=60)
    with harness.sdk() as sdk:
        for _ in range(4):
            _baseline_answer(sdk.messages.create(**PARAMS, extra_headers={**TASK, **scoped_fault("server_error")}))
    assert harness.shim.models() == [CANDIDATE, BASELINE, CANDIDATE, BASELINE, BASELINE, BASELINE]
    reasons = [r for route, r, _ in _routes(harness) if route == "fallback"]
    assert reasons == ["candidate_http_500", "candidate_http_500", "candidate_circuit_open", "candidate_circuit_open"]
    assert harness.gateway.upstream.breaker.state(CANDIDATE) == "open"


# ---- unrouted traffic: the documented error, retried as the SDK would ---------------------------------------------


@pytest.mark.parametrize(
    "kind, cls, status",
    [
        ("rate_limit", anthropic.RateLimitError, 429),
        ("server_error", anthropic.InternalServerError, 500),
        ("overloaded", anthropic.OverloadedError, 529),
    ],
)
def test_passthrough_status_faults_reach_the_client_as_the_api_sent_them(gw, kind, cls, status):
    with gw.sdk() as sdk, pytest.raises(cls) as info:
        sdk.messages.create(**PARAMS, extra_headers={"x-emulator-fault": kind})
    error = info.value
    assert error.status_code == status and error.response.headers["x-should-retry"] == "false"
    assert error.request_id.startswith("req_") and error.body["error"]["type"] == error.type
    if kind == "rate_limit":
        assert int(error.response.headers["retry-after"]) >= 1
    assert gw.shim.models() == [BASELINE]  # x-should-retry: false is honoured: one attempt
    (row, ex), = gw.ledger()
    assert row.route == "passthrough" and row.status_code == status and ex.error["error"]["type"] == error.type


def test_passthrough_timeout_is_a_504_after_retries(make):
    harness = make(read_timeout_s=0.1)
    with harness.sdk() as sdk, pytest.raises(anthropic.GatewayTimeoutError) as info:
        sdk.messages.create(**PARAMS, extra_headers={"x-emulator-fault": "timeout"})
    assert info.value.body["error"]["type"] == "timeout_error" and "after 3 attempts" in info.value.body["error"]["message"]
    assert harness.shim.models() == [BASELINE] * 3
    (row, ex), = harness.ledger()
    assert row.status_code == 504 and "upstream timeout" in row.reason and ex.error["error"]["type"] == "timeout_error"


@pytest.mark.parametrize("client", ["lean", "httpx"])
def test_passthrough_connection_refused_is_a_502(make, client):
    harness = make(upstream=f"http://127.0.0.1:{free_port()}", upstream_transport="network", http_client=client)
    with harness.sdk() as sdk, pytest.raises(anthropic.InternalServerError) as info:
        sdk.messages.create(**PARAMS)
    assert info.value.status_code == 502 and "could not reach the upstream" in info.value.body["error"]["message"]
    (row, ex), = harness.ledger()
    assert row.status_code == 502 and "upstream connection" in row.reason


def test_passthrough_stream_cut_mid_answer_never_looks_like_success(gw):
    gw.brain.answers[BASELINE] = text("word " * 80)
    with gw.sdk() as sdk, pytest.raises(anthropic.APIStatusError) as info:
        with sdk.messages.stream(**PARAMS, extra_headers={"x-emulator-fault": "cut_stream"}) as s:
            for _ in s:
                pass
    assert info.value.body["error"]["type"] == "api_error" and "incomplete" in info.value.body["error"]["message"]
    (row, ex), = gw.ledger()
    assert row.route == "passthrough" and ex.error["error"]["type"] == "cut"
    assert 0 < row.output_tokens  # what was generated before the cut is still counted and priced


def test_passthrough_stream_stall_ends_with_an_error_event(make):
    harness = make(read_timeout_s=0.2)
    with harness.sdk() as sdk, pytest.raises(anthropic.APIStatusError) as info:
        with sdk.messages.stream(**PARAMS, extra_headers={"x-emulator-fault": "stall"}) as s:
            s.get_final_message()
    assert info.value.body["error"]["type"] == "api_error"
    (row, ex), = harness.ledger()
    assert ex.error["error"]["type"] == "stall"


def test_passthrough_malformed_json_is_retried_then_a_502(gw):
    with gw.sdk() as sdk, pytest.raises(anthropic.InternalServerError) as info:
        sdk.messages.create(**PARAMS, extra_headers={"x-emulator-fault": "malformed_json"})
    assert info.value.status_code == 502 and "not valid JSON" in info.value.body["error"]["message"]
    assert gw.shim.models() == [BASELINE] * 3
    (row, _), = gw.ledger()
    assert row.status_code == 502 and "upstream malformed" in row.reason


def test_passthrough_malformed_stream_raises(gw):
    with gw.sdk() as sdk, pytest.raises(Exception) as info:
        with sdk.messages.stream(**PARAMS, extra_headers={"x-emulator-fault": "malformed_json"}) as s:
            s.get_final_message()
    assert not isinstance(info.value, AssertionError)
    (row, ex), = gw.ledger()
    assert ex.error is not None


# ---- retries honour the upstream's hints ------------------------------------------------------------------------


def test_retries_then_succeeds(gw):
    gw.shim.fail_next(529, 2, {"retry-after-ms": "1"})
    with gw.sdk() as sdk:
        message = sdk.messages.create(**PARAMS)
    assert message.content[0].text == GOOD_BASELINE
    (row, _), = gw.ledger()
    assert row.status_code == 200
    assert 'parity_gateway_upstream_retries_total{reason="529"} 2.0' in gw.gateway.metrics.render().decode()


def test_x_should_retry_false_is_not_retried_and_true_is(gw):
    gw.shim.fail_next(500, 1, {"x-should-retry": "false"})
    with gw.sdk() as sdk, pytest.raises(anthropic.InternalServerError):
        sdk.messages.create(**PARAMS)
    gw.shim.fail_next(400, 1, {"x-should-retry": "true"})
    with gw.sdk() as sdk:
        assert sdk.messages.create(**PARAMS).model == BASELINE


def test_long_retry_after_goes_back_to_the_client(gw):
    gw.shim.fail_next(429, 1, {"retry-after": "120"})
    with gw.sdk() as sdk, pytest.raises(anthropic.RateLimitError) as info:
        sdk.messages.create(**PARAMS)
    assert info.value.response.headers["retry-after"] == "120"
    assert gw.shim.models() == [BASELINE]


def test_fault_suite_size():
    """The README quotes this number: the fault scenarios above, parametrized cases counted one each."""
    module = sys.modules[__name__]
    count = 0
    for name, fn in vars(module).items():
        if not name.startswith("test_") or name == "test_fault_suite_size":
            continue
        cases = 1
        for mark in getattr(fn, "pytestmark", []):
            if mark.name == "parametrize":
                cases *= len(mark.args[1])
        count += cases
    assert count >= 30
    print(f"\nfault scenarios: {count}")
