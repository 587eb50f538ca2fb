"""`LocalGateway`: the demo's way through the gateway, in-process, with the ledger and fallback counts afterwards."""

from __future__ import annotations

from decimal import Decimal

from parity import pricing
from parity.emulator.clock import ManualClock
from parity.emulator.service import Emulator
from parity.gateway.local import LocalGateway

from .conftest import BASELINE, CANDIDATE, GOOD_BASELINE, TASK, USER, ModelBrain, policy, text

PARAMS = dict(model=BASELINE, max_tokens=200, messages=USER)


def test_sdk_through_the_local_gateway_then_counts_and_ledger():
    brain = ModelBrain()
    gateway = LocalGateway(Emulator(brain=brain, clock=ManualClock()), policy=policy("route"))
    with gateway:
        client = gateway.client(max_retries=0)
        assert client.messages.create(**PARAMS, extra_headers=TASK).model == CANDIDATE
        brain.answers[CANDIDATE] = text("not JSON at all")
        assert client.messages.create(**PARAMS, extra_headers=TASK).content[0].text == GOOD_BASELINE
        with client.messages.stream(**PARAMS) as stream:
            assert stream.get_final_message().model == BASELINE
        assert gateway.fallbacks() == {("triage", "contract_not_json"): 1}
        assert gateway.routes() == {"routed": 1, "fallback": 1, "passthrough": 1}
    rows = gateway.rows()  # still readable after close, though the temporary ledger is gone
    assert [r.route for r in rows] == ["routed", "routed", "fallback", "passthrough"]
    assert [r.answered_client for r in rows] == [True, False, True, True]
    assert rows[1].reason_code == "contract_not_json" and rows[2].reason_code == "contract_not_json"
    for row in rows:
        usage = row.exchange.response["usage"]
        assert row.cost_usd == pricing.cost(row.exchange.model_served, usage).total > 0
    assert gateway.cost() == sum((r.cost_usd for r in rows), Decimal(0))
    assert gateway.cost(answered_only=True) == gateway.cost() - rows[1].cost_usd


async def test_async_sdk_through_the_local_gateway():
    async with LocalGateway(Emulator(brain=ModelBrain(), clock=ManualClock()), policy=policy("route")) as gateway:
        client = gateway.async_client(max_retries=0)
        message = await client.messages.create(**PARAMS, extra_headers=TASK)
        assert message.model == CANDIDATE
    assert [r.route for r in gateway.rows()] == ["routed"]
