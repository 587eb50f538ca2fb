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
from dataclasses import dataclass, field
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
    queued_at: float
    started_at: datetime
    task: str | None = None
    key_id: str | None = None  # the gateway key that deferred it: only that key may poll it
    status: str = "queued"  # queued | submitted | succeeded | errored | canceled | expired
    batch_id: str | None = None
    message: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    finished_at: float | None = None

    def handle(self) -> dict[str, Any]:
        return {
            "type": "parity_deferred",
            "parity_deferred_id": self.id,
            "status": self.status,
            "poll_url": f"{POLL_PATH}/{self.id}",
            "batch_id": self.batch_id,
            "created_at": format_time(self.started_at),
        }


@dataclass
class _Batch:
    id: str
    items: list[str]
    checked_at: float | None = None
    ended: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class DeferralQueue:
    """Queues deferred requests and sends them as Message Batches (see the module docstring).

    `ledger`: a `parity.ledger.writer.LedgerWriter` (or anything with `write(LedgerEntry)`), or None.
    `on_finished(item, cost)`: called instead of the ledger write when a request's batch result arrives (the
    gateway passes its recorder, so deferred spend is charged to the key, redacted, metered and traced like any).
    `clock` gives seconds for the thresholds (tests pass a manual one).
    """

    def __init__(
        self,
        upstream_client: Any,
        ledger: Any = None,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_wait_s: float = DEFAULT_MAX_WAIT_S,
        poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
        retain_s: float = DEFAULT_RETAIN_S,
        clock: Callable[[], float] = time.monotonic,
        on_finished: Callable[[Deferred, Any], None] | None = None,
    ):
        if max_batch < 1 or max_batch > 100_000:
            raise ValueError(f"max_batch must be within 1..100000 (the API's batch limit), got {max_batch}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must be >= 0, got {max_wait_s}")
        self.calls = UpstreamCalls(upstream_client)
        self.ledger = ledger
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.poll_interval_s = poll_interval_s
        self.retain_s = retain_s
        self.clock = clock
        self.on_finished = on_finished
        self._items: dict[str, Deferred] = {}
        self._queue: list[str] = []
        self._batches: dict[str, _Batch] = {}
        self._timer: asyncio.Task | None = None
        self._flushing: set[asyncio.Task] = set()
        self._flush_lock = asyncio.Lock()
        self.counts = {"submitted": 0, "batches": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0,
                       "flush_failures": 0}
        self.spend = Decimal(0)

    # ---- the request path: enqueue and answer with a handle --------------------------------------------------

    async def submit(self, request: Mapping[str, Any], *, task: str | None = None, key_id: str | None = None) -> dict[str, Any]:
        """Queue one Messages request; returns its handle at once (the batch is sent in the background)."""
        if not isinstance(request, Mapping) or not isinstance(request.get("model"), str):
            raise APIError(400, "model: a deferred request needs the Messages body with a `model` string")
        if request.get("stream") is True:
            raise APIError(400, "stream: a deferred request is answered through Message Batches and cannot stream")
        self._prune()
        body = {k: v for k, v in request.items() if k != "stream"}
        item = Deferred("pdef_" + secrets.token_hex(16), body, self.clock(), datetime.now(timezone.utc), task, key_id)
        self._items[item.id] = item
        self._queue.append(item.id)
        self.counts["submitted"] += 1
        if len(self._queue) >= self.max_batch:
            self._spawn(self.flush())
        elif self._timer is None or self._timer.done():
            self._timer = asyncio.get_running_loop().create_task(self._flush_later())
        return item.handle()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _flush_later(self) -> None:
        while self._queue:
            oldest = self._items[self._queue[0]].queued_at
            wait = oldest + self.max_wait_s - self.clock()
            if wait > 0:
                await asyncio.sleep(min(wait, 1.0))
                continue
            await self.flush()

    async def flush(self) -> str | None:
        """Send what is queued now (up to `max_batch` per batch); the last batch id, or None if nothing was queued.

        On an upstream failure the requests stay queued and the next flush tries again."""
        batch_id = None
        async with self._flush_lock:
            while self._queue:
                ids = self._queue[: self.max_batch]
                requests = [{"custom_id": i, "params": self._items[i].request} for i in ids]
                try:
                    batch = await self.calls.submit(requests)
                except Exception as exc:
                    self.counts["flush_failures"] += 1
                    log.warning("deferral: sending a batch of %d requests failed (%s); they stay queued", len(ids), exc)
                    return batch_id
                batch_id = str(batch["id"])
                del self._queue[: len(ids)]
                self._batches[batch_id] = _Batch(batch_id, ids)
                self.counts["batches"] += 1
                for i in ids:
                    self._items[i].status, self._items[i].batch_id = "submitted", batch_id
                log.info("deferral: sent batch %s with %d requests", batch_id, len(ids))
        return batch_id

    # ---- polling ------------------------------------------------------------------------------------------------

    async def poll(self, deferred_id: str, key_id: str | None = None) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body) for a poll: 202 + handle while waiting, 200 + Message, or an error envelope.
        A request deferred with a gateway key is visible to that key only (to others it does not exist)."""
        item = self._items.get(deferred_id)
        if item is not None and item.key_id is not None and item.key_id != key_id:
            item = None
        if item is None:
            return 404, APIError(404, f"{POLL_PATH}/{deferred_id}: no deferred request with this id (unknown, or "
                                      f"its result was dropped {self.retain_s / 3600:g} h after it arrived)").body(None)
        if item.status == "submitted" and item.batch_id is not None:
            await self._check(self._batches[item.batch_id])
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

    async def _check(self, batch: _Batch) -> None:
        """Look at a batch (at most every `poll_interval_s`); when it ended, collect every result once."""
        async with batch.lock:
            now = self.clock()
            if batch.ended or (batch.checked_at is not None and now - batch.checked_at < self.poll_interval_s):
                return
            batch.checked_at = now
            try:
                state = await self.calls.retrieve(batch.id)
                if state.get("processing_status") != "ended":
                    return
                results = await self.calls.results(batch.id)
            except Exception as exc:
                log.warning("deferral: checking batch %s failed (%s); the next poll tries again", batch.id, exc)
                return
            batch.ended = True
            for item_id in batch.items:
                self._finish(self._items.get(item_id), results.get(item_id) or {"type": "expired"}, batch.id)

    def _finish(self, item: Deferred | None, result: Mapping[str, Any], batch_id: str) -> None:
        if item is None:
            return
        kind = str(result.get("type"))
        item.status = kind if kind in ("succeeded", "errored", "canceled", "expired") else "errored"
        item.finished_at = self.clock()
        item.message = json_dict(result["message"]) if kind == "succeeded" else None
        item.error = json_dict(result["error"]) if kind == "errored" and result.get("error") else None
        self.counts[item.status] += 1
        cost = None
        usage = (item.message or {}).get("usage")
        if isinstance(usage, dict):
            try:
                cost = pricing.cost(str(item.message["model"]), usage, batch=True).total  # type: ignore[index]
                self.spend += cost
            except Exception as exc:
                log.warning("deferral: could not price %s: %s", item.id, exc)
        if self.on_finished is not None:
            try:
                self.on_finished(item, cost)
            except Exception:
                log.exception("deferral: recording %s failed", item.id)
        elif self.ledger is not None:
            tags = {"parity_deferred_id": item.id, "batch_id": batch_id}
            if item.task:
                tags["task"] = item.task
            exchange = Exchange(
                request=item.request, response=item.message, error=item.error, started_at=item.started_at,
                duration_ms=int((item.finished_at - item.queued_at) * 1000), tags=tags, route="deferred", batch=True,
            )
            status = 200 if item.status == "succeeded" else 400 if item.status == "errored" else 410
            self.ledger.write(LedgerEntry(exchange, cost_usd=cost, reason=None if item.status == "succeeded" else
                                          f"batch result {item.status}", status_code=status))

    def _prune(self) -> None:
        now = self.clock()
        old = [i for i, d in self._items.items() if d.finished_at is not None and now - d.finished_at > self.retain_s]
        for i in old:
            del self._items[i]
        for bid in [b for b, batch in self._batches.items() if batch.ended and not any(i in self._items for i in batch.items)]:
            del self._batches[bid]

    def status(self) -> dict[str, Any]:
        """JSON for dashboards: queue depth, batches in flight, outcomes and what they cost."""
        return {"queued": len(self._queue), "batches_in_flight": sum(not b.ended for b in self._batches.values()),
                **self.counts, "spend_usd": str(self.spend), "max_batch": self.max_batch, "max_wait_s": self.max_wait_s}

    async def aclose(self) -> None:
        """Send what is still queued (so no accepted request is silently dropped), then stop the timer."""
        if self._queue:
            await self.flush()
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._timer
        for task in list(self._flushing):
            with contextlib.suppress(Exception):
                await task

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
            return refused if refused is not None else JSONResponse(self.status())

        return [
            Route(POLL_PATH, overview, methods=["GET"]),
            Route(POLL_PATH + "/{deferred_id}", poll, methods=["GET"]),
        ]


__all__ = ["API_VERSION", "POLL_PATH", "Authenticate", "Deferred", "DeferralQueue", "UpstreamCalls"]
