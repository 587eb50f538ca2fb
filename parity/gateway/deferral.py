"""Deferral: requests marked `x-parity-defer: true` wait in a queue and go upstream as one Message Batch (50% off).

Why: many calls nobody waits on (nightly summaries, backfills) are sent synchronously at full price because
batching means rewriting the client (reference landscape §7 item 5). Here the client only adds a header: the
gateway answers at once (HTTP 202) with a handle, `{"parity_deferred_id": ..., "poll_url": "/v1/parity/deferred/ID"}`,
and queues the request. The queue is flushed as one batch when it holds `max_batch` requests or its oldest
request has waited `max_wait_s`. Polling the URL answers 202 with the handle while the batch runs, then 200 with
the Message itself (what `messages.create` would have returned, `usage.service_tier: "batch"`), or the API's error
envelope for a request the batch rejected, expired or canceled.

Ids are 128-bit random (the id is the capability to read the answer). Results are kept for `retain_s` after they
arrive. Every finished request is written to the ledger (route "deferred", batch pricing) when one is given.

The queue is rows in the ledger's database (`parity.ledger.deferred`), written before the 202 goes out: a replica
SIGKILLed and restarted flushes what it had queued and resumes polling the batches it had sent, and on a PostgreSQL
ledger any replica flushes, collects and answers a poll for a handle another replica gave (a batch the upstream no
longer knows, e.g. an in-process emulator that restarted, is queued again).

`UpstreamCalls` is the one adapter the gateway's own calls (deferral, drift shadowing) go through: the gateway's
`Upstream` or an `anthropic` SDK client (sync or async), with one async interface for Messages and Batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from parity import pricing
from parity.api.errors import ERROR_TYPES, APIError
from parity.api.handlers import error_response
from parity.api.ids import request_id as new_request_id
from parity.exchange import Exchange, format_time, json_dict
from parity.ledger.deferred import FINAL, QUEUED, SUBMITTED, SUBMITTING, DeferredRow, DeferredStore
from parity.ledger.writer import LedgerEntry

log = logging.getLogger("parity.gateway")

API_VERSION = "2023-06-01"
"""The version the gateway's own calls use: it still accepts `temperature`, which THE judge request sets."""
POLL_PATH = "/v1/parity/deferred"
DEFAULT_MAX_BATCH = 1000
DEFAULT_MAX_WAIT_S = 60.0
DEFAULT_POLL_INTERVAL_S = 5.0
DEFAULT_RETAIN_S = 24 * 3600.0
_STATUS_OF_TYPE = {kind: status for status, kind in ERROR_TYPES.items()}

Authenticate = Callable[[Request], "tuple[str | None, APIError | None]"]
"""The gateway's key check: (gateway key id or None, the error to answer with or None)."""


# --------------------------------------------------------------------------------------------------------------
# The gateway's own calls: Messages and Message Batches through the gateway Upstream or an SDK client
# --------------------------------------------------------------------------------------------------------------


def _error_from(status: int, body: bytes | None) -> APIError:
    """The upstream's error answer as an APIError (its type and message kept; never a key: Upstream scrubs)."""
    try:
        err = json.loads(body or b"{}").get("error") or {}
    except (ValueError, AttributeError):
        err = {}
    return APIError(status, str(err.get("message") or f"upstream answered HTTP {status}"), type=err.get("type"))


class UpstreamCalls:
    """One async interface over where the gateway's own calls go (see the module docstring).

    `client` is the gateway's `parity.gateway.upstream.Upstream` (anything with `request_json` and `send`), an
    `anthropic.AsyncAnthropic`, or an `anthropic.Anthropic` (its calls run in a worker thread). Errors from the
    API are raised as `APIError`; the Upstream's transport failures as its `UpstreamFailure`.
    """

    def __init__(self, client: Any):
        if isinstance(client, UpstreamCalls):
            client = client.client
        self.client = client
        self.kind = "upstream" if hasattr(client, "request_json") and hasattr(client, "send") else "sdk"
        if self.kind == "sdk" and not hasattr(getattr(client, "messages", None), "create"):
            raise TypeError(
                f"{type(client).__name__} is neither the gateway's Upstream nor an anthropic SDK client; pass one of those"
            )
        self.is_async = self.kind == "upstream" or inspect.iscoroutinefunction(inspect.unwrap(client.messages.create))

    async def _sdk(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("extra_headers", {"anthropic-version": API_VERSION})
        if self.is_async:
            return await fn(*args, **kwargs)
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def create(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """POST /v1/messages (non-streaming); the Message as a dict."""
        if self.kind == "upstream":
            answer = await self.client.request_json("POST", "/v1/messages", body=dict(params), model=params.get("model"))
            if not answer.ok:
                raise _error_from(answer.status, answer.body)
            return dict(answer.data)
        # The SDK's typed signature lags the wire (e.g. `temperature` under the newest version): send the body as is.
        body = dict(params)
        known = {k: body.pop(k) for k in ("model", "max_tokens", "messages") if k in body}
        message = await self._sdk(self.client.messages.create, **known, extra_body=body)
        return json_dict(message)

    async def submit(self, requests: list[dict[str, Any]]) -> dict[str, Any]:
        """POST /v1/messages/batches; the MessageBatch as a dict."""
        if self.kind == "upstream":
            answer = await self.client.request_json("POST", "/v1/messages/batches", body={"requests": requests})
            if not answer.ok:
                raise _error_from(answer.status, answer.body)
            return dict(answer.data)
        return json_dict(await self._sdk(self.client.messages.batches.create, requests=requests))

    async def retrieve(self, batch_id: str) -> dict[str, Any]:
        """GET /v1/messages/batches/{id}."""
        if self.kind == "upstream":
            answer = await self.client.request_json("GET", f"/v1/messages/batches/{batch_id}")
            if not answer.ok:
                raise _error_from(answer.status, answer.body)
            return dict(answer.data)
        return json_dict(await self._sdk(self.client.messages.batches.retrieve, batch_id))

    async def results(self, batch_id: str) -> dict[str, dict[str, Any]]:
        """GET /v1/messages/batches/{id}/results, as {custom_id: result} (result has `type` and `message`/`error`)."""
        out: dict[str, dict[str, Any]] = {}
        if self.kind == "upstream":
            up = self.client
            headers = up.headers([(b"anthropic-version", API_VERSION.encode()), (b"accept", b"application/binary")])
            answer = await up.send("GET", f"/v1/messages/batches/{batch_id}/results", headers=headers, expect_json=False)
            if not answer.ok:
                raise _error_from(answer.status, answer.body)
            for line in (answer.body or b"").splitlines():
                if line.strip():
                    entry = json.loads(line)
                    out[entry["custom_id"]] = entry["result"]
            return out
        if self.is_async:
            decoder = await self.client.messages.batches.results(
                batch_id, extra_headers={"anthropic-version": API_VERSION})
            async for entry in decoder:
                out[entry.custom_id] = json_dict(entry.result)
            return out

        def read() -> None:
            for entry in self.client.messages.batches.results(batch_id, extra_headers={"anthropic-version": API_VERSION}):
                out[entry.custom_id] = json_dict(entry.result)

        await asyncio.to_thread(read)
        return out


# --------------------------------------------------------------------------------------------------------------
# The queue
# --------------------------------------------------------------------------------------------------------------


@dataclass
class Deferred:
    """One deferred request and, once its batch ended, its result."""

    id: str
    request: dict[str, Any]
    queued_at: float  # epoch seconds
    started_at: datetime
    task: str | None = None
    key_id: str | None = None  # the gateway key that deferred it: only that key may poll it
    status: str = "queued"  # queued | submitted | succeeded | errored | canceled | expired
    batch_id: str | None = None
    message: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    finished_at: float | None = None

    @classmethod
    def from_row(cls, row: DeferredRow) -> Deferred:
        result = row.result or {}
        kind = str(result.get("type"))
        message = json_dict(result["message"]) if kind == "succeeded" and result.get("message") else None
        error = json_dict(result["error"]) if kind == "errored" and result.get("error") else None
        status = "queued" if row.state == SUBMITTING else row.state
        return cls(row.id, row.request, row.queued_at, row.started_at, row.task, row.key_id, status, row.batch_id,
                   message, error, row.finished_at)

    @property
    def status_code(self) -> int:
        """The HTTP status its ledger row records: 200 answered, 400 the batch rejected it, 410 expired or canceled."""
        return 200 if self.status == "succeeded" else 400 if self.status == "errored" else 410

    @property
    def reason(self) -> str | None:
        return None if self.status == "succeeded" else f"batch result {self.status}"

    def ledger_tags(self) -> dict[str, str]:
        """The tags its ledger row carries: which handle, which batch."""
        return {"parity_deferred_id": self.id, "batch_id": str(self.batch_id)}

    def batch_cost(self) -> Decimal | None:
        """What its answer cost at batch rates; None without an answer. A model the table cannot price raises."""
        usage = (self.message or {}).get("usage")
        if not isinstance(usage, dict):
            return None
        return pricing.cost(str(self.message["model"]), usage, batch=True).total  # type: ignore[index]

    def handle(self) -> dict[str, Any]:
        return {
            "type": "parity_deferred",
            "parity_deferred_id": self.id,
            "status": self.status,
            "poll_url": f"{POLL_PATH}/{self.id}",
            "batch_id": self.batch_id,
            "created_at": format_time(self.started_at),
        }


class DeferralQueue:
    """Queues deferred requests and sends them as Message Batches (see the module docstring).

    `store`: where the queue lives (`parity.ledger.deferred.DeferredStore`: the ledger's database, so a 202 survives
    a restart and, on PostgreSQL, every replica shares the queue; by default in memory). A background worker on the
    event loop (`start`, or the first request) flushes what is due and collects ended batches, whichever replica
    queued them. `ledger`: a `parity.ledger.writer.LedgerWriter` (or anything with `write(LedgerEntry)`), or None.
    `on_finished(item, cost)`: called instead of the ledger write when a request's batch result arrives (the
    gateway passes its recorder, so deferred spend is charged to the key, redacted, metered and traced like any);
    a result whose ledger row is missing later (its replica died in between) is handed to it again.
    `clock` gives epoch seconds (tests pass a manual one).
    """

    def __init__(
        self,
        upstream_client: Any,
        ledger: Any = None,
        *,
        store: DeferredStore | None = None,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_wait_s: float = DEFAULT_MAX_WAIT_S,
        poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
        retain_s: float = DEFAULT_RETAIN_S,
        clock: Callable[[], float] = time.time,
        on_finished: Callable[[Deferred, Any], None] | None = None,
        replica: str = "",
    ):
        if max_batch < 1 or max_batch > 100_000:
            raise ValueError(f"max_batch must be within 1..100000 (the API's batch limit), got {max_batch}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must be >= 0, got {max_wait_s}")
        self.calls = UpstreamCalls(upstream_client)
        self.ledger = ledger
        self.store = store or DeferredStore()
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.poll_interval_s = poll_interval_s
        self.retain_s = retain_s
        self.clock = clock
        self.on_finished = on_finished
        self.replica = replica[:80]
        self._checked: dict[str, float] = {}  # batch id -> when this replica last asked the upstream about it
        self._batch_locks: dict[str, asyncio.Lock] = {}
        self._worker: asyncio.Task | None = None
        self._wake: asyncio.Event | None = None
        self._flushing: set[asyncio.Task] = set()
        self._flush_lock = asyncio.Lock()
        self._maintained = 0.0
        self.counts = {"submitted": 0, "batches": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0,
                       "flush_failures": 0}
        self.spend = Decimal(0)

    # ---- the request path: enqueue and answer with a handle --------------------------------------------------

    async def submit(self, request: Mapping[str, Any], *, task: str | None = None, key_id: str | None = None) -> dict[str, Any]:
        """Queue one Messages request, durably, and return its handle (the batch is sent in the background)."""
        if not isinstance(request, Mapping) or not isinstance(request.get("model"), str):
            raise APIError(400, "model: a deferred request needs the Messages body with a `model` string")
        if request.get("stream") is True:
            raise APIError(400, "stream: a deferred request is answered through Message Batches and cannot stream")
        body = {k: v for k, v in request.items() if k != "stream"}
        row = DeferredRow("pdef_" + secrets.token_hex(16), QUEUED, body, self.clock(), datetime.now(timezone.utc),
                          task, key_id, self.replica)
        try:
            queued = await asyncio.to_thread(self.store.add, row)
        except Exception as exc:  # not written: no handle may be given for it
            log.exception("deferral: could not write request %s to the queue", row.id)
            raise APIError(503, f"The gateway could not store the deferred request ({type(exc).__name__}); retry "
                                "shortly", type="api_error") from None
        self.counts["submitted"] += 1
        self.start()
        assert self._wake is not None
        self._wake.set()  # the worker looks more often while something waits
        if queued >= self.max_batch or self.max_wait_s <= 0:
            self._spawn(self.flush(due_only=True))
        return Deferred.from_row(row).handle()

    def start(self) -> None:
        """Run the worker on the running event loop (idempotent): what was queued or sent before a restart, or by
        another replica, is flushed and collected too."""
        if self._worker is None or self._worker.done():
            self._wake = asyncio.Event()
            self._worker = asyncio.get_running_loop().create_task(self._run())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _run(self) -> None:
        busy = max(0.05, min(self.poll_interval_s, self.max_wait_s or 1.0, 1.0))
        while True:
            try:
                pending = await self._tick()
            except Exception:
                log.exception("deferral: the queue's worker failed once; it goes on")
                pending = True
            assert self._wake is not None
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), busy if pending else 1.0)
            self._wake.clear()

    async def _tick(self) -> bool:
        """Flush what is due, collect ended batches, now and then prune and re-record; whether anything waits."""
        queued, oldest, batches = await asyncio.to_thread(self.store.pending)  # one look when idle
        if self._due(queued, oldest):
            await self.flush(due_only=True)
        for batch_id in batches:
            await self._check(batch_id)
        now = self.clock()
        if now - self._maintained > 60.0:
            self._maintained = now
            await self._maintain(now)
        return bool(batches or queued)

    def _due(self, queued: int, oldest: float | None) -> bool:
        """Whether a batch should go now: `max_batch` requests wait, or the oldest has waited `max_wait_s`."""
        return queued >= self.max_batch or (queued > 0 and oldest is not None and
                                            self.clock() - oldest >= self.max_wait_s)

    async def flush(self, *, due_only: bool = False) -> str | None:
        """Send what is queued (`due_only`: only once `max_batch` requests wait or the oldest has waited
        `max_wait_s`), up to `max_batch` per batch; the last batch id, or None if nothing was sent.

        On an upstream failure the requests stay queued and the next flush tries again."""
        batch_id = None
        async with self._flush_lock:
            while True:
                if due_only and not self._due(*await asyncio.to_thread(self.store.queue_state)):
                    return batch_id
                token, rows = await asyncio.to_thread(self.store.claim, self.max_batch, self.clock())
                if not rows:
                    return batch_id
                requests = [{"custom_id": r.custom_id, "params": r.request} for r in rows]
                try:
                    batch = await self.calls.submit(requests)
                except Exception as exc:
                    self.counts["flush_failures"] += 1
                    log.warning("deferral: sending a batch of %d requests failed (%s); they stay queued", len(rows), exc)
                    await asyncio.to_thread(self.store.unclaim, token)
                    return batch_id
                batch_id = str(batch["id"])
                await asyncio.to_thread(self.store.submitted, token, batch_id)
                self.counts["batches"] += 1
                log.info("deferral: sent batch %s with %d requests", batch_id, len(rows))
                if len(rows) < self.max_batch:
                    return batch_id

    # ---- polling ------------------------------------------------------------------------------------------------

    async def poll(self, deferred_id: str, key_id: str | None = None) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body) for a poll: 202 + handle while waiting, 200 + Message, or an error envelope.
        A request deferred with a gateway key is visible to that key only (to others it does not exist)."""
        self.start()
        row = await asyncio.to_thread(self.store.get, deferred_id)
        if row is not None and row.key_id is not None and row.key_id != key_id:
            row = None
        if row is None:
            return 404, APIError(404, f"{POLL_PATH}/{deferred_id}: no deferred request with this id (unknown, or "
                                      f"its result was dropped {self.retain_s / 3600:g} h after it arrived)").body(None)
        if row.state == SUBMITTED and row.batch_id is not None and await self._check(row.batch_id):
            row = await asyncio.to_thread(self.store.get, deferred_id) or row
        item = Deferred.from_row(row)
        if item.status == "succeeded":
            return 200, item.message or {}
        if item.status in ("queued", "submitted"):
            return 202, item.handle()
        if item.status == "errored" and item.error:
            inner = item.error.get("error") if isinstance(item.error.get("error"), dict) else item.error
            return _STATUS_OF_TYPE.get(str(inner.get("type")), 400), item.error
        what = "expired before the batch ran it" if item.status == "expired" else "was canceled"
        return 410, APIError(410, f"deferred request {item.id} {what} (batch {item.batch_id}); send it again",
                             type="api_error").body(None)

    async def _check(self, batch_id: str) -> bool:
        """Look at a batch (at most every `poll_interval_s`); when it ended, collect its results. Whether rows moved."""
        lock = self._batch_locks.setdefault(batch_id, asyncio.Lock())
        async with lock:
            now = self.clock()
            checked = self._checked.get(batch_id)
            if checked is not None and now - checked < self.poll_interval_s:
                return False
            self._checked[batch_id] = now
            try:
                state = await self.calls.retrieve(batch_id)
                if state.get("processing_status") != "ended":
                    return False
                results = await self.calls.results(batch_id)
            except APIError as exc:
                if exc.status != 404:
                    log.warning("deferral: checking batch %s failed (%s); the next poll tries again", batch_id, exc)
                    return False
                moved = await asyncio.to_thread(self.store.requeue, batch_id)
                log.warning("deferral: the upstream does not know batch %s (deleted, or an upstream that restarted): "
                            "its %d request(s) are queued again", batch_id, moved)
                self._forget(batch_id)
                return moved > 0
            except Exception as exc:
                log.warning("deferral: checking batch %s failed (%s); the next poll tries again", batch_id, exc)
                return False
            finished = await asyncio.to_thread(self.store.collect, batch_id, results, self.clock())
            self._forget(batch_id)
        for row in finished:
            self._finish(Deferred.from_row(row))
        return True

    def _forget(self, batch_id: str) -> None:
        self._checked.pop(batch_id, None)
        self._batch_locks.pop(batch_id, None)

    def _finish(self, item: Deferred) -> None:
        """Count, price and record one result this replica collected."""
        self.counts[item.status] += 1
        cost = None
        try:
            cost = item.batch_cost()
        except Exception as exc:
            log.warning("deferral: could not price %s: %s", item.id, exc)
        if cost is not None:
            self.spend += cost
        self._record(item, cost)

    def _record(self, item: Deferred, cost: Any) -> None:
        if self.on_finished is not None:
            try:
                self.on_finished(item, cost)
            except Exception:
                log.exception("deferral: recording %s failed", item.id)
        elif self.ledger is not None:
            tags = item.ledger_tags()
            if item.task:
                tags["task"] = item.task
            exchange = Exchange(
                request=item.request, response=item.message, error=item.error, started_at=item.started_at,
                duration_ms=int(((item.finished_at or item.queued_at) - item.queued_at) * 1000), tags=tags,
                route="deferred", batch=True,
            )
            self.ledger.write(LedgerEntry(exchange, cost_usd=cost, reason=item.reason, status_code=item.status_code,
                                          key_id=item.key_id, record_id=item.id))

    async def _maintain(self, now: float) -> None:
        """Drop results older than `retain_s`; record again what a replica that died collected but never recorded
        (the ledger keeps one row per record id, so a second record of a row that did arrive adds nothing)."""
        await asyncio.to_thread(self.store.prune, now - self.retain_s)
        if not self.store.durable:
            return
        for row in await asyncio.to_thread(self.store.unrecorded, now - 60.0):
            item = Deferred.from_row(row)
            log.warning("deferral: %s finished without its ledger row (its replica stopped); recording it", item.id)
            cost = None
            with contextlib.suppress(Exception):
                cost = item.batch_cost()
            self._record(item, cost)

    def status(self) -> dict[str, Any]:
        """JSON for dashboards (blocking: reads the queue): requests per state in the queue (every replica's, while
        retained), batches in flight, and what this replica did and what it cost."""
        states = self.store.counts()
        in_flight = len(self.store.batches())
        mine = {"accepted": self.counts["submitted"], "batches_sent": self.counts["batches"],
                "flush_failures": self.counts["flush_failures"], "spend_usd": str(self.spend)}
        return {"queued": states.get(QUEUED, 0) + states.get(SUBMITTING, 0), "in_batches": states.get(SUBMITTED, 0),
                "batches_in_flight": in_flight, **{s: states.get(s, 0) for s in FINAL}, "this_replica": mine,
                "max_batch": self.max_batch, "max_wait_s": self.max_wait_s}

    async def aclose(self) -> None:
        """Send what is still queued (it would also survive in a durable store), then stop the worker."""
        with contextlib.suppress(Exception):
            await self.flush()
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._worker
        for task in list(self._flushing):
            with contextlib.suppress(Exception):
                await task
        self.store.close()

    # ---- the gateway's own endpoints -------------------------------------------------------------------------

    def routes(self, authenticate: Authenticate | None = None) -> list[BaseRoute]:
        """GET /v1/parity/deferred/{id} (poll one request) and GET /v1/parity/deferred (the queue's status).

        `authenticate(request) -> (key id, error)`: the gateway's key check; a poll sees only its own key's requests."""

        def denied(request: Request) -> tuple[str | None, JSONResponse | None]:
            if authenticate is None:
                return None, None
            key_id, error = authenticate(request)
            if error is None:
                return key_id, None
            return None, error_response(error, new_request_id())

        async def poll(request: Request) -> JSONResponse:
            key_id, refused = denied(request)
            if refused is not None:
                return refused
            rid = new_request_id()
            status, body = await self.poll(request.path_params["deferred_id"], key_id)
            if isinstance(body, dict) and body.get("type") == "error":
                body = {**body, "request_id": rid}
            headers = {"request-id": rid, "x-parity-route": "deferred"}
            if status == 202:
                headers["retry-after"] = str(max(1, int(self.poll_interval_s)))
            return JSONResponse(body, status_code=status, headers=headers)

        async def overview(request: Request) -> JSONResponse:
            _, refused = denied(request)
            return refused if refused is not None else JSONResponse(await asyncio.to_thread(self.status))

        return [
            Route(POLL_PATH, overview, methods=["GET"]),
            Route(POLL_PATH + "/{deferred_id}", poll, methods=["GET"]),
        ]


__all__ = ["API_VERSION", "POLL_PATH", "Authenticate", "Deferred", "DeferralQueue", "UpstreamCalls"]
