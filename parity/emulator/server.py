"""The HTTP face of the emulator: Starlette routes behind one ASGI middleware that does what every API answer shares.

The middleware checks credentials, `anthropic-version` and `anthropic-beta`, assigns the `request-id`, injects
faults, adds the API's response headers, and turns every error into the documented envelope: an `APIError`
keeps its status, anything unexpected is a 500 `api_error` (never a bare traceback), unknown paths are 404 and
wrong methods 405 in the same envelope. Routes only parse their input and call the `Emulator`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from parity.api import ids
from parity.api.body import read_json
from parity.api.errors import APIError
from parity.api.handlers import api_error_handler, error_response, http_error_handler, unexpected_handler
from parity.emulator import models_api, validation
from parity.emulator.faults import Fault, requested_fault
from parity.emulator.context import CTX_KEY, DEFAULT_WORKSPACE, RequestContext, request_context
from parity.emulator.streaming import message_events

if TYPE_CHECKING:
    from parity.emulator.core import EmulatorCore as Emulator
    from parity.emulator.core import Prepared

log = logging.getLogger(__name__)

FAULT_KEY = "parity_fault"
_STATUS_FAULTS = ("rate_limit", "server_error", "overloaded")
_SCHEDULED_ROUTES = {("POST", "/v1/messages")}
_BUG = "Internal server error (the emulator failed; see its log)"


class CutConnection(Exception):
    """Raised after the response started, on purpose: the server drops the connection (a `cut_stream` fault)."""


def request_fault(request: Request) -> Fault | None:
    return request.scope["state"].get(FAULT_KEY)


# ---- routes --------------------------------------------------------------------------------------------------------


def _routes(emulator: Emulator) -> list:
    async def create_message(request: Request) -> Response:
        ctx = request_context(request)
        body = await read_json(request)
        prepared = await run_in_threadpool(emulator.prepare, body, ctx)  # the brain may think; keep the loop free
        if body.get("stream") is True:
            return StreamingResponse(
                _sse(emulator, prepared, request_fault(request)),
                media_type="text/event-stream",
                headers={"cache-control": "no-cache"},
            )
        emulator.commit(prepared)
        if emulator.sleep_latency and prepared.latency_s:
            await asyncio.sleep(prepared.latency_s)
        return JSONResponse(prepared.message)

    async def count_tokens(request: Request) -> Response:
        body = await read_json(request)
        return JSONResponse(await run_in_threadpool(emulator.count_tokens, body, request_context(request)))

    async def list_models(request: Request) -> Response:
        return JSONResponse(models_api.list_models(request.query_params))

    async def retrieve_model(request: Request) -> Response:
        return JSONResponse(models_api.retrieve_model(request.path_params["model_id"]))

    routes: list = [
        Route("/v1/messages", create_message, methods=["POST"]),
        Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", retrieve_model, methods=["GET"]),
    ]
    from parity.emulator import admin_api, batches

    routes.extend(batches.routes(emulator))  # full paths under /v1/messages/batches
    routes.extend(admin_api.routes(emulator))  # the Admin API's usage and cost reports, from the answered calls
    return routes


async def _sse(emulator: Emulator, prepared: Prepared, fault: Fault | None) -> AsyncIterator[bytes]:
    """The SSE body: commits the cache as message_start goes out, paces deltas, and plays stream faults."""
    message = prepared.message
    total = message["usage"]["output_tokens"]
    events = list(message_events(message))
    kind = fault.kind if fault else None
    after = fault.after_tokens if fault and fault.after_tokens is not None else max(1, total // 2)
    deltas = sum(1 for e in events if e.name == "content_block_delta") or 1
    pause = prepared.latency_s / deltas if emulator.sleep_latency else 0.0
    stalled = False
    for event in events:
        if event.name == "message_start":
            emulator.commit(prepared)
            yield event.encode()
            continue
        if kind == "cut_stream" and (event.tokens > after or event.name in ("message_delta", "message_stop")):
            raise CutConnection(f"cut_stream fault after {after} output tokens")
        if kind == "stall" and not stalled and event.tokens > (fault.after_tokens or 0):
            stalled = True
            await asyncio.sleep(emulator.faults.stall_s)
        if kind == "malformed_json":  # the first event after message_start arrives cut in half
            data = event.encode().decode()
            yield data[: max(len("event: x\ndata: {"), len(data) // 2)].encode() + b"\n\n"
            return
        if event.name == "content_block_delta" and pause:
            await asyncio.sleep(pause)
        yield event.encode()


# ---- middleware ----------------------------------------------------------------------------------------------------


class APIMiddleware:
    """Headers, faults and error envelopes for every request (see the module docstring)."""

    def __init__(self, app: Any, emulator: Emulator):
        self.app = app
        self.emulator = emulator

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        emulator = self.emulator
        request_id = ids.request_id()
        headers = Headers(scope=scope)
        workspace = headers.get("anthropic-workspace-id") or None
        started = completed = False
        fault: Fault | None = None

        async def send_with_headers(message: dict) -> None:
            nonlocal started, completed
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                completed = True
            if message["type"] == "http.response.start":
                started = True
                out = MutableHeaders(scope=message)
                out["request-id"] = request_id
                out["anthropic-organization-id"] = emulator.organization_id
                if workspace:
                    out["anthropic-workspace-id"] = workspace
                for name, value in emulator.ratelimits.headers().items():
                    out[name] = value
            await send(message)

        try:
            info = validation.check_headers(headers, api_keys=emulator.api_keys)
            ctx = RequestContext(
                api_version=info.api_version,
                betas=info.betas,
                workspace=workspace or DEFAULT_WORKSPACE,
                request_id=request_id,
                base_url=_base_url(scope, headers),
            )
            state = scope.setdefault("state", {})
            state[CTX_KEY] = ctx
            emulator.ratelimits.record(requests=1)
            fault = requested_fault(headers)
            if fault is None and (scope["method"], scope["path"]) in _SCHEDULED_ROUTES:
                fault = emulator.faults.draw()
            if fault is not None:
                emulator.faults.record(fault)
                state[FAULT_KEY] = fault
                if fault.kind in _STATUS_FAULTS:
                    raise emulator.faults.error_for(fault)
                if fault.kind == "timeout":
                    await asyncio.sleep(emulator.faults.timeout_s)
                    raise emulator.faults.error_for(fault)
            target = send_with_headers
            if fault is not None and fault.kind in ("malformed_json", "cut_stream", "stall"):
                target = _BodyFault(send_with_headers, fault, emulator.faults.stall_s).send
            await self.app(scope, receive, target)
        except APIError as error:
            if started:
                raise
            await error_response(error, request_id)(scope, receive, send_with_headers)
        except CutConnection:
            raise
        except Exception:
            if completed:
                return  # already answered with the 500 envelope by the app's handler (and logged there)
            if started:
                raise
            log.exception("emulator bug answering %s %s", scope.get("method"), scope.get("path"))
            error = APIError(500, _BUG)
            await error_response(error, request_id)(scope, receive, send_with_headers)


class _BodyFault:
    """Faults on a plain (non-SSE) answer: a truncated JSON body, a dropped connection, or a late start."""

    def __init__(self, send: Any, fault: Fault, stall_s: float):
        self._send, self._fault, self._stall_s = send, fault, stall_s
        self._start: dict | None = None
        self._body: list[bytes] = []
        self._passthrough = False

    async def send(self, message: dict) -> None:
        if self._passthrough:
            await self._send(message)
            return
        if message["type"] == "http.response.start":
            content_type = Headers(raw=message.get("headers", [])).get("content-type", "")
            if "text/event-stream" in content_type or message["status"] >= 400:
                self._passthrough = True  # streams play their faults themselves; errors stay intact
                await self._send(message)
                return
            if self._fault.kind == "stall":
                await asyncio.sleep(self._stall_s)
                self._passthrough = True
                await self._send(message)
                return
            self._start = message
            return
        self._body.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = b"".join(self._body)
        start = self._start or {"type": "http.response.start", "status": 200, "headers": []}
        if self._fault.kind == "malformed_json":
            body = body[: max(1, len(body) // 2)]
            MutableHeaders(scope=start)["content-length"] = str(len(body))
            await self._send(start)
            await self._send({"type": "http.response.body", "body": body, "more_body": False})
            return
        await self._send(start)  # cut: promise the whole body, deliver half, drop the connection
        await self._send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
        raise CutConnection("cut_stream fault on a non-streaming answer")


def _base_url(scope: dict, headers: Headers) -> str:
    """Where the client reached us (scheme, Host, root path): batch `results_url`s must point back here."""
    host = headers.get("host")
    if not host:
        server = scope.get("server") or ("localhost", 80)
        host = f"{server[0]}:{server[1]}" if server[1] not in (80, 443, None) else str(server[0])
    return f"{scope.get('scheme', 'http')}://{host}{scope.get('root_path', '')}"


# ---- the app -------------------------------------------------------------------------------------------------------


def _request_id(request: Request) -> str:
    """The request id the middleware assigned (a fresh one for a request it never saw)."""
    return request_context(request).request_id if CTX_KEY in request.scope.get("state", {}) else ids.request_id()


def _cut(request: Request, exc: Exception) -> Response | None:
    if isinstance(exc, CutConnection):
        return Response(status_code=200)  # never sent: the response has started and the connection is dropped
    return None


def build_app(emulator: Emulator) -> APIMiddleware:
    """The emulator's ASGI app: routes of reference §1.5 behind `APIMiddleware`."""
    app = Starlette(
        routes=_routes(emulator),
        exception_handlers={
            HTTPException: http_error_handler(_request_id),
            APIError: api_error_handler(_request_id),
            Exception: unexpected_handler(_BUG, log, what="emulator bug", request_id_of=_request_id, not_a_bug=_cut),
        },
    )
    app.router.redirect_slashes = False  # /v1/messages/ is a 404 envelope, not a redirect the SDK won't follow
    return APIMiddleware(app, emulator)
