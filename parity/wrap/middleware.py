"""`RecordingMiddleware`: the anthropic client middleware that records Messages and batch traffic.

It runs once per HTTP attempt, innermost, so it sees what went over the wire: the request body is the exact bytes
sent (`http_response.request.content`, key order included, which the cache diagnosis needs), and the response
body is the exact bytes received. A stream is recorded by teeing the raw byte stream (the caller reads it exactly
as before); when it ends, the recorder accumulates the SSE events into the final Message. A retried attempt (429,
529, 5xx) is an Exchange of its own, tagged `parity.attempt`, because each attempt is a separate request the API
saw. Connection failures (no HTTP response) are recorded with an error envelope of type `api_connection_error` or
`timeout_error` and re-raised unchanged. A failure inside the recorder itself is logged, never raised.

This module imports the SDK; `parity.wrap` loads it on first use so that `import parity` does not.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import httpx2
from anthropic import APITimeoutError
from anthropic._middleware import Middleware

from parity.wrap.recorder import Attempt, SDKRecorder
from parity.wrap.sinks import Sink
from parity.wrap.tags import current_tags

log = logging.getLogger("parity.wrap")


def _path_of(url: str) -> str:
    return url.split("?", 1)[0]


def _recorded(method: str, path: str) -> bool:
    return "/v1/messages" in path and not path.endswith("count_tokens") and method in ("POST", "GET")


def _merged_json(request: Any) -> Any:
    """The request body as the SDK would send it (json_data merged with extra_body), for attempts with no response."""
    options = request.options
    body = options.json_data
    extra = getattr(options, "extra_json", None)
    if isinstance(body, Mapping) and isinstance(extra, Mapping):
        return {**body, **extra}
    return body if body is not None else extra


class _Tee:
    """Keeps a copy of each chunk of a streamed body as the caller reads it; submits the attempt once, when the
    stream is closed (read to the end or abandoned)."""

    def __init__(self, inner: Any, attempt: Attempt, recorder: SDKRecorder, t0: float):
        self._inner, self._attempt, self._recorder, self._t0 = inner, attempt, recorder, t0
        self._done = False
        self._finished = False

    def _keep(self, chunk: bytes) -> bytes:
        self._attempt.chunks.append(chunk)
        return chunk

    def _finish(self) -> None:
        if not self._done:
            self._done = True
            self._attempt.stopped_early = not self._finished
            self._attempt.duration_ms = int((time.perf_counter() - self._t0) * 1000)
            self._recorder.submit(self._attempt)


class _SyncTee(_Tee, httpx2.SyncByteStream):
    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            yield self._keep(chunk)
        self._finished = True

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self._finish()


class _AsyncTee(_Tee, httpx2.AsyncByteStream):
    async def __aiter__(self) -> Any:
        async for chunk in self._inner:
            yield self._keep(chunk)
        self._finished = True

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._finish()


class RecordingMiddleware(Middleware):
    """anthropic client middleware that records Messages and batch traffic through an `SDKRecorder`.

    `wrap()` adds it for you; pass it yourself as `anthropic.Anthropic(middleware=[RecordingMiddleware(...)])`
    when you build the client.
    """

    def __init__(self, sink: Sink | SDKRecorder, *, tags: Mapping[str, str] | None = None,
                 clock: Callable[[], float] | None = None):
        self.recorder = sink if isinstance(sink, SDKRecorder) else SDKRecorder(sink, tags, clock)

    def _begin(self, request: Any) -> Attempt | None:
        method = str(request.method).upper()
        path = _path_of(str(request.url))
        if not _recorded(method, path):
            return None
        return Attempt(
            method=method,
            path=path,
            started_at=self.recorder.clock(),
            tags=current_tags(),
            retries_taken=request.retries_taken,
        )

    def _failed(self, attempt: Attempt, request: Any, exc: BaseException, t0: float) -> None:
        attempt.duration_ms = int((time.perf_counter() - t0) * 1000)
        attempt.request_json = _merged_json(request)
        attempt.failure = str(exc) or type(exc).__name__
        attempt.failure_type = "timeout_error" if isinstance(exc, APITimeoutError) else "api_connection_error"
        self.recorder.submit(attempt)

    def _capture(self, attempt: Attempt, result: Any, t0: float, *, is_async: bool) -> None:
        response = getattr(result, "http_response", None)
        if not isinstance(response, httpx2.Response):
            return  # an outer middleware short-circuited: nothing went over the wire
        attempt.status = response.status_code
        attempt.content_type = response.headers.get("content-type", "")
        attempt.content_encoding = response.headers.get("content-encoding", "")
        with contextlib.suppress(Exception):
            attempt.request_body = response.request.content
        try:
            attempt.body = response.content
        except httpx2.ResponseNotRead:
            attempt.body = None
        if attempt.body is not None:
            attempt.duration_ms = int((time.perf_counter() - t0) * 1000)
            self.recorder.submit(attempt)
        elif is_async:
            response.stream = _AsyncTee(response.stream, attempt, self.recorder, t0)
        else:
            response.stream = _SyncTee(response.stream, attempt, self.recorder, t0)

    def handle(self, request: Any, call_next: Any) -> Any:
        attempt = self._begin(request)
        if attempt is None:
            return call_next(request)
        t0 = time.perf_counter()
        try:
            result = call_next(request)
        except Exception as exc:
            with contextlib.suppress(Exception):
                self._failed(attempt, request, exc, t0)
            raise
        try:
            self._capture(attempt, result, t0, is_async=False)
        except Exception:
            log.exception("parity.wrap could not capture %s %s", attempt.method, attempt.path)
        return result

    async def handle_async(self, request: Any, call_next: Any) -> Any:
        attempt = self._begin(request)
        if attempt is None:
            return await call_next(request)
        t0 = time.perf_counter()
        try:
            result = await call_next(request)
        except Exception as exc:
            with contextlib.suppress(Exception):
                self._failed(attempt, request, exc, t0)
            raise
        try:
            self._capture(attempt, result, t0, is_async=True)
        except Exception:
            log.exception("parity.wrap could not capture %s %s", attempt.method, attempt.path)
        return result


__all__ = ["RecordingMiddleware"]
