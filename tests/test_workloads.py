"""Workload generators: deterministic, realistic request bodies, and proof items whose gold the text determines."""

from __future__ import annotations

import json

import pytest

from parity.emulator import workloads as wl
from parity.emulator.brains import scenarios
from parity.emulator.brains.scenarios.invoice_extraction import INVOICE_SCHEMA
from parity.emulator.brains.scenarios.ticket_triage import TRIAGE_LABELS


def token_count(text: str) -> int:
    try:
        from parity.tokenizer import count_text
    except ImportError:
        return round(len(text) / 4)
    return count_text(text)


def test_generators_are_deterministic_and_seeded():
    assert json.dumps(wl.triage_requests(20, seed=3)) == json.dumps(wl.triage_requests(20, seed=3))
    assert wl.triage_requests(20, seed=3) != wl.triage_requests(20, seed=4)
    for scenario in wl.SCENARIO_NAMES:
        a, b = wl.dataset(scenario, 10, 7), wl.dataset(scenario, 10, 7)
        assert a == b and a != wl.dataset(scenario, 10, 8)


def test_excluded_items_never_come_back():
    # Two seeds draw independently, so they can meet on an item; `exclude` is how the next day stays new.
    first = wl.items("ticket_triage", 300, seed=1)
    keys = {i.key for i in first}
    assert keys & {i.key for i in wl.items("ticket_triage", 300, seed=11)}
    fresh = wl.items("ticket_triage", 300, seed=11, exclude=keys)
    assert len({i.key for i in fresh}) == 300 and not {i.key for i in fresh} & keys
    assert fresh == wl.items("ticket_triage", 300, seed=11, exclude=keys)  # still deterministic
    tickets = wl.triage_requests(300, seed=11, exclude=keys)
    assert [b["messages"][-1]["content"] for b in tickets] == [i.text for i in fresh]
    threads = {i.key for i in wl.items("thread_summary", 20, seed=2)}
    assert not any(key in b["messages"][-1]["content"] for b in wl.summary_requests(20, seed=12, exclude=threads)
                   for key in threads)


def test_triage_requests_look_like_real_traffic():
    requests = wl.triage_requests(50, seed=1, model="claude-haiku-4-5")
    for body in requests:
        assert body["model"] == "claude-haiku-4-5" and body["max_tokens"] > 0
        assert "Labels: billing, bug" in body["system"][0]["text"]
        assert body["messages"][-1]["role"] == "user" and body["messages"][-1]["content"].startswith("Ticket ID: T-")
        assert body["metadata"]["user_id"].startswith("cust-")
    assert len({b["messages"][-1]["content"] for b in requests}) == 50
    labels = {scenarios.get("ticket_triage").solve(b["messages"][-1]["content"]).gold for b in requests}
    assert labels == set(TRIAGE_LABELS)


def test_summary_system_prompt_is_about_6000_tokens_and_cacheable_on_request():
    plain = wl.summary_requests(3, seed=2, cache=False)
    cached = wl.summary_requests(3, seed=2, cache=True)
    system = plain[0]["system"][0]["text"]
    assert 5500 <= token_count(system) <= 7000
    assert all("cache_control" not in b["system"][0] for b in plain)
    assert all(b["system"][0]["cache_control"] == {"type": "ephemeral"} for b in cached)
    assert len({b["system"][0]["text"] for b in cached}) == 1  # one stable prefix for every request
    stamped = wl.summary_requests(3, seed=2, cache=True, stamp=True)
    texts = [b["system"][0]["text"] for b in stamped]
    assert len(set(texts)) == 3 and all(t.startswith("Current time: 2026-") and t.endswith(system) for t in texts)


def test_overnight_batch_is_a_batch_api_request_list():
    jobs = wl.overnight_batch(9, seed=1)
    assert len(jobs) == 9 and len({j["custom_id"] for j in jobs}) == 9
    assert {j["custom_id"].split("-")[0] for j in jobs} == {"summary", "triage"}
    for job in jobs:
        assert set(job) == {"custom_id", "params"} and 1 <= len(job["custom_id"]) <= 64
        assert {"model", "max_tokens", "messages"} <= set(job["params"])


@pytest.mark.parametrize("scenario", wl.SCENARIO_NAMES)
def test_dataset_items_carry_gold_the_text_determines(scenario):
    source = scenarios.get(scenario)
    items = wl.dataset(scenario, 60, 5, model="claude-sonnet-4-6")
    assert len({i.id for i in items}) == 60
    assert len({i.group for i in items}) > 3  # groups exist for split-by-group
    for item in items:
        assert item.scenario == scenario and item.request["model"] == "claude-sonnet-4-6"
        solved = source.solve(item.request["messages"][-1]["content"])
        assert solved is not None and solved.gold == item.gold and solved.difficulty == item.difficulty
        assert source.score(item.reference, item.gold) == 1.0


def test_demonstrations_come_from_their_own_stream():
    for scenario in wl.SCENARIO_NAMES:
        items = wl.dataset(scenario, 40, 3, demos=4)
        demo_inputs = [t["content"] for t in items[0].request["messages"][:-1] if t["role"] == "user"]
        assert len(demo_inputs) == 4 and not set(demo_inputs) & {i.request["messages"][-1]["content"] for i in items}
        assert all(i.request["messages"][:-1] == items[0].request["messages"][:-1] for i in items)


def test_structured_extraction_requests_carry_the_schema():
    item = wl.dataset("invoice_extraction", 1, 0, structured=True)[0]
    assert item.request["output_config"]["format"] == {"type": "json_schema", "schema": INVOICE_SCHEMA}
    with pytest.raises(ValueError, match="invoice_extraction only"):
        wl.dataset("ticket_triage", 1, 0, structured=True)
    with pytest.raises(KeyError, match="known scenarios"):
        wl.dataset("poetry", 1, 0)


def test_clear_instructions_score_on_the_scenarios_checklists():
    for scenario in wl.SCENARIO_NAMES:
        source = scenarios.get(scenario)
        plain = source.clarity(source.system_prompt())[0]
        clear = source.clarity(source.system_prompt(clear=True))[0]
        assert plain <= 0.1 and clear >= 0.9, scenario
