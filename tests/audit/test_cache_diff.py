"""`parity cache-diff A B`: bytes as the cache sees them; file formatting is not significant, key order is."""

from __future__ import annotations

import json
import os
from pathlib import Path

from typer.testing import CliRunner

from parity.cli import app

from . import POLICY, tool

runner = CliRunner()
MODEL = "claude-sonnet-4-6"


def _request(system: str, messages: list | None = None, **extra: object) -> dict:
    return {"model": MODEL, "max_tokens": 100,
            "system": [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
            "messages": messages or [{"role": "user", "content": "Where is my parcel?"}], **extra}


def _diff(tmp_path: Path, a: dict | str, b: dict | str, *, indent_a: int | None = None) -> dict:
    pa, pb, out = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "diff.json"
    pa.write_text(a if isinstance(a, str) else json.dumps(a, indent=indent_a))
    pb.write_text(b if isinstance(b, str) else json.dumps(b))
    result = runner.invoke(app, ["cache-diff", str(pa), str(pb), "--json", str(out)])
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())


def test_pretty_printed_file_is_not_a_difference(tmp_path: Path) -> None:
    request = _request("You are the ACME helpdesk. " + POLICY)
    diff = _diff(tmp_path, request, request, indent_a=4)
    assert diff["breaks_cache"] is False
    assert (diff["invalidated_from"], diff["block_path"], diff["offset"], diff["cause"]) == (None, None, None, None)


def test_appended_turns_do_not_break_the_cache(tmp_path: Path) -> None:
    first = [{"role": "user", "content": "Where is my parcel?"}]
    a = _request("You are the ACME helpdesk. " + POLICY, first)
    b = _request("You are the ACME helpdesk. " + POLICY, first + [
        {"role": "assistant", "content": "It left the depot this morning."},
        {"role": "user", "content": "When will it arrive?"},
    ])
    diff = _diff(tmp_path, a, b)
    assert diff["breaks_cache"] is False and diff["cause"] is None


def test_timestamp_breaks_from_the_system_level(tmp_path: Path) -> None:
    head = "You are the ACME helpdesk. Current time: "
    a = _request(head + "2026-11-24T10:00:05Z. " + POLICY)
    b = _request(head + "2026-11-24T10:03:41Z. " + POLICY)
    diff = _diff(tmp_path, a, b)
    assert diff["breaks_cache"] is True
    assert diff["invalidated_from"] == "system"
    assert diff["block_path"] == "system.0.text"
    assert diff["offset"] == len(os.path.commonprefix([a["system"][0]["text"], b["system"][0]["text"]]))
    assert diff["offset"] == len(head) + len("2026-11-24T10:0")
    assert diff["cause"] == "volatile_timestamp"
    assert "2026-11-24T10:00:05Z" in diff["example"]


def test_key_order_inside_json_is_significant(tmp_path: Path) -> None:
    props = {"order_id": {"type": "string"}, "amount": {"type": "number"}}
    a = _request("You are the ACME helpdesk. " + POLICY, tools=[tool("refund", props)])
    b = _request("You are the ACME helpdesk. " + POLICY, tools=[tool("refund", dict(reversed(list(props.items()))))])
    diff = _diff(tmp_path, a, b)
    assert diff["breaks_cache"] is True
    assert (diff["invalidated_from"], diff["block_path"], diff["cause"]) == ("tools", "tools.0", "unsorted_json_keys")
    compact_a = json.dumps(a["tools"][0], separators=(",", ":"))
    compact_b = json.dumps(b["tools"][0], separators=(",", ":"))
    assert diff["offset"] == len(os.path.commonprefix([compact_a, compact_b]))
    # ...while the same keys in the same order, differently indented, are the same prompt
    same = _diff(tmp_path, a, json.dumps(a, indent=2))
    assert same["breaks_cache"] is False


def test_model_switch_and_tool_choice(tmp_path: Path) -> None:
    a = _request("You are the ACME helpdesk. " + POLICY)
    diff = _diff(tmp_path, a, {**a, "model": "claude-opus-4-8"})
    assert (diff["breaks_cache"], diff["invalidated_from"], diff["cause"]) == (True, "tools", "model_switched")
    with_tools = {**a, "tools": [tool("refund", {"order_id": {"type": "string"}})]}
    changed = {**with_tools, "tool_choice": {"type": "any"}}
    # tool_choice invalidates only the messages level (reference §6.9): A's entry at system.0 is still read
    diff = _diff(tmp_path, with_tools, changed)
    assert diff["breaks_cache"] is False and diff["invalidated_from"] == "messages"
    assert diff["block_path"] == "tool_choice" and diff["cause"] is None and diff["fix"] is None
    assert "system.0" in diff["note"]
    # ...but when A cached its conversation too, that entry is lost
    turn = [{"type": "text", "text": "Where is my parcel?", "cache_control": {"type": "ephemeral"}}]
    convo = {**with_tools, "messages": [{"role": "user", "content": "Hello. " + POLICY[:2000]},
                                        {"role": "assistant", "content": "Hello, how can I help?"},
                                        {"role": "user", "content": turn}]}
    diff = _diff(tmp_path, convo, {**convo, "tool_choice": {"type": "any"}})
    assert diff["breaks_cache"] is True and diff["invalidated_from"] == "messages"
    assert diff["block_path"] == "tool_choice" and diff["note"] is None


def test_a_new_question_is_not_a_break(tmp_path: Path) -> None:
    """Same template, another question: only B's last message (the new input) differs; A's prefix is read."""
    system = "You are the ACME helpdesk. " + POLICY
    a = _request(system, [{"role": "user", "content": "Where is my parcel?"}])
    b = _request(system, [{"role": "user", "content": "Where is my refund?"}])
    diff = _diff(tmp_path, a, b)
    assert diff["breaks_cache"] is False
    assert (diff["invalidated_from"], diff["block_path"], diff["offset"], diff["cause"]) == (None, None, None, None)
    assert diff["first_difference"]["block_path"] == "messages.0.content.0.text"
    assert diff["first_difference"]["offset"] == len("Where is my ")
    assert diff["reusable_tokens"] > 0 and diff["warnings"] == []
    # a different earlier turn (another conversation under the same template) is inside A's cached prefix
    history = [{"role": "user", "content": [{"type": "text", "text": "Order 1 is late. " + POLICY[:1500],
                                             "cache_control": {"type": "ephemeral"}}]},
               {"role": "assistant", "content": "Sorry about that."}, {"role": "user", "content": "Any news?"}]
    other = [{**history[0], "content": [{**history[0]["content"][0], "text": "Order 2 is late. " + POLICY[:1500]}]},
             *history[1:]]
    diff = _diff(tmp_path, _request(system, history), _request(system, other))
    assert diff["breaks_cache"] is True and diff["invalidated_from"] == "messages"
    assert (diff["block_path"], diff["offset"]) == ("messages.0.content.0.text", len("Order "))


def test_exchange_records_and_warnings(tmp_path: Path) -> None:
    short = _request("Classify the sentiment.")
    record = {"request": short, "response": {"usage": {}}, "started_at": "2026-11-24T10:00:00Z"}
    diff = _diff(tmp_path, record, short)
    assert diff["breaks_cache"] is False
    assert [w["cause"] for w in diff["warnings"]] == ["below_min_cacheable"]
    plain = {"model": MODEL, "max_tokens": 10, "system": "You are plain. " + POLICY,
             "messages": [{"role": "user", "content": "hi"}]}
    diff = _diff(tmp_path, plain, plain)
    assert [w["cause"] for w in diff["warnings"]] == ["no_breakpoint"]
    assert "system.0" in diff["warnings"][0]["message"]


def test_unreadable_input_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("{not json")
    (tmp_path / "b.json").write_text("{}")
    result = runner.invoke(app, ["cache-diff", str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    assert result.exit_code != 0
    assert "not valid JSON" in str(result.exception) or "not valid JSON" in result.output
