"""Property: whatever arrives (garbage bytes, random JSON, almost-valid requests), the answer is never a 500, and every
error is the documented envelope (reference §5.1). Requests go through the real ASGI app in-process."""

from __future__ import annotations

import json

import httpx2
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from parity.emulator.clock import ManualClock
from parity.emulator.faults import FaultSchedule
from parity.emulator.service import Emulator
from parity.emulator.validation import BLOCK_TYPES

from .conftest import ScriptBrain

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_EMULATOR = Emulator(brain=ScriptBrain(), clock=ManualClock(), faults=FaultSchedule())
_EMULATOR.batches.processing_s = "instant"
_HTTP = httpx2.Client(transport=_EMULATOR.transport(), base_url="http://emulator.local", timeout=30)

HEADERS = {"authorization": "Bearer sk-fuzz", "anthropic-version": "2026-10-21", "content-type": "application/json"}
ENDPOINTS = [
    ("POST", "/v1/messages"),
    ("POST", "/v1/messages/count_tokens"),
    ("POST", "/v1/messages/batches"),
    ("GET", "/v1/messages/batches"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/claude-opus-4-8"),
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=16,
)
keys = st.sampled_from(
    [
        "type",
        "text",
        "source",
        "id",
        "name",
        "input",
        "tool_use_id",
        "content",
        "cache_control",
        "citations",
        "thinking",
        "signature",
        "data",
        "is_error",
        "title",
        "media_type",
        "url",
        "ttl",
        "budget_tokens",
    ]
)
blocks = st.one_of(
    st.builds(
        lambda kind, extra: {"type": kind, **extra},
        st.sampled_from([*BLOCK_TYPES, "bogus"]),
        st.dictionaries(keys, json_values | st.text(max_size=20), max_size=4),
    ),
    json_values,
)


def mostly(valid: st.SearchStrategy, junk: st.SearchStrategy) -> st.SearchStrategy:
    """`valid` about five times in six, else `junk` (one_of's own branch choice is far from uniform)."""
    return st.integers(min_value=0, max_value=5).flatmap(lambda n: junk if n == 0 else valid)


nonempty = st.text(min_size=1, max_size=40).filter(str.strip)
cache_controls = st.sampled_from(
    [{"type": "ephemeral"}, {"type": "ephemeral", "ttl": "1h"}, {"type": "ephemeral", "ttl": "5m"}]
)
text_blocks = st.builds(
    lambda text, cc: {"type": "text", "text": text, **({"cache_control": cc} if cc else {})},
    nonempty,
    st.none() | cache_controls,
)
valid_messages = st.lists(st.lists(text_blocks, min_size=1, max_size=3) | nonempty, min_size=1, max_size=5).map(
    lambda contents: [
        {"role": ("user", "assistant")[(len(contents) - 1 - i) % 2], "content": c} for i, c in enumerate(contents)
    ]
)
messages = mostly(
    valid_messages,
    st.lists(
        st.fixed_dictionaries(
            {
                "role": st.sampled_from(["user", "assistant", "system"]) | json_values,
                "content": st.text(max_size=30) | st.lists(blocks, max_size=3) | json_values,
            }
        )
        | json_values,
        max_size=4,
    ),
)
TOOL = {"name": "f", "input_schema": {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}}
SCHEMA = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"], "additionalProperties": False}
valid_fields = {
    "system": nonempty | st.lists(text_blocks, min_size=1, max_size=3),
    "tools": st.just([TOOL]),
    "tool_choice": st.sampled_from(
        [{"type": "auto"}, {"type": "any"}, {"type": "none"}, {"type": "tool", "name": "f"}]
    ),
    "thinking": st.sampled_from(
        [{"type": "adaptive"}, {"type": "disabled"}, {"type": "enabled", "budget_tokens": 1024}]
    ),
    "stop_sequences": st.lists(nonempty, max_size=3),
    "cache_control": cache_controls,
    "output_config": st.sampled_from([{"effort": "high"}, {"format": {"type": "json_schema", "schema": SCHEMA}}]),
    "metadata": st.builds(lambda u: {"user_id": u}, st.text(max_size=20)),
    "stream": st.booleans(),
    "diagnostics": st.sampled_from([{"previous_message_id": None}, {"previous_message_id": "msg_x"}]),
    "speed": st.sampled_from(["standard", "fast"]),
    "inference_geo": st.sampled_from(["global", "us"]),
}
good_field = st.sampled_from(sorted(valid_fields)).flatmap(
    lambda k: st.tuples(st.just(k), mostly(valid_fields[k], json_values))
)
bad_field = st.tuples(st.sampled_from(["temperature", "container", "service_tier", "bogus"]), json_values)
optional_fields = st.lists(mostly(good_field, bad_field), max_size=4).map(dict)
models = st.sampled_from(["claude-opus-4-8", "claude-haiku-4-5", "claude-sonnet-4-6"])
budgets = st.integers(min_value=0, max_value=3000)
almost_valid = st.builds(
    lambda model, max_tokens, msgs, extra: {"model": model, "max_tokens": max_tokens, "messages": msgs, **extra},
    mostly(models, st.just("claude-nope") | json_values),
    mostly(budgets, st.integers(min_value=-5, max_value=200_000) | json_values),
    messages,
    optional_fields,
)


def check(method: str, path: str, content: bytes, headers: dict[str, str] = HEADERS) -> None:
    response = _HTTP.request(method, path, content=content if method != "GET" else None, headers=headers)
    body = response.read()
    event(f"status {response.status_code}")
    assert response.status_code != 500 and response.status_code < 500, (response.status_code, body[:500], content[:300])
    assert response.headers["request-id"].startswith("req_")
    if response.status_code >= 400:
        envelope = json.loads(body)
        assert envelope["type"] == "error" and set(envelope["error"]) >= {"type", "message"}
        assert (
            isinstance(envelope["error"]["message"], str) and envelope["request_id"] == response.headers["request-id"]
        )


@SETTINGS
@given(endpoint=st.sampled_from(ENDPOINTS), content=st.binary(max_size=200))
def test_garbage_bytes(endpoint, content):
    check(*endpoint, content)


@SETTINGS
@given(endpoint=st.sampled_from(ENDPOINTS), value=json_values)
def test_random_json(endpoint, value):
    check(*endpoint, json.dumps(value).encode())


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(["/v1/messages", "/v1/messages/count_tokens"]), body=almost_valid)
def test_almost_valid_requests(path, body):
    check("POST", path, json.dumps(body).encode())


_SIMULATED = Emulator(clock=ManualClock())  # the default brain: SimulatedBrain
_SIMULATED_HTTP = httpx2.Client(transport=_SIMULATED.transport(), base_url="http://emulator.local", timeout=30)


@SETTINGS
@given(body=almost_valid)
def test_almost_valid_requests_to_the_simulated_brain(body):
    response = _SIMULATED_HTTP.post("/v1/messages", json=body, headers=HEADERS)
    response.read()
    event(f"status {response.status_code}")
    assert response.status_code < 500, (response.status_code, response.text[:500], body)


@SETTINGS
@given(
    body=st.lists(
        st.fixed_dictionaries({"custom_id": st.text(max_size=8) | json_values, "params": almost_valid}), max_size=3
    )
)
def test_batches_of_almost_valid_requests(body):
    response = _HTTP.post("/v1/messages/batches", json={"requests": body}, headers=HEADERS)
    assert response.status_code < 500
    if response.status_code == 200:
        batch_id = response.json()["id"]
        results = _HTTP.get(f"/v1/messages/batches/{batch_id}/results", headers=HEADERS)
        assert results.status_code == 200
        for line in results.text.splitlines():
            result = json.loads(line)["result"]
            if result["type"] == "errored":
                assert result["error"]["error"]["type"] != "api_error", result


@SETTINGS
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
    path=st.sampled_from(["/v1/messages", "/v1/models", "/v1/messages/batches/msgbatch_x", "/v1/x", "/"])
    | st.text(alphabet="abcdefghijklmnopqrstuvwxyz/_-.0123456789", max_size=30).map(lambda p: "/" + p),
    version=st.sampled_from(["2026-10-21", "2023-06-01", "", "garbage"]),
    beta=st.sampled_from(["", "prompt-caching-2024-07-31", "nope", ",,,"]),
    key=st.sampled_from(["x-api-key", "authorization", None]),
)
def test_any_method_path_and_headers(method, path, version, beta, key):
    headers = {"anthropic-version": version, "anthropic-beta": beta}
    if key == "x-api-key":
        headers["x-api-key"] = "k"
    elif key == "authorization":
        headers["authorization"] = "Bearer k"
    check(method, path, b"{}", headers)
