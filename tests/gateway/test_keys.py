"""Gateway keys: stored hashed, managed with `parity keys`, checked in both auth styles, with budgets and rates."""

from __future__ import annotations

import json
import os
from decimal import Decimal

import anthropic
import pytest
from typer.testing import CliRunner

from parity.cli import app
from parity.errors import InputError
from parity.gateway.config import GatewayConfig
from parity.gateway.keys import KEY_PREFIX, KeyLimits, KeyStore, spent_by_key

from .conftest import BASELINE, UPSTREAM_KEY, USER

PARAMS = dict(model=BASELINE, max_tokens=100, messages=USER)


def test_store_keeps_only_salted_hashes(tmp_path):
    path = tmp_path / "keys.json"
    store = KeyStore(path)
    secret, record = store.create("team-a", budget_usd="12.50", rate_limit_rpm=60)
    assert secret.startswith(KEY_PREFIX + record.id + "_")
    raw = path.read_text()
    assert secret.split("_", 1)[1] not in raw and secret not in raw
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    data = json.loads(raw)["keys"][0]
    assert data["budget_usd"] == "12.50" and len(data["hash"]) == 64 and len(data["salt"]) == 32
    again = KeyStore(path)
    assert again.authenticate(secret).id == record.id
    assert again.authenticate(secret + "x") is None and again.authenticate("sk-parity-nope_x") is None
    assert again.authenticate("sk-ant-something") is None and again.authenticate(None) is None
    second, _ = again.create("team-b")
    assert KeyStore(path).authenticate(second) is not None and KeyStore(path).authenticate(secret) is not None


def test_bad_files_and_inputs_are_reported(tmp_path):
    path = tmp_path / "keys.json"
    path.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        KeyStore(path)
    path.write_text('{"version": 2}')
    with pytest.raises(InputError, match="version"):
        KeyStore(path)
    store = KeyStore(tmp_path / "new.json")
    with pytest.raises(InputError, match="budget"):
        store.create("x", budget_usd="lots")
    with pytest.raises(InputError, match="no key with id"):
        store.revoke("missing")


def test_cli_create_list_revoke(tmp_path):
    runner = CliRunner()
    path = str(tmp_path / "keys.json")
    created = runner.invoke(app, ["keys", "create", "--name", "ci-bot", "--keys", path, "--budget-usd", "5", "--rpm", "30"])
    assert created.exit_code == 0, created.output
    secret = next(w for w in created.output.split() if w.startswith(KEY_PREFIX))
    key_id = secret[len(KEY_PREFIX):].split("_", 1)[0]
    listed = runner.invoke(app, ["keys", "list", "--keys", path])
    assert listed.exit_code == 0 and key_id in listed.output and "ci-bot" in listed.output
    assert secret.split("_", 1)[1] not in listed.output
    revoked = runner.invoke(app, ["keys", "revoke", key_id, "--keys", path])
    assert revoked.exit_code == 0 and "Revoked" in revoked.output
    assert KeyStore(path).authenticate(secret) is None


def test_gateway_authenticates_gateway_keys_in_both_styles(make, tmp_path):
    path = tmp_path / "keys.json"
    store = KeyStore(path)
    secret, record = store.create("app")
    harness = make(keys_path=str(path))
    with harness.sdk(api_key=secret) as sdk:  # Authorization: Bearer (SDK 2.x)
        assert sdk.messages.create(**PARAMS).model == BASELINE
    with harness.http() as http:  # x-api-key (SDK 0.x/1.x)
        r = http.post("/v1/messages", json=PARAMS, headers={"x-api-key": secret, "anthropic-version": "2023-06-01"})
        assert r.status_code == 200
        assert http.get("/v1/models", headers={"x-api-key": secret, "anthropic-version": "2023-06-01"}).status_code == 200
    for _, headers in harness.shim.seen:
        assert headers["x-api-key"] == UPSTREAM_KEY and secret not in json.dumps(headers)
    with harness.sdk(api_key="sk-parity-wrong_key") as sdk, pytest.raises(anthropic.AuthenticationError):
        sdk.messages.create(**PARAMS)
    with harness.sdk(api_key=secret) as sdk, pytest.raises(anthropic.AuthenticationError):
        sdk.models.list(extra_headers={"x-api-key": "not-a-gateway-key", "authorization": ""})
    rows = harness.ledger(at_least=2)
    assert {row.key_id for row, _ in rows} == {record.id}
    store.revoke(record.id)
    harness.gateway.keys._checked = 0.0
    with harness.sdk(api_key=secret) as sdk, pytest.raises(anthropic.AuthenticationError):
        sdk.messages.create(**PARAMS)


def test_budget_is_enforced_from_exact_costs(make, tmp_path):
    path = tmp_path / "keys.json"
    secret, record = KeyStore(path).create("tight", budget_usd="0.0001")
    harness = make(keys_path=str(path))
    with harness.sdk(api_key=secret) as sdk:
        sdk.messages.create(**PARAMS)  # costs more than the budget: the next one is refused
        harness.ledger()
        with pytest.raises(anthropic.BadRequestError) as info:
            sdk.messages.create(**PARAMS)
    assert "usage limits" in info.value.body["error"]["message"] and record.id in info.value.body["error"]["message"]
    spent = spent_by_key(str(harness.ledger_path))
    assert spent[record.id] > Decimal("0.0001")
    restarted = make(keys_path=str(path), ledger_url=str(harness.ledger_path))
    with restarted.sdk(api_key=secret) as sdk, pytest.raises(anthropic.BadRequestError):
        sdk.messages.create(**PARAMS)  # the spend survives a restart: it is read back from the ledger


def test_rate_limit_per_key():
    now = [0.0]
    limits = KeyLimits(clock=lambda: now[0])
    store_key = type("K", (), {"id": "k1", "name": "n", "budget": None, "rate_limit_rpm": 2})()
    assert limits.admit(store_key) is None and limits.admit(store_key) is None
    refused = limits.admit(store_key)
    assert refused.status == 429 and refused.headers["retry-after"] == "30"
    now[0] = 30.0
    assert limits.admit(store_key) is None


def test_rate_limit_through_the_gateway(make, tmp_path):
    path = tmp_path / "keys.json"
    secret, _ = KeyStore(path).create("slow", rate_limit_rpm=1)
    harness = make(keys_path=str(path))
    with harness.sdk(api_key=secret) as sdk:
        sdk.messages.create(**PARAMS)
        with pytest.raises(anthropic.RateLimitError) as info:
            sdk.messages.create(**PARAMS)
    assert int(info.value.response.headers["retry-after"]) >= 1


def test_keys_file_needs_an_upstream_key(tmp_path, monkeypatch):
    for name in ("PARITY_UPSTREAM_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(InputError, match="upstream key"):
        GatewayConfig(upstream="https://api.anthropic.com", keys_path=str(tmp_path / "k.json")).check()
    monkeypatch.setenv("PARITY_UPSTREAM_API_KEY", "sk-from-env")
    assert GatewayConfig(keys_path=str(tmp_path / "k.json")).resolved_upstream_key() == "sk-from-env"


def test_without_an_upstream_key_the_clients_own_key_is_forwarded(make, monkeypatch):
    for name in ("PARITY_UPSTREAM_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    harness = make(upstream_key=None)
    with harness.sdk(api_key="sk-client-own") as sdk:
        sdk.messages.create(**PARAMS)
    _, seen = harness.shim.seen[-1]
    assert seen.get("authorization") == "Bearer sk-client-own" and "x-api-key" not in seen
