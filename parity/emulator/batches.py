"""Message Batches (reference claude-api.md §8): create, poll, list, cancel, delete and JSONL results.

Time is the emulator's clock, read lazily: nothing runs in the background. A batch of n requests
created at t0 with processing time P finishes request i (0-based) at t0 + P*(i+1)/n, so the whole
batch ends at t0 + P unless a cancel (which stops it `cancel_s` later) or the 24 h expiry comes first.
The requests themselves are run through the emulator's own `create_message(..., batch=True)` the
first time anybody looks at the batch after it ended, which is also when bad params become
`errored` results: the envelope is validated at create time, the params only after the fact.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, is_dataclass, replace
from datetime import datetime, timezone
from typing import Any, Literal, Protocol

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from parity.api.body import read_json
from parity.api.errors import APIError, invalid
from parity.api.ids import PREFIXES, new_id, request_id
from parity.emulator.clock import Clock
from parity.emulator.context import request_context
from parity.exchange import format_time

log = logging.getLogger(__name__)

CUSTOM_ID_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"
_CUSTOM_ID = re.compile(CUSTOM_ID_PATTERN)
MAX_REQUESTS = 100_000
MAX_BODY_BYTES = 256 * 1024 * 1024
EXPIRY_S = 24 * 3600.0
RETENTION_S = 29 * 24 * 3600.0
DEFAULT_PROCESSING_S = 60.0
DEFAULT_CANCEL_S = 5.0
DEFAULT_LIST_LIMIT = 20
MAX_LIST_LIMIT = 1000
JSONL_CONTENT_TYPE = "application/x-jsonl"
RESULT_TYPES = ("succeeded", "errored", "canceled", "expired")

# Params the Messages API accepts but a batch does not (reference §8.1). Key -> why, for the message.
_BATCH_ONLY_REJECTED = {
    "speed": "fast mode is not available in Message Batches",
    "store": "stored threads are not available in Message Batches",
    "previous_thread_event_id": "stored threads are not available in Message Batches",
    "cache_hint": "cache hints are not available in Message Batches",
    "context_hint": "context hints are not available in Message Batches",
    "research_preview_2026_02": "research previews are not available in Message Batches",
}


class _Context(Protocol):
    """What a batch needs from C's `RequestContext`."""

    workspace: str
    base_url: str
    request_id: str


class _Host(Protocol):
    """What a batch needs from the `Emulator`: its clock and its one Messages code path."""

    clock: Clock

    def create_message(self, params: dict, ctx: Any, *, batch: bool = False) -> dict: ...


def rfc3339(epoch_s: float | None) -> str | None:
    """Epoch seconds as the API writes timestamps, or None."""
    if epoch_s is None:
        return None
    return format_time(datetime.fromtimestamp(epoch_s, timezone.utc))


@dataclass
class _Request:
    custom_id: str
    params: dict


@dataclass
class _Batch:
    id: str
    seq: int
    workspace: str
    ctx: Any  # the creating request's context: api version and betas apply to every request in the batch
    created_at: float
    processing_s: float
    requests: list[_Request]
    cancel_initiated_at: float | None = None
    cancel_s: float = DEFAULT_CANCEL_S
    ended_at: float | None = None
    results: list[dict] | None = None
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def expires_at(self) -> float:
        return self.created_at + EXPIRY_S

    @property
    def archived_at(self) -> float:
        return self.created_at + RETENTION_S


class BatchStore:
    """Every Message Batch of one emulator, per workspace, with the lifecycle of reference §8.

    `processing_s` is how long a new batch takes on the emulator's clock (0 or "instant": it has ended
    by the first poll); `cancel_s` is how long `canceling` lasts. Both apply to batches created after a change.
    """

    def __init__(
        self,
        emulator: _Host,
        *,
        processing_s: float | Literal["instant"] = DEFAULT_PROCESSING_S,
        cancel_s: float = DEFAULT_CANCEL_S,
        max_requests: int = MAX_REQUESTS,
        max_body_bytes: int = MAX_BODY_BYTES,
    ):
        self.emulator = emulator
        self.processing_s = processing_s
        self.cancel_s = cancel_s
        self.max_requests = max_requests
        self.max_body_bytes = max_body_bytes
        self._batches: dict[str, _Batch] = {}
        self._seq_of: dict[str, int] = {}  # kept after delete, so a deleted id still works as a list cursor
        self._next_seq = 0
        self._lock = threading.RLock()

    @property
    def processing_s(self) -> float:
        return self._processing_s

    @processing_s.setter
    def processing_s(self, value: float | Literal["instant"]) -> None:
        seconds = 0.0 if value == "instant" else float(value)
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"batch processing time must be 'instant' or seconds >= 0, got {value!r}")
        self._processing_s = seconds

    def _now(self) -> float:
        return self.emulator.clock.now()

    # ---- endpoints: each takes the decoded request and the RequestContext, returns the JSON body or raises APIError

    def create(self, body: Any, ctx: _Context) -> dict:
        """POST /v1/messages/batches: check the envelope now, the params when the batch is processed."""
        requests = self._validate_envelope(body)
        with self._lock:
            seq = self._next_seq
            self._next_seq += 1
            batch = _Batch(
                id=new_id(PREFIXES["batch"]),
                seq=seq,
                workspace=ctx.workspace,
                ctx=ctx,
                created_at=self._now(),
                processing_s=self.processing_s,
                requests=requests,
            )
            self._batches[batch.id] = batch
            self._seq_of[batch.id] = seq
            return self._view(batch, ctx)

    def retrieve(self, batch_id: str, ctx: _Context) -> dict:
        """GET /v1/messages/batches/{id}: an idempotent poll."""
        with self._lock:
            batch = self._get(batch_id, ctx)
            self._settle(batch)
            return self._view(batch, ctx)

    def list(self, query: Mapping[str, str], ctx: _Context) -> dict:
        """GET /v1/messages/batches: newest first, `limit` per page, `after_id`/`before_id` cursors."""
        limit = _parse_limit(query.get("limit"))
        after_id, before_id = query.get("after_id") or None, query.get("before_id") or None
        if after_id and before_id:
            raise invalid("after_id, before_id: pass at most one cursor (after_id pages forward, before_id back)")
        with self._lock:
            batches = sorted(
                (b for b in self._batches.values() if b.workspace == ctx.workspace), key=lambda b: -b.seq
            )
            if after_id:
                cursor = self._cursor("after_id", after_id)
                older = [b for b in batches if b.seq < cursor]
                page, has_more = older[:limit], len(older) > limit
            elif before_id:
                cursor = self._cursor("before_id", before_id)
                newer = [b for b in batches if b.seq > cursor]
                page, has_more = newer[-limit:], len(newer) > limit
            else:
                page, has_more = batches[:limit], len(batches) > limit
            for batch in page:
                self._settle(batch)
            return {
                "data": [self._view(b, ctx) for b in page],
                "has_more": has_more,
                "first_id": page[0].id if page else None,
                "last_id": page[-1].id if page else None,
            }

    def cancel(self, batch_id: str, ctx: _Context) -> dict:
        """POST /v1/messages/batches/{id}/cancel: `canceling` now, `ended` once the cancel window has passed."""
        with self._lock:
            batch = self._get(batch_id, ctx)
            self._settle(batch)
            if batch.ended_at is not None:
                raise invalid(
                    f"message_batch_id: message batch {batch.id} has already ended "
                    f"(at {rfc3339(batch.ended_at)}); only a batch still in progress can be canceled"
                )
            if batch.cancel_initiated_at is None:
                batch.cancel_initiated_at = self._now()
                batch.cancel_s = self.cancel_s
                self._settle(batch)
            return self._view(batch, ctx)

    def delete(self, batch_id: str, ctx: _Context) -> dict:
        """DELETE /v1/messages/batches/{id}: only once processing has ended."""
        with self._lock:
            batch = self._get(batch_id, ctx)
            self._settle(batch)
            if batch.ended_at is None:
                status = self._status(batch)
                raise invalid(
                    f"message_batch_id: message batch {batch.id} is {status}; only an ended batch can be "
                    "deleted. Cancel it first (POST /v1/messages/batches/{id}/cancel) and delete it once its "
                    "processing_status is 'ended'."
                )
            del self._batches[batch.id]
            return {"id": batch.id, "type": "message_batch_deleted"}

    def results(self, batch_id: str, ctx: _Context) -> Iterator[bytes]:
        """GET /v1/messages/batches/{id}/results: one JSON object per `\\n`-terminated line, no blank lines.

        Raises before returning (not while iterating), so a route can still answer with an error status.
        """
        with self._lock:
            batch = self._get(batch_id, ctx)
            self._settle(batch)
            if batch.ended_at is None:
                raise invalid(
                    f"message_batch_id: message batch {batch.id} is {self._status(batch)}; results are "
                    "available once processing_status is 'ended' and results_url is set. Poll "
                    "GET /v1/messages/batches/{id} until then."
                )
            if self._now() >= batch.archived_at or batch.results is None:
                raise APIError(
                    404,
                    f"message_batch_id: the results of message batch {batch.id} were archived at "
                    f"{rfc3339(batch.archived_at)} (29 days after it was created) and are no longer available",
                )
            lines = list(batch.results)
        return (json.dumps(line, separators=(",", ":")).encode() + b"\n" for line in lines)

    # ---- validation

    def _validate_envelope(self, body: Any) -> list[_Request]:
        if not isinstance(body, dict):
            raise invalid("body: Input should be a valid dictionary (a JSON object with a `requests` array)")
        for key in body:
            if key != "requests":
                raise invalid(f"{key}: Extra inputs are not permitted")
        if "requests" not in body:
            raise invalid("requests: Field required")
        items = body["requests"]
        if not isinstance(items, list):
            raise invalid("requests: Input should be a valid list")
        if not items:
            raise invalid("requests: List should have at least 1 item after validation, not 0")
        if len(items) > self.max_requests:
            raise invalid(
                f"requests: List should have at most {self.max_requests} items after validation, not {len(items)}; "
                "split the requests across several batches"
            )
        seen: dict[str, int] = {}
        requests: list[_Request] = []
        for i, item in enumerate(items):
            where = f"requests.{i}"
            if not isinstance(item, dict):
                raise invalid(f"{where}: Input should be a valid dictionary")
            for key in item:
                if key not in ("custom_id", "params"):
                    raise invalid(f"{where}.{key}: Extra inputs are not permitted")
            for key in ("custom_id", "params"):
                if key not in item:
                    raise invalid(f"{where}.{key}: Field required")
            custom_id, params = item["custom_id"], item["params"]
            if not isinstance(custom_id, str):
                raise invalid(f"{where}.custom_id: Input should be a valid string")
            if not _CUSTOM_ID.fullmatch(custom_id):
                raise invalid(
                    f"{where}.custom_id: String should match pattern '{CUSTOM_ID_PATTERN}' "
                    f"(1-64 letters, digits, '_' or '-'), got {custom_id!r}"
                )
            if custom_id in seen:
                raise invalid(
                    f"{where}.custom_id: custom_id {custom_id!r} is already used by requests.{seen[custom_id]}; "
                    "each custom_id must be unique within a batch"
                )
            seen[custom_id] = i
            if not isinstance(params, dict):
                raise invalid(f"{where}.params: Input should be a valid dictionary")
            requests.append(_Request(custom_id, params))
        return requests

    # ---- lifecycle

    def _get(self, batch_id: str, ctx: _Context) -> _Batch:
        batch = self._batches.get(batch_id)
        if batch is None or batch.workspace != ctx.workspace:
            raise APIError(
                404,
                f"message_batch_id: no message batch {batch_id!r} in this workspace "
                "(it never existed, was deleted, or belongs to another workspace)",
            )
        return batch

    def _cursor(self, name: str, batch_id: str) -> int:
        seq = self._seq_of.get(batch_id)
        if seq is None:
            raise invalid(f"{name}: no message batch {batch_id!r}; pass the first_id or last_id of a page you listed")
        return seq

    def _status(self, batch: _Batch) -> str:
        if batch.ended_at is not None:
            return "ended"
        return "canceling" if batch.cancel_initiated_at is not None else "in_progress"

    def _end_plan(self, batch: _Batch) -> tuple[float, str | None]:
        """When the batch ends, and what the requests not done by then become (None: all were done)."""
        end, rest = batch.created_at + batch.processing_s, None
        if batch.cancel_initiated_at is not None and batch.cancel_initiated_at + batch.cancel_s < end:
            end, rest = batch.cancel_initiated_at + batch.cancel_s, "canceled"
        if batch.expires_at < end:
            end, rest = batch.expires_at, "expired"
        return end, rest

    def _settle(self, batch: _Batch) -> None:
        """End the batch if its end time has come: run the requests that finished, mark the rest."""
        if batch.ended_at is not None:
            return
        end, rest = self._end_plan(batch)
        if self._now() < end:
            return
        n = len(batch.requests)
        done = n
        if rest is not None and batch.processing_s > 0:
            done = min(n, math.floor(n * (end - batch.created_at) / batch.processing_s + 1e-9))
        results = []
        for i, request in enumerate(batch.requests):
            result = self._process(batch, request) if i < done else {"type": rest}
            results.append({"custom_id": request.custom_id, "result": result})
        batch.results = results
        batch.counts = {kind: 0 for kind in RESULT_TYPES}
        for line in results:
            batch.counts[line["result"]["type"]] += 1
        batch.ended_at = end

    def _process(self, batch: _Batch, request: _Request) -> dict:
        """One request through the emulator's Messages path; an APIError becomes an `errored` result."""
        rid = request_id()
        ctx = replace(batch.ctx, request_id=rid) if is_dataclass(batch.ctx) else batch.ctx
        try:
            _check_batch_params(request.params)
            message = self.emulator.create_message(request.params, ctx, batch=True)
        except APIError as error:
            return {"type": "errored", "error": error.body(rid)}
        except Exception:  # an emulator bug must not wedge the batch: it fails like the API's internal errors
            log.exception("batch %s request %s failed inside the emulator", batch.id, request.custom_id)
            return {"type": "errored", "error": APIError(500, "Internal server error").body(rid)}
        return {"type": "succeeded", "message": message}

    def _view(self, batch: _Batch, ctx: _Context) -> dict:
        """The MessageBatch object; `results_url` is absolute on the base the caller reached us through."""
        total = len(batch.requests)
        if batch.ended_at is None:
            counts = {"processing": total, **{kind: 0 for kind in RESULT_TYPES}}
        else:
            counts = {"processing": 0, **batch.counts}
        archived = batch.ended_at is not None and self._now() >= batch.archived_at
        if archived:
            batch.results = None  # the results are gone; free them
        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": self._status(batch),
            "request_counts": counts,
            "created_at": rfc3339(batch.created_at),
            "expires_at": rfc3339(batch.expires_at),
            "ended_at": rfc3339(batch.ended_at),
            "cancel_initiated_at": rfc3339(batch.cancel_initiated_at),
            "archived_at": rfc3339(batch.archived_at) if archived else None,
            "results_url": results_url(ctx.base_url, batch.id) if batch.ended_at is not None else None,
        }


def results_url(base_url: str, batch_id: str) -> str:
    """Absolute, on the emulator's own base: the SDK fetches `results_url` verbatim (reference §0.7, §1.4)."""
    return f"{base_url.rstrip('/')}/v1/messages/batches/{batch_id}/results"


def _check_batch_params(params: dict) -> None:
    """What a batch rejects although POST /v1/messages accepts it (reference §8.1)."""
    if params.get("stream") is True:
        raise invalid("stream: streaming is not supported in Message Batches; remove `stream` (results arrive as JSONL)")
    for key, why in _BATCH_ONLY_REJECTED.items():
        if key in params:
            raise invalid(f"{key}: {why}; remove `{key}` from the batch request's params")
    if params.get("max_tokens") == 0 and not isinstance(params.get("max_tokens"), bool):
        raise invalid(
            "max_tokens: Input should be greater than or equal to 1 in Message Batches "
            "(max_tokens: 0 cache pre-warming is only for POST /v1/messages)"
        )


def _parse_limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_LIST_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        raise invalid(f"limit: Input should be a valid integer, unable to parse string as an integer, got {raw!r}") from None
    if limit < 1:
        raise invalid("limit: Input should be greater than or equal to 1")
    if limit > MAX_LIST_LIMIT:
        raise invalid(f"limit: Input should be less than or equal to {MAX_LIST_LIMIT}")
    return limit


# ---- HTTP ------------------------------------------------------------------------------------------------------------


def routes(emulator: Any) -> list[BaseRoute]:
    """The six batch endpoints of reference §1.5, with their full paths.

    Add them to the app's routes as they are (`routes.extend(...)`), not under a `Mount`: Starlette's Mount
    never matches its bare prefix, and `POST /v1/messages/batches` is exactly that. The server's middleware has
    already checked the headers and built the RequestContext; an APIError raised here becomes the error envelope.
    Store calls run in a worker thread: settling a large batch runs every request through `create_message`.
    """
    def store() -> BatchStore:
        return emulator.batches  # looked up per request, so a reconfigured or replaced store takes effect

    async def create(request: Request) -> Response:
        limit = store().max_body_bytes
        body = await read_json(request, limit)
        return JSONResponse(await run_in_threadpool(store().create, body, request_context(request)))

    async def list_batches(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(store().list, request.query_params, request_context(request)))

    def by_id(method: str):
        async def endpoint(request: Request) -> Response:
            call = getattr(store(), method)
            return JSONResponse(await run_in_threadpool(call, request.path_params["batch_id"], request_context(request)))

        return endpoint

    async def results(request: Request) -> Response:
        lines = await run_in_threadpool(store().results, request.path_params["batch_id"], request_context(request))
        return StreamingResponse(lines, media_type=JSONL_CONTENT_TYPE)

    prefix = "/v1/messages/batches"
    return [
        Route(prefix, create, methods=["POST"]),
        Route(prefix, list_batches, methods=["GET"]),
        Route(prefix + "/{batch_id}", by_id("retrieve"), methods=["GET"]),
        Route(prefix + "/{batch_id}", by_id("delete"), methods=["DELETE"]),
        Route(prefix + "/{batch_id}/cancel", by_id("cancel"), methods=["POST"]),
        Route(prefix + "/{batch_id}/results", results, methods=["GET"]),
    ]
