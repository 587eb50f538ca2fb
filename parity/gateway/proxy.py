"""Every /v1/ endpoint but POST /v1/messages: count_tokens, Message Batches, Models and any other path, forwarded to
the upstream as is (reference claude-api.md §1.5).

Batch objects' `results_url`s are rewritten to point back at the gateway (same path), or the SDK would fetch the
results from the upstream with a gateway key. Batch results stream through byte for byte.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from parity.api.body import read_body
from parity.api.errors import APIError
from parity.api.ids import request_id as new_request_id
from parity.gateway.keys import KeyCheck
from parity.gateway.metrics import GatewayMetrics
from parity.gateway.refusals import Refusals
from parity.gateway.streaming import RelayResponse
from parity.gateway.upstream import Upstream, UpstreamFailure, response_headers

METHODS = ["GET", "POST", "DELETE", "PUT", "PATCH"]


class ProxyEndpoint:
    """Forwards requests to the `upstream` (see the module docstring). `public_base_url` is the URL clients reach
    the gateway at (for batch `results_url`s; default: from each request's Host header)."""

    def __init__(self, *, upstream: Upstream, keys: KeyCheck, metrics: GatewayMetrics, refuse: Refusals,
                 max_body_bytes: int, public_base_url: str | None = None):
        self.upstream = upstream
        self.keys = keys
        self.metrics = metrics
        self.refuse = refuse
        self.max_body_bytes = max_body_bytes
        self.public_base_url = public_base_url

    def routes(self) -> list[BaseRoute]:
        """The known endpoints first (a wrong method on them is a 405), then any other /v1/ path, last."""
        return [
            Route("/v1/messages/count_tokens", self.proxy, methods=["POST"]),
            Route("/v1/messages/batches", self.proxy, methods=["GET", "POST"]),
            Route("/v1/messages/batches/{rest:path}", self.proxy, methods=["GET", "POST", "DELETE"]),
            Route("/v1/models", self.proxy, methods=["GET"]),
            Route("/v1/models/{rest:path}", self.proxy, methods=["GET"]),
        ]

    def fallback_routes(self) -> list[BaseRoute]:
        """Any other /v1/ path: mount after every other route."""
        return [Route("/v1/{rest:path}", self.proxy, methods=METHODS)]

    async def proxy(self, request: Request) -> Response:
        """Forward one request to the upstream and relay its answer (batches get their results_url rewritten)."""
        request_id = new_request_id()
        t0 = time.perf_counter()
        path = request.url.path
        endpoint = _endpoint(path)
        key_id, denied = self.keys.admit(request)
        if denied is not None:
            return self.refuse(denied, request_id, endpoint, t0)
        try:
            raw = await read_body(request, self.max_body_bytes)
        except APIError as error:
            return self.refuse(error, request_id, endpoint, t0)
        results = endpoint == "batches" and path.rstrip("/").endswith("/results")
        query = request.scope.get("query_string", b"")
        forward = _raw_path(request)
        try:
            answer = await self.upstream.send(
                request.method, forward, headers=self.upstream.headers(request.headers.raw), content=raw or None,
                query=query, stream=results, expect_json=False,
                retries=request.method in ("GET", "DELETE") or endpoint == "count_tokens",
            )
        except UpstreamFailure as failure:
            return self.refuse(failure.api_error(), request_id, endpoint, t0, outcome="upstream_error")
        except ValueError:
            error = APIError(404, f"Not found: {request.method} {path[:200]!r} is not a path this gateway forwards")
            return self.refuse(error, request_id, endpoint, t0)
        self.metrics.retries(answer.attempts)
        headers = response_headers(answer.headers)
        outcome = "ok" if answer.ok else ("upstream_error" if answer.status >= 500 else "client_error")
        self.metrics.request(endpoint, "passthrough", "", outcome, time.perf_counter() - t0)
        if answer.response is not None:
            return RelayResponse(_raw_body(answer.response), status_code=answer.status, headers=headers)
        body = self.upstream.scrub_bytes(answer.body or b"")
        if endpoint == "batches" and answer.ok:
            body = self._rewrite_results_url(body, request)
        return Response(body, status_code=answer.status, headers=headers)

    def _rewrite_results_url(self, body: bytes, request: Request) -> bytes:
        """Batch objects' `results_url` point back at this gateway (same path), never at the upstream."""
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return body
        base = self.public_base_url or _own_base(request)
        changed = False
        for item in (data.get("data") if isinstance(data, dict) and isinstance(data.get("data"), list) else [data]):
            url = item.get("results_url") if isinstance(item, dict) else None
            if isinstance(url, str) and "/v1/messages/batches/" in url:
                item["results_url"] = base.rstrip("/") + url[url.index("/v1/messages/batches/"):]
                changed = True
        return json.dumps(data, separators=(",", ":")).encode() if changed else body


def _endpoint(path: str) -> str:
    if path.startswith("/v1/messages/count_tokens"):
        return "count_tokens"
    if path.startswith("/v1/messages/batches"):
        return "batches"
    if path.startswith("/v1/models"):
        return "models"
    if path.startswith("/v1/messages"):
        return "messages"
    return "other"


def _raw_path(request: Request) -> str:
    """The path as the client sent it (still percent-encoded), which is what goes upstream."""
    raw = request.scope.get("raw_path")
    if isinstance(raw, bytes) and raw:
        return raw.split(b"?", 1)[0].decode("latin-1")
    return quote(request.url.path, safe="/:@!$&'()*+,;=-._~")


def _own_base(request: Request) -> str:
    host = request.headers.get("host") or "localhost"
    return f"{request.url.scheme}://{host}{request.scope.get('root_path', '')}"


async def _raw_body(response: Any) -> Any:
    try:
        async for chunk in response.aiter_raw():
            yield chunk
    finally:
        await response.aclose()


__all__ = ["ProxyEndpoint"]
