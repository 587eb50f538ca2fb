"""The cache lever names each cause with its block path, offset and fix; a healthy family is not flagged.

Logs are produced by sending requests to the emulator (real prompt-caching arithmetic) on a manual clock.
Expected paths and offsets are computed here independently (first differing character of the texts).
"""

from __future__ import annotations

import json
import os
import random
from datetime import datetime, timezone
from pathlib import Path

import pytest

from parity.audit import audit_paths, cache_diff, validate_report

from . import POLICY, LogBuilder, system_block, tool, user

MODEL = "claude-sonnet-4-6"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
TOOLS = [
    tool("lookup_order", {"order_id": {"type": "string"}, "include_items": {"type": "boolean"}}),
    tool("refund", {"order_id": {"type": "string"}, "amount": {"type": "number"}}),
    tool("escalate", {"reason": {"type": "string"}, "priority": {"type": "integer"}}),
]


def _first_diff(a: str, b: str) -> int:
    return len(os.path.commonprefix([a, b]))


def _compact(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _stamp(builder: LogBuilder) -> str:
    return datetime.fromtimestamp(builder.clock.now() + 5, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _shuffled(tools: list[dict], rng: random.Random) -> list[dict]:
    out = []
    for t in tools:
        props = list(t["input_schema"]["properties"].items())
        rng.shuffle(props)
        out.append({**t, "input_schema": {**t["input_schema"], "properties": dict(props)}})
    return out


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One log with five families: four broken in the issue's four ways, one healthy."""
    b = LogBuilder()
    rng = random.Random(7)
    lines: dict[str, list[int]] = {"healthy": [], "timestamp": [], "unsorted": [], "toolset": [], "short": []}
    requests: dict[int, dict] = {}

    def send(kind: str, request: dict, **kw: object) -> None:
        line = b.send(request, **kw)
        lines[kind].append(line)
        requests[line] = request

    for i in range(24):
        send("healthy", {"model": MODEL, "max_tokens": 300, "system": system_block("You are the ACME helpdesk. " + POLICY),
                         "messages": user(f"Question {i}: where is parcel {rng.randint(1000, 9999)}?")},
             gap=20, stream=True)
        send("timestamp", {"model": MODEL, "max_tokens": 300, "system": system_block(
            f"You are the ACME billing assistant. The current time is {_stamp(b)} UTC. " + POLICY),
            "messages": user(f"Bill {i}: why was I charged twice?")}, gap=5, stream=True)
        send("unsorted", {"model": MODEL, "max_tokens": 300, "tools": _shuffled(TOOLS, rng),
                          "system": system_block("You are the ACME order agent. " + POLICY),
                          "messages": user(f"Order {i}: cancel it please")}, gap=5, stream=True)
        subset = [TOOLS[0], TOOLS[1]] if i % 2 else [TOOLS[0], TOOLS[2]]  # what each user may do
        send("toolset", {"model": MODEL, "max_tokens": 300, "tools": subset,
                         "system": system_block("You are the ACME account agent. " + POLICY),
                         "messages": user(f"Account {i}: change my address")},
             gap=5, stream=True, tags={"user": f"user-{i % 2}"})
        send("short", {"model": MODEL, "max_tokens": 300,
                       "system": system_block("Classify the sentiment of the review as positive, negative or neutral."),
                       "messages": user(f"Review {i}: it was fine I guess")}, gap=5, stream=True)
    path = b.write(tmp_path_factory.mktemp("causes") / "log.jsonl")
    report = audit_paths([str(path)]).to_json()
    validate_report(report)
    family_of = {}
    for fam in report["by_family"]:
        for kind, ls in lines.items():
            if fam["example_line"] == ls[0]:
                family_of[kind] = fam["family"]
    assert len(family_of) == 5, "each template is its own family"
    return {"report": report, "lines": lines, "requests": requests, "family": family_of}


def _cache_findings(audited: dict, kind: str) -> list[dict]:
    fam = audited["family"][kind]
    return [f for f in audited["report"]["findings"] if f["lever"] == "cache" and f["family"] == fam]


def _check_example(audited: dict, finding: dict) -> tuple[dict, dict]:
    """The example lines are two consecutive requests of the family whose own diff shows the cause."""
    a_line, b_line = finding["example_lines"]
    fam_lines = next(ls for ls in audited["lines"].values() if a_line in ls)
    assert fam_lines.index(b_line) == fam_lines.index(a_line) + 1
    a, b = audited["requests"][a_line], audited["requests"][b_line]
    diff = cache_diff(a, b)
    assert diff["breaks_cache"] and diff["cause"] == finding["cause"]
    assert (diff["block_path"], diff["offset"]) == (finding["block_path"], finding["offset"])
    return a, b


def test_timestamp_in_system_prompt(audited: dict) -> None:
    [finding] = _cache_findings(audited, "timestamp")
    assert finding["cause"] == "volatile_timestamp"
    assert finding["block_path"] == "system.0.text"
    a, b = _check_example(audited, finding)
    assert finding["offset"] == _first_diff(a["system"][0]["text"], b["system"][0]["text"])
    assert "The current time is " in a["system"][0]["text"][: finding["offset"]]
    assert "move it after the last cache breakpoint" in finding["fix"]
    assert finding["requests"] == 23  # every request after the first
    assert finding["example_files"][0].endswith("log.jsonl")
    assert float(finding["saving_usd"]) > 0 and float(finding["cost_usd"]) > float(finding["saving_usd"])


def test_unsorted_tool_json_keys(audited: dict) -> None:
    [finding] = _cache_findings(audited, "unsorted")
    assert finding["cause"] == "unsorted_json_keys"
    assert finding["block_path"].startswith("tools.")
    a, b = _check_example(audited, finding)
    index = int(finding["block_path"].split(".")[1])
    assert finding["offset"] == _first_diff(_compact(a["tools"][index]), _compact(b["tools"][index]))
    assert "sort_keys=True" in finding["fix"]
    assert "input_schema.properties" in finding["fix"]
    assert float(finding["saving_usd"]) > 0


def test_tool_set_varies_per_user(audited: dict) -> None:
    [finding] = _cache_findings(audited, "toolset")
    assert finding["cause"] == "tool_set_varies"
    assert finding["block_path"] == "tools.1"
    a, b = _check_example(audited, finding)
    assert finding["offset"] == _first_diff(_compact(a["tools"][1]), _compact(b["tools"][1]))
    assert "same full tool list" in finding["fix"]
    assert finding["requests"] == 23


def test_prefix_under_model_minimum(audited: dict) -> None:
    [finding] = _cache_findings(audited, "short")
    assert finding["cause"] == "below_min_cacheable"
    assert finding["block_path"] == "system.0"
    assert finding["offset"] is None
    assert "1,024" in finding["fix"] and "drop the cache_control" in finding["fix"]
    assert finding["requests"] == 24
    assert finding["saving_usd"] == "0"


def test_healthy_family_is_not_flagged(audited: dict) -> None:
    assert _cache_findings(audited, "healthy") == []
    fam = audited["family"]["healthy"]
    row = next(r for r in audited["report"]["cache"]["families"] if r["family"] == fam)
    assert row["causes"] == []
    assert row["hit_ratio"] > 0.8
    assert row["ttl"]["recommended"] == "5m"
    assert row["missed_tokens"] == 0
    flagged = [f for f in audited["report"]["findings"] if f["family"] == fam and f["lever"] in ("cache", "batch")]
    assert flagged == []


def test_cache_savings_feed_the_stack(audited: dict) -> None:
    report = audited["report"]
    cache_total = sum(float(f["saving_usd"]) for f in report["findings"] if f["lever"] == "cache")
    cache_lever = next(lv for lv in report["savings"]["levers"] if lv["lever"] == "cache")
    assert float(cache_lever["saving_usd"]) == pytest.approx(cache_total, rel=1e-9)


def test_other_causes(tmp_path: Path) -> None:
    """model_switched, tool_order_changed, volatile_uuid, image_added and no_breakpoint."""
    b = LogBuilder()
    lines: dict[str, list[int]] = {}

    def send(kind: str, request: dict, **kw: object) -> None:
        lines.setdefault(kind, []).append(b.send(request, **kw))

    history = [{"role": "user", "content": "Here is my account history. " + POLICY[:3000]},
               {"role": "assistant", "content": "Thanks, I have read it."}]
    for i in range(12):
        send("model", {"model": "claude-opus-4-8" if i % 2 else MODEL, "max_tokens": 200,
                       "system": system_block("You are the ACME routing agent. " + POLICY),
                       "messages": user(f"Route {i}")}, gap=5, stream=True)
        tools = TOOLS if i % 2 else list(reversed(TOOLS))
        send("order", {"model": MODEL, "max_tokens": 200, "tools": tools,
                       "system": system_block("You are the ACME tool agent. " + POLICY),
                       "messages": user(f"Do {i}")}, gap=5, stream=True)
        rid = f"{random.Random(i).getrandbits(128):032x}"
        rid = f"{rid[:8]}-{rid[8:12]}-4{rid[13:16]}-a{rid[17:20]}-{rid[20:32]}"
        send("uuid", {"model": MODEL, "max_tokens": 200,
                      "system": system_block(f"You are the ACME trace agent. Trace id {rid}. " + POLICY),
                      "messages": user(f"Trace {i}")}, gap=5, stream=True)
        turn = [{"type": "text", "text": f"Question {i}?", "cache_control": {"type": "ephemeral"}}]
        if i == 6:
            turn.insert(0, {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}})
        history = history + [{"role": "user", "content": turn}]
        send("image", {"model": MODEL, "max_tokens": 200,
                       "system": [{"type": "text", "text": "You are the ACME vision agent. " + POLICY[:400]}],
                       "messages": history}, gap=5, stream=True)
        history = history[:-1] + [{"role": "user", "content": [{"type": "text", "text": f"Question {i}?"}]},
                                  {"role": "assistant", "content": f"Answer {i}."}]
        send("nobp", {"model": MODEL, "max_tokens": 200, "system": "You are the ACME plain agent. " + POLICY,
                      "messages": user(f"Plain {i}")}, gap=5, stream=True)
    path = b.write(tmp_path / "log.jsonl")
    report = audit_paths([str(path)]).to_json()
    validate_report(report)

    def findings(kind: str) -> list[dict]:
        fam = next(f["family"] for f in report["by_family"] if f["example_line"] == lines[kind][0])
        return [f for f in report["findings"] if f["lever"] == "cache" and f["family"] == fam]

    [model] = findings("model")
    assert (model["cause"], model["block_path"], model["offset"]) == ("model_switched", "model", None)
    assert "pin one model" in model["fix"]
    [order] = findings("order")
    assert (order["cause"], order["block_path"]) == ("tool_order_changed", "tools.0")
    assert order["offset"] == _first_diff(_compact(TOOLS[2]), _compact(TOOLS[0]))
    [uuid] = findings("uuid")
    assert (uuid["cause"], uuid["block_path"]) == ("volatile_uuid", "system.0.text")
    assert uuid["offset"] == len("You are the ACME trace agent. Trace id ")
    image = findings("image")
    assert [f["cause"] for f in image] == ["image_added"]
    assert image[0]["block_path"] == "images" and image[0]["example_lines"] == lines["image"][5:7]
    [nobp] = findings("nobp")
    assert (nobp["cause"], nobp["block_path"], nobp["offset"]) == ("no_breakpoint", "system.0", None)
    assert '"cache_control": {"type": "ephemeral"}' in nobp["fix"] and float(nobp["saving_usd"]) > 0


def test_ttl_expired_recommends_one_hour(tmp_path: Path) -> None:
    """Requests 10 minutes apart re-write a 5-minute cache every time; 1h pays, with the arithmetic shown."""
    b = LogBuilder()
    lines = [b.send({"model": MODEL, "max_tokens": 200, "system": system_block("You are the ACME weekly agent. " + POLICY),
                     "messages": user(f"Weekly {i}")}, gap=600, stream=True) for i in range(12)]
    report = audit_paths([str(b.write(tmp_path / "log.jsonl"))]).to_json()
    [ttl] = [f for f in report["findings"] if f["lever"] == "cache"]
    assert (ttl["cause"], ttl["block_path"], ttl["offset"]) == ("ttl_expired", "system.0", None)
    assert ttl["example_lines"] == lines[:2] and ttl["requests"] == 11
    assert '"ttl": "1h"' in ttl["fix"] and "1h pays when" in ttl["fix"]
    advice = ttl["detail"]["ttl"]
    assert advice["recommended"] == "1h" and advice["gaps"] == {"first": 1, "le_5m": 0, "5m_to_1h": 11, "gt_1h": 0}
    # 5m: 12 writes x 1.25 = 15 prefix-inputs; 1h: 1 write x 2 + 11 reads x 0.1 = 3.1
    assert advice["cost_5m_prefix_inputs"] == 15.0 and advice["cost_1h_prefix_inputs"] == pytest.approx(3.1)
    assert float(ttl["saving_usd"]) > 0


def test_short_gaps_keep_five_minutes(tmp_path: Path) -> None:
    b = LogBuilder()
    for i in range(12):
        b.send({"model": MODEL, "max_tokens": 200, "system": system_block("You are the ACME busy agent. " + POLICY),
                "messages": user(f"Busy {i}")}, gap=30, stream=True)
    report = audit_paths([str(b.write(tmp_path / "log.jsonl"))]).to_json()
    assert [f for f in report["findings"] if f["lever"] == "cache"] == []
    assert report["cache"]["families"][0]["ttl"]["recommended"] == "5m"


def test_two_causes_in_one_family_are_both_named(tmp_path: Path) -> None:
    """A family first sent without a breakpoint, then with one, then with a timestamp above it: adding the
    breakpoint (same text, new block metadata) must not hide the later timestamp (regression)."""
    b = LogBuilder()
    lines: list[int] = []
    texts: list[str] = []
    for i in range(18):
        text = "You are the ACME summariser. " + POLICY
        if i >= 12:
            text = f"Current time: {_stamp(b)}\n" + text
        texts.append(text)
        system = system_block(text, cache=i >= 6)
        lines.append(b.send({"model": MODEL, "max_tokens": 200, "system": system, "messages": user(f"Thread {i}")},
                            gap=30, tags={"task": "summary"}))
    report = audit_paths([str(b.write(tmp_path / "log.jsonl"))]).to_json()
    found = {f["cause"]: f for f in report["findings"] if f["lever"] == "cache"}
    assert set(found) == {"no_breakpoint", "volatile_timestamp"}
    stamp = found["volatile_timestamp"]
    assert (stamp["block_path"], stamp["offset"]) == ("system.0.text", _first_diff(texts[12], texts[13]))
    assert stamp["example_lines"] == lines[12:14]
