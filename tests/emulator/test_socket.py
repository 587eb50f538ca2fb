"""The emulator served by uvicorn on a real socket, used exactly as a user would: the SDK pointed at it by base_url."""

from __future__ import annotations

import anthropic
import httpx
import httpx2
import pytest

from parity.emulator.clock import ManualClock
from parity.emulator.faults import FaultSchedule
from parity.emulator.service import Emulator

from servers import start_serve, uvicorn_on_socket

from .conftest import MODEL, USER, ScriptBrain, text_reply, tool_reply


@pytest.fixture(scope="module")
def served():
    brain = ScriptBrain()
    emulator = Emulator(brain=brain, clock=ManualClock(), faults=FaultSchedule(stall_s=0.05, timeout_s=0.05))
    emulator.batches.processing_s = "instant"
    with uvicorn_on_socket(emulator.app(), lifespan="off") as base_url:
        yield emulator, brain, base_url


@pytest.fixture
def sdk(served):
    emulator, brain, base_url = served
    brain.script.clear()
    brain.always(lambda request: text_reply(f"Echo: {request.last_user_text}"))
    with anthropic.Anthropic(base_url=base_url, api_key="sk-anything", max_retries=0) as client:
        yield client


def test_create_and_headers(sdk, served):
    raw = sdk.messages.with_raw_response.create(model=MODEL, max_tokens=50, messages=USER)
    message = raw.parse()
    assert message.content[0].text == "Echo: Hello there" and message.id.startswith("msg_")
    assert raw.http_response.headers["request-id"] == message._request_id
    assert "anthropic-ratelimit-requests-remaining" in raw.http_response.headers


def test_tool_use_over_the_socket(sdk, served):
    served[1].then(tool_reply("f", {"x": 1}))
    tools = [{"name": "f", "input_schema": {"type": "object", "properties": {"x": {"type": "integer"}}}}]
    message = sdk.messages.create(model=MODEL, max_tokens=50, messages=USER, tools=tools)
    assert message.stop_reason == "tool_use" and message.content[0].input == {"x": 1}


def test_stream_over_the_socket(sdk, served):
    served[1].always(text_reply("streaming over a real socket, chunk by chunk"))
    with sdk.messages.stream(model=MODEL, max_tokens=50, messages=USER) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 1 and "".join(pieces) == final.content[0].text
    assert final.usage.cache_read_input_tokens == 0 and final.usage.output_tokens > 0


def test_count_tokens_and_models(sdk):
    assert sdk.messages.count_tokens(model=MODEL, messages=USER).input_tokens > 0
    models = list(sdk.models.list(limit=2))
    assert len(models) > 2 and models[0].type == "model"
    assert sdk.models.retrieve("claude-opus-4-8").id == "claude-opus-4-8"


def test_environment_variables_point_the_sdk_at_the_emulator(served, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_BASE_URL", served[2])
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-from-env")
    with anthropic.Anthropic() as client:
        assert client.messages.create(model=MODEL, max_tokens=10, messages=USER).type == "message"


def test_batches_over_the_socket(sdk):
    batch = sdk.messages.batches.create(
        requests=[
            {"custom_id": "a", "params": {"model": MODEL, "max_tokens": 20, "messages": USER}},
            {"custom_id": "b", "params": {"model": "claude-nope", "max_tokens": 20, "messages": USER}},
        ]
    )
    assert batch.id.startswith("msgbatch_")
    ended = sdk.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended" and ended.results_url.startswith(str(sdk.base_url).rstrip("/"))
    results = {r.custom_id: r.result for r in sdk.messages.batches.results(batch.id)}
    assert results["a"].type == "succeeded" and results["a"].message.usage.service_tier == "batch"
    assert results["b"].type == "errored" and results["b"].error.error.type == "not_found_error"


def test_errors_map_to_sdk_classes(sdk, served):
    with pytest.raises(anthropic.NotFoundError):
        sdk.messages.create(model="claude-nope", max_tokens=10, messages=USER)
    with pytest.raises(anthropic.BadRequestError, match="messages: at least one message is required"):
        sdk.messages.create(model=MODEL, max_tokens=10, messages=[])
    with pytest.raises(anthropic.OverloadedError):
        sdk.messages.create(model=MODEL, max_tokens=10, messages=USER, extra_headers={"x-emulator-fault": "overloaded"})
    with pytest.raises(anthropic.GatewayTimeoutError):
        sdk.messages.create(model=MODEL, max_tokens=10, messages=USER, extra_headers={"x-emulator-fault": "timeout"})
    missing = httpx.post(
        f"{served[2]}/v1/messages",
        json={"model": MODEL, "max_tokens": 5, "messages": USER},
        headers={"anthropic-version": "2026-10-21"},
    )
    assert missing.status_code == 401 and missing.json()["error"]["type"] == "authentication_error"


def test_older_header_style_with_raw_httpx(served):
    base = served[2]
    old = {"X-Api-Key": "sk-old", "anthropic-version": "2023-06-01", "anthropic-beta": "prompt-caching-2024-07-31"}
    body = {"model": "claude-haiku-4-5", "max_tokens": 20, "messages": USER, "temperature": 0.3}
    response = httpx.post(f"{base}/v1/messages?beta=true", json=body, headers=old)
    assert response.status_code == 200, response.text
    assert response.json()["type"] == "message" and response.headers["request-id"].startswith("req_")
    new = httpx.post(f"{base}/v1/messages", json=body, headers={**old, "anthropic-version": "2026-10-21"})
    assert new.status_code == 400 and new.json()["error"]["message"] == "temperature: Extra inputs are not permitted"


def test_cut_stream_over_the_socket_is_a_broken_connection(sdk, served):
    served[1].always(text_reply(" ".join(["word"] * 80)))
    seen = []
    with pytest.raises((httpx2.RemoteProtocolError, anthropic.APIConnectionError)):
        with sdk.messages.stream(
            model=MODEL, max_tokens=200, messages=USER, extra_headers={"x-emulator-fault": "cut_stream"}
        ) as stream:
            for event in stream:
                seen.append(event.type)
    assert seen[0] == "message_start" and "message_stop" not in seen
    # the server is still healthy afterwards
    assert sdk.messages.create(model=MODEL, max_tokens=10, messages=USER).type == "message"


def test_malformed_json_over_the_socket(served):
    response = httpx.post(
        f"{served[2]}/v1/messages",
        json={"model": MODEL, "max_tokens": 5, "messages": USER},
        headers={"x-api-key": "k", "anthropic-version": "2026-10-21", "x-emulator-fault": "malformed_json"},
    )
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()


def test_python_dash_m_parity_emulate_serves_the_sdk(tmp_path):
    """The documented command, end to end: `python -m parity emulate --port N`, then the SDK by base_url."""
    process, base_url = start_serve(["--faults", "overloaded=0.0", "--api-key", "sk-cli"], cwd=tmp_path,
                                    ready_path="/", timeout_s=30, command="emulate")
    try:
        with anthropic.Anthropic(base_url=base_url, api_key="sk-cli", max_retries=0) as client:
            message = client.messages.create(
                model="claude-haiku-4-5", max_tokens=50, messages=[{"role": "user", "content": "Say hi"}]
            )
            assert message.type == "message" and message.usage.output_tokens >= 1
        with anthropic.Anthropic(base_url=base_url, api_key="sk-wrong", max_retries=0) as client:
            with pytest.raises(anthropic.AuthenticationError):
                client.models.list()
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=10)
    assert f"ANTHROPIC_BASE_URL={base_url}" in output
