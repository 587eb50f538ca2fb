"""Message Batches (reference claude-api.md §8): the store's lifecycle, then the wire through the real SDK."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta

import anthropic
import pytest

from parity.api.errors import APIError, invalid
from parity.emulator.batches import BatchStore, results_url
from parity.emulator.clock import ManualClock
from parity.exchange import parse_time

from servers import uvicorn_on_socket
from tests.emulator.conftest import MODEL, USER, headers

DAY = 24 * 3600.0


def _td(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


# ---------------------------------------------------------------- store-level tests against a minimal host


@dataclass(frozen=True)
class Ctx:
    api_version: str = "2026-10-21"
    betas: tuple[str, ...] = ()
    workspace: str = "wrkspc_default"
    request_id: str = "req_create"
    base_url: str = "http://emulator.local"


class FakeHost:
    """The two things BatchStore uses from the Emulator; a request without `model` is a 400, 'boom' a crash."""

    def __init__(self) -> None:
        self.clock = ManualClock()
        self.calls: list[tuple[dict, Ctx, bool]] = []

    def create_message(self, params: dict, ctx: Ctx, *, batch: bool = False) -> dict:
        self.calls.append((params, ctx, batch))
        if "model" not in params:
            raise invalid("model: Field required")
        if params["model"] == "boom":
            raise RuntimeError("simulated emulator bug")
        return {
            "id": "msg_x",
            "type": "message",
            "role": "assistant",
            "model": params["model"],
            "content": [{"type": "text", "text": "ok"}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 3, "output_tokens": 1, "service_tier": "batch" if batch else "standard"},
        }


def req(custom_id: str, **params) -> dict:
    return {"custom_id": custom_id, "params": {"model": "m", "max_tokens": 8, "messages": [], **params}}


@pytest.fixture
def host() -> FakeHost:
    return FakeHost()


@pytest.fixture
def store(host: FakeHost) -> BatchStore:
    return BatchStore(host, processing_s=60)


def results(store: BatchStore, batch_id: str, ctx: Ctx = Ctx()) -> dict[str, dict]:
    lines = list(store.results(batch_id, ctx))
    assert all(line.endswith(b"\n") and line.count(b"\n") == 1 and b"\r" not in line for line in lines)
    parsed = [json.loads(line) for line in lines]
    return {p["custom_id"]: p["result"] for p in parsed}


def test_lifecycle_counts_stay_processing_until_the_whole_batch_ends(store: BatchStore, host: FakeHost):
    created = store.create({"requests": [req("a"), req("b"), {"custom_id": "bad", "params": {}}]}, Ctx())
    assert created["id"].startswith("msgbatch_01") and created["type"] == "message_batch"
    assert created["processing_status"] == "in_progress"
    assert created["request_counts"] == {"processing": 3, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
    assert created["results_url"] is None and created["ended_at"] is None and created["archived_at"] is None
    assert parse_time(created["expires_at"]) - parse_time(created["created_at"]) == _td(DAY)
    assert host.calls == []  # params are validated asynchronously

    host.clock.advance(59.9)
    assert store.retrieve(created["id"], Ctx())["processing_status"] == "in_progress"
    with pytest.raises(APIError) as early:
        store.results(created["id"], Ctx())
    assert early.value.status == 400 and "in_progress" in early.value.message

    host.clock.advance(0.1)
    ended = store.retrieve(created["id"], Ctx())
    assert ended["processing_status"] == "ended"
    assert ended["request_counts"] == {"processing": 0, "succeeded": 2, "errored": 1, "canceled": 0, "expired": 0}
    assert parse_time(ended["ended_at"]) - parse_time(ended["created_at"]) == _td(60)
    assert ended["results_url"] == f"http://emulator.local/v1/messages/batches/{created['id']}/results"
    assert all(batch for _, _, batch in host.calls) and len(host.calls) == 3

    out = results(store, created["id"])
    assert out["a"]["type"] == "succeeded" and out["a"]["message"]["usage"]["service_tier"] == "batch"
    error = out["bad"]["error"]
    assert out["bad"]["type"] == "errored"
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert error["error"]["message"] == "model: Field required" and error["request_id"].startswith("req_01")

    # settling happens once: polling again does not re-run the requests
    store.retrieve(created["id"], Ctx())
    assert len(host.calls) == 3


def test_instant_mode_has_ended_by_the_first_poll(host: FakeHost):
    store = BatchStore(host, processing_s="instant")
    created = store.create({"requests": [req("a")]}, Ctx())
    assert created["processing_status"] == "in_progress"  # the create answer is never already ended
    assert store.retrieve(created["id"], Ctx())["request_counts"]["succeeded"] == 1


def test_results_url_follows_the_base_the_caller_used(store: BatchStore, host: FakeHost):
    batch = store.create({"requests": [req("a")]}, Ctx())
    host.clock.advance(60)
    view = store.retrieve(batch["id"], Ctx(base_url="http://127.0.0.1:8787/pfx/"))
    assert view["results_url"] == f"http://127.0.0.1:8787/pfx/v1/messages/batches/{batch['id']}/results"
    assert results_url("http://h", "x") == "http://h/v1/messages/batches/x/results"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "body: Input should be a valid dictionary"),
        ({}, "requests: Field required"),
        ({"requests": {}}, "requests: Input should be a valid list"),
        ({"requests": []}, "requests: List should have at least 1 item after validation, not 0"),
        ({"requests": [req("a")], "model": "m"}, "model: Extra inputs are not permitted"),
        ({"requests": [req("a"), "x"]}, "requests.1: Input should be a valid dictionary"),
        ({"requests": [req("a"), {"params": {}}]}, "requests.1.custom_id: Field required"),
        ({"requests": [{"custom_id": "a"}]}, "requests.0.params: Field required"),
        ({"requests": [req("a"), {"custom_id": 7, "params": {}}]}, "requests.1.custom_id: Input should be a valid string"),
        ({"requests": [req("a"), req("b"), req("c"), req("has space")]}, "requests.3.custom_id: String should match pattern"),
        ({"requests": [req("")]}, "requests.0.custom_id: String should match pattern"),
        ({"requests": [req("x" * 65)]}, "requests.0.custom_id: String should match pattern"),
        ({"requests": [req("a"), req("b"), req("a")]}, "requests.2.custom_id: custom_id 'a' is already used by requests.0"),
        ({"requests": [{"custom_id": "a", "params": []}]}, "requests.0.params: Input should be a valid dictionary"),
        ({"requests": [{**req("a"), "extra": 1}]}, "requests.0.extra: Extra inputs are not permitted"),
    ],
)
def test_the_envelope_is_validated_synchronously(store: BatchStore, body, message: str):
    with pytest.raises(APIError) as caught:
        store.create(body, Ctx())
    assert caught.value.status == 400 and caught.value.type == "invalid_request_error"
    assert caught.value.message.startswith(message), caught.value.message
    assert store.list({}, Ctx())["data"] == []


def test_custom_id_edges_that_are_valid(store: BatchStore):
    ok = ["a", "x" * 64, "A-b_9", "-_-"]
    batch = store.create({"requests": [req(c) for c in ok]}, Ctx())
    assert batch["request_counts"]["processing"] == 4


def test_request_count_limit(host: FakeHost):
    store = BatchStore(host, max_requests=3)
    store.create({"requests": [req(f"r{i}") for i in range(3)]}, Ctx())
    with pytest.raises(APIError) as caught:
        store.create({"requests": [req(f"r{i}") for i in range(4)]}, Ctx())
    assert caught.value.message.startswith("requests: List should have at most 3 items after validation, not 4")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"stream": True}, "stream"),
        ({"speed": "fast"}, "speed"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"store": True}, "store"),
        ({"cache_hint": {}}, "cache_hint"),
    ],
)
def test_params_a_batch_rejects_become_errored_results(store: BatchStore, host: FakeHost, params, field):
    batch = store.create({"requests": [req("bad", **params), req("fine", stream=False)]}, Ctx())
    host.clock.advance(60)
    out = results(store, batch["id"])
    assert out["fine"]["type"] == "succeeded"
    assert out["bad"]["type"] == "errored"
    assert out["bad"]["error"]["error"]["message"].startswith(f"{field}: ")
    assert [p for p, _, _ in host.calls] == [req("fine", stream=False)["params"]]


def test_an_emulator_crash_is_an_api_error_result_not_a_wedged_batch(store: BatchStore, host: FakeHost):
    batch = store.create({"requests": [req("a", model="boom"), req("b")]}, Ctx())
    host.clock.advance(60)
    out = results(store, batch["id"])
    assert out["a"]["error"]["error"]["type"] == "api_error" and out["b"]["type"] == "succeeded"


def test_cancel_before_anything_finished_cancels_everything(store: BatchStore, host: FakeHost):
    batch = store.create({"requests": [req("a"), req("b")]}, Ctx())
    host.clock.advance(10)
    canceling = store.cancel(batch["id"], Ctx())
    assert canceling["processing_status"] == "canceling"
    assert parse_time(canceling["cancel_initiated_at"]) - parse_time(canceling["created_at"]) == _td(10)
    assert canceling["request_counts"]["processing"] == 2
    host.clock.advance(1)
    again = store.cancel(batch["id"], Ctx())  # idempotent while canceling
    assert again["cancel_initiated_at"] == canceling["cancel_initiated_at"]
    host.clock.advance(store.cancel_s)
    ended = store.retrieve(batch["id"], Ctx())
    assert ended["processing_status"] == "ended" and ended["cancel_initiated_at"] == canceling["cancel_initiated_at"]
    assert ended["request_counts"] == {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 2, "expired": 0}
    assert {r["type"] for r in results(store, batch["id"]).values()} == {"canceled"}
    assert host.calls == []


def test_cancel_midway_keeps_what_finished_by_the_end_of_canceling(host: FakeHost):
    store = BatchStore(host, processing_s=100, cancel_s=5)
    batch = store.create({"requests": [req(f"r{i}") for i in range(10)]}, Ctx())
    host.clock.advance(35)
    store.cancel(batch["id"], Ctx())
    host.clock.advance(5)
    ended = store.retrieve(batch["id"], Ctx())
    # request i finishes at (i+1)*10 s; the batch stops at 35+5 = 40 s, so r0..r3 ran
    assert ended["request_counts"] == {"processing": 0, "succeeded": 4, "errored": 0, "canceled": 6, "expired": 0}
    out = results(store, batch["id"])
    assert [out[f"r{i}"]["type"] for i in range(10)] == ["succeeded"] * 4 + ["canceled"] * 6


def test_cancel_near_the_end_lets_the_batch_finish_normally(host: FakeHost):
    store = BatchStore(host, processing_s=60, cancel_s=5)
    batch = store.create({"requests": [req("a"), req("b")]}, Ctx())
    host.clock.advance(58)
    store.cancel(batch["id"], Ctx())
    host.clock.advance(2)
    ended = store.retrieve(batch["id"], Ctx())
    assert ended["request_counts"]["succeeded"] == 2 and ended["request_counts"]["canceled"] == 0
    assert parse_time(ended["ended_at"]) - parse_time(ended["created_at"]) == _td(60)


def test_cancel_after_the_end_is_refused(store: BatchStore, host: FakeHost):
    batch = store.create({"requests": [req("a")]}, Ctx())
    host.clock.advance(60)
    with pytest.raises(APIError) as caught:
        store.cancel(batch["id"], Ctx())
    assert caught.value.status == 400 and "already ended" in caught.value.message


def test_delete_only_once_ended_then_gone(store: BatchStore, host: FakeHost):
    batch = store.create({"requests": [req("a")]}, Ctx())
    with pytest.raises(APIError) as early:
        store.delete(batch["id"], Ctx())
    assert early.value.status == 400 and "in_progress" in early.value.message and "Cancel it first" in early.value.message
    host.clock.advance(60)
    assert store.delete(batch["id"], Ctx()) == {"id": batch["id"], "type": "message_batch_deleted"}
    for call in (store.retrieve, store.delete, store.cancel, store.results):
        with pytest.raises(APIError) as gone:
            call(batch["id"], Ctx())
        assert gone.value.status == 404 and gone.value.type == "not_found_error"


def test_batches_are_workspace_scoped(store: BatchStore):
    batch = store.create({"requests": [req("a")]}, Ctx(workspace="wrkspc_a"))
    with pytest.raises(APIError) as caught:
        store.retrieve(batch["id"], Ctx(workspace="wrkspc_b"))
    assert caught.value.status == 404
    assert store.list({}, Ctx(workspace="wrkspc_b"))["data"] == []
    assert [b["id"] for b in store.list({}, Ctx(workspace="wrkspc_a"))["data"]] == [batch["id"]]


def test_expiry_after_24_hours_when_processing_takes_longer(host: FakeHost):
    store = BatchStore(host, processing_s=2 * DAY)
    batch = store.create({"requests": [req(f"r{i}") for i in range(4)]}, Ctx())
    host.clock.advance(DAY - 1)
    assert store.retrieve(batch["id"], Ctx())["processing_status"] == "in_progress"
    host.clock.advance(1)
    ended = store.retrieve(batch["id"], Ctx())
    assert ended["processing_status"] == "ended" and ended["ended_at"] == ended["expires_at"]
    assert ended["request_counts"] == {"processing": 0, "succeeded": 2, "errored": 0, "canceled": 0, "expired": 2}
    assert results(store, batch["id"])["r3"] == {"type": "expired"}


def test_results_are_archived_29_days_after_creation(store: BatchStore, host: FakeHost):
    batch = store.create({"requests": [req("a")]}, Ctx())
    host.clock.advance(29 * DAY - 1)
    assert store.retrieve(batch["id"], Ctx())["archived_at"] is None
    assert results(store, batch["id"])["a"]["type"] == "succeeded"
    host.clock.advance(1)
    view = store.retrieve(batch["id"], Ctx())
    assert parse_time(view["archived_at"]) - parse_time(view["created_at"]) == _td(29 * DAY)
    with pytest.raises(APIError) as caught:
        store.results(batch["id"], Ctx())
    assert caught.value.status == 404 and "archived" in caught.value.message


def test_list_pages_newest_first_in_both_directions(store: BatchStore, host: FakeHost):
    ids = []
    for i in range(7):
        ids.append(store.create({"requests": [req("a")]}, Ctx())["id"])
    newest_first = ids[::-1]
    page = store.list({"limit": "3"}, Ctx())
    assert [b["id"] for b in page["data"]] == newest_first[:3] and page["has_more"] is True
    assert (page["first_id"], page["last_id"]) == (newest_first[0], newest_first[2])
    page = store.list({"limit": "3", "after_id": newest_first[2]}, Ctx())
    assert [b["id"] for b in page["data"]] == newest_first[3:6] and page["has_more"] is True
    page = store.list({"limit": "3", "after_id": newest_first[5]}, Ctx())
    assert [b["id"] for b in page["data"]] == newest_first[6:] and page["has_more"] is False
    page = store.list({"limit": "2", "before_id": newest_first[5]}, Ctx())
    assert [b["id"] for b in page["data"]] == newest_first[3:5] and page["has_more"] is True
    page = store.list({"limit": "3", "before_id": newest_first[3]}, Ctx())
    assert [b["id"] for b in page["data"]] == newest_first[0:3] and page["has_more"] is False
    assert store.list({"before_id": newest_first[0]}, Ctx()) == {
        "data": [], "has_more": False, "first_id": None, "last_id": None
    }
    # a deleted batch still works as a cursor
    host.clock.advance(60)
    store.delete(newest_first[2], Ctx())
    page = store.list({"after_id": newest_first[2]}, Ctx())
    assert [b["id"] for b in page["data"]] == newest_first[3:]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"limit": "0"}, "limit: Input should be greater than or equal to 1"),
        ({"limit": "1001"}, "limit: Input should be less than or equal to 1000"),
        ({"limit": "ten"}, "limit: Input should be a valid integer"),
        ({"after_id": "msgbatch_nope"}, "after_id: no message batch"),
        ({"after_id": "a", "before_id": "b"}, "after_id, before_id: pass at most one cursor"),
    ],
)
def test_list_rejects_bad_queries(store: BatchStore, query, message):
    with pytest.raises(APIError) as caught:
        store.list(query, Ctx())
    assert caught.value.status == 400 and caught.value.message.startswith(message)


def test_processing_time_must_be_sane(host: FakeHost):
    with pytest.raises(ValueError, match="instant"):
        BatchStore(host, processing_s=-1)


# ---------------------------------------------------------------- the wire, through the official SDK

def params(**extra) -> dict:
    return {"model": MODEL, "max_tokens": 64, "messages": USER, **extra}


def make(client, n: int = 1) -> str:
    return client.messages.batches.create(requests=[{"custom_id": f"r{i}", "params": params()} for i in range(n)]).id


def test_sdk_create_poll_end_and_read_results(client, emulator):
    batch = client.messages.batches.create(
        requests=[
            {"custom_id": "good", "params": params()},
            {"custom_id": "sampling", "params": params(temperature=0.5)},  # gone under 2026-10-21
            {"custom_id": "unknown-model", "params": params(model="claude-nonexistent-9")},
        ]
    )
    assert batch.type == "message_batch" and batch.id.startswith("msgbatch_")
    assert batch.processing_status == "in_progress" and batch.results_url is None
    assert batch.request_counts.to_dict() == {"processing": 3, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
    assert (batch.expires_at - batch.created_at).total_seconds() == DAY

    emulator.clock.advance(30)
    polled = client.messages.batches.retrieve(batch.id)
    assert polled.processing_status == "in_progress" and polled.request_counts.processing == 3
    with pytest.raises(anthropic.AnthropicError, match="No `results_url`"):
        client.messages.batches.results(batch.id)

    emulator.clock.advance(30)
    ended = client.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended" and ended.ended_at is not None
    assert ended.request_counts.to_dict() == {"processing": 0, "succeeded": 1, "errored": 2, "canceled": 0, "expired": 0}
    assert ended.results_url == f"http://emulator.local/v1/messages/batches/{batch.id}/results"

    out = {line.custom_id: line.result for line in client.messages.batches.results(batch.id)}
    assert set(out) == {"good", "sampling", "unknown-model"}
    good = out["good"]
    assert good.type == "succeeded"
    assert good.message.content[0].text == "Echo: Hello there"
    assert good.message.usage.service_tier == "batch"
    assert out["sampling"].type == "errored"
    assert out["sampling"].error.type == "error"
    assert out["sampling"].error.error.type == "invalid_request_error"
    assert out["sampling"].error.error.message == "temperature: Extra inputs are not permitted"
    assert out["sampling"].error.request_id.startswith("req_")
    assert out["unknown-model"].error.error.type == "not_found_error"


async def test_async_sdk_reads_results(async_client, emulator):
    batch = await async_client.messages.batches.create(requests=[{"custom_id": "a", "params": params()}])
    emulator.clock.advance(60)
    lines = [line async for line in await async_client.messages.batches.results(batch.id)]
    assert [(x.custom_id, x.result.type) for x in lines] == [("a", "succeeded")]


def test_sdk_list_auto_paginates_both_directions(client):
    created = [make(client) for _ in range(25)]
    newest_first = created[::-1]

    first = client.messages.batches.list()
    assert [b.id for b in first.data] == newest_first[:20] and first.has_more is True
    assert (first.first_id, first.last_id) == (newest_first[0], newest_first[19])
    assert [b.id for b in client.messages.batches.list()] == newest_first  # auto-paging with after_id

    pages = list(client.messages.batches.list(before_id=newest_first[-1], limit=7).iter_pages())
    assert [[b.id for b in p.data] for p in pages] == [
        newest_first[17:24], newest_first[10:17], newest_first[3:10], newest_first[0:3]
    ]
    assert [p.has_more for p in pages] == [True, True, True, False]
    assert [b.id for b in client.messages.batches.list(limit=1000)] == newest_first


def test_sdk_cancel_then_delete(client, emulator):
    batch_id = make(client, 2)
    emulator.clock.advance(10)
    canceling = client.messages.batches.cancel(batch_id)
    assert canceling.processing_status == "canceling" and canceling.cancel_initiated_at is not None
    with pytest.raises(anthropic.BadRequestError) as early:
        client.messages.batches.delete(batch_id)
    assert "only an ended batch can be deleted" in early.value.body["error"]["message"]

    emulator.clock.advance(emulator.batches.cancel_s)
    ended = client.messages.batches.retrieve(batch_id)
    assert ended.processing_status == "ended"
    assert ended.request_counts.to_dict() == {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 2, "expired": 0}
    assert [x.result.type for x in client.messages.batches.results(batch_id)] == ["canceled", "canceled"]
    with pytest.raises(anthropic.BadRequestError, match="already ended"):
        client.messages.batches.cancel(batch_id)

    deleted = client.messages.batches.delete(batch_id)
    assert (deleted.id, deleted.type) == (batch_id, "message_batch_deleted")
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve(batch_id)


@pytest.mark.parametrize("call", ["retrieve", "cancel", "delete", "results"])
def test_sdk_unknown_batch_is_404(client, call):
    with pytest.raises(anthropic.NotFoundError) as caught:
        getattr(client.messages.batches, call)("msgbatch_01nope")
    assert caught.value.body["error"]["type"] == "not_found_error"
    assert caught.value.request_id and caught.value.request_id.startswith("req_")


def test_sdk_other_workspace_sees_nothing(client, emulator):
    batch_id = make(client)
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve(batch_id, workspace_id="wrkspc_01other")
    assert client.messages.batches.list(workspace_id="wrkspc_01other").data == []


@pytest.mark.parametrize(
    ("requests", "message"),
    [
        ([], "requests: List should have at least 1 item"),
        (
            [{"custom_id": "ok", "params": {}}, {"custom_id": "no/slash", "params": {}}],
            "requests.1.custom_id: String should match pattern",
        ),
        ([{"custom_id": "x" * 65, "params": {}}], "requests.0.custom_id: String should match pattern"),
        (
            [{"custom_id": "same", "params": {}}, {"custom_id": "same", "params": {}}],
            "requests.1.custom_id: custom_id 'same' is already used",
        ),
    ],
)
def test_sdk_envelope_errors_are_400(client, requests, message):
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.batches.create(requests=requests)
    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert caught.value.body["error"]["message"].startswith(message)


def test_a_body_over_the_limit_is_413(client, emulator):
    emulator.batches.max_body_bytes = 2_000
    with pytest.raises(anthropic.ContentTooLargeError) as caught:
        big = params(messages=[{"role": "user", "content": "x" * 3_000}])
        client.messages.batches.create(requests=[{"custom_id": "big", "params": big}])
    assert caught.value.body["error"]["type"] == "request_too_large"
    assert client.messages.batches.list().data == []


def test_results_are_jsonl_framed_for_the_sdk_decoder(raw, emulator):
    tricky = params(messages=[{"role": "user", "content": "line\r\nbreak\n\n"}])  # echoed back in the results
    body = {"requests": [{"custom_id": f"r{i}", "params": tricky} for i in range(5)]}
    created = raw.post("/v1/messages/batches", json=body, headers=headers())
    assert created.status_code == 200, created.text
    batch_id = created.json()["id"]

    early = raw.get(f"/v1/messages/batches/{batch_id}/results", headers=headers())
    assert early.status_code == 400 and early.json()["error"]["type"] == "invalid_request_error"

    emulator.clock.advance(60)
    response = raw.get(f"/v1/messages/batches/{batch_id}/results", headers=headers(accept="application/binary"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-jsonl"
    data = response.content
    assert b"\r" not in data and b"\n\n" not in data and data.endswith(b"\n") and not data.startswith(b"\n")
    assert b"line\\r\\nbreak" in data  # the newlines inside the answer travel escaped
    lines = data.split(b"\n")[:-1]
    assert [json.loads(line)["custom_id"] for line in lines] == [f"r{i}" for i in range(5)]


def test_results_url_points_at_the_socket_the_client_used(emulator):
    with uvicorn_on_socket(emulator.app(), lifespan="off") as base_url:
        with anthropic.Anthropic(base_url=base_url, api_key="sk-test", max_retries=0) as client:
            batch_id = make(client, 2)
            emulator.clock.advance(60)
            batch = client.messages.batches.retrieve(batch_id)
            assert batch.results_url == f"{base_url}/v1/messages/batches/{batch_id}/results"
            assert sorted(x.custom_id for x in client.messages.batches.results(batch_id)) == ["r0", "r1"]
