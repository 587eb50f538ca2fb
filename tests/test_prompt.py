"""Cache positions, prefix hashes and first divergence of rendered prompts (reference claude-api.md §6.1, §6.9)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from parity import tokenizer
from parity.prompt import automatic_target, breakpoints, count_request, first_divergence, render

MODEL = "claude-sonnet-4-6"
WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
IMAGE = {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}


def base(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 100,
        "tools": [copy.deepcopy(WEATHER)],
        "system": [{"type": "text", "text": "You are a weather bot."}, {"type": "text", "text": "Answer briefly."}],
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [{"type": "text", "text": "Sunny."}]},
            {"role": "user", "content": [{"type": "text", "text": "And Rome?"}]},
        ],
    }
    body.update(extra)
    return body


def test_positions_in_tools_system_messages_order():
    r = render(base(system="One string.", messages=[{"role": "user", "content": "Hi"}]))
    assert [s.path for s in r.segments] == ["tools.0", "system.0", "messages.0.content.0"]
    assert [s.level for s in r.segments] == ["tools", "system", "messages"]
    assert r.segments[1].text == '{"type":"text","text":"One string."}'
    assert r.segments[2].text == '{"type":"text","text":"Hi"}'
    assert r.segments[0].text == (
        '{"name":"get_weather","description":"Weather for a city.","input_schema":{"type":"object",'
        '"properties":{"city":{"type":"string"}},"required":["city"]}}'
    )


def test_string_and_block_forms_hash_alike():
    a = render(base(system="S", messages=[{"role": "user", "content": "Hi"}]))
    hi = [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
    b = render(base(system=[{"type": "text", "text": "S"}], messages=hi))
    assert a.hashes == b.hashes and first_divergence(a, b) is None


def test_cache_control_is_not_part_of_the_prefix():
    body = base()
    marked = base()
    marked["system"][1]["cache_control"] = {"type": "ephemeral", "ttl": "1h"}
    a, b = render(body), render(marked)
    assert "cache_control" not in b.segments[2].text and a.hashes == b.hashes
    assert b.segments[2].ttl == "1h" and a.segments[2].ttl is None


def test_total_is_segments_plus_overheads_and_equals_count_request():
    body = base()
    r = render(body)
    assert r.total_tokens == sum(s.tokens for s in r.segments) + r.extra_tokens
    assert r.cumulative[-1] + r.extra_tokens == r.total_tokens
    assert count_request(body) == r.total_tokens
    assert r.extra_tokens == tokenizer.REQUEST_OVERHEAD


def test_counter_replaces_the_tokenizer():
    r = render(base(), counter=lambda block: 10)
    assert [s.tokens for s in r.segments] == [10] * 6 and r.total_tokens == 60


def test_hidden_tool_prompt_and_forced_tool_choice():
    body = base(model="claude-opus-5")
    auto, forced = render(body), render({**body, "tool_choice": {"type": "any"}})
    assert auto.segments[0].tokens == tokenizer.count_tool(WEATHER, "claude-opus-5") + 286
    assert forced.total_tokens - auto.total_tokens == 406 - 286
    # the forced part sits at the messages level, so tools and system positions keep their tokens
    assert forced.cumulative[2] == auto.cumulative[2]


# ---- first_divergence -------------------------------------------------------------------------------------------


def diverge(a: dict[str, Any], b: dict[str, Any]):
    return first_divergence(render(a), render(b))


def test_identical_and_appended_turns_do_not_diverge():
    a = base()
    b = base()
    b["messages"] = a["messages"] + [{"role": "assistant", "content": "Rainy."}, {"role": "user", "content": "Thanks"}]
    assert diverge(a, a) is None
    assert diverge(a, b) is None


def test_model_change():
    d = diverge(base(), base(model="claude-opus-4-8"))
    assert (d.path, d.level, d.offset, d.invalidated_from, d.reason, d.reusable_tokens) == (
        None, "tools", None, "tools", "model", 0)  # fmt: skip


def test_system_text_change_reports_path_and_character_offset():
    b = base()
    b["system"][1]["text"] = "Answer in full."
    d = diverge(base(), b)
    assert (d.path, d.level, d.offset, d.invalidated_from, d.reason) == ("system.1", "system", 30, "system", "content")
    r = render(b)
    assert d.reusable_tokens == r.cumulative[1]
    old = render(base()).segments[2].text
    assert old[:30] == r.segments[2].text[:30] and old[30] != r.segments[2].text[30]


def test_tool_key_order_change_is_a_tools_divergence():
    b = base()
    b["tools"] = [{"description": WEATHER["description"], "name": "get_weather",
                   "input_schema": WEATHER["input_schema"]}]  # fmt: skip
    d = diverge(base(), b)
    assert (d.path, d.invalidated_from, d.offset) == ("tools.0", "tools", 2)


def test_tool_removed_and_added():
    more = base(tools=[WEATHER, {**WEATHER, "name": "get_time"}])
    removed = diverge(more, base())
    assert (removed.path, removed.reason, removed.invalidated_from) == ("tools.1", "removed", "tools")
    added = diverge(base(), more)
    assert (added.path, added.reason) == ("tools.1", "added")


@pytest.mark.parametrize(
    ("change", "reason", "level"),
    [
        ({"tool_choice": {"type": "any"}}, "tool_choice", "messages"),
        ({"tool_choice": {"type": "auto", "disable_parallel_tool_use": True}}, "tool_choice", "messages"),
        ({"thinking": {"type": "enabled", "budget_tokens": 2048}}, "thinking", "messages"),
        ({"output_config": {"effort": "low"}}, "effort", "messages"),
        ({"speed": "fast"}, "speed", "system"),
    ],
)
def test_request_settings_invalidate_their_level(change, reason, level):
    d = diverge(base(), base(**change))
    assert (d.path, d.offset, d.reason, d.invalidated_from) == (None, None, reason, level)
    r = render(base(**change))
    assert d.reusable_tokens == r.tokens_before(r.level_start(level))


def test_defaults_spelled_out_are_not_changes():
    spelled = base(tool_choice={"type": "auto"}, speed="standard", output_config={"effort": "high"})
    assert diverge(base(), spelled) is None


def test_image_added_invalidates_messages_only():
    b = base()
    b["messages"][2]["content"] = [IMAGE, {"type": "text", "text": "And Rome?"}]
    d = diverge(base(), b)
    assert (d.reason, d.invalidated_from, d.path) == ("images", "messages", None)


def test_earlier_content_change_wins_over_a_messages_setting():
    b = base(tool_choice={"type": "any"})
    b["system"][0]["text"] = "You are a weather robot."
    assert diverge(base(), b).reason == "content" and diverge(base(), b).path == "system.0"


def test_role_change_diverges():
    b = base()
    b["messages"][1]["role"] = "user"
    d = diverge(base(), b)
    assert (d.path, d.reason, d.invalidated_from) == ("messages.1.content.0", "role", "messages")


# ---- hashes -----------------------------------------------------------------------------------------------------


def test_hashes_per_level_follow_the_invalidation_table():
    a = render(base())
    changes = [({"tool_choice": {"type": "any"}}, 3), ({"speed": "fast"}, 1), ({"model": "claude-opus-4-8"}, 0),
               ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, 3)]  # fmt: skip
    for change, kept in changes:
        b = render(base(**change))
        same = [x == y for x, y in zip(a.hashes, b.hashes)]
        assert same == [True] * kept + [False] * (len(same) - kept), change


def test_prefix_hash_depends_on_everything_before():
    a, b = base(), base()
    b["system"][0]["text"] = "x"
    ha, hb = render(a).hashes, render(b).hashes
    assert ha[0] == hb[0] and all(x != y for x, y in zip(ha[1:], hb[1:]))


def test_consecutive_same_role_turns_merge():
    split = base(messages=[{"role": "user", "content": "A"}, {"role": "user", "content": "B"}])
    both = [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}]
    joined = base(messages=[{"role": "user", "content": both}])
    assert render(split).hashes == render(joined).hashes


# ---- breakpoints --------------------------------------------------------------------------------------------------


def test_breakpoints_explicit_and_automatic():
    body = base(cache_control={"type": "ephemeral", "ttl": "1h"})
    body["tools"][0]["cache_control"] = {"type": "ephemeral"}
    r = render(body)
    points = breakpoints(r)
    assert [(p.path, p.ttl, p.automatic) for p in points] == [
        ("tools.0", "5m", False), ("messages.2.content.0", "1h", True)]  # fmt: skip
    assert points[1].tokens == r.cumulative[-1]
    assert [p.path for p in breakpoints(r, automatic=False)] == ["tools.0"]


def test_automatic_target_skips_thinking_and_empty_text():
    body = base(messages=[
        {"role": "user", "content": "Q"},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm", "signature": "s"},
                                          {"type": "text", "text": ""}]},
    ])  # fmt: skip
    r = render(body)
    assert r.segments[automatic_target(r)].path == "messages.0.content.0"
    assert automatic_target(render({"model": MODEL, "messages": []})) is None


def test_previous_turn_thinking_is_not_counted_but_current_turn_is():
    thinking = {"type": "thinking", "thinking": "Let me think about the weather in Paris " * 20, "signature": "sig"}
    tool_use = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}
    turn = [{"role": "user", "content": "Paris?"}, {"role": "assistant", "content": [thinking, tool_use]},
            {"role": "user", "content": [result]}]  # fmt: skip
    current = render(base(messages=turn))
    overhead = tokenizer.MESSAGE_OVERHEAD  # charged on the first block of each message
    assert current.segments[4].path == "messages.1.content.0"
    assert current.segments[4].tokens == tokenizer.count_block(thinking, MODEL) + overhead > 100
    next_turn = [{"role": "assistant", "content": "Sunny."}, {"role": "user", "content": "Rome?"}]
    later = render(base(messages=turn + next_turn))
    assert later.segments[later.index_of("messages.1.content.0")].tokens == overhead


def test_role_marks_the_turn_even_with_an_injected_counter():
    a = render(base(), counter=lambda block: 1)
    b = base()
    b["messages"][1]["role"] = "user"
    assert first_divergence(a, render(b, counter=lambda block: 1)).reason == "role"


def test_paths_keep_request_indices_when_items_are_skipped():
    r = render({"model": MODEL, "messages": [{"role": "user", "content": ["junk", {"type": "text", "text": "Hi"}]}]})
    assert [s.path for s in r.segments] == ["messages.0.content.1"]


def test_citations_toggle_invalidates_the_system_level():
    doc = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "Rome is sunny."}}
    a, b = base(), base()
    a["messages"][2]["content"] = [doc, {"type": "text", "text": "And Rome?"}]
    b["messages"][2]["content"] = [{**doc, "citations": {"enabled": True}}, {"type": "text", "text": "And Rome?"}]
    d = diverge(a, b)
    assert (d.reason, d.invalidated_from, d.path) == ("citations", "system", None)
