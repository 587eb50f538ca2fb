"""POST /v1/messages as the gateway receives it: the client's key, the body, the task; then deferred or routed.

The body is read within the size limit and parsed as the API would (413 and 400 in its envelope); a body nested
deeper than `MAX_JSON_DEPTH` is refused, because routing copies and re-encodes it. The task is identified
(`routing.TaskRouter`), the gateway's own metadata keys are dropped, cache hygiene runs for a task that opted in,
and the request goes to the `MessageRouter`, or, marked `x-parity-defer: true`, to the `DeferralQueue`.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from parity.api.body import read_body, parse_json_body
from parity.api.errors import APIError
from parity.api.ids import request_id as new_request_id
from parity.gateway.cachefix import CacheHygiene
from parity.policy import CACHE_FIX_TAG
from parity.gateway.deferral import DeferralQueue
from parity.gateway.keys import KeyCheck
from parity.gateway.recorder import GatewayRecorder, Record
from parity.gateway.refusals import Refusals
from parity.gateway.routing import Call, MessageRouter, TaskRouter
from parity.gateway.upstream import Upstream, UpstreamFailure

DEFER_HEADER = "x-parity-defer"
MAX_JSON_DEPTH = 128
"""Deeper request bodies are refused: routing copies and re-encodes a body, which must not hit Python's recursion
limit. Real requests (tool schemas included) stay far below it."""


class MessagesEndpoint:
    """POST /v1/messages (see the module docstring)."""

    def __init__(self, *, keys: KeyCheck, tasks: TaskRouter, hygiene: CacheHygiene, router: MessageRouter,
                 deferral: DeferralQueue, upstream: Upstream, recorder: GatewayRecorder, refuse: Refusals,
                 max_body_bytes: int):
        self.keys = keys
        self.tasks = tasks
        self.hygiene = hygiene
        self.router = router
        self.deferral = deferral
        self.upstream = upstream
        self.recorder = recorder
        self.refuse = refuse
        self.max_body_bytes = max_body_bytes

    def routes(self) -> list[BaseRoute]:
        return [Route("/v1/messages", self.messages, methods=["POST"])]

    async def messages(self, request: Request) -> Response:
        request_id = new_request_id()
        started_at, t0 = datetime.now(timezone.utc), time.perf_counter()
        key_id, denied = self.keys.admit(request)
        if denied is not None:
            return self.refuse(denied, request_id, "messages", t0)
        try:
            raw = await read_body(request, self.max_body_bytes)
            body = parse_json_body(raw, limit=self.max_body_bytes)
            if nested_deeper_than(raw, body, MAX_JSON_DEPTH):
                raise APIError(400, f"The request body is nested more than {MAX_JSON_DEPTH} levels deep; flatten it")
        except APIError as error:
            return self.refuse(error, request_id, "messages", t0)
        if not isinstance(body, dict):
            body = {}  # not an object: the upstream says what is wrong with it; nothing to route
        self.tasks.reload_if_changed()
        ident = self.tasks.identify(request.headers, body)
        if ident.strip_keys:
            metadata = {k: v for k, v in body["metadata"].items() if k not in ident.strip_keys}
            body = {**body, "metadata": metadata} if metadata else {k: v for k, v in body.items() if k != "metadata"}
            raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        tags = {"gateway_request_id": request_id}
        if ident.policy is not None:
            fixed, applied = self.hygiene.applied(body, ident.policy)
            if fixed is not body:
                body, raw = fixed, json.dumps(fixed, separators=(",", ":"), ensure_ascii=False).encode()
            if applied:
                tags[CACHE_FIX_TAG] = ",".join(applied)  # the ledger says which plan fix touched this request
        routed = ident.policy is not None and ident.policy.mode == "route" and bool(ident.policy.candidate_model)
        denied = await self.keys.reserve(key_id, request_id, body, len(raw), routed=routed)  # worst case held first
        if denied is not None:
            return self.refuse(denied, request_id, "messages", t0)
        call = Call(
            request_id=request_id, started_at=started_at, t0=t0, headers=request.headers.raw, body=body, raw=raw,
            stream=body.get("stream") is True, ident=ident, key_id=key_id, tags=tags,
        )
        if request.headers.get(DEFER_HEADER, "").strip().lower() == "true":
            return await self._defer(call)
        return await self.router.handle(call)

    async def _defer(self, call: Call) -> Response:
        if call.stream:
            error = APIError(400, f"{DEFER_HEADER}: a deferred request cannot stream; drop `stream` or the header")
            return self.refuse(error, call.request_id, "messages", call.t0)
        if self.upstream.api_key is None:
            error = APIError(400, f"{DEFER_HEADER}: this gateway has no upstream key of its own, so it cannot send "
                                  "Message Batches for its clients; start it with PARITY_UPSTREAM_API_KEY set")
            return self.refuse(error, call.request_id, "messages", call.t0)
        try:
            handle = await self.deferral.submit(call.body, task=call.ident.task, key_id=call.key_id)
        except APIError as error:
            return self.refuse(error, call.request_id, "messages", call.t0)
        except UpstreamFailure as failure:
            return self.refuse(failure.api_error(), call.request_id, "messages", call.t0)
        self.recorder.record(Record(
            endpoint="messages", request=call.body, started_at=call.started_at, duration_s=call.elapsed(),
            route="deferred", status=202, task=call.ident.task, task_label=call.ident.label, key_id=call.key_id,
            tags=call.tags, ledger=False,
        ))
        return JSONResponse(handle, status_code=202, headers={"request-id": call.request_id, "x-parity-route": "deferred"})


def nested_deeper_than(raw: bytes, value: Any, limit: int) -> bool:
    """Whether the parsed JSON `value` (from `raw`) nests arrays/objects more than `limit` deep. A body with no more
    brackets than `limit` cannot be (one C-speed count, the usual case); otherwise an iterative walk decides."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


__all__ = ["CACHE_FIX_TAG", "DEFER_HEADER", "MAX_JSON_DEPTH", "MessagesEndpoint", "nested_deeper_than"]
