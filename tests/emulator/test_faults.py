"""Faults on demand (header) and by schedule, as the SDK experiences them: status, class, retries, cuts and stalls."""

from __future__ import annotations

import random

import anthropic
import httpx2
import pytest

from parity.api.errors import APIError
from parity.emulator.faults import FAULT_KINDS, Fault, FaultSchedule, parse_rates, requested_fault
from parity.emulator.service import Emulator
from parity.errors import InputError

from .conftest import MODEL, USER, headers, text_reply

PARAMS = dict(model=MODEL, max_tokens=100, messages=USER)


def fault(kind: str, **more: str) -> dict[str, str]:
    return {"x-emulator-fault": kind, **more}


# ---- the schedule ----------------------------------------------------------------------------------------------


def test_parse_rates():
    assert parse_rates("overloaded=0.02, rate_limit=0.01") == {"overloaded": 0.02, "rate_limit": 0.01}
    assert parse_rates({"server_error": 0.5}) == {"server_error": 0.5}
    for bad in ("overloaded", "meteor=0.1", "overloaded=abc", "overloaded=1.5", "overloaded=0.7,rate_limit=0.6"):
        with pytest.raises(InputError):
            parse_rates(bad)


def test_schedule_is_deterministic_and_hits_its_rates():
    def draws(seed: int) -> list[str | None]:
        schedule = FaultSchedule("overloaded=0.2,rate_limit=0.1", seed=seed)
        return [(f.kind if (f := schedule.draw()) else None) for _ in range(2000)]

    first = draws(7)
    assert first == draws(7) and first != draws(8)
    assert 0.17 < first.count("overloaded") / 2000 < 0.23
    assert 0.08 < first.count("rate_limit") / 2000 < 0.12
    assert FaultSchedule().draw() is None


def test_requested_fault_header():
    assert requested_fault({}) is None
    assert requested_fault({"x-emulator-fault": "cut_stream", "x-emulator-fault-after": "7"}) == Fault(
        "cut_stream", "header", 7
    )
    with pytest.raises(APIError, match="unknown fault 'meteor'"):
        requested_fault({"x-emulator-fault": "meteor"})
    with pytest.raises(APIError, match="x-emulator-fault-after"):
        requested_fault({"x-emulator-fault": "stall", "x-emulator-fault-after": "soon"})


# ---- header faults: exactly one failure, no retry --------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, cls, status",
    [
        ("rate_limit", anthropic.RateLimitError, 429),
        ("server_error", anthropic.InternalServerError, 500),
        ("overloaded", anthropic.OverloadedError, 529),
    ],
)
def test_header_status_faults_are_single_shot(emulator, brain, kind, cls, status):
    with emulator.client(max_retries=2) as sdk:
        with pytest.raises(cls) as info:
            sdk.messages.create(**PARAMS, extra_headers=fault(kind))
    error = info.value
    assert error.status_code == status and error.response.headers["x-should-retry"] == "false"
    assert error.body["type"] == "error" and error.request_id.startswith("req_")
    assert brain.requests == []  # the brain was never asked
    assert emulator.faults.counts == {kind: 1}  # one attempt only
    if kind == "rate_limit":
        assert int(error.response.headers["retry-after"]) >= 1 and "retry-after-ms" in error.response.headers


def test_header_faults_apply_to_other_endpoints(client):
    with pytest.raises(anthropic.OverloadedError):
        client.models.list(extra_headers=fault("overloaded"))
    with pytest.raises(anthropic.RateLimitError):
        client.messages.count_tokens(model=MODEL, messages=USER, extra_headers=fault("rate_limit"))


def test_unknown_fault_name_is_a_400(client):
    with pytest.raises(anthropic.BadRequestError, match="x-emulator-fault: unknown fault"):
        client.messages.create(**PARAMS, extra_headers=fault("meteor"))


# ---- scheduled faults: retried like the real API -------------------------------------------------------------


def _seed_fault_then_ok(rate: float) -> int:
    """A seed whose first draw is below `rate` (a fault) and whose second is not."""
    for seed in range(1000):
        r = random.Random(seed)
        if r.random() < rate <= r.random():
            return seed
    raise AssertionError("no seed found")


@pytest.mark.parametrize("kind", ["overloaded", "rate_limit", "server_error"])
def test_scheduled_fault_is_retried_then_succeeds(brain, clock, kind):
    schedule = FaultSchedule({kind: 0.5}, seed=_seed_fault_then_ok(0.5), retry_after_ms=1)
    emulator = Emulator(brain=brain, clock=clock, faults=schedule)
    brain.always(text_reply("made it"))
    with emulator.client(max_retries=2) as sdk:
        raw = sdk.messages.with_raw_response.create(**PARAMS)
    assert raw.parse().content[0].text == "made it"
    assert raw.retries_taken == 1
    assert schedule.counts == {kind: 1} and schedule.counts_by_source() == {"schedule": {kind: 1}}
    assert len(brain.requests) == 1


def test_scheduled_faults_exhaust_retries(brain, clock):
    schedule = FaultSchedule({"overloaded": 1.0}, retry_after_ms=1)
    emulator = Emulator(brain=brain, clock=clock, faults=schedule)
    with emulator.client(max_retries=2) as sdk, pytest.raises(anthropic.OverloadedError) as info:
        sdk.messages.create(**PARAMS)
    assert "x-should-retry" not in info.value.response.headers
    assert schedule.counts == {"overloaded": 3}


# ---- timeouts, cuts, stalls, malformed bodies -------------------------------------------------------------------


def test_timeout_fault_makes_the_client_time_out(emulator):
    emulator.faults.timeout_s = 2.0
    with emulator.client(max_retries=0, timeout=0.2) as sdk, pytest.raises(anthropic.APITimeoutError):
        sdk.messages.create(**PARAMS, extra_headers=fault("timeout"))


def test_timeout_fault_answers_504_to_a_patient_client(emulator):
    emulator.faults.timeout_s = 0.05
    with emulator.client(max_retries=2) as sdk, pytest.raises(anthropic.GatewayTimeoutError) as info:
        sdk.messages.create(**PARAMS, extra_headers=fault("timeout"))
    assert info.value.status_code == 504 and info.value.body["error"]["type"] == "timeout_error"
    assert emulator.faults.counts == {"timeout": 1}


def test_cut_stream_drops_the_connection_without_message_stop(emulator, brain):
    full = " ".join(f"token{i}" for i in range(60))
    brain.always(text_reply(full))
    seen = []
    with emulator.client(max_retries=0) as sdk:
        with pytest.raises((httpx2.RemoteProtocolError, anthropic.APIConnectionError)):
            with sdk.messages.stream(
                **PARAMS, extra_headers=fault("cut_stream", **{"x-emulator-fault-after": "10"})
            ) as stream:
                for event in stream:
                    seen.append(event)
    kinds = [e.type for e in seen]
    assert kinds[0] == "message_start" and "content_block_delta" in kinds
    assert "message_stop" not in kinds and "message_delta" not in kinds
    text = "".join(e.delta.text for e in seen if e.type == "content_block_delta")
    assert text and full.startswith(text) and len(text) < len(full)


def test_cut_on_a_plain_answer_is_a_connection_error(emulator):
    with emulator.client(max_retries=1) as sdk, pytest.raises(anthropic.APIConnectionError):
        sdk.messages.create(**PARAMS, extra_headers=fault("cut_stream"))
    assert emulator.faults.counts == {"cut_stream": 2}  # a dropped connection is retried by the SDK


def test_stall_pauses_then_completes(emulator, brain):
    emulator.faults.stall_s = 0.05
    brain.always(text_reply("slow but complete answer"))
    with emulator.client() as sdk:
        with sdk.messages.stream(**PARAMS, extra_headers=fault("stall")) as stream:
            final = stream.get_final_message()
        assert final.content[0].text == "slow but complete answer"
        assert sdk.messages.create(**PARAMS, extra_headers=fault("stall")).content[0].text == "slow but complete answer"


def test_malformed_json_body(emulator, raw):
    response = raw.post("/v1/messages", json=PARAMS, headers={**headers(), **fault("malformed_json")})
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()
    with emulator.client(max_retries=0) as sdk, pytest.raises(Exception) as info:
        sdk.messages.create(**PARAMS, extra_headers=fault("malformed_json"))
    assert not isinstance(info.value, anthropic.APIStatusError)


def test_malformed_json_in_a_stream(emulator):
    with emulator.client(max_retries=0) as sdk, pytest.raises(ValueError):
        with sdk.messages.stream(**PARAMS, extra_headers=fault("malformed_json")) as stream:
            stream.get_final_message()


def test_every_kind_is_known():
    assert set(FAULT_KINDS) == {
        "rate_limit",
        "server_error",
        "overloaded",
        "timeout",
        "cut_stream",
        "stall",
        "malformed_json",
    }
