"""The circuit breaker skips a routed candidate (the baseline answers at once) but never fails a request that has no
alternative: passthrough and fallback traffic always goes upstream, with its retries."""

from __future__ import annotations

import anthropic

from .conftest import BASELINE, CANDIDATE, USER, policy, scoped_fault

PARAMS = dict(model=BASELINE, max_tokens=100, messages=USER)
TASK = {"x-parity-task": "triage"}


def test_after_a_burst_of_529s_passthrough_still_goes_upstream(make):
    harness = make(breaker_threshold=2, breaker_cooldown_s=600)
    harness.shim.fail_next(529, n=6)  # two requests, each tried three times: the baseline's breaker opens
    with harness.sdk() as sdk:
        for _ in range(2):
            try:
                sdk.messages.create(**PARAMS)
            except anthropic.OverloadedError:
                pass
    assert harness.gateway.upstream.breaker.state(BASELINE) == "open"
    seen = len(harness.shim.seen)
    with harness.http() as http:
        malformed = http.post("/v1/messages", json={"model": BASELINE, "messages": USER},  # no max_tokens
                              headers={"x-api-key": "sk-client", "anthropic-version": "2023-06-01"})
    # the upstream's own answer to a request it was sent (never a 529 made up by the gateway)
    assert malformed.status_code == 400, malformed.text
    assert malformed.json()["error"]["type"] == "invalid_request_error"
    assert len(harness.shim.seen) == seen + 1
    with harness.sdk() as sdk:
        message = sdk.messages.create(**PARAMS)  # well-formed: answered, and the breaker closes again
    assert message.model == BASELINE
    assert harness.gateway.upstream.breaker.state(BASELINE) == "closed"


def test_passthrough_is_retried_while_the_breaker_is_open(make):
    harness = make(breaker_threshold=1, breaker_cooldown_s=600)
    harness.shim.fail_next(529, n=3)
    with harness.sdk() as sdk:
        try:
            sdk.messages.create(**PARAMS)
        except anthropic.OverloadedError:
            pass
        assert harness.gateway.upstream.breaker.state(BASELINE) == "open"
        harness.shim.fail_next(529, n=1)  # one more failure, then the retry succeeds
        message = sdk.messages.create(**PARAMS)
    assert message.model == BASELINE
    assert harness.shim.models()[-2:] == [BASELINE, BASELINE]


def test_open_candidate_breaker_goes_straight_to_the_baseline_and_an_open_baseline_still_answers(make):
    harness = make(policy=policy("route"), breaker_threshold=1, breaker_cooldown_s=600)
    harness.gateway.upstream.breaker.failure(CANDIDATE)
    harness.gateway.upstream.breaker.failure(BASELINE)  # both suspected: the fallback has no alternative
    with harness.sdk() as sdk:
        message = sdk.messages.create(**PARAMS, extra_headers={**TASK, **scoped_fault("server_error")})
    assert message.model == BASELINE
    assert harness.shim.models() == [BASELINE]  # the candidate was skipped, the baseline was called
    rows = harness.ledger(1)
    assert [(r.route, (r.reason or "").split(":")[0]) for r, _ in rows] == [
        ("routed", "candidate_circuit_open"), ("fallback", "candidate_circuit_open")]
