"""Validation: the documented 4xx envelope, status, error type and message for malformed requests (reference §1-§2,
§5, §7)."""

from __future__ import annotations

import json

import anthropic
import pytest

from parity.emulator.service import Emulator

from .conftest import MODEL, USER, headers, text_reply

BASE = {"model": MODEL, "max_tokens": 64, "messages": USER}


def bad_request(client, **params) -> str:
    """Create with `params`; must be a BadRequestError. Returns the API's message."""
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(**params)
    body = info.value.body
    assert info.value.status_code == 400
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert body["request_id"].startswith("req_") and body["request_id"] == info.value.request_id
    return body["error"]["message"]


def envelope(response, status: int, error_type: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == error_type
    assert body["request_id"] == response.headers["request-id"]
    return body["error"]["message"]


# ---- top-level fields ------------------------------------------------------------------------------------------


def test_missing_required_fields(raw):
    for missing in ("model", "max_tokens", "messages"):
        body = {k: v for k, v in BASE.items() if k != missing}
        response = raw.post("/v1/messages", json=body, headers=headers())
        assert envelope(response, 400, "invalid_request_error") == f"{missing}: Field required"


def test_unknown_top_level_field(client):
    message = bad_request(client, **BASE, extra_body={"frobnicate": True})
    assert message == "frobnicate: Extra inputs are not permitted"


def test_temperature_rejected_under_2026_10_21_even_at_default(client):
    assert bad_request(client, **BASE, extra_body={"temperature": 1.0}) == "temperature: Extra inputs are not permitted"
    assert bad_request(client, **BASE, extra_body={"top_k": 5}) == "top_k: Extra inputs are not permitted"


def test_sampling_params_accepted_and_range_checked_under_2023_06_01(raw):
    body = {**BASE, "temperature": 0.2, "top_p": 0.9, "top_k": 40}
    ok = raw.post("/v1/messages", json=body, headers=headers("2023-06-01", x_api_key="sk-old"))
    assert ok.status_code == 200, ok.text
    too_hot = raw.post("/v1/messages", json={**BASE, "temperature": 1.5}, headers=headers("2023-06-01"))
    assert envelope(too_hot, 400, "invalid_request_error") == "temperature: Input should be less than or equal to 1"
    new = raw.post("/v1/messages", json={**BASE, "temperature": 0.2}, headers=headers("2026-10-21"))
    assert envelope(new, 400, "invalid_request_error") == "temperature: Extra inputs are not permitted"


def test_type_errors_name_the_field(client):
    assert (
        bad_request(client, model=MODEL, max_tokens="ten", messages=USER, timeout=60)
        == "max_tokens: Input should be a valid integer"
    )
    assert bad_request(client, model=MODEL, max_tokens=-1, messages=USER) == (
        "max_tokens: Input should be greater than or equal to 0"
    )
    assert bad_request(client, model=MODEL, max_tokens=10, messages=[]) == "messages: at least one message is required"
    assert (
        bad_request(client, **BASE, stop_sequences=["  "])
        == "stop_sequences: each stop sequence must contain non-whitespace"
    )
    assert bad_request(client, **BASE, metadata={"user_id": 5}) == "metadata.user_id: Input should be a valid string"


def test_max_tokens_above_the_model_ceiling(client):
    message = bad_request(client, model=MODEL, max_tokens=500_000, messages=USER, timeout=60)
    assert (
        message
        == "max_tokens: 500000 > 128000, which is the maximum allowed number of output tokens for claude-opus-4-8"
    )


def test_unknown_and_retired_models_are_404(client):
    for model in ("claude-nonexistent-9", "claude-3-5-haiku-latest"):
        with pytest.raises(anthropic.NotFoundError) as info:
            client.messages.create(model=model, max_tokens=10, messages=USER)
        assert info.value.body["error"] == {"type": "not_found_error", "message": f"model: {model}", "details": None}


def test_dated_alias_is_accepted_and_echoed(client):
    message = client.messages.create(model="claude-haiku-4-5-20251001", max_tokens=20, messages=USER)
    assert message.model == "claude-haiku-4-5-20251001"


# ---- messages and content blocks -------------------------------------------------------------------------------


def test_message_shapes(client):
    assert bad_request(client, model=MODEL, max_tokens=10, messages=[{"role": "robot", "content": "hi"}]) == (
        "messages.0.role: Input should be 'user', 'assistant' or 'system'"
    )
    assert (
        bad_request(client, model=MODEL, max_tokens=10, messages=[{"role": "user"}])
        == "messages.0.content: Field required"
    )
    assert bad_request(client, model=MODEL, max_tokens=10, messages=[{"role": "user", "content": ""}]) == (
        "messages.0: all messages must have non-empty content except for the optional final assistant message"
    )
    empty_text = [{"role": "user", "content": [{"type": "text", "text": ""}]}]
    assert bad_request(client, model=MODEL, max_tokens=10, messages=empty_text) == (
        "messages.0.content.0.text: text content blocks must be non-empty"
    )
    unknown = [{"role": "user", "content": [{"type": "hologram", "data": "x"}]}]
    assert bad_request(client, model=MODEL, max_tokens=10, messages=unknown).startswith(
        "messages.0.content.0: Input tag 'hologram' found using 'type' does not match any of the expected tags"
    )
    bad_image = [
        {
            "role": "user",
            "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/bmp", "data": "AA"}}],
        }
    ]
    assert bad_request(client, model=MODEL, max_tokens=10, messages=bad_image).startswith(
        "messages.0.content.0.source.media_type: Input should be 'image/jpeg'"
    )


def test_tool_result_needs_a_tool_use_in_the_previous_turn(client):
    messages = [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "content": "42"}]}]
    message = bad_request(client, model=MODEL, max_tokens=10, messages=messages)
    assert message.startswith("messages.0.content.0: unexpected `tool_use_id` found in `tool_result` blocks: toolu_x.")


def test_tool_use_needs_a_tool_result_in_the_next_turn(client):
    messages = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_a", "name": "w", "input": {}}]},
        {"role": "user", "content": "never mind"},
    ]
    message = bad_request(client, model=MODEL, max_tokens=10, messages=messages)
    assert message.startswith(
        "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_a."
    )


def test_a_complete_tool_round_trip_is_accepted(client):
    tools = [{"name": "w", "description": "weather", "input_schema": {"type": "object", "properties": {}}}]
    messages = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_a", "name": "w", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_a", "content": "sunny"}]},
    ]
    assert client.messages.create(model=MODEL, max_tokens=20, messages=messages, tools=tools).type == "message"


def test_prefill_is_refused_on_4_6_plus_and_accepted_before(client):
    prefill = [*USER, {"role": "assistant", "content": "The answer is"}]
    assert bad_request(client, model=MODEL, max_tokens=10, messages=prefill) == (
        "This model does not support assistant message prefill. The conversation must end with a user message."
    )
    assert client.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=prefill).type == "message"


def test_2026_10_21_rejects_assistant_documents_and_user_citations(client, raw):
    doc = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "spec"}}
    messages = [*USER, {"role": "assistant", "content": [doc]}, {"role": "user", "content": "go on"}]
    assert bad_request(client, model=MODEL, max_tokens=10, messages=messages).startswith(
        "messages.1.content.0: document blocks are not accepted in assistant messages"
    )
    old = raw.post(
        "/v1/messages", json={"model": MODEL, "max_tokens": 10, "messages": messages}, headers=headers("2023-06-01")
    )
    assert old.status_code == 200, old.text
    cited = [{"role": "user", "content": [{"type": "text", "text": "x", "citations": [{"type": "char_location"}]}]}]
    assert bad_request(client, model=MODEL, max_tokens=10, messages=cited).startswith(
        "messages.0.content.0.citations: text blocks with citations are not accepted in user messages"
    )


# ---- tools, tool_choice, thinking ------------------------------------------------------------------------------


def test_tool_definitions(client):
    schema = {"type": "object", "properties": {}}
    assert bad_request(client, **BASE, tools=[{"name": "has space", "input_schema": schema}]).startswith(
        "tools.0.name: String should match pattern"
    )
    assert bad_request(client, **BASE, tools=[{"name": "f", "input_schema": {"type": "array"}}]) == (
        "tools.0.input_schema.type: Input should be 'object'"
    )
    assert bad_request(client, **BASE, tools=[{"name": "f", "input_schema": schema}] * 2).startswith(
        "tools: Tool names must be unique."
    )
    assert bad_request(client, **BASE, tool_choice={"type": "any"}) == (
        "tool_choice: tool_choice may only be specified while providing tools."
    )
    assert (
        bad_request(client, **BASE, tools=[{"name": "f", "input_schema": schema}], tool_choice={"type": "tool"})
        == "tool_choice.tool.name: Field required"
    )


def test_thinking_types_per_model(client):
    assert bad_request(client, **BASE, thinking={"type": "enabled", "budget_tokens": 2048}).startswith(
        '"thinking.type.enabled" is not supported for this model.'
    )
    haiku = {**BASE, "model": "claude-haiku-4-5", "max_tokens": 4096}
    assert (
        bad_request(client, **haiku, thinking={"type": "adaptive"})
        == "adaptive thinking is not supported on this model"
    )
    assert bad_request(client, **haiku, thinking={"type": "enabled", "budget_tokens": 100}) == (
        "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
    )
    assert bad_request(
        client, **{**haiku, "max_tokens": 2000}, thinking={"type": "enabled", "budget_tokens": 2048}
    ).startswith("max_tokens must be greater than thinking.budget_tokens.")
    ok = client.messages.create(**haiku, thinking={"type": "enabled", "budget_tokens": 2048})
    assert ok.type == "message"
    assert client.messages.create(**BASE, thinking={"type": "adaptive"}).type == "message"


def test_cache_control_shape(client):
    system = [{"type": "text", "text": "sys", "cache_control": {"type": "persistent"}}]
    assert bad_request(client, **BASE, system=system) == "system.0.cache_control.type: Input should be 'ephemeral'"
    system = [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral", "ttl": "2h"}}]
    assert bad_request(client, **BASE, system=system) == "system.0.cache_control.ttl: Input should be '5m' or '1h'"


def test_output_config(client):
    assert bad_request(client, **BASE, output_config={"effort": "extreme"}).startswith(
        "output_config.effort: Input should be"
    )
    fmt = {"type": "json_schema", "schema": {"type": "object", "properties": {"a": {"type": 5}}}}
    assert bad_request(client, **BASE, output_config={"format": fmt}).startswith(
        "output_config.format.schema: not a valid JSON Schema"
    )


def test_prewarm_rejections(client):
    tools = [{"name": "f", "input_schema": {"type": "object"}}]
    fmt = {"type": "json_schema", "schema": {"type": "object"}}
    cases = [
        dict(tools=tools, tool_choice={"type": "any"}),
        dict(output_config={"format": fmt}),
    ]
    for extra in cases:
        assert bad_request(client, model=MODEL, max_tokens=0, messages=USER, **extra).startswith(
            "max_tokens: max_tokens=0 (cache pre-warming) cannot be combined with"
        )
    with pytest.raises(anthropic.BadRequestError, match="cache pre-warming"):
        client.messages.create(model=MODEL, max_tokens=0, messages=USER, stream=True)
    haiku = dict(
        model="claude-haiku-4-5", max_tokens=0, messages=USER, thinking={"type": "enabled", "budget_tokens": 1024}
    )
    assert bad_request(client, **haiku).startswith(
        "max_tokens: max_tokens=0 (cache pre-warming) cannot be combined with thinking"
    )


def test_count_tokens_validation(client):
    with pytest.raises(anthropic.BadRequestError, match="max_tokens: Extra inputs are not permitted"):
        client.messages.count_tokens(model=MODEL, messages=USER, extra_body={"max_tokens": 10})
    with pytest.raises(anthropic.NotFoundError, match="model: claude-nope"):
        client.messages.count_tokens(model="claude-nope", messages=USER)
    with pytest.raises(anthropic.BadRequestError, match="messages: at least one message is required"):
        client.messages.count_tokens(model=MODEL, messages=[])


# ---- headers, auth, body ---------------------------------------------------------------------------------------


def test_auth_header_forms(raw):
    body = json.dumps(BASE)
    assert raw.post("/v1/messages", content=body, headers=headers(x_api_key="k")).status_code == 200
    assert raw.post("/v1/messages", content=body, headers=headers()).status_code == 200
    none = {"anthropic-version": "2026-10-21", "content-type": "application/json"}
    assert envelope(raw.post("/v1/messages", content=body, headers=none), 401, "authentication_error").startswith(
        "x-api-key header is required"
    )


def test_configured_keys_and_x_api_key_precedence(brain, clock):
    import httpx2

    emulator = Emulator(brain=brain, clock=clock, api_keys=["sk-good"])
    with httpx2.Client(transport=emulator.transport(), base_url="http://emulator.local") as http:
        both_good_first = {**headers(x_api_key="sk-good"), "authorization": "Bearer sk-bad"}
        assert http.post("/v1/messages", json=BASE, headers=both_good_first).status_code == 200
        both_bad_first = {**headers(x_api_key="sk-bad"), "authorization": "Bearer sk-good"}
        assert (
            envelope(http.post("/v1/messages", json=BASE, headers=both_bad_first), 401, "authentication_error")
            == "invalid x-api-key"
        )
    with emulator.client(api_key="sk-wrong", max_retries=0) as sdk, pytest.raises(anthropic.AuthenticationError):
        sdk.messages.create(**BASE)
    with emulator.client(api_key="sk-good") as sdk:
        assert sdk.messages.create(**BASE).type == "message"


def test_version_header(raw):
    no_version = {"x-api-key": "k", "content-type": "application/json"}
    assert envelope(raw.post("/v1/messages", json=BASE, headers=no_version), 400, "invalid_request_error") == (
        "anthropic-version: header is required"
    )
    message = envelope(raw.post("/v1/messages", json=BASE, headers=headers("2099-01-01")), 400, "invalid_request_error")
    assert message.startswith("anthropic-version: '2099-01-01' is not a valid version")


def test_unknown_beta(client, raw):
    response = raw.post(
        "/v1/messages", json=BASE, headers=headers(anthropic_beta="prompt-caching-2024-07-31, nope-2099")
    )
    assert envelope(response, 400, "invalid_request_error") == "Unsupported beta header: nope-2099"
    ok = raw.post("/v1/messages", json=BASE, headers=headers(anthropic_beta="extended-cache-ttl-2025-04-11"))
    assert ok.status_code == 200
    with pytest.raises(anthropic.BadRequestError, match="Unsupported beta header: made-up-beta"):
        client.beta.messages.create(**BASE, betas=["made-up-beta"])


def test_old_sdk_style_with_beta_query(raw, brain):
    brain.then(text_reply("Hi from the past"))
    response = raw.post(
        "/v1/messages?beta=true",
        json={**BASE, "temperature": 0.5},
        headers=headers("2023-06-01", x_api_key="sk-old", anthropic_beta="prompt-caching-2024-07-31"),
    )
    assert response.status_code == 200, response.text
    assert response.json()["content"][0]["text"] == "Hi from the past"
    counted = raw.post(
        "/v1/messages/count_tokens?beta=true",
        json={"model": MODEL, "messages": USER},
        headers=headers("2023-06-01", x_api_key="k", anthropic_beta="token-counting-2024-11-01"),
    )
    assert counted.status_code == 200 and counted.json()["input_tokens"] > 0


def test_body_not_json_and_too_large(raw):
    garbage = raw.post("/v1/messages", content=b"{not json", headers=headers())
    assert envelope(garbage, 400, "invalid_request_error").startswith("The request body is not valid JSON")
    array = raw.post("/v1/messages", content=b"[1, 2]", headers=headers())
    assert envelope(array, 400, "invalid_request_error").startswith("body: Input should be a valid dictionary")
    huge = b'{"pad": "' + b"x" * (32 * 1024 * 1024) + b'"}'
    response = raw.post("/v1/messages", content=huge, headers=headers())
    assert envelope(response, 413, "request_too_large").startswith(
        "Request exceeds the maximum allowed number of bytes"
    )


def test_unknown_path_and_wrong_method_get_the_envelope(raw):
    assert envelope(raw.get("/v1/nothing", headers=headers()), 404, "not_found_error").startswith("Not found")
    assert envelope(raw.get("/v1/messages", headers=headers()), 405, "invalid_request_error").startswith(
        "Method GET is not allowed"
    )


def test_sdk_error_classes_carry_request_id(client):
    with pytest.raises(anthropic.NotFoundError) as info:
        client.models.retrieve("claude-nope")
    assert info.value.request_id.startswith("req_")
    assert info.value.type == "not_found_error"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK warns that sonnet-4-5 is deprecated
def test_prompt_longer_than_the_context_window(client):
    long_text = "word " * 210_000
    message = bad_request(
        client, model="claude-sonnet-4-5", max_tokens=10, messages=[{"role": "user", "content": long_text}]
    )
    assert message.startswith("prompt is too long: ") and message.endswith("> 200000 maximum")
    ok = client.beta.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=10,
        betas=["context-1m-2025-08-07"],
        messages=[{"role": "user", "content": long_text}],
    )
    assert ok.usage.input_tokens > 200_000
