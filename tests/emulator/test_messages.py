"""POST /v1/messages through the real anthropic SDK, in-process: the Message of reference §3, and how answers are
shaped (tool_choice, stop sequences, max_tokens, structured outputs)."""

from __future__ import annotations

import json

import anthropic
import jsonschema
import pytest

from parity.prompt import count_request
from parity import tokenizer
from parity.emulator.brains.base import BrainReply
from parity.emulator.context import RequestContext
from parity.emulator.service import Emulator

from .conftest import MODEL, USER, text_reply, tool_reply

WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"enum": ["C", "F"]}},
        "required": ["city", "unit"],
    },
}


def test_text_message_has_the_documented_shape(client, brain):
    brain.then(text_reply("Hello! How can I help?"))
    raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=100, messages=USER)
    message = raw.parse()
    body = json.loads(raw.http_response.content)
    assert list(body) == [
        "id",
        "type",
        "role",
        "model",
        "content",
        "stop_reason",
        "stop_sequence",
        "stop_details",
        "container",
        "usage",
    ]
    assert body["id"].startswith("msg_") and len(body["id"]) == len("msg_") + 24
    assert body["content"] == [{"type": "text", "text": "Hello! How can I help?", "citations": None}]
    assert (body["stop_reason"], body["stop_sequence"], body["stop_details"], body["container"]) == (
        "end_turn",
        None,
        None,
        None,
    )
    usage = body["usage"]
    assert usage["output_tokens"] == tokenizer.count_text("Hello! How can I help?", MODEL)
    assert usage["input_tokens"] == client.messages.count_tokens(model=MODEL, messages=USER).input_tokens
    assert usage["cache_creation_input_tokens"] == usage["cache_read_input_tokens"] == 0
    assert usage["cache_creation"] == {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0}
    assert (usage["service_tier"], usage["inference_geo"], usage["speed"]) == ("standard", "global", "standard")
    assert message._request_id == raw.http_response.headers["request-id"]
    assert message._request_id.startswith("req_")


def test_response_headers(client):
    raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=10, messages=USER)
    h = raw.http_response.headers
    assert h["content-type"] == "application/json"
    assert h["anthropic-organization-id"]
    for kind in ("requests", "tokens", "input-tokens", "output-tokens"):
        assert int(h[f"anthropic-ratelimit-{kind}-limit"]) > 0
        assert int(h[f"anthropic-ratelimit-{kind}-remaining"]) >= 0
        assert h[f"anthropic-ratelimit-{kind}-reset"].endswith("Z")
    assert int(h["anthropic-ratelimit-requests-remaining"]) < int(h["anthropic-ratelimit-requests-limit"])


def test_brain_sees_a_normalised_request(client, brain):
    client.messages.create(
        model=MODEL,
        max_tokens=50,
        system=[{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind."}],
        messages=USER,
        stop_sequences=["END"],
    )
    seen = brain.requests[-1]
    assert seen.model == MODEL and seen.system == "Be brief.\n\nBe kind." and seen.max_tokens == 50
    assert seen.messages == [{"role": "user", "content": [{"type": "text", "text": "Hello there"}]}]
    assert seen.stop_sequences == ["END"] and seen.last_user_text == "Hello there"


def test_tool_use_block(client, brain):
    brain.then(tool_reply("get_weather", {"city": "Paris", "unit": "C"}, text="Let me check."))
    message = client.messages.create(model=MODEL, max_tokens=200, messages=USER, tools=[WEATHER])
    assert message.stop_reason == "tool_use"
    text, call = message.content
    assert text.type == "text" and text.text == "Let me check."
    assert call.type == "tool_use" and call.id.startswith("toolu_") and call.input == {"city": "Paris", "unit": "C"}


def test_tool_choice_any_guarantees_a_valid_call_and_none_forbids_one(client, brain):
    brain.always(text_reply("I would rather chat."))
    forced = client.messages.create(
        model=MODEL, max_tokens=200, messages=USER, tools=[WEATHER], tool_choice={"type": "tool", "name": "get_weather"}
    )
    assert forced.stop_reason == "tool_use" and [b.type for b in forced.content] == ["tool_use"]
    jsonschema.validate(forced.content[0].input, WEATHER["input_schema"])
    brain.always(tool_reply("get_weather", {"city": "Oslo", "unit": "C"}))
    plain = client.messages.create(
        model=MODEL, max_tokens=200, messages=USER, tools=[WEATHER], tool_choice={"type": "none"}
    )
    assert plain.stop_reason == "end_turn" and all(b.type != "tool_use" for b in plain.content)


def test_parallel_tool_use_can_be_disabled(client, brain):
    two = BrainReply(
        [
            {"type": "tool_use", "name": "get_weather", "input": {"city": "A", "unit": "C"}},
            {"type": "tool_use", "name": "get_weather", "input": {"city": "B", "unit": "C"}},
        ],
        stop_reason="tool_use",
    )
    brain.always(two)
    both = client.messages.create(model=MODEL, max_tokens=200, messages=USER, tools=[WEATHER])
    assert [b.input["city"] for b in both.content] == ["A", "B"]
    one = client.messages.create(
        model=MODEL,
        max_tokens=200,
        messages=USER,
        tools=[WEATHER],
        tool_choice={"type": "auto", "disable_parallel_tool_use": True},
    )
    assert [b.input["city"] for b in one.content] == ["A"]


def test_stop_sequences(client, brain):
    brain.always(text_reply("alpha beta STOP gamma END delta"))
    message = client.messages.create(model=MODEL, max_tokens=200, messages=USER, stop_sequences=["END", "STOP"])
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == "STOP"
    assert message.content[0].text == "alpha beta "
    assert message.usage.output_tokens == tokenizer.count_text("alpha beta ", MODEL)
    unmatched = client.messages.create(model=MODEL, max_tokens=200, messages=USER, stop_sequences=["zzz"])
    assert unmatched.stop_reason == "end_turn" and unmatched.stop_sequence is None


def test_max_tokens_truncates_by_token_count(client, brain):
    long_text = " ".join(f"word{i}" for i in range(400))
    brain.always(text_reply(long_text))
    message = client.messages.create(model=MODEL, max_tokens=25, messages=USER)
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 25
    text = message.content[0].text
    assert long_text.startswith(text) and 0 < tokenizer.count_text(text, MODEL) <= 25 < tokenizer.count_text(
        long_text, MODEL
    )
    # a stop sequence beyond the budget does not win
    tail = client.messages.create(model=MODEL, max_tokens=25, messages=USER, stop_sequences=["word399"])
    assert tail.stop_reason == "max_tokens" and tail.stop_sequence is None


def test_empty_answer_still_bills_an_output_token(client, brain):
    brain.always(text_reply(""))
    message = client.messages.create(model=MODEL, max_tokens=20, messages=USER)
    assert message.content == [] and message.usage.output_tokens >= 1


SCHEMA = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["billing", "bug", "other"]},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["label", "confidence"],
    "additionalProperties": False,
}


def test_structured_output_passes_valid_json_through(client, brain):
    answer = '{"label": "bug", "confidence": 0.9}'
    brain.always(text_reply(answer))
    message = client.messages.create(
        model=MODEL, max_tokens=200, messages=USER, output_config={"format": {"type": "json_schema", "schema": SCHEMA}}
    )
    assert json.loads(message.content[0].text) == {"label": "bug", "confidence": 0.9}
    assert brain.requests[-1].output_schema == SCHEMA


def test_structured_output_is_guaranteed_even_when_the_brain_slips(client, brain):
    brain.always(text_reply('Sure! Here it is: {"label": "bug", "confidence": 3, "extra": 1}'))
    message = client.messages.create(
        model=MODEL, max_tokens=200, messages=USER, output_config={"format": {"type": "json_schema", "schema": SCHEMA}}
    )
    value = json.loads(message.content[0].text)
    jsonschema.validate(value, SCHEMA)
    assert value["label"] == "bug"  # the valid part of the slip is kept
    brain.always(text_reply("no json at all"))
    message = client.messages.create(
        model=MODEL, max_tokens=200, messages=USER, output_config={"format": {"type": "json_schema", "schema": SCHEMA}}
    )
    jsonschema.validate(json.loads(message.content[0].text), SCHEMA)


def test_structured_output_retries_the_brain_before_repairing(client, brain):
    brain.then(text_reply("oops"), text_reply('{"label": "other", "confidence": 0.5}'))
    message = client.messages.create(
        model=MODEL, max_tokens=200, messages=USER, output_config={"format": {"type": "json_schema", "schema": SCHEMA}}
    )
    assert json.loads(message.content[0].text) == {"label": "other", "confidence": 0.5}
    assert [r.seed for r in brain.requests] == [0, 1]


def test_prewarm_returns_no_content_and_no_output(client):
    message = client.messages.create(model=MODEL, max_tokens=0, messages=USER)
    assert message.content == [] and message.stop_reason == "max_tokens" and message.usage.output_tokens == 0


def test_count_tokens(client):
    tools = [WEATHER]
    counted = client.messages.count_tokens(model=MODEL, messages=USER, system="Be brief.", tools=tools)
    expected = count_request({"model": MODEL, "messages": USER, "system": "Be brief.", "tools": tools})
    assert counted.input_tokens == expected > 0


def test_create_message_directly_and_in_a_batch(emulator):
    params = {"model": MODEL, "max_tokens": 20, "messages": USER}
    sync = emulator.create_message(params, RequestContext())
    batched = emulator.create_message(params, RequestContext(), batch=True)
    assert sync["usage"]["service_tier"] == "standard" and batched["usage"]["service_tier"] == "batch"
    with pytest.raises(Exception) as info:
        emulator.create_message({"model": MODEL}, RequestContext())
    assert getattr(info.value, "status", None) == 400


def test_inference_geo_and_speed_are_reported(client):
    message = client.messages.create(model=MODEL, max_tokens=10, messages=USER, inference_geo="us", speed="fast")
    assert (message.usage.inference_geo, message.usage.speed) == ("us", "fast")
    with pytest.raises(anthropic.BadRequestError, match="speed: fast mode is not available for claude-haiku-4-5"):
        client.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=USER, speed="fast")


async def test_async_client(async_client, brain):
    brain.then(text_reply("async hello"))
    message = await async_client.messages.create(model=MODEL, max_tokens=20, messages=USER)
    assert message.content[0].text == "async hello"
    counted = await async_client.messages.count_tokens(model=MODEL, messages=USER)
    assert counted.input_tokens == message.usage.input_tokens


# ---- with the default, simulated brain -------------------------------------------------------------------------


def test_default_emulator_uses_the_simulated_brain_deterministically():
    from parity.emulator.brains.simulated import SimulatedBrain

    first, second = Emulator(), Emulator()
    assert isinstance(first.brain, SimulatedBrain)
    params = dict(
        model="claude-haiku-4-5",
        max_tokens=300,
        messages=[{"role": "user", "content": "Classify this ticket: my invoice is wrong."}],
    )
    with first.client() as a, second.client() as b:
        one, two = a.messages.create(**params), b.messages.create(**params)
    assert one.content and one.content[0].type == "text"
    assert [c.model_dump() for c in one.content] == [c.model_dump() for c in two.content]
    assert one.usage.output_tokens == two.usage.output_tokens >= 1


def test_simulated_brain_structured_output_validates():
    with Emulator().client() as sdk:
        message = sdk.messages.create(
            model="claude-haiku-4-5",
            max_tokens=500,
            messages=[{"role": "user", "content": "Label this: refund please"}],
            output_config={"format": {"type": "json_schema", "schema": SCHEMA}},
        )
    jsonschema.validate(json.loads(message.content[0].text), SCHEMA)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"n": {"type": "integer", "minimum": 3, "multipleOf": 2}}, "required": ["n"]},
        {
            "type": "object",
            "properties": {"xs": {"type": "array", "items": {"type": "string", "minLength": 2}, "minItems": 2}},
            "required": ["xs"],
            "additionalProperties": False,
        },
        {
            "$defs": {
                "pt": {
                    "type": "object",
                    "properties": {"x": {"type": "number", "exclusiveMinimum": 0}},
                    "required": ["x"],
                }
            },
            "type": "object",
            "properties": {"p": {"$ref": "#/$defs/pt"}},
            "required": ["p"],
        },
        {"anyOf": [{"type": "null"}, {"type": "object", "properties": {"k": {"const": "v"}}, "required": ["k"]}]},
        {
            "type": "object",
            "properties": {"when": {"type": "string", "format": "date-time"}, "mode": {"enum": ["a", "b"]}},
            "required": ["when", "mode"],
        },
        {
            "allOf": [
                {"type": "object", "properties": {"a": {"type": "boolean"}}, "required": ["a"]},
                {"properties": {"b": {"type": ["integer", "null"]}}, "required": ["b"]},
            ]
        },
    ],
)
def test_repair_and_instance_for_produce_valid_values(schema):
    from parity.emulator.schema_instance import instance_for, repair

    jsonschema.validate(instance_for(schema), schema)
    for broken in (None, "text", {"unrelated": 1}, {"n": "three", "xs": [1], "p": {"x": -1}}, [1, 2]):
        jsonschema.validate(repair(broken, schema), schema)
    partial = repair({"mode": "b", "when": 5}, schema) if "mode" in str(schema) else None
    if partial is not None:
        assert partial["mode"] == "b"  # the valid part survives


def test_simulated_latency_is_waited_and_spread_over_the_stream(brain, clock, monkeypatch):
    import parity.emulator.server as server

    slept: list[float] = []
    real_sleep = server.asyncio.sleep

    async def record(seconds: float) -> None:
        slept.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(server.asyncio, "sleep", record)
    emulator = Emulator(brain=brain, clock=clock, sleep_latency=True)
    brain.always(text_reply("a b c d e f g h i j k l m n o p", latency_s=0.8))
    with emulator.client() as sdk:
        sdk.messages.create(model=MODEL, max_tokens=100, messages=USER)
        assert slept == [0.8]
        slept.clear()
        with sdk.messages.stream(model=MODEL, max_tokens=100, messages=USER) as stream:
            stream.get_final_message()
    assert len(slept) > 1 and sum(slept) == pytest.approx(0.8)
