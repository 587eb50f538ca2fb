"""Safe by default: no open gateway on a network with the team's upstream key; no free spend for unpriced models;
no overspend of a key's budget by concurrent or streaming requests beyond one request."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import datetime, timezone
from decimal import Decimal

import httpx2
import pytest

from parity.api.transport import AsyncASGITransport
from parity.cli.serve import is_loopback, open_gateway_problem
from parity.gateway.keys import KeyLimits, KeyStore, conservative_cost, worst_case_cost
from parity.gateway.metrics import GatewayMetrics
from parity.gateway.recorder import GatewayRecorder, Record

from .conftest import BASELINE, USER


def test_loopback_hosts():
    assert all(is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.5", "gateway.example.com"))


def test_open_gateway_rule():
    problem = open_gateway_problem("0.0.0.0", None, "sk-ant-x", False)
    assert problem is not None and "--allow-open" in problem and "--keys" in problem
    assert open_gateway_problem("0.0.0.0", "keys.json", "sk-ant-x", False) is None
    assert open_gateway_problem("0.0.0.0", None, "sk-ant-x", True) is None
    assert open_gateway_problem("127.0.0.1", None, "sk-ant-x", False) is None
    assert open_gateway_problem("0.0.0.0", None, None, False) is None  # a transparent proxy: clients bring keys


def test_parity_serve_refuses_an_open_network_gateway_holding_an_upstream_key(tmp_path):
    env = {**os.environ, "PARITY_UPSTREAM_API_KEY": "sk-ant-test-0123"}
    done = subprocess.run(
        [sys.executable, "-m", "parity", "serve", "--host", "0.0.0.0", "--port", "1", "--upstream",
         "http://127.0.0.1:9", "--ledger", "off"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "--allow-open" in output and "--keys" in output


def test_unpriced_models_are_charged_at_the_ceiling_not_for_free():
    limits = KeyLimits()
    recorder = GatewayRecorder(GatewayMetrics(), limits)
    usage = {"input_tokens": 1000, "output_tokens": 500}
    recorder.record(Record(
        endpoint="messages", request={"model": "claude-unknown-9"}, started_at=datetime.now(timezone.utc),
        duration_s=0.1, route="passthrough", status=200, key_id="k1",
        message={"type": "message", "model": "claude-unknown-9", "content": [], "usage": usage},
    ))
    assert recorder.flush()
    recorder.close()
    charged = limits.spent("k1")
    assert charged == conservative_cost(usage) and charged > 0
    # dearer than any priced model would have been
    from parity import pricing

    for model in ("claude-opus-4-8", "claude-haiku-4-5"):
        assert charged >= pricing.cost(model, usage).total


def test_worst_case_bounds_the_real_cost():
    from parity import pricing

    body = {"model": BASELINE, "max_tokens": 100, "messages": USER}
    usage = {"input_tokens": 30, "output_tokens": 100}
    assert worst_case_cost(body, 120) >= pricing.cost(BASELINE, usage).total
    assert worst_case_cost(body, 120, calls=2) == 2 * worst_case_cost(body, 120)
    assert worst_case_cost({**body, "model": "nobody-knows"}, 120) >= worst_case_cost(body, 120)


@pytest.mark.parametrize("stream", [False, True])
def test_concurrent_requests_overspend_a_budget_by_at_most_one_request(make, tmp_path, stream):
    path = tmp_path / f"keys-{stream}.json"
    budget = Decimal("0.003")
    secret, record = KeyStore(path).create("tight", budget_usd=str(budget))
    harness = make(keys_path=str(path))
    body = {"model": BASELINE, "max_tokens": 60, "messages": USER, "stream": stream}

    async def one(client: httpx2.AsyncClient) -> int:
        response = await client.post("/v1/messages", json=body,
                                     headers={"x-api-key": secret, "anthropic-version": "2023-06-01"})
        await response.aread()
        return response.status_code

    async def burst() -> list[int]:
        transport = AsyncASGITransport(harness.app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
            statuses = []
            for _ in range(8):  # waves of concurrent requests until the budget is gone
                statuses += await asyncio.gather(*(one(client) for _ in range(12)))
            return statuses

    statuses = harness.loop.submit(burst()).result(timeout=120)
    rows = harness.ledger(1)
    charged = [Decimal(r.charged_usd) for r, _ in rows if r.charged_usd]
    assert 400 in statuses and 200 in statuses
    assert len(charged) == statuses.count(200)
    assert sum(charged) <= budget + max(charged), (sum(charged), budget)
    assert sum(charged) > budget / 2  # the budget was really used, not refused from the start
