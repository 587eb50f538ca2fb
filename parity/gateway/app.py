"""`create_gateway(config)`: the Anthropic-compatible gateway as a Starlette ASGI app.

Endpoints (reference claude-api.md §1.5): POST /v1/messages (streaming or not; routed per task, see
`routing`), POST /v1/messages/count_tokens, /v1/messages/batches* (batch `results_url`s are rewritten to point
back at the gateway, or the SDK would fetch them from the upstream with a gateway key), /v1/models*, and any
other /v1/ path proxied as is; /metrics (Prometheus) and /healthz are the gateway's own.

Routes: a task is routed only on a verified certificate (`certified.route_problem`, checked when the policy is
loaded and reloaded); a refused route's traffic passes through to its baseline. With a signing key (the config's
`signing_key_path`, else PARITY_SIGNING_KEY_FILE or PARITY_SIGNING_KEY), only certificates signed with it count.

Authentication: with a keys file, a client must present a gateway key (either `x-api-key` or
`Authorization: Bearer`, as SDK 0.x/1.x and 2.x send them); its budget and rate limit apply. Without one, any
key is accepted. Either way the upstream only ever sees the gateway's own upstream key (see `upstream`).
Every error the gateway itself produces is the API's envelope with a `request-id`, so the SDK raises the
class it would raise against the API; nothing a client sends can produce a 500 with a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from parity.emulator.errors import APIError
from parity.emulator.ids import request_id as new_request_id
from parity.emulator.server import read_body
from parity.emulator.validation import api_key_of, parse_json_body
from parity.gateway.certified import reason_code
from parity.gateway.config import GatewayConfig
from parity.gateway.keys import KeyLimits, KeyStore, spent_by_key
from parity.gateway.metrics import GatewayMetrics
from parity.gateway.recorder import Record, Recorder
from parity.gateway.retry import CircuitBreaker
from parity.gateway.routing import Call, MessageRouter, TaskRouter
from parity.gateway.streaming import RelayResponse
from parity.gateway.upstream import Upstream, UpstreamFailure, response_headers
from parity.policy import TaskPolicy

if TYPE_CHECKING:  # pragma: no cover
    from parity.proof.signing import SigningKey

log = logging.getLogger("parity.gateway")

DEFER_HEADER = "x-parity-defer"
MAX_JSON_DEPTH = 128
"""Deeper request bodies are refused: routing copies and re-encodes a body, which must not hit Python's recursion
limit. Real requests (tool schemas included) stay far below it."""


def _optional(name: str) -> ModuleType | None:
    """A gateway feature module written separately (shadow, deferral, cachefix, otel), if it is installed."""
    try:
        return importlib.import_module(f"parity.gateway.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"parity.gateway.{name}":
            return None
        log.warning("gateway feature %s is unavailable (%s); serving without it", name, exc)
        return None


class Gateway:
    """The gateway's state: upstream client, policy, keys, metrics, recorder, drift monitors."""

    def __init__(self, config: GatewayConfig):
        config.check()
        self.config = config
        transport = config.transport
        base = config.upstream
        if config.uses_emulator:
            from parity.emulator.service import DEFAULT_BASE_URL, Emulator

            if config.emulator is None:
                config.emulator = Emulator()
            transport = transport or config.emulator.async_transport()
            base = DEFAULT_BASE_URL
        self.upstream = Upstream(
            base,
            api_key=config.resolved_upstream_key(),
            transport=transport,
            connect_timeout_s=config.connect_timeout_s,
            read_timeout_s=config.read_timeout_s,
            retry=config.retry,
            breaker=CircuitBreaker(config.breaker_threshold, config.breaker_cooldown_s),
            http_client=config.http_client,
        )
        self.metrics = GatewayMetrics()
        self._monitors: dict[str, Any] = {}
        self.signing_key = signing_key(config.signing_key_path)
        self.tasks = TaskRouter(config.policy, config.policy_path, signing_key=self.signing_key,
                                on_checked=self._routes_checked)
        self.keys = KeyStore(config.keys_path) if config.keys_path else None
        ledger = None
        spent = {}
        if config.ledger_url:
            from parity.ledger.writer import LedgerWriter

            ledger = LedgerWriter(config.ledger_url)
            if self.keys is not None:
                spent = spent_by_key(config.ledger_url)
        self.limits = KeyLimits(spent)
        self.otel = _optional("otel")
        self.cachefix = _optional("cachefix")
        self.shadow = _optional("shadow")
        self.deferral_module = _optional("deferral")
        self.recorder = Recorder(
            self.metrics, self.limits, ledger=ledger, redact=config.redact, scrub=self.upstream.scrub,
            span_hook=self._span_hook if self.otel is not None else None,
        )
        self.router = MessageRouter(self, seed=config.shadow_seed)
        self.deferral = None
        if self.deferral_module is not None and hasattr(self.deferral_module, "DeferralQueue"):
            self.deferral = self.deferral_module.DeferralQueue(
                self.upstream, on_finished=self._deferred_finished, **config.deferral_options)

    # ---- features written beside this module (guarded: they may be absent) -------------------------------------

    def _span_hook(self, exchange: Any, cost: Any) -> None:
        self.otel.record_span(exchange, cost)  # type: ignore[union-attr]

    def hygiene(self, request: dict[str, Any], policy: TaskPolicy) -> dict[str, Any]:
        """Cache hygiene for a task that opted in (`cache_hygiene: true`), when the module is there."""
        if not policy.cache_hygiene or self.cachefix is None:
            return request
        try:
            fixed, warnings = self.cachefix.apply(request)
        except Exception:
            log.exception("cache hygiene failed for task %s; sending the request unchanged", policy.task)
            return request
        for warning in warnings:
            log.warning("task %s: %s", policy.task, warning)
        return fixed

    def _routes_checked(self, refused: Mapping[str, str]) -> None:
        """The policy in force refuses these routes (task -> problem): count them, and stop watching their drift
        (a persisted rollback stays; only a new certificate clears it)."""
        self.metrics.refused({task: reason_code(problem) for task, problem in refused.items()})
        for task in refused:
            monitor = self._monitors.pop(task, None)
            if monitor is not None:
                self._retire(monitor, reset=False)

    def drift_monitor(self, policy: TaskPolicy) -> Any:
        """The task's DriftMonitor (route mode with a shadow rate), created on first use; None without the module."""
        if self.shadow is None or policy.mode != "route" or policy.shadow_rate <= 0:
            return None
        monitor = self._monitors.get(policy.task)
        if monitor is not None and monitor.policy != policy:
            # the policy file changed for this task (a new proof, a new candidate or prompt): watch it afresh
            self._retire(monitor, reset=_certificate_id(monitor.policy) != _certificate_id(policy))
            monitor = None
        if monitor is None:
            factory = getattr(self.shadow, "DriftMonitor", None)
            if factory is None:
                return None
            options = {"sampler_seed": self.config.shadow_seed, **self.config.drift_options}
            if self.config.state_dir and "state_path" not in options:
                options["state_path"] = str(Path(self.config.state_dir) / f"drift-{_safe_name(policy.task)}.json")
            monitor = factory(
                policy, self.upstream, on_rollback=self._on_rollback,
                on_exchange=lambda params, message, purpose, batch: self._drift_exchange(policy, params, message, purpose, batch),
                **options,
            )
            self._monitors[policy.task] = monitor
            self.metrics.rolled_back.labels(policy.task).set(1 if monitor.rolled_back(policy.task) else 0)
        return monitor

    def _retire(self, monitor: Any, *, reset: bool) -> None:
        """Stop a monitor whose policy was replaced; a new certificate also clears a persisted rollback."""
        if reset:
            with contextlib.suppress(Exception):
                monitor.reset()
            log.info("task %s has a new policy: drift rollback cleared, watching afresh", monitor.task)
        with contextlib.suppress(Exception):
            monitor.close()
        self.metrics.rolled_back.labels(monitor.task).set(0)

    @property
    def monitors(self) -> dict[str, Any]:
        return dict(self._monitors)

    def _on_rollback(self, task: str, reason: str, evidence: dict[str, Any]) -> None:
        self.metrics.rolled_back.labels(task).set(1)
        log.warning("task %s rolled back to its baseline by drift monitoring: %s", task, reason)

    def _deferred_finished(self, item: Any, cost: Any) -> None:
        """A deferred request's batch result arrived: recorded like any exchange (priced at batch rates, charged
        to its key, redacted, metered, traced), off the request path."""
        label = item.task if item.task in self.tasks.policy.tasks else ("unmatched" if item.task else "")
        status = 200 if item.status == "succeeded" else 400 if item.status == "errored" else 410
        tags = {"parity_deferred_id": item.id, "batch_id": str(item.batch_id)}
        duration = max(0.0, (item.finished_at or item.queued_at) - item.queued_at)
        self.recorder.record(Record(
            endpoint="messages", request=item.request, started_at=item.started_at, duration_s=duration,
            route="deferred", status=status, task=item.task, task_label=label,
            reason=None if item.status == "succeeded" else f"batch result {item.status}",
            message=item.message, error=item.error, key_id=item.key_id, tags=tags, counted=False, batch=True,
        ))

    def _drift_exchange(self, policy: TaskPolicy, params: dict[str, Any], message: dict[str, Any], purpose: str,
                        batch: bool) -> None:
        """A baseline or judge call made by drift monitoring: priced and recorded as route "shadow"."""
        self.recorder.record(Record(
            endpoint="messages", request=params, started_at=datetime.now(timezone.utc), duration_s=0.0,
            route="shadow", status=200, task=policy.task, task_label=policy.task, reason=f"drift_{purpose}",
            message=message, counted=False, batch=batch, tags={"drift": purpose},
        ))

    # ---- requests ----------------------------------------------------------------------------------------------

    def authenticate(self, request: Request) -> tuple[str | None, APIError | None]:
        """(gateway key id or None, the error to answer with or None)."""
        if self.keys is None:
            return None, None
        key = self.keys.authenticate(api_key_of(request.headers))
        if key is None:
            return None, APIError(401, "invalid x-api-key: present a gateway key (`parity keys create`)")
        return key.id, self.limits.admit(key)

    def key_only(self, request: Request) -> tuple[str | None, APIError | None]:
        """The gateway key of a request to the gateway's own endpoints (no budget or rate limit: reading a
        deferred answer already paid for, or drift status, costs nothing)."""
        if self.keys is None:
            return None, None
        key = self.keys.authenticate(api_key_of(request.headers))
        if key is None:
            return None, APIError(401, "invalid x-api-key: present a gateway key (`parity keys create`)")
        return key.id, None

    async def messages(self, request: Request) -> Response:
        request_id = new_request_id()
        started_at, t0 = datetime.now(timezone.utc), time.perf_counter()
        key_id, denied = self.authenticate(request)
        if denied is not None:
            return self.error(denied, request_id, "messages", t0)
        try:
            raw = await read_body(request, self.config.max_body_bytes)
            body = parse_json_body(raw, limit=self.config.max_body_bytes)
            if nested_deeper_than(raw, body, MAX_JSON_DEPTH):
                raise APIError(400, f"The request body is nested more than {MAX_JSON_DEPTH} levels deep; flatten it")
        except APIError as error:
            return self.error(error, request_id, "messages", t0)
        if not isinstance(body, dict):
            body = {}  # not an object: the upstream says what is wrong with it; nothing to route
        self.tasks.reload_if_changed()
        ident = self.tasks.identify(request.headers, body)
        if ident.strip_keys:
            metadata = {k: v for k, v in body["metadata"].items() if k not in ident.strip_keys}
            body = {**body, "metadata": metadata} if metadata else {k: v for k, v in body.items() if k != "metadata"}
            raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        if ident.policy is not None and ident.policy.cache_hygiene and self.cachefix is not None:
            fixed = self.hygiene(body, ident.policy)
            if fixed is not body:
                body, raw = fixed, json.dumps(fixed, separators=(",", ":"), ensure_ascii=False).encode()
        call = Call(
            request_id=request_id, started_at=started_at, t0=t0, headers=request.headers.raw, body=body, raw=raw,
            stream=body.get("stream") is True, ident=ident, key_id=key_id,
            tags={"gateway_request_id": request_id},
        )
        if request.headers.get(DEFER_HEADER, "").strip().lower() == "true":
            return await self._defer(call)
        return await self.router.handle(call)

    async def _defer(self, call: Call) -> Response:
        if self.deferral is None:
            error = APIError(400, f"{DEFER_HEADER}: deferral to Message Batches is not available in this gateway")
            return self.error(error, call.request_id, "messages", call.t0)
        if call.stream:
            error = APIError(400, f"{DEFER_HEADER}: a deferred request cannot stream; drop `stream` or the header")
            return self.error(error, call.request_id, "messages", call.t0)
        if self.upstream.api_key is None:
            error = APIError(400, f"{DEFER_HEADER}: this gateway has no upstream key of its own, so it cannot send "
                                  "Message Batches for its clients; start it with PARITY_UPSTREAM_API_KEY set")
            return self.error(error, call.request_id, "messages", call.t0)
        try:
            handle = await self.deferral.submit(call.body, task=call.ident.task, key_id=call.key_id)
        except APIError as error:
            return self.error(error, call.request_id, "messages", call.t0)
        except UpstreamFailure as failure:
            return self.error(failure.api_error(), call.request_id, "messages", call.t0)
        self.recorder.record(Record(
            endpoint="messages", request=call.body, started_at=call.started_at, duration_s=call.elapsed(),
            route="deferred", status=202, task=call.ident.task, task_label=call.ident.label, key_id=call.key_id,
            tags=call.tags, ledger=False,
        ))
        return JSONResponse(handle, status_code=202, headers={"request-id": call.request_id, "x-parity-route": "deferred"})

    async def proxy(self, request: Request) -> Response:
        """Any other /v1/ endpoint: forwarded to the upstream as is (batches get their results_url rewritten)."""
        request_id = new_request_id()
        t0 = time.perf_counter()
        path = request.url.path
        endpoint = _endpoint(path)
        key_id, denied = self.authenticate(request)
        if denied is not None:
            return self.error(denied, request_id, endpoint, t0)
        try:
            raw = await read_body(request, self.config.max_body_bytes)
        except APIError as error:
            return self.error(error, request_id, endpoint, t0)
        results = endpoint == "batches" and path.rstrip("/").endswith("/results")
        query = request.scope.get("query_string", b"")
        forward = _raw_path(request)
        try:
            answer = await self.upstream.send(
                request.method, forward, headers=self.upstream.headers(request.headers.raw), content=raw or None,
                query=query, stream=results, expect_json=False, retries=request.method in ("GET", "DELETE") or endpoint == "count_tokens",
            )
        except UpstreamFailure as failure:
            return self.error(failure.api_error(), request_id, endpoint, t0, outcome="upstream_error")
        except ValueError:
            return self.error(APIError(404, f"Not found: {request.method} {path[:200]!r} is not a path this gateway forwards"),
                              request_id, endpoint, t0)
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
        base = self.config.public_base_url or _own_base(request)
        changed = False
        for item in (data.get("data") if isinstance(data, dict) and isinstance(data.get("data"), list) else [data]):
            url = item.get("results_url") if isinstance(item, dict) else None
            if isinstance(url, str) and "/v1/messages/batches/" in url:
                item["results_url"] = base.rstrip("/") + url[url.index("/v1/messages/batches/"):]
                changed = True
        return json.dumps(data, separators=(",", ":")).encode() if changed else body

    async def metrics_endpoint(self, request: Request) -> Response:
        self.metrics.breakers(self.upstream.breaker.open_models(), set(self.upstream.breaker.open_models()))
        return Response(self.metrics.render(), media_type=self.metrics.content_type)

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "tasks": sorted(self.tasks.policy.tasks), "upstream": self.config.upstream if not self.config.uses_emulator else "emulator"})

    def error(self, error: APIError, request_id: str, endpoint: str, t0: float, outcome: str | None = None) -> JSONResponse:
        """The API's error envelope for an error the gateway itself answers with."""
        if outcome is None:
            outcome = "client_error" if error.status < 500 else "gateway_error"
        self.metrics.request(endpoint, "rejected", "", outcome, time.perf_counter() - t0)
        body = error.body(request_id)
        body["error"]["message"] = self.upstream.scrub(body["error"]["message"])
        return JSONResponse(body, status_code=error.status, headers={**error.headers, "request-id": request_id})

    async def aclose(self) -> None:
        """Stop: send what deferral still holds, stop drift workers, close the upstream, drain the ledger."""
        if self.deferral is not None:
            with contextlib.suppress(Exception):
                await self.deferral.aclose()
        for monitor in self._monitors.values():
            with contextlib.suppress(Exception):
                await monitor.aclose()
        await self.upstream.aclose()
        await asyncio.to_thread(self.recorder.flush, 30.0)  # off the loop: records handed over last still arrive
        self.recorder.close()
        if self.otel is not None and hasattr(self.otel, "flush"):
            with contextlib.suppress(Exception):
                self.otel.flush()


def signing_key(path: str | None) -> SigningKey | None:
    """The key route certificates must be signed with: the file at `path`, else the environment's
    (PARITY_SIGNING_KEY_FILE, PARITY_SIGNING_KEY); None when none is configured."""
    from parity.proof.signing import load_signing_key

    return load_signing_key(path)


def _certificate_id(policy: TaskPolicy) -> Any:
    certificate = getattr(policy, "certificate", None)
    if isinstance(certificate, dict):
        return certificate.get("id")
    return getattr(certificate, "id", certificate)


def _safe_name(task: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in task)[:100] or "task"


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


async def _http_error(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 500)
    if status == 404:
        error = APIError(404, f"Not found: {request.method} {request.url.path} is not an endpoint of this API")
    elif status == 405:
        error = APIError(405, f"Method {request.method} is not allowed on {request.url.path}", type="invalid_request_error")
    else:
        error = APIError(status, str(getattr(exc, "detail", "")) or "Request failed")
    rid = new_request_id()
    return JSONResponse(error.body(rid), status_code=error.status, headers={"request-id": rid})


async def _unexpected(request: Request, exc: Exception) -> Response:
    """A gateway bug: logged with its traceback, answered with the API's 500 envelope (never a bare trace)."""
    if isinstance(exc, OSError) and "disconnect" in str(exc):
        log.debug("client went away during %s %s", request.method, request.url.path)
        return Response(status_code=499)
    log.error("gateway bug answering %s %s", request.method, request.url.path, exc_info=exc)
    rid = new_request_id()
    error = APIError(500, "Internal server error in the parity gateway (see its log)")
    return JSONResponse(error.body(rid), status_code=500, headers={"request-id": rid})


def create_gateway(config: GatewayConfig) -> Starlette:
    """The gateway app for `config`; `app.state.gateway` is its `Gateway` (tests flush its recorder there)."""
    gateway = Gateway(config)
    methods = ["GET", "POST", "DELETE", "PUT", "PATCH"]
    routes: list[Any] = [
        Route("/v1/messages", gateway.messages, methods=["POST"]),
        Route("/v1/messages/count_tokens", gateway.proxy, methods=["POST"]),
        Route("/v1/messages/batches", gateway.proxy, methods=["GET", "POST"]),
        Route("/v1/messages/batches/{rest:path}", gateway.proxy, methods=["GET", "POST", "DELETE"]),
        Route("/v1/models", gateway.proxy, methods=["GET"]),
        Route("/v1/models/{rest:path}", gateway.proxy, methods=["GET"]),
        Route("/metrics", gateway.metrics_endpoint, methods=["GET"]),
        Route("/healthz", gateway.health, methods=["GET"]),
    ]
    auth = gateway.key_only if gateway.keys is not None else None
    if gateway.deferral is not None and hasattr(gateway.deferral_module, "routes"):
        routes[0:0] = list(gateway.deferral_module.routes(gateway.deferral, auth))  # type: ignore[union-attr]
    if gateway.shadow is not None and hasattr(gateway.shadow, "routes"):
        routes[0:0] = list(gateway.shadow.routes(lambda: gateway.monitors, auth))
    routes.append(Route("/v1/{rest:path}", gateway.proxy, methods=methods))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        yield
        await gateway.aclose()

    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error, Exception: _unexpected},
        lifespan=lifespan,
    )
    app.router.redirect_slashes = False
    app.state.gateway = gateway
    return app
