"""A request body as the API reads it: within a size limit (413 past it), and JSON (400 for anything else)."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from parity.api.errors import APIError, invalid

MAX_BODY_BYTES = 32 * 1024 * 1024
"""The API's limit on a request body: past 32 MB it answers 413 `request_too_large` (reference claude-api.md §2.1)."""


def too_large(limit: int = MAX_BODY_BYTES) -> APIError:
    """The 413 `request_too_large` the API answers for a body over `limit` bytes."""
    return APIError(
        413,
        f"Request exceeds the maximum allowed number of bytes ({limit:,}); send a smaller request",
        type="request_too_large",
    )


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The raw body, refusing (413) as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json_body(raw: bytes, *, limit: int = MAX_BODY_BYTES) -> Any:
    """The decoded JSON body; 413 above `limit` bytes, 400 for anything that is not JSON."""
    if len(raw) > limit:
        raise too_large(limit)
    if not raw.strip():
        raise invalid("The request body is empty; send a JSON object (content-type: application/json)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise invalid(f"The request body is not valid UTF-8 (byte {exc.start}); send UTF-8 encoded JSON") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise invalid(f"The request body is not valid JSON: {exc}") from None


async def read_json(request: Request, limit: int = MAX_BODY_BYTES) -> Any:
    """`read_body` then `parse_json_body`: the request's JSON, or the APIError that says what is wrong with it."""
    return parse_json_body(await read_body(request, limit), limit=limit)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")
