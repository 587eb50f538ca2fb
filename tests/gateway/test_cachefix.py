"""Cache hygiene: stable tool order and JSON, a breakpoint at the end of the stable prefix, volatile-byte warnings,
and proof on the emulator (the real SDK) that a fixed request reads the cache where the original did not."""

from __future__ import annotations

import copy
import json

from parity.emulator import workloads
from parity.emulator.service import Emulator
from parity.gateway import cachefix
from parity.prompt import first_divergence, render

MODEL = "claude-opus-4-8"
SYSTEM = "You are the support desk's triage assistant. " + "Follow the policy manual exactly. " * 300


def tool(name: str, order: str = "ab") -> dict:
    props = {"a": {"type": "string"}, "b": {"type": "integer"}}
    if order == "ba":
        props = {"b": {"type": "integer"}, "a": {"type": "string"}}
    return {"name": name, "description": f"the {name} tool", "input_schema": {"type": "object", "properties": props}}


def body(**extra) -> dict:
    return {"model": MODEL, "max_tokens": 64, "system": SYSTEM,
            "messages": [{"role": "user", "content": "Where is my order?"}], **extra}


def test_tools_are_sorted_and_canonical_so_two_client_orders_render_identically():
    a = body(tools=[tool("search"), tool("lookup", "ba")])
    b = body(tools=[tool("lookup", "ab"), tool("search", "ba")])
    assert first_divergence(render(a), render(b)) is not None  # as the clients sent them: a cache miss
    fa, _ = cachefix.apply(copy.deepcopy(a))
    fb, _ = cachefix.apply(copy.deepcopy(b))
    assert [t["name"] for t in fa["tools"]] == ["lookup", "search"]
    assert list(fa["tools"][0]["input_schema"]["properties"]) == ["a", "b"]
    assert first_divergence(render(fa), render(fb)) is None
    assert fa["tools"][0]["input_schema"]["properties"]["b"] == {"type": "integer"}  # meaning kept


def test_breakpoint_goes_on_the_last_system_block_and_a_clean_request_is_untouched_afterwards():
    fixed, warnings = cachefix.apply(body())
    assert warnings == []
    assert fixed["system"] == [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}]
    again, _ = cachefix.apply(fixed)
    assert again is fixed  # nothing left to change: the same object (the gateway then forwards the bytes as sent)


def test_ttl_follows_the_ordering_rule_and_existing_breakpoints_are_respected():
    one_hour = body(messages=[{"role": "user", "content": [
        {"type": "text", "text": "long context", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
        {"type": "text", "text": "question"}]}])
    fixed, _ = cachefix.apply(one_hour)
    assert fixed["system"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}  # a 5m one here would be a 400

    auto_1h = body(cache_control={"type": "ephemeral", "ttl": "1h"})
    assert cachefix.apply(auto_1h)[0]["system"][0]["cache_control"]["ttl"] == "1h"

    marked = body(system=[{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral", "ttl": "1h"}}])
    assert cachefix.apply(marked)[0] is marked

    blocks = [{"type": "text", "text": f"part {i}", "cache_control": {"type": "ephemeral"}} for i in range(3)]
    full = body(messages=[{"role": "user", "content": [*blocks, {"type": "text", "text": "question"}]}],
                cache_control={"type": "ephemeral"})  # 3 explicit + the automatic one on the last block
    fixed, warnings = cachefix.apply(full)
    assert isinstance(fixed["system"], str)
    assert any("4 of 4" in w for w in warnings)
    # the last block already marked: the automatic breakpoint is a no-op there, so a slot is free
    three = body(messages=[{"role": "user", "content": blocks}], cache_control={"type": "ephemeral"})
    fixed_three, _ = cachefix.apply(three)
    client = Emulator().client()
    for request in (fixed, fixed_three, cachefix.apply(one_hour)[0], cachefix.apply(auto_1h)[0]):
        client.messages.create(**request)  # the API accepts every fixed request (no 4-slot or TTL-order 400)


def test_short_prefix_gets_no_breakpoint():
    short = body(system="Be brief.")
    fixed, warnings = cachefix.apply(short)
    assert fixed is short and warnings == []


def test_volatile_bytes_in_the_prefix_are_warned_about():
    stamped = workloads.summary_requests(1, stamp=True)[0]
    _, warnings = cachefix.apply(stamped)
    assert any("system.0" in w and "date/time" in w and "2026-11-24T09:00:00Z" in w for w in warnings)
    with_id = body(system=f"Session req_8f2Kd93kLmQ7 started.\n{SYSTEM}")
    _, warnings = cachefix.apply(with_id)
    assert any("an id 'req_8f2Kd93kLmQ7'" in w for w in warnings)
    _, warnings = cachefix.apply(body(system="Office hours are Monday to Friday. " + SYSTEM))
    assert warnings == []  # a weekday name alone does not change per request


def test_fixed_requests_read_the_cache_on_the_emulator():
    emulator = Emulator()
    client = emulator.client()
    first = body(tools=[tool("search"), tool("lookup", "ba")])
    second = body(tools=[tool("lookup"), tool("search", "ba")],
                  messages=[{"role": "user", "content": "And my refund?"}])
    plain = [client.messages.create(**copy.deepcopy(r)).usage for r in (first, second)]
    assert plain[1].cache_read_input_tokens == 0  # as sent: no breakpoint, and the tools differ anyway
    fixed = [cachefix.apply(copy.deepcopy(r))[0] for r in (first, second)]
    json.dumps(fixed)
    usage = [client.messages.create(**r).usage for r in fixed]
    assert usage[0].cache_creation_input_tokens > 0
    assert usage[1].cache_read_input_tokens == usage[0].cache_creation_input_tokens


def test_non_requests_pass_through():
    assert cachefix.apply([]) == ([], [])  # type: ignore[arg-type]
    odd = {"model": MODEL, "tools": "nope", "system": 5, "messages": []}
    assert cachefix.apply(odd) == (odd, [])
