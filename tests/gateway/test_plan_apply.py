"""Done-when for issue 12 items 1-2: `parity audit --plan` on a log with a tool JSON key-order change, a changing
tool order and a missing breakpoint writes a plan; the gateway serving it makes the second of two consecutive
requests of each family read the cache (through the real SDK, the emulator upstream), records which fix it
applied, and leaves a family with a timestamp in its system prompt untouched."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta, timezone

import pytest
from typer.testing import CliRunner

from parity.audit import audit_exchanges
from parity.audit.plan import build_plan, write_plan
from parity.emulator.service import Emulator
from parity.exchange import Exchange, write_jsonl
from parity.gateway.local import LocalGateway
from parity.gateway.messages import CACHE_FIX_TAG
from parity.policy import load_policy

MODEL = "claude-opus-4-8"
T0 = datetime(2026, 11, 30, 10, 0, tzinfo=timezone.utc)


def _system(topic: str) -> str:
    return f"You are the {topic} assistant of Acme. " + f"Follow the {topic} handbook to the letter. " * 260


def _tool(name: str, flip: bool = False) -> dict:
    props = {"order_id": {"type": "string"}, "limit": {"type": "integer"}}
    schema = {"type": "object", "properties": props, "required": ["order_id"]}
    if flip:
        schema = {"required": ["order_id"], "properties": dict(reversed(list(props.items()))), "type": "object"}
    return {"name": name, "description": f"the {name} tool", "input_schema": schema}


def family_request(family: str, i: int) -> dict:
    """Request i of a family, with that family's defect as the client sends it."""
    body: dict = {"model": MODEL, "max_tokens": 32,
                  "messages": [{"role": "user", "content": f"Question {i}: where is order {1000 + i}?"}]}
    if family == "keys":  # tool JSON keys in another order every other request
        body["system"] = _system("billing")
        body["tools"] = [_tool("lookup", flip=i % 2 == 1), _tool("search")]
    elif family == "order":  # the same tools, in another order every other request
        body["system"] = _system("shipping")
        tools = [_tool("lookup"), _tool("search"), _tool("refund")]
        body["tools"] = tools if i % 2 == 0 else list(reversed(tools))
    elif family == "nobp":  # a stable prefix with no breakpoint
        body["system"] = _system("returns")
    elif family == "stamp":  # a timestamp at the start of the system prompt
        when = (T0 + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        body["system"] = f"Current time: {when}.\n" + _system("warranty")
    return body


FAMILIES = ("keys", "order", "nobp", "stamp")


def _log(emulator: Emulator, n: int = 8) -> list[Exchange]:
    """A day-1 log: each family's requests sent direct (as the client does today), 40 s apart."""
    client = emulator.client()
    out = []
    for i in range(n):
        for k, family in enumerate(FAMILIES):
            request = family_request(family, i)
            message = client.messages.create(**copy.deepcopy(request))
            out.append(Exchange(request=request, response=message.model_dump(mode="json"),
                                started_at=T0 + timedelta(seconds=40 * (i * len(FAMILIES) + k)), duration_ms=900))
    return out


@pytest.fixture(scope="module")
def day1() -> list[Exchange]:
    return _log(Emulator())


@pytest.fixture(scope="module")
def plan(day1):
    return build_plan(audit_exchanges(day1).to_json())


def _family_of(plan, family: str):
    from parity.fingerprint import fingerprint

    return plan.tasks.get(fingerprint(family_request(family, 0)))


def test_plan_sorts_fixes_into_apply_and_proposals(plan):
    keys, order, nobp, stamp = (_family_of(plan, f) for f in FAMILIES)
    assert keys is not None and keys.cache_plan is not None
    assert "json_keys" in keys.cache_plan.fixes and "breakpoint" in keys.cache_plan.fixes
    assert order.cache_plan is not None and "tool_order" in order.cache_plan.fixes
    assert nobp.cache_plan is not None and nobp.cache_plan.fixes == ["breakpoint"]
    for entry in (keys, order, nobp):
        assert entry.mode == "observe" and entry.match.fingerprint == entry.task
        assert entry.cache_plan.why and entry.cache_plan.estimated_saving_usd != "0"
    # the timestamp family: a proposal with the exact change, and nothing applied
    assert stamp is not None and stamp.cache_plan is None
    assert [p.cause for p in stamp.proposals] == ["volatile_timestamp"]
    assert "2026-11-30T10:0" in stamp.proposals[0].change and "system.0" in (stamp.proposals[0].where or "")
    assert stamp.proposals[0].estimated_saving_usd != "0"  # the cache saving it unlocks


def test_the_plan_file_is_a_policy_serve_reads_and_keeps_existing_routes(plan, tmp_path):
    path = tmp_path / "plan.json"
    write_plan(plan, path)
    data = json.loads(path.read_text())
    assert data["version"] == 1
    again = load_policy(path)
    assert again.tasks.keys() == plan.tasks.keys()
    assert again.tasks[_family_of(plan, "keys").task].cache_plan == _family_of(plan, "keys").cache_plan
    write_plan(plan, path)  # idempotent
    assert load_policy(path).tasks.keys() == plan.tasks.keys()


def test_second_request_of_each_planned_family_reads_the_cache_and_the_timestamp_family_is_untouched(plan, tmp_path):
    path = tmp_path / "plan.json"
    write_plan(plan, path)  # what `parity serve --policy plan.json --upstream emulator` reads
    emulator = Emulator()
    with LocalGateway(emulator, policy_path=str(path)) as gw:
        client = gw.client(max_retries=0)
        usage = {}
        for family in FAMILIES:
            usage[family] = [client.messages.create(**family_request(family, 100 + i)).usage for i in range(2)]
        rows = gw.rows()
    for family in ("keys", "order", "nobp"):
        first, second = usage[family]
        assert first.cache_creation_input_tokens > 0, family
        assert second.cache_read_input_tokens > 0, family
    assert usage["stamp"][1].cache_read_input_tokens == 0
    assert usage["stamp"][1].cache_creation_input_tokens == 0
    tags = [row.exchange.tags.get(CACHE_FIX_TAG) for row in rows]
    # the ledger says which fix touched each request (canonical keys re-order even the "good" variant's keys)
    assert tags[:2] == ["json_keys,breakpoint"] * 2
    assert tags[2:4] == ["tool_order,breakpoint"] * 2
    assert tags[4:6] == ["breakpoint"] * 2
    assert tags[6] is None and tags[7] is None  # stamp: named in the plan, but nothing applied
    stamp_sent = [row.exchange.request for row in rows[6:]]
    assert stamp_sent == [family_request("stamp", 100), family_request("stamp", 101)]


def test_a_family_the_plan_does_not_name_is_never_touched(plan):
    other = {"model": MODEL, "max_tokens": 16, "system": _system("legal"),
             "tools": [_tool("search"), _tool("lookup", flip=True)],
             "messages": [{"role": "user", "content": "hello"}]}
    with LocalGateway(Emulator(), policy=plan) as gw:
        gw.client(max_retries=0).messages.create(**copy.deepcopy(other))
        (row,) = gw.rows()
    assert row.exchange.request == other and list(row.exchange.request["tools"][1]["input_schema"]) == [
        "required", "properties", "type"]
    assert CACHE_FIX_TAG not in row.exchange.tags


def test_audit_cli_writes_the_plan(day1, tmp_path):
    from parity.cli import app

    log = tmp_path / "day1.jsonl"
    with log.open("w") as fh:
        write_jsonl(day1, fh)
    out = tmp_path / "plan.json"
    result = CliRunner().invoke(app, ["audit", str(log), "--plan", str(out), "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "apply" in result.output and "propose" in result.output and "plan written to" in result.output
    assert load_policy(out).tasks.keys() == build_plan(audit_exchanges(day1).to_json()).tasks.keys()


def test_apply_plan_uses_the_plans_ttl_and_canonicalises_tool_use_inputs():
    from parity.gateway.cachefix import apply_plan
    from parity.policy import CachePlan

    body = family_request("nobp", 0)
    body["messages"] = [
        {"role": "user", "content": "look it up"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "lookup",
                                           "input": {"order_id": "7", "limit": 2}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "found"}]},
    ]
    fixed, applied, _ = apply_plan(copy.deepcopy(body), CachePlan(fixes=["tool_use_inputs", "breakpoint"], ttl="1h"))
    assert applied == ["tool_use_inputs", "breakpoint_1h"]
    assert list(fixed["messages"][1]["content"][0]["input"]) == ["limit", "order_id"]
    assert fixed["system"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    Emulator().client().messages.create(**fixed)  # the API accepts it
    same, none, _ = apply_plan(fixed, CachePlan(fixes=["tool_use_inputs", "breakpoint"], ttl="1h"))
    assert same is fixed and none == []


def test_a_plan_ttl_of_one_hour_upgrades_the_clients_own_five_minute_breakpoint():
    from parity.gateway.cachefix import apply_plan
    from parity.policy import CachePlan

    body = family_request("nobp", 0)
    body["system"] = [{"type": "text", "text": body["system"], "cache_control": {"type": "ephemeral"}}]
    fixed, applied, _ = apply_plan(copy.deepcopy(body), CachePlan(fixes=["breakpoint"], ttl="1h"))
    assert applied == ["ttl_1h"] and fixed["system"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    kept, none, _ = apply_plan(copy.deepcopy(body), CachePlan(fixes=["breakpoint"], ttl="5m"))
    assert none == [] and kept["system"] == body["system"]
    Emulator().client().messages.create(**fixed)
