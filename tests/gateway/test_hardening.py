"""The gaps closed after the first gateway pass: paths forwarded exactly as sent, batch cancel/delete, the gateway's
own endpoints behind its keys, deferred spend charged to the key that deferred it (and redacted, and traced),
drift rollbacks that survive a restart and clear on a new certificate, spans to an OTLP JSON file the audit reads,
and the gateway's metadata task key never reaching the API."""

from __future__ import annotations

import json
import time
from decimal import Decimal

import anthropic
import pytest

from parity import pricing
from parity.gateway import otel
from parity.gateway.keys import KeyStore
from parity.readers.otel import read_otlp

from .conftest import BASELINE, CANDIDATE, GOOD_BASELINE, TASK, USER, certified, policy

PARAMS = dict(model=BASELINE, max_tokens=200, messages=USER)
DEFER = {"max_wait_s": 0.0, "poll_interval_s": 0.0}


def _poll(http, url: str, headers: dict[str, str]):
    deadline = time.monotonic() + 10
    while True:
        answer = http.get(url, headers=headers)
        if answer.status_code != 202 or time.monotonic() > deadline:
            return answer
        time.sleep(0.02)


# ---- paths -----------------------------------------------------------------------------------------------------


def test_paths_go_upstream_exactly_as_sent_and_encoded_dot_segments_are_refused(make):
    harness = make()
    with harness.http() as http:
        headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
        r = http.get("/v1/messages/batches/msgbatch_a%2Fb", headers=headers)
        assert r.status_code == 404 and r.json()["type"] == "error"
        for path in ("/v1/messages/batches/%2e%2e/x", "/v1/models/%2E", "/v1/messages/batches/a%2F%2Fb"):
            request = http.build_request("GET", "/", headers=headers)
            request.url = request.url.copy_with(raw_path=path.encode())
            refused = http.send(request)
            assert refused.status_code == 404 and "not a path this gateway forwards" in refused.json()["error"]["message"]
    assert [h for _, h in harness.shim.seen] and len(harness.shim.seen) == 1  # only the first one went upstream


def test_batch_cancel_and_delete_through_the_sdk(make):
    harness = make()
    harness.emulator.batches.processing_s = 3600.0  # still running when the client cancels it
    with harness.sdk() as sdk:
        batch = sdk.messages.batches.create(requests=[{"custom_id": "a", "params": PARAMS}])
        canceling = sdk.messages.batches.cancel(batch.id)
        assert canceling.processing_status in ("canceling", "ended") and canceling.cancel_initiated_at is not None
        harness.emulator.clock.advance(3600)  # the emulator's batches run on its (manual) clock
        assert sdk.messages.batches.retrieve(batch.id).processing_status == "ended"
        deleted = sdk.messages.batches.delete(batch.id)
        assert deleted.id == batch.id and deleted.type == "message_batch_deleted"
        with pytest.raises(anthropic.NotFoundError):
            sdk.messages.batches.retrieve(batch.id)


# ---- metadata ---------------------------------------------------------------------------------------------------


def test_the_gateways_metadata_key_never_reaches_the_api_however_the_task_was_named(make):
    harness = make(policy=policy("route"))
    with harness.sdk() as sdk:
        message = sdk.messages.create(**PARAMS, extra_headers=TASK, extra_body={"metadata": {"task": 5, "user_id": "u"}})
        plain = sdk.messages.create(**PARAMS, extra_body={"metadata": {"task": "not-a-policy-task"}})
    assert message.model == CANDIDATE and plain.model == BASELINE  # the API would have refused metadata.task:
    with pytest.raises(anthropic.BadRequestError, match="metadata.task"):
        harness.emulator.client().messages.create(**PARAMS, extra_body={"metadata": {"task": 5, "user_id": "u"}})


# ---- deferral behind keys ------------------------------------------------------------------------------------------


def test_deferred_requests_belong_to_their_key_and_are_charged_to_it(make, tmp_path):
    path = tmp_path / "keys.json"
    store = KeyStore(path)
    owner, record = store.create("batch-job")
    other, _ = store.create("someone-else")
    harness = make(keys_path=str(path), redact=True, deferral_options=DEFER)
    with harness.http() as http:
        base = {"anthropic-version": "2023-06-01"}
        r = http.post("/v1/messages", json=PARAMS, headers={**base, "x-api-key": owner, "x-parity-defer": "true"})
        assert r.status_code == 202
        url = r.json()["poll_url"]
        assert http.get(url).status_code == 401  # no key: the gateway's own endpoints are behind its keys too
        assert http.get("/v1/parity/deferred").status_code == 401
        assert http.get(url, headers={"x-api-key": other}).status_code == 404  # another key: no such request
        answer = _poll(http, url, {"x-api-key": owner})
        assert answer.status_code == 200 and answer.json()["content"][0]["text"] == GOOD_BASELINE
        assert http.get("/v1/parity/deferred", headers={"authorization": f"Bearer {owner}"}).json()["succeeded"] == 1
    rows = harness.ledger(at_least=1)
    (row, ex), = [(row, ex) for row, ex in rows if row.route == "deferred"]
    expected = pricing.cost(BASELINE, answer.json()["usage"], batch=True).total
    assert row.key_id == record.id and row.cost_usd == str(expected) and ex.batch
    assert ex.response["content"][0]["text"].startswith("[redacted sha256:")  # --redact covers deferred answers
    assert harness.gateway.limits.spent(record.id) == expected > Decimal(0)


def test_deferral_needs_the_gateways_own_upstream_key(make, monkeypatch):
    for name in ("PARITY_UPSTREAM_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    harness = make(upstream_key=None, deferral_options=DEFER)
    with harness.http() as http:
        r = http.post("/v1/messages", json=PARAMS,
                      headers={"x-api-key": "client", "anthropic-version": "2023-06-01", "x-parity-defer": "true"})
    assert r.status_code == 400 and "PARITY_UPSTREAM_API_KEY" in r.json()["error"]["message"]


def test_drift_status_is_behind_the_keys(make, tmp_path):
    path = tmp_path / "keys.json"
    secret, _ = KeyStore(path).create("ops")
    harness = make(keys_path=str(path))
    with harness.http() as http:
        assert http.get("/v1/parity/drift").status_code == 401
        assert http.get("/v1/parity/drift", headers={"x-api-key": secret}).json() == {"tasks": {}}


# ---- drift state across restarts -----------------------------------------------------------------------------------


def _drifting_policy(which: int):
    """The triage route on the which-th genuine certificate for it (a new proof is a new certificate)."""
    routed = policy("route")
    routed.tasks["triage"] = certified(routed.tasks["triage"], which)
    routed.tasks["triage"].shadow_rate = 0.02
    return routed


def test_a_rollback_survives_a_restart_and_a_new_certificate_clears_it(make, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    saved = {"task": "triage", "rolled_back_at": "2026-11-24T09:00:00Z", "reason": "drift: futility e-process fired",
             "evidence": {}}
    (state / "drift-triage.json").write_text(json.dumps(saved))  # what DriftMonitor wrote before the restart
    harness = make(policy=_drifting_policy(0), state_dir=str(state), drift_options={"via": "sync"})
    with harness.sdk() as sdk:
        raw = sdk.messages.with_raw_response.create(**PARAMS, extra_headers=TASK)
        assert raw.parse().model == BASELINE and raw.http_response.headers["x-parity-reason"] == "rolled_back"
        with harness.http() as http:
            metrics = http.get("/metrics").text
            drift = http.get("/v1/parity/drift").json()["tasks"]["triage"]
        assert 'parity_gateway_task_rolled_back{task="triage"} 1.0' in metrics
        assert drift["state"] == "rolled_back" and drift["rollback"]["reason"] == saved["reason"]
        harness.gateway.tasks._use(_drifting_policy(0))  # the same policy re-read: the rollback stands
        assert sdk.messages.create(**PARAMS, extra_headers=TASK).model == BASELINE
        harness.gateway.tasks._use(_drifting_policy(1))  # `parity prove` wrote a new certificate
        assert sdk.messages.create(**PARAMS, extra_headers=TASK).model == CANDIDATE
    assert not (state / "drift-triage.json").exists()
    with harness.http() as http:
        assert 'parity_gateway_task_rolled_back{task="triage"} 0.0' in http.get("/metrics").text


# ---- spans to a file the audit reads --------------------------------------------------------------------------------


def test_spans_go_to_an_otlp_json_file_that_the_audit_reads_back_at_the_same_cost(make, tmp_path):
    spans = tmp_path / "spans.jsonl"
    otel.configure(otel.JsonlSpanExporter(str(spans)), simple=True)
    try:
        harness = make(policy=policy("route"))
        with harness.sdk() as sdk:
            sdk.messages.create(**PARAMS, extra_headers=TASK)
        (row, _), = harness.ledger()
    finally:
        otel.configure()
    exchanges = [ex for _, ex in read_otlp(spans)]
    assert len(exchanges) == 1 and exchanges[0].model_served == CANDIDATE
    usage = exchanges[0].response["usage"]
    assert str(pricing.cost(CANDIDATE, usage).total) == row.cost_usd
    attributes = json.loads(spans.read_text().splitlines()[0])["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"]
    names = {a["key"] for a in attributes}
    assert {"gen_ai.usage.cost", "gen_ai.usage.input_tokens", "parity.route", "parity.task"} <= names


def test_a_request_whose_model_is_not_a_string_is_still_ledgered_without_breaking_its_batch(make):
    """Found by the fuzzer: the ledger's model column holds text, and a failed insert loses every row written with
    it. The refused request is recorded with its model as JSON text; the good request beside it is recorded too."""
    harness = make()
    with harness.http() as http:
        headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
        bad = http.post("/v1/messages", json={**PARAMS, "model": {"name": "claude"}}, headers=headers)
        good = http.post("/v1/messages", json=PARAMS, headers=headers)
    assert bad.status_code == 400 and good.status_code == 200
    rows = harness.ledger(at_least=2)
    assert [row.status_code for row, _ in rows] == [400, 200]
    assert rows[0][1].request["model"] == '{"name": "claude"}' and "not a string" in rows[0][0].reason
    assert harness.gateway.recorder.ledger.failed == 0
