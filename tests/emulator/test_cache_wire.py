"""Prompt caching as the SDK sees it on the wire (reference §6): the issue's "done when" cases and their neighbours."""

from __future__ import annotations

import anthropic
import pytest

from parity import catalog
from parity import tokenizer
from parity.emulator.context import RequestContext

from .conftest import USER

OPUS = "claude-opus-4-8"
SENTENCE = "Our support policy covers refunds, shipping delays, damaged goods and account access in detail. "


def prose(tokens: int, salt: str = "") -> str:
    """Support-policy prose of at least `tokens` tokens (by the emulator's own tokenizer)."""
    text = salt
    while tokenizer.count_text(text, OPUS) < tokens:
        text += SENTENCE
    return text


def system_blocks(text: str, ttl: str | None = None) -> list[dict]:
    cache_control = {"type": "ephemeral", **({"ttl": ttl} if ttl else {})}
    return [{"type": "text", "text": text, "cache_control": cache_control}]


def ask(client, system, model=OPUS, **kwargs):
    return client.messages.create(model=model, max_tokens=50, system=system, messages=USER, **kwargs).usage


def total_input(usage) -> int:
    return usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens


def test_identical_5000_token_prefix_writes_then_reads(client):
    system = system_blocks(prose(5000))
    first = ask(client, system)
    assert first.cache_read_input_tokens == 0
    assert first.cache_creation_input_tokens >= 5000
    assert first.cache_creation.ephemeral_5m_input_tokens == first.cache_creation_input_tokens
    assert first.cache_creation.ephemeral_1h_input_tokens == 0
    for _ in range(3):
        again = ask(client, system)
        assert again.cache_read_input_tokens == first.cache_creation_input_tokens
        assert again.cache_creation_input_tokens == 0
        assert again.input_tokens == first.input_tokens  # the uncached tail: the user turn
        assert total_input(again) == total_input(first)


def test_a_timestamp_in_the_system_prompt_makes_every_read_zero(client, clock):
    base = prose(5000)
    reads, writes = [], []
    for _ in range(4):
        clock.advance(1.0)
        usage = ask(client, system_blocks(f"Current time: {clock.now():.0f}\n{base}"))
        reads.append(usage.cache_read_input_tokens)
        writes.append(usage.cache_creation_input_tokens)
    assert reads == [0, 0, 0, 0]
    assert all(w >= 5000 for w in writes)  # every request pays for a write it never reads


def test_a_prefix_below_the_minimum_caches_nothing_and_raises_nothing(client):
    minimum = catalog.get_model(OPUS).min_cacheable_tokens
    short = system_blocks(prose(minimum // 4))
    for _ in range(2):
        usage = ask(client, short)
        assert usage.cache_creation_input_tokens == 0 and usage.cache_read_input_tokens == 0
        assert usage.input_tokens == client.messages.count_tokens(model=OPUS, system=short, messages=USER).input_tokens


def test_prewarm_with_max_tokens_zero_then_read(client):
    system = system_blocks(prose(5000))
    warm = client.messages.create(model=OPUS, max_tokens=0, system=system, messages=USER)
    assert warm.content == [] and warm.stop_reason == "max_tokens" and warm.usage.output_tokens == 0
    assert warm.usage.cache_creation_input_tokens >= 5000
    real = ask(client, system)
    assert (
        real.cache_read_input_tokens == warm.usage.cache_creation_input_tokens and real.cache_creation_input_tokens == 0
    )


def test_stream_reports_cache_usage_in_message_start(client):
    system = system_blocks(prose(5000))
    ask(client, system)
    with client.messages.stream(model=OPUS, max_tokens=50, system=system, messages=USER) as stream:
        events = list(stream)
        final = stream.get_final_message()
    start = events[0]
    assert start.type == "message_start" and start.message.usage.cache_read_input_tokens >= 5000
    assert final.usage.cache_read_input_tokens == start.message.usage.cache_read_input_tokens


def test_ttl_expiry_on_the_clock_and_the_1h_ttl(client, clock):
    five = system_blocks(prose(5000, salt="five-minute "))
    ask(client, five)
    clock.advance(4 * 60)
    assert ask(client, five).cache_read_input_tokens > 0  # a read refreshes the entry
    clock.advance(4 * 60)
    assert ask(client, five).cache_read_input_tokens > 0
    clock.advance(6 * 60)
    expired = ask(client, five)
    assert expired.cache_read_input_tokens == 0 and expired.cache_creation_input_tokens > 0
    hour = system_blocks(prose(5000, salt="one-hour "), ttl="1h")
    written = ask(client, hour)
    assert written.cache_creation.ephemeral_1h_input_tokens == written.cache_creation_input_tokens > 0
    clock.advance(50 * 60)
    assert ask(client, hour).cache_read_input_tokens == written.cache_creation_input_tokens


def test_ttl_ordering_and_breakpoint_count_are_400s(client):
    text = prose(1200)
    later_1h = [
        {"type": "text", "text": text, "cache_control": {"type": "ephemeral", "ttl": "5m"}},
        {"type": "text", "text": text + " more", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
    ]
    with pytest.raises(anthropic.BadRequestError) as info:
        ask(client, later_1h)
    assert "a ttl='1h' cache_control block must not come after a ttl='5m' cache_control block" in info.value.message
    five = [{"type": "text", "text": f"{text} {i}", "cache_control": {"type": "ephemeral"}} for i in range(5)]
    with pytest.raises(
        anthropic.BadRequestError, match="A maximum of 4 blocks with cache_control may be provided. Found 5."
    ):
        ask(client, five)


def test_automatic_caching_with_top_level_cache_control(client):
    system = prose(5000)
    first = ask(client, system, cache_control={"type": "ephemeral"})
    second = ask(client, system, cache_control={"type": "ephemeral"})
    assert (
        first.cache_creation_input_tokens > 5000 and second.cache_read_input_tokens == first.cache_creation_input_tokens
    )


def test_count_tokens_never_touches_the_cache(client):
    system = system_blocks(prose(5000))
    counted = client.messages.count_tokens(model=OPUS, system=system, messages=USER)
    first = ask(client, system)
    assert first.cache_read_input_tokens == 0  # count_tokens wrote nothing
    assert total_input(first) == counted.input_tokens


def test_caches_are_per_workspace(client):
    system = system_blocks(prose(5000))
    ask(client, system)
    other = ask(client, system, extra_headers={"anthropic-workspace-id": "wrkspc_other"})
    assert other.cache_read_input_tokens == 0 and other.cache_creation_input_tokens > 0


def test_an_entry_is_readable_only_once_the_writing_response_has_started(emulator):
    params = {"model": OPUS, "max_tokens": 20, "system": system_blocks(prose(5000)), "messages": USER}
    a = emulator.prepare(params, RequestContext())
    b = emulator.prepare(params, RequestContext())  # in flight together: both write
    assert a.message["usage"]["cache_creation_input_tokens"] > 0 and b.message["usage"]["cache_read_input_tokens"] == 0
    emulator.commit(a)
    emulator.commit(b)
    assert emulator.create_message(params)["usage"]["cache_read_input_tokens"] > 0


def test_cache_diagnostics(client):
    system = system_blocks(prose(5000))
    first = client.messages.create(model=OPUS, max_tokens=20, system=system, messages=USER)
    same = client.messages.create(
        model=OPUS, max_tokens=20, system=system, messages=USER, diagnostics={"previous_message_id": first.id}
    )
    assert same.diagnostics is None
    changed = client.messages.create(
        model=OPUS,
        max_tokens=20,
        system=system_blocks("Changed! " + prose(5000)),
        messages=USER,
        diagnostics={"previous_message_id": first.id},
    )
    reason = changed.diagnostics.cache_miss_reason
    assert reason.type == "system_changed" and reason.cache_missed_input_tokens > 0
    other_model = client.messages.create(
        model="claude-opus-4-7",
        max_tokens=20,
        system=system,
        messages=USER,
        diagnostics={"previous_message_id": first.id},
    )
    assert other_model.diagnostics.cache_miss_reason.type == "model_changed"
    unknown = client.messages.create(
        model=OPUS, max_tokens=20, system=system, messages=USER, diagnostics={"previous_message_id": "msg_unknown"}
    )
    assert unknown.diagnostics.cache_miss_reason.type == "previous_message_not_found"
