"""Task identification, the output contract, retry timing and the circuit breaker, and how routing uses them
(drift rollback, deferral, cache hygiene hooks)."""

from __future__ import annotations

import time

import pytest

from parity.contract import check
from parity.gateway.certified import same_model
from parity.gateway.retry import CircuitBreaker, RetryPolicy, retry_after
from parity.gateway.routing import TaskRouter
from parity.policy import Contract, Match, Policy, TaskPolicy

from .conftest import BASELINE, CANDIDATE, SCHEMA, TASK, USER, policy, text

PARAMS = dict(model=BASELINE, max_tokens=200, messages=USER)


def _message(text_value: str = "", stop: str = "end_turn", blocks: list | None = None) -> dict:
    content = blocks if blocks is not None else ([{"type": "text", "text": text_value}] if text_value else [])
    return {"type": "message", "role": "assistant", "model": CANDIDATE, "content": content, "stop_reason": stop,
            "usage": {"input_tokens": 1, "output_tokens": 1}}


# ---- identification -------------------------------------------------------------------------------------------


def _router() -> TaskRouter:
    tasks = {
        "triage": TaskPolicy("triage", "route", BASELINE, CANDIDATE, match=Match(header="triage-v2")),
        "summary": TaskPolicy("summary", "observe", BASELINE, match=Match(metadata_key="job")),
        "labels": TaskPolicy("labels", "shadow", BASELINE, CANDIDATE, match=Match(fingerprint="fp_000000000000")),
    }
    return TaskRouter(Policy(tasks))


@pytest.mark.parametrize(
    "headers, body, task, known, how",
    [
        ({"x-parity-task": "triage"}, {}, "triage", True, "header"),
        ({"x-parity-task": "triage-v2"}, {}, "triage-v2", True, "header"),
        ({"x-parity-task": "unknown-task"}, {}, "unknown-task", False, "header"),
        ({}, {"metadata": {"user_id": "task:triage"}}, "triage", True, "metadata"),
        ({}, {"metadata": {"user_id": "user=7; task=triage"}}, "triage", True, "metadata"),
        ({}, {"metadata": {"user_id": "job:summary|u:1"}}, "summary", True, "metadata"),
        ({}, {"metadata": {"task": "summary"}}, "summary", True, "metadata"),
        ({}, {"metadata": {"user_id": "plain-user-42"}}, None, False, ""),
        ({}, {"metadata": "not an object"}, None, False, ""),
        ({"x-parity-task": "triage"}, {"metadata": {"user_id": "task:summary"}}, "triage", True, "header"),
    ],
)
def test_identify(headers, body, task, known, how):
    found = _router().identify(headers, {"messages": USER, **body})
    assert (found.task, found.policy is not None, found.how) == (task, known, how)


def test_identify_by_fingerprint_and_labels():
    from parity.fingerprint import fingerprint

    request = {"system": "Label this. Now: 2026-01-01T10:00:00Z", "messages": USER}
    tasks = {"labels": TaskPolicy("labels", "route", BASELINE, CANDIDATE, match=Match(fingerprint=fingerprint(request)))}
    router = TaskRouter(Policy(tasks))
    found = router.identify({}, {**request, "system": "Label this. Now: 2026-03-04T11:12:13Z"})
    assert found.task == "labels" and found.how == "fingerprint" and found.label == "labels"
    assert router.identify({}, {"messages": USER}).label == ""
    assert router.identify({"x-parity-task": "zzz"}, {}).label == "unmatched"  # bounded metrics labels


def test_same_model_resolves_aliases():
    assert same_model(BASELINE, BASELINE)
    assert same_model("claude-haiku-4-5-20251001", "claude-haiku-4-5")
    assert not same_model("claude-sonnet-4-6", BASELINE) and not same_model("not-a-model", BASELINE)


# ---- the contract ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message, contract, reason",
    [
        (_message('{"label": "bug"}'), Contract(json_schema=SCHEMA), None),
        (_message('```json\n{"label": "bug"}\n```'), Contract(json_schema=SCHEMA), None),
        (_message('{"label": "bu'), Contract(json_schema=SCHEMA), "not_json"),
        (_message('{"label": "urgent"}'), Contract(json_schema=SCHEMA), "schema"),
        (_message('{"label": "bug"}', stop="max_tokens"), Contract(), "truncated"),
        (_message(""), Contract(), "empty"),
        (_message("   "), Contract(), "empty"),
        (_message("no", stop="refusal"), Contract(refusal="fallback"), "refusal"),
        (_message("no", stop="refusal"), Contract(refusal="pass_through"), None),
        (_message("bug"), Contract(labels=["bug", "feature"]), None),
        (_message("Bug!"), Contract(labels=["bug", "feature"]), "label"),
        (_message("ID-1234"), Contract(regex=r"ID-\d+"), None),
        (_message("see ID-1234"), Contract(regex=r"ID-\d+"), "regex"),
        (_message("x"), Contract(regex="("), "regex"),
        (_message('{"a": {"b": 1}}'), Contract(required_fields=["a.b"]), None),
        (_message('{"a": {"c": 1}}'), Contract(required_fields=["a.b"]), "missing_field"),
        (_message("hi"), Contract(min_chars=5), "too_short"),
        (_message("hello world"), Contract(max_chars=5), "too_long"),
        (_message(blocks=[{"type": "tool_use", "id": "t", "name": "f", "input": {}}], stop="tool_use"), Contract(json_schema=SCHEMA), None),
        (_message(blocks=[{"type": "tool_use", "id": "t", "name": "f", "input": {"label": "bug"}}]), Contract(json_schema=SCHEMA), None),
        ({"content": "not a list"}, Contract(), "malformed"),
    ],
)
def test_contract(message, contract, reason):
    violation = check(message, contract)
    assert (violation.reason if violation else None) == reason
    if violation:
        assert violation.detail and str(violation).startswith(reason)


# ---- retries and breaker --------------------------------------------------------------------------------------


def test_retry_rules_follow_the_sdk():
    policy_ = RetryPolicy()
    assert [policy_.should_retry(s) for s in (400, 401, 404, 408, 409, 429, 500, 529, None)] == [
        False, False, False, True, True, True, True, True, True]
    assert policy_.should_retry(400, {"x-should-retry": "true"}) and not policy_.should_retry(500, {"x-should-retry": "false"})
    assert retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after({"retry-after": "2"}) == 2.0
    assert 0 < retry_after({"retry-after": time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))}) <= 31
    assert retry_after({"retry-after": "soon"}) is None
    assert policy_.delay(0, {"retry-after": "3"}) == 3.0
    assert policy_.delay(0, {"retry-after": "60"}) is None  # too long to hold a request: the client decides
    for n, top in ((0, 0.5), (1, 1.0), (2, 2.0), (9, 8.0)):
        assert top * 0.75 <= policy_.delay(n) <= top


def test_circuit_breaker():
    now = [0.0]
    breaker = CircuitBreaker(threshold=3, cooldown_s=10, clock=lambda: now[0])
    for _ in range(2):
        breaker.failure("m")
    assert breaker.state("m") == "closed" and breaker.allow("m")
    breaker.success("m")
    for _ in range(3):
        breaker.failure("m")
    assert breaker.state("m") == "open" and not breaker.allow("m") and breaker.retry_after("m") == 10
    assert breaker.allow("other")
    now[0] = 10.0
    assert breaker.state("m") == "half_open"
    assert breaker.allow("m") and not breaker.allow("m")  # one probe at a time
    breaker.failure("m")
    assert breaker.state("m") == "open"
    now[0] = 20.0
    assert breaker.allow("m")
    breaker.success("m")
    assert breaker.state("m") == "closed" and breaker.open_models() == []


# ---- routing with the features beside it ---------------------------------------------------------------------


class FakeMonitor:
    def __init__(self, policy, rolled: bool = False):
        self.policy, self.task = policy, policy.task
        self.rolled = rolled
        self.observed: list = []

    def observe(self, request, message):
        self.observed.append((request, message))
        return True

    def rolled_back(self, task=None):
        return self.rolled

    async def aclose(self):
        pass


def test_routed_answers_feed_drift_and_a_rollback_sends_the_task_to_the_baseline(make):
    task_policy = policy("route")
    task_policy.tasks["triage"].shadow_rate = 0.05
    harness = make(policy=task_policy)
    monitor = FakeMonitor(task_policy.tasks["triage"])
    harness.gateway.drift._monitors["triage"] = monitor
    with harness.sdk() as sdk:
        assert sdk.messages.create(**PARAMS, extra_headers=TASK).model == CANDIDATE
        request, message = monitor.observed[0]
        assert request["model"] == BASELINE and request["messages"] == USER and message["model"] == CANDIDATE
        monitor.rolled = True
        raw = sdk.messages.with_raw_response.create(**PARAMS, extra_headers=TASK)
    assert raw.parse().model == BASELINE and raw.http_response.headers["x-parity-reason"] == "rolled_back"
    rows = harness.ledger(at_least=2)
    assert [(r.route, r.reason) for r, _ in rows] == [("routed", None), ("passthrough", "rolled_back")]


def test_drift_monitor_is_built_for_route_mode_with_a_shadow_rate(make):
    task_policy = policy("route")
    task_policy.tasks["triage"].shadow_rate = 0.05
    harness = make(policy=task_policy, drift_options={"via": "sync"})
    with harness.sdk() as sdk:
        sdk.messages.create(**PARAMS, extra_headers=TASK)
    monitor = harness.gateway.monitors["triage"]
    assert monitor.observed == 1 and not monitor.rolled_back("triage")
    with harness.http() as http:
        status = http.get("/v1/parity/drift").json()
    assert "triage" in status["tasks"]


def test_deferred_requests_get_a_handle_and_later_the_message(make):
    harness = make(deferral_options={"max_wait_s": 0.0, "poll_interval_s": 0.01})
    with harness.http() as http:
        headers = {"x-api-key": "k", "anthropic-version": "2023-06-01", "x-parity-defer": "true"}
        r = http.post("/v1/messages", json=PARAMS, headers=headers)
        assert r.status_code == 202 and r.headers["x-parity-route"] == "deferred"
        handle = r.json()
        poll = handle.get("poll_url")
        assert poll
        deadline = time.monotonic() + 10
        while True:
            answer = http.get(poll, headers={"x-api-key": "k"})
            if answer.status_code != 202 or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert answer.status_code == 200 and answer.json()["usage"]["service_tier"] == "batch"
        streamed = http.post("/v1/messages", json={**PARAMS, "stream": True}, headers=headers)
        assert streamed.status_code == 400 and streamed.json()["error"]["type"] == "invalid_request_error"


def test_cache_hygiene_runs_only_for_tasks_that_opt_in(make, monkeypatch):
    calls: list[dict] = []

    class FakeCacheFix:
        @staticmethod
        def apply(request):
            calls.append(request)
            return {**request, "system": "canonical"}, ["volatile byte at system.0 offset 12"]

    task_policy = policy("route")
    harness = make(policy=task_policy)
    harness.gateway.hygiene.fix = FakeCacheFix.apply
    with harness.sdk() as sdk:
        sdk.messages.create(**PARAMS, extra_headers=TASK)
        assert calls == []
        task_policy.tasks["triage"].cache_hygiene = True
        sdk.messages.create(**PARAMS, extra_headers=TASK)
    assert calls and harness.brain.requests[-1].system == "canonical"
