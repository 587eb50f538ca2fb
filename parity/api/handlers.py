"""The API's answers for what no route answers, for any Starlette app that speaks the API (the emulator, the gateway).

An unknown path is a 404 `not_found_error`, a wrong method a 405, an `APIError` its own envelope, and a bug a 500
`api_error` with its traceback in the log, never on the wire: always the documented envelope with a `request-id`,
so the SDK raises the class it would raise against the API. Each app says where its request ids come from (a fresh
one, or the one its middleware already assigned) and what its 500 says.

    app = Starlette(routes=..., exception_handlers={
        HTTPException: http_error_handler(),
        Exception: unexpected_handler("Internal server error (see the log)", log, what="gateway bug"),
    })
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from parity.api.errors import APIError
from parity.api.ids import request_id

RequestIdOf = Callable[[Request], str]
"""Where a handler takes the `request-id` of its answer from."""
Handler = Callable[[Request, Exception], Awaitable[Response]]


def fresh_request_id(request: Request) -> str:
    """A new request id (for an app whose middleware has not assigned one)."""
    return request_id()


def error_response(error: APIError, request_id: str, *, scrub: Callable[[str], str] | None = None) -> JSONResponse:
    """`error` as the API answers it: its envelope, status and headers, with `request-id`. `scrub` cleans the message
    of anything that must not leave the process (the gateway's upstream key)."""
    body = error.body(request_id)
    if scrub is not None:
        body["error"]["message"] = scrub(body["error"]["message"])
    return JSONResponse(body, status_code=error.status, headers={**error.headers, "request-id": request_id})


def http_error(request: Request, exc: Exception) -> APIError:
    """The API's error for a Starlette `HTTPException`: 404 for an unknown path, 405 for a wrong method."""
    status = getattr(exc, "status_code", 500)
    if status == 404:
        return APIError(404, f"Not found: {request.method} {request.url.path} is not an endpoint of this API")
    if status == 405:
        return APIError(405, f"Method {request.method} is not allowed on {request.url.path}", type="invalid_request_error")
    return APIError(status, str(getattr(exc, "detail", "")) or "Request failed")


def http_error_handler(request_id_of: RequestIdOf = fresh_request_id) -> Handler:
    """The handler for `HTTPException` (see `http_error`)."""

    async def handle(request: Request, exc: Exception) -> Response:
        return error_response(http_error(request, exc), request_id_of(request))

    return handle


def api_error_handler(request_id_of: RequestIdOf = fresh_request_id) -> Handler:
    """The handler for an `APIError` a route raised: its own envelope."""

    async def handle(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, APIError)
        return error_response(exc, request_id_of(request))

    return handle


def unexpected_handler(
    message: str,
    log: logging.Logger,
    *,
    what: str = "bug",
    request_id_of: RequestIdOf = fresh_request_id,
    not_a_bug: Callable[[Request, Exception], Response | None] | None = None,
) -> Handler:
    """The handler for any other exception: a bug, logged with its traceback as "`what` answering METHOD PATH" and
    answered with a 500 `api_error` saying `message`. `not_a_bug(request, exc)` answers the exceptions an app expects
    (a client that went away, a connection dropped on purpose); None means it is a bug after all."""

    async def handle(request: Request, exc: Exception) -> Response:
        if not_a_bug is not None:
            answer = not_a_bug(request, exc)
            if answer is not None:
                return answer
        log.error("%s answering %s %s", what, request.method, request.url.path, exc_info=exc)
        return error_response(APIError(500, message), request_id_of(request))

    return handle


__all__ = [
    "api_error_handler", "error_response", "fresh_request_id", "http_error", "http_error_handler", "unexpected_handler",
]
