"""The emulator's prompt cache against every worked example of reference claude-api.md §6.

Most tests inject a token counter into `render` (a block "label:N" costs N tokens) so the arithmetic of the
documented examples is exact; the end-to-end tests at the bottom go through the real `anthropic` SDK.
"""

from __future__ import annotations

from typing import Any

import anthropic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parity.api.errors import APIError
from parity.emulator.brains.base import BrainReply, BrainRequest
from parity.emulator.caching import PromptCache
from parity.emulator.clock import ManualClock
from parity.prompt import render

MODEL = "claude-opus-4-8"
WS = "wrkspc_test"
EPH = {"type": "ephemeral"}
H1 = {"type": "ephemeral", "ttl": "1h"}
M5 = {"type": "ephemeral", "ttl": "5m"}


def tokens(block: dict[str, Any]) -> int:
    """Test counter: the number after the last ':' of a block's text (or a tool's description)."""
    s = block.get("text") or block.get("description") or ""
    return int(s.rsplit(":", 1)[1]) if ":" in s else 7


def text(label: str, n: int, cc: dict | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "text", "text": f"{label}:{n}"}
    if cc is not None:
        block["cache_control"] = cc
    return block


def tool(name: str, n: int, cc: dict | None = None) -> dict[str, Any]:
    t: dict[str, Any] = {"name": name, "description": f"{name}:{n}", "input_schema": {"type": "object"}}
    if cc is not None:
        t["cache_control"] = cc
    return t


def req(messages=None, system=None, tools=None, model=MODEL, **extra) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "max_tokens": 10}
    if tools is not None:
        body["tools"] = tools
    if system is not None:
        body["system"] = system
    body["messages"] = messages if messages is not None else [{"role": "user", "content": [text("q", 5)]}]
    body.update(extra)
    return body


class Harness:
    """A cache on a manual clock; `send` = plan + commit at the current time, like one emulator request."""

    def __init__(self) -> None:
        self.clock = ManualClock()
        self.cache = PromptCache(self.clock)

    def plan(self, body: dict[str, Any], min_tokens: int = 1024, workspace: str = WS):
        rendered = render(body, counter=tokens)
        return self.cache.plan(body["model"], rendered, body.get("cache_control"), min_tokens, workspace)

    def send(self, body: dict[str, Any], min_tokens: int = 1024, workspace: str = WS) -> dict[str, Any]:
        plan = self.plan(body, min_tokens, workspace)
        self.cache.commit(plan, self.clock.now())
        return plan.usage


def counters(usage: dict[str, Any]) -> tuple[int, int, int, int, int]:
    """(input, read, creation, 5m, 1h)."""
    c = usage["cache_creation"]
    return (usage["input_tokens"], usage["cache_read_input_tokens"], usage["cache_creation_input_tokens"],
            c["ephemeral_5m_input_tokens"], c["ephemeral_1h_input_tokens"])  # fmt: skip


@pytest.fixture
def h() -> Harness:
    return Harness()


# ---- §6.5: the documented partial-hit example ------------------------------------------------------------------


def test_doc_example_mixed_ttls(h):
    s1 = text("system-a", 1800, H1)
    assert counters(h.send(req(system=[s1]))) == (5, 0, 1800, 0, 1800)
    body = req(system=[s1, text("system-b", 100, H1)],
               messages=[{"role": "user", "content": [text("context", 148, M5), text("question", 2048)]}])  # fmt: skip
    usage = h.send(body)
    assert counters(usage) == (2048, 1800, 248, 148, 100)
    assert usage["input_tokens"] + usage["cache_read_input_tokens"] + usage["cache_creation_input_tokens"] == 4096


# ---- §6.4: the 20-block lookback -------------------------------------------------------------------------------


def blocks(marks: dict[int, dict]) -> list[dict[str, Any]]:
    """One user message of 40 blocks of 100 tokens; `marks` puts cache_control on some of them."""
    return [{"role": "user", "content": [text(f"b{i}", 100, marks.get(i)) for i in range(40)]}]


def test_lookback_hits_within_20_positions_and_misses_beyond(h):
    assert counters(h.send(req(blocks({10: EPH})))) == (2900, 0, 1100, 1100, 0)
    # turn 2: breakpoint at 15 walks back, hits the entry at 10 and writes 15
    assert counters(h.send(req(blocks({15: EPH})))) == (2400, 1100, 500, 500, 0)
    # turn 3: breakpoint at 35 checks 35..16 only, so the entry at 15 is missed: a full miss, write at 35
    assert counters(h.send(req(blocks({35: EPH})))) == (400, 0, 3600, 3600, 0)


def test_lookback_window_counts_the_breakpoint_itself(h):
    h.send(req(blocks({15: EPH})))
    assert counters(h.send(req(blocks({34: EPH}))))[1] == 1600  # 34..15 includes 15
    h.cache.clear()
    h.send(req(blocks({15: EPH})))
    assert counters(h.send(req(blocks({35: EPH}))))[1] == 0


def test_second_breakpoint_near_the_old_entry_rescues_the_read(h):
    h.send(req(blocks({15: EPH})))
    usage = h.send(req(blocks({16: EPH, 35: EPH})))
    assert counters(usage) == (400, 1600, 2000, 2000, 0)


def test_best_hit_is_the_longest(h):
    h.send(req(blocks({5: EPH})), min_tokens=0)
    h.send(req(blocks({12: EPH})), min_tokens=0)
    # breakpoint 6 finds the entry at 5, breakpoint 14 the longer one at 12: reads 12, writes only 14
    plan = h.plan(req(blocks({6: EPH, 14: EPH})), min_tokens=0)
    assert plan.hit_index == 12 and [w.path for w in plan.writes] == ["messages.0.content.14"]
    assert counters(plan.usage) == (2500, 1300, 200, 200, 0)


# ---- §6.3: automatic caching -----------------------------------------------------------------------------------


def conversation(turns: int) -> list[dict[str, Any]]:
    msgs: list[dict[str, Any]] = []
    for n in range(1, turns + 1):
        msgs.append({"role": "user", "content": [text(f"user{n}", 300)]})
        if n < turns:
            msgs.append({"role": "assistant", "content": [text(f"asst{n}", 200)]})
    return msgs


def test_automatic_caching_multi_turn(h):
    system = [text("system", 1000)]
    first = h.send(req(conversation(1), system=system, cache_control=EPH))
    assert counters(first) == (0, 0, 1300, 1300, 0)
    for n in range(2, 6):
        usage = h.send(req(conversation(n), system=system, cache_control=EPH))
        prior = 1000 + 300 * (n - 1) + 200 * (n - 2)  # System ... User(N-1)
        assert counters(usage) == (0, prior, 500, 500, 0), n  # writes Asst(N-1) + User(N)


def test_automatic_caching_walks_back_past_ineligible_blocks(h):
    msgs = [{"role": "user", "content": [text("doc", 1500), {"type": "text", "text": ""}]}]
    plan = h.plan(req(msgs, cache_control=EPH))
    assert [w.path for w in plan.writes] == ["messages.0.content.0"]
    assert plan.usage["cache_creation_input_tokens"] == 1500


def test_automatic_caching_with_no_eligible_block_is_skipped(h):
    msgs = [{"role": "user", "content": [{"type": "text", "text": ""}]}]
    assert counters(h.send(req(msgs, cache_control=EPH), min_tokens=0))[1:3] == (0, 0)


def test_automatic_caching_same_ttl_on_target_is_a_no_op(h):
    msgs = [{"role": "user", "content": [text("doc", 1500, H1)]}]
    plan = h.plan(req(msgs, cache_control=H1))
    assert len(plan.breakpoints) == 1 and plan.usage["cache_creation"]["ephemeral_1h_input_tokens"] == 1500


def test_top_level_ttl_conflict_is_400(h):
    msgs = [{"role": "user", "content": [text("doc", 1500, H1)]}]
    with pytest.raises(APIError) as info:
        h.plan(req(msgs, cache_control=M5))
    assert info.value.status == 400
    assert info.value.message == (
        "Top-level cache_control has ttl='5m' but the target block already has cache_control with ttl='1h'"
    )


def test_top_level_with_four_explicit_breakpoints_is_400(h):
    msgs = [{"role": "user", "content": [text(f"b{i}", 300, EPH) for i in range(4)] + [text("tail", 9)]}]
    with pytest.raises(APIError, match=r"^A maximum of 4 blocks with cache_control may be provided. Found 5.$"):
        h.plan(req(msgs, cache_control=EPH))
    h.plan(req(msgs))  # the same four without top-level caching are fine


def test_five_breakpoints_is_400(h):
    msgs = [{"role": "user", "content": [text(f"b{i}", 300, EPH) for i in range(5)]}]
    with pytest.raises(APIError) as info:
        h.plan(req(msgs))
    assert (info.value.status, info.value.type) == (400, "invalid_request_error")
    assert info.value.message == "A maximum of 4 blocks with cache_control may be provided. Found 5."


# ---- §6.6: TTL ordering ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (req(system=[text("a", 900, EPH), text("b", 900, H1)]), "system.1"),
        (req(tools=[tool("t", 900, M5)], system=[text("b", 900, H1)]), "system.0"),
        (req([{"role": "user", "content": [text("a", 900, M5), text("b", 900, H1)]}]), "messages.0.content.1"),
        (req(tools=[tool("t", 900, EPH), tool("u", 900, H1)]), "tools.1"),
    ],
)
def test_1h_after_5m_is_400_with_the_block_path(h, body, path):
    with pytest.raises(APIError) as info:
        h.plan(body)
    assert info.value.status == 400
    assert info.value.message == (
        f"{path}.cache_control.ttl: a ttl='1h' cache_control block must not come after a ttl='5m' cache_control "
        "block. Note that blocks are processed in the following order: `tools`, `system`, `messages`."
    )


def test_automatic_1h_after_explicit_5m_is_400(h):
    body = req([{"role": "user", "content": [text("a", 900, M5), text("b", 900)]}], cache_control=H1)
    with pytest.raises(APIError, match=r"^messages\.0\.content\.1\.cache_control\.ttl: a ttl='1h'"):
        h.plan(body)


def test_1h_before_5m_is_fine(h):
    body = req(tools=[tool("t", 900, H1)], system=[text("s", 900, M5)])
    assert counters(h.send(body, min_tokens=0)) == (5, 0, 1800, 900, 900)


# ---- §6.1: TTLs, commit timing, workspaces ---------------------------------------------------------------------


@pytest.mark.parametrize(("cc", "ttl"), [(EPH, 300), (H1, 3600)])
def test_entry_expires_after_its_ttl_and_hits_refresh_it(h, cc, ttl):
    body = req(system=[text("s", 2000, cc)])
    h.send(body)
    h.clock.advance(ttl - 1)
    assert counters(h.send(body))[1] == 2000  # still live, and the hit refreshes the TTL from now
    h.clock.advance(ttl - 1)
    assert counters(h.send(body))[1] == 2000  # would have expired without the refresh
    h.clock.advance(ttl)
    assert counters(h.send(body))[1:3] == (0, 2000)  # expired exactly at ttl: a fresh write


def test_lifetime_runs_from_the_request_start(h):
    body = req(system=[text("s", 2000, EPH)])
    started = h.clock.now()
    plan = h.plan(body)
    h.clock.advance(60)  # a slow generation: the response starts a minute later
    h.cache.commit(plan, started)
    h.clock.advance(240)  # 300 s after the start
    assert counters(h.send(body))[1] == 0


def test_entry_not_readable_before_commit(h):
    body = req(system=[text("s", 2000, EPH)])
    first, second = h.plan(body), h.plan(body)  # parallel identical requests
    assert first.usage["cache_creation_input_tokens"] == second.usage["cache_creation_input_tokens"] == 2000
    h.cache.commit(first, h.clock.now())
    h.cache.commit(second, h.clock.now())
    assert counters(h.send(body))[1] == 2000


def test_plan_alone_changes_nothing(h):
    body = req(system=[text("s", 2000, EPH)])
    h.plan(body)
    assert len(h.cache) == 0 and counters(h.send(body))[1] == 0


def test_caches_are_per_workspace(h):
    body = req(system=[text("s", 2000, EPH)])
    h.send(body, workspace="wrkspc_a")
    assert counters(h.send(body, workspace="wrkspc_b"))[1] == 0
    assert counters(h.send(body, workspace="wrkspc_a"))[1] == 2000


# ---- §6.7: minimum cacheable length ----------------------------------------------------------------------------


def test_below_minimum_caches_nothing_and_raises_nothing(h):
    body = req(system=[text("s", 1000, EPH)])
    for _ in range(2):
        assert counters(h.send(body, min_tokens=1024)) == (1005, 0, 0, 0, 0)
    assert len(h.cache) == 0


def test_breakpoint_below_minimum_is_skipped_but_later_ones_work(h):
    body = req(system=[text("s", 600, H1), text("t", 600, M5)])
    plan = h.plan(body, min_tokens=1024)
    assert [bp.path for bp in plan.breakpoints] == ["system.1"]
    assert counters(plan.usage) == (5, 0, 1200, 1200, 0)


# ---- §6.9: what invalidates which level ------------------------------------------------------------------------


def layered(**extra) -> dict[str, Any]:
    """Breakpoints at the end of tools, of system and of messages (1h, 1h, 5m)."""
    body = req(
        [{"role": "user", "content": [text("question", 1500, M5)]}],
        system=[text("system", 1500, H1)],
        tools=[tool("search", 1500, H1)],
    )
    body.update(extra)
    return body


def reread(h: Harness, first: dict[str, Any], second: dict[str, Any]) -> int:
    h.cache.clear()
    h.send(first)
    return counters(h.send(second))[1]


def test_identical_request_reads_everything(h):
    assert reread(h, layered(), layered()) == 4500


def test_model_change_invalidates_everything(h):
    assert reread(h, layered(), layered(model="claude-sonnet-4-6")) == 0


def test_tool_change_invalidates_everything(h):
    other = layered()
    other["tools"] = [tool("search", 1501, H1)]
    assert reread(h, layered(), other) == 0


def test_system_change_keeps_the_tools_cache(h):
    other = layered()
    other["system"] = [text("system v2", 1500, H1)]
    assert reread(h, layered(), other) == 1500


def test_tool_choice_change_keeps_the_system_cache(h):
    assert reread(h, layered(), layered(tool_choice={"type": "any"})) == 3000
    assert reread(h, layered(tool_choice={"type": "auto", "disable_parallel_tool_use": True}), layered()) == 3000


def test_adding_an_image_keeps_the_system_cache(h):
    other = layered()
    image = {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}
    other["messages"] = [{"role": "user", "content": [image, text("question", 1500, M5)]}]
    assert reread(h, layered(), other) == 3000


def test_thinking_change_keeps_the_system_cache(h):
    assert reread(h, layered(), layered(thinking={"type": "enabled", "budget_tokens": 2048})) == 3000
    enabled = layered(thinking={"type": "enabled", "budget_tokens": 2048})
    assert reread(h, enabled, layered(thinking={"type": "enabled", "budget_tokens": 4096})) == 3000


def test_speed_change_keeps_only_the_tools_cache(h):
    assert reread(h, layered(), layered(speed="fast")) == 1500


def test_key_order_change_in_a_tool_breaks_the_cache(h):
    other = layered()
    t = other["tools"][0]
    other["tools"] = [{"description": t["description"], "name": t["name"], "input_schema": t["input_schema"],
                       "cache_control": H1}]  # fmt: skip
    assert reread(h, layered(), other) == 0


def test_moving_a_breakpoint_does_not_change_the_prefix(h):
    h.send(req(system=[text("a", 1200, EPH), text("b", 100)]))
    usage = h.send(req(system=[text("a", 1200), text("b", 100, EPH)]))
    assert counters(usage)[1:3] == (1200, 100)


def test_timestamp_in_system_prompt_never_reads(h):
    for minute in range(5):
        body = req([{"role": "user", "content": [text("question", 50)]}], cache_control=EPH,
                   system=[text(f"You are helpful. Now: 2026-11-20T10:{minute:02d}:00Z. Rules", 3000)])  # fmt: skip
        h.clock.advance(60)
        usage = h.send(body)
        assert usage["cache_read_input_tokens"] == 0 and usage["cache_creation_input_tokens"] == 3050


# ---- the accounting identity, for any request sequence ---------------------------------------------------------

TTL = st.sampled_from([None, EPH, M5, H1])


@st.composite
def requests(draw) -> dict[str, Any]:
    n_tools = draw(st.integers(0, 2))
    n_sys = draw(st.integers(0, 2))
    n_msg = draw(st.integers(1, 6))
    tools = [tool(f"t{i}", draw(st.integers(0, 900)), draw(TTL)) for i in range(n_tools)]
    system = [text(f"s{i}", draw(st.integers(0, 900)), draw(TTL)) for i in range(n_sys)]
    msgs = []
    for m in range(n_msg):
        content = [text(f"m{m}.{j}", draw(st.integers(0, 900)), draw(TTL)) for j in range(draw(st.integers(1, 3)))]
        msgs.append({"role": "user" if m % 2 == 0 else "assistant", "content": content})
    if msgs[-1]["role"] == "assistant":
        msgs.append({"role": "user", "content": [text("last", draw(st.integers(1, 50)))]})
    body = req(msgs, system=system or None, tools=tools or None)
    if draw(st.booleans()):
        body["cache_control"] = draw(st.sampled_from([EPH, H1]))
    if draw(st.booleans()):
        body["tool_choice"] = {"type": "any"}
    return body


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(requests(), st.sampled_from([0, 30, 299, 301, 3601]), st.sampled_from([0, 512, 1024])),
                min_size=1, max_size=6))  # fmt: skip
def test_usage_always_adds_up_to_the_prompt(sequence):
    h = Harness()
    for body, wait, minimum in sequence:
        h.clock.advance(wait)
        rendered = render(body, counter=tokens)
        try:
            plan = h.cache.plan(MODEL, rendered, body.get("cache_control"), minimum, WS)
        except APIError as error:
            assert error.status == 400
            continue
        h.cache.commit(plan, h.clock.now())
        inp, read, creation, m5, h1 = counters(plan.usage)
        assert inp + read + creation == rendered.total_tokens
        assert creation == m5 + h1
        assert min(inp, read, m5, h1) >= 0


# ---- end to end through the real SDK ---------------------------------------------------------------------------


class EchoBrain:
    name = "echo"

    def reply(self, request: BrainRequest) -> BrainReply:
        return BrainReply([{"type": "text", "text": "ok"}])


@pytest.fixture
def client():
    from parity.emulator.service import Emulator

    return Emulator(brain=EchoBrain(), clock=ManualClock()).client(max_retries=0)


LONG = "The quarterly report covers revenue, costs and the outlook for the next year. " * 120


def test_sdk_automatic_caching_across_turns(client):
    messages: list[dict[str, Any]] = [{"role": "user", "content": LONG}]
    first = client.messages.create(model=MODEL, max_tokens=20, messages=messages, cache_control=EPH)
    assert first.usage.cache_read_input_tokens == 0 and first.usage.cache_creation_input_tokens > 1024
    messages += [{"role": "assistant", "content": "ok"}, {"role": "user", "content": "And the costs?"}]
    second = client.messages.create(model=MODEL, max_tokens=20, messages=messages, cache_control=EPH)
    u = second.usage
    assert u.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert u.cache_creation.ephemeral_5m_input_tokens == u.cache_creation_input_tokens > 0
    counted = client.messages.count_tokens(model=MODEL, messages=messages)
    assert u.input_tokens + u.cache_read_input_tokens + u.cache_creation_input_tokens == counted.input_tokens


def test_sdk_sees_the_ttl_ordering_error(client):
    system = [{"type": "text", "text": "Rules.", "cache_control": M5},
              {"type": "text", "text": LONG, "cache_control": H1}]  # fmt: skip
    with pytest.raises(anthropic.BadRequestError, match=r"system\.1\.cache_control\.ttl: a ttl='1h' cache_control"):
        client.messages.create(model=MODEL, max_tokens=20, system=system, messages=[{"role": "user", "content": "Hi"}])
