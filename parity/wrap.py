"""`parity.wrap(client)`: record every Messages API call an `anthropic` client makes as an Exchange.

How it records, and why this way:

* It uses the SDK's own extension point, client middleware (anthropic 2.x `middleware=`), added with
  `client.with_middleware(...)`. The returned client is the same class with the same options, sharing the
  same HTTP connection pool; return values, exceptions, retries and streaming are the SDK's own, because the
  middleware hands back exactly what the rest of the chain returned.
* The middleware runs once per HTTP attempt, innermost, so it sees what went over the wire: the request body is
  the exact bytes sent (`http_response.request.content`, key order included, which the cache diagnosis needs),
  and the response body is the exact bytes received. A stream is recorded by teeing the raw byte stream (the
  caller reads it exactly as before); when it ends, the SSE events are accumulated into the final Message.
  A retried attempt (429, 529, 5xx) is an Exchange of its own, tagged `parity.attempt`, because each attempt
  is a separate request the API saw.
* Nothing is parsed or written on the caller's path: the middleware only takes timestamps and references to
  the bytes, and puts them on a queue; one background thread per recorder decodes them, builds Exchanges and
  appends JSON lines (or calls the sink). `bench/wrap_overhead.py` measures the added latency.
* Batches: `messages.batches.create` remembers each request's params by `custom_id`; `retrieve` notes when
  the batch ended; `results` yields one Exchange per result line (`batch=True`, started at the batch's
  `created_at`, lasting until `ended_at`). Results for a batch created by another process carry a request
  holding only the model and tag `parity.custom_id`, because its params were never seen.

Connection failures (no HTTP response) are recorded with an error envelope of type `api_connection_error`
or `timeout_error` and re-raised unchanged. A failure inside the recorder itself is logged, never raised.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import functools
import json
import logging
import os
import queue
import re
import threading
import time
import weakref
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import IO, Any, TypeVar, Union

from parity.errors import ParityError
from parity.exchange import Exchange, parse_time

log = logging.getLogger("parity.wrap")

Sink = Union[str, "os.PathLike[str]", Callable[[Exchange], Any], IO[str]]
ClientT = TypeVar("ClientT")

_MESSAGES = re.compile(r"/v1/messages/?$")
_BATCHES = re.compile(r"/v1/messages/batches/?$")
_BATCH = re.compile(r"/v1/messages/batches/([^/?]+)/?$")
_RESULTS = re.compile(r"/v1/messages/batches/([^/?]+)/results/?$")

_call_tags: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar("parity_wrap_tags", default={})


@contextlib.contextmanager
def tagged(**tags: str) -> Iterator[None]:
    """Add tags (e.g. `task="triage"`) to every Exchange recorded inside this block, in this thread or task."""
    token = _call_tags.set({**_call_tags.get(), **{k: str(v) for k, v in tags.items()}})
    try:
        yield
    finally:
        _call_tags.reset(token)


@dataclass
class _Attempt:
    """What the middleware captured about one HTTP attempt; decoded later, off the caller's path."""

    method: str
    path: str
    started_at: float
    tags: dict[str, str]
    retries_taken: int
    request_body: bytes | None = None
    request_json: Any = None
    status: int | None = None
    content_type: str = ""
    content_encoding: str = ""
    body: bytes | None = None
    chunks: list[bytes] = field(default_factory=list)
    duration_ms: int = 0
    failure: str | None = None
    failure_type: str = "api_connection_error"
    stopped_early: bool = False


def _now() -> float:
    return time.time()


def _yield_gil() -> None:
    """Let a waiting application thread run now rather than after the interpreter's 5 ms switch interval."""
    time.sleep(0)


class Recorder:
    """Turns captured attempts into Exchanges on a background thread and hands them to the sink."""

    def __init__(self, sink: Sink, tags: Mapping[str, str] | None = None, clock: Callable[[], float] | None = None):
        self.tags = {str(k): str(v) for k, v in (tags or {}).items()}
        self.clock = clock or _now
        self._emit, self._flush_sink, self._close_sink = _open_sink(sink)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._batches: dict[str, _BatchInfo] = {}
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="parity-wrap-writer", daemon=True)
        self._thread.start()
        _live.add(self)

    def submit(self, attempt: _Attempt) -> None:
        """Queue one finished attempt; never blocks, never raises."""
        self._queue.put(attempt)

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until everything submitted so far is written; False if it did not finish within `timeout`."""
        if self._closed or not self._thread.is_alive():
            return True
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def close(self, timeout: float | None = 10.0) -> None:
        """Flush, stop the writer thread and close a sink file this recorder opened."""
        if self._closed:
            return
        self.flush(timeout)
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout)
        self._close_sink()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, threading.Event):
                self._safe(self._flush_sink)
                item.set()
                continue
            try:
                for exchange in self._exchanges(item):
                    self._safe(self._emit, exchange)
                    _yield_gil()
            except Exception:  # a recorder bug must never reach the caller
                log.exception("parity.wrap could not record %s %s", item.method, item.path)
            if self._queue.empty():
                self._safe(self._flush_sink)

    @staticmethod
    def _safe(fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("parity.wrap sink failed")

    # -- decoding ---------------------------------------------------------------------------------------------

    def _exchanges(self, a: _Attempt) -> list[Exchange]:
        path = a.path
        if a.method == "POST" and _MESSAGES.search(path):
            return [self._message_exchange(a)]
        if a.method == "POST" and _BATCHES.search(path):
            self._note_batch_created(a)
            return []
        match = _RESULTS.search(path)
        if a.method == "GET" and match:
            return self._batch_results(match.group(1), a)
        match = _BATCH.search(path)
        if a.method == "GET" and match:
            self._note_batch_status(a)
        return []

    def _tags(self, a: _Attempt) -> dict[str, str]:
        tags = {**self.tags, **a.tags}
        if a.retries_taken:
            tags["parity.attempt"] = str(a.retries_taken + 1)
        return tags

    def _message_exchange(self, a: _Attempt) -> Exchange:
        request = _request_dict(a)
        response: dict[str, Any] | None = None
        error: dict[str, Any] | None = None
        if a.failure is not None:
            error = _envelope(a.failure_type, a.failure)
        else:
            body = _body(a)
            if a.status is not None and 200 <= a.status < 300:
                if "text/event-stream" in a.content_type:
                    response, error = accumulate_sse(body, pause=_yield_gil)
                    if error and error["error"].get("type") == "incomplete_stream" and a.stopped_early:
                        error = _envelope("incomplete_stream", "the caller closed the stream before message_stop")
                else:
                    response = _json_object(body)
                    if response is None:
                        error = _envelope("malformed_response", f"HTTP {a.status} body is not a JSON object")
            else:
                error = _json_object(body) or _envelope(
                    "http_error", f"HTTP {a.status}: {body[:500].decode('utf-8', 'replace')}"
                )
        return Exchange(
            request=request,
            response=response,
            error=error,
            started_at=datetime.fromtimestamp(a.started_at, timezone.utc),
            duration_ms=a.duration_ms,
            tags=self._tags(a),
        )

    def _note_batch_created(self, a: _Attempt) -> None:
        if a.failure is not None or a.status is None or not 200 <= a.status < 300:
            return
        batch = _json_object(_body(a))
        request = _request_dict(a)
        if not batch or not isinstance(batch.get("id"), str):
            return
        params: dict[str, dict[str, Any]] = {}
        for item in request.get("requests") or []:
            if isinstance(item, dict) and isinstance(item.get("custom_id"), str) and isinstance(item.get("params"), dict):
                params[item["custom_id"]] = item["params"]
        info = self._batches.setdefault(batch["id"], _BatchInfo())
        info.params.update(params)
        info.tags = self._tags(a)
        info.update(batch)

    def _note_batch_status(self, a: _Attempt) -> None:
        if a.failure is not None or a.status is None or not 200 <= a.status < 300:
            return
        batch = _json_object(_body(a))
        if batch and isinstance(batch.get("id"), str):
            self._batches.setdefault(batch["id"], _BatchInfo()).update(batch)

    def _batch_results(self, batch_id: str, a: _Attempt) -> list[Exchange]:
        if a.failure is not None or a.status is None or not 200 <= a.status < 300:
            return []
        info = self._batches.get(batch_id) or _BatchInfo()
        started = info.created_at or datetime.fromtimestamp(a.started_at, timezone.utc)
        duration = 0
        if info.created_at and info.ended_at:
            duration = max(0, int((info.ended_at - info.created_at).total_seconds() * 1000))
        out: list[Exchange] = []
        for raw in _body(a).splitlines():
            line = _json_object(raw)
            if not line or not isinstance(line.get("custom_id"), str):
                continue
            custom_id = line["custom_id"]
            result = line.get("result") if isinstance(line.get("result"), dict) else {}
            kind = result.get("type")
            response = result.get("message") if kind == "succeeded" else None
            error: dict[str, Any] | None = None
            if kind == "errored":
                error = result.get("error") if isinstance(result.get("error"), dict) else _envelope("errored", "")
            elif kind != "succeeded":
                error = _envelope(str(kind), f"batch request was {kind}; not billed")
            tags = {**(info.tags or self._tags(a)), **a.tags}
            request = info.params.get(custom_id)
            if request is None:
                model = response.get("model") if isinstance(response, dict) else None
                request = {"model": model} if model else {}
            tags["parity.custom_id"] = custom_id
            tags["parity.batch_id"] = batch_id
            out.append(
                Exchange(
                    request=request,
                    response=response if isinstance(response, dict) else None,
                    error=error,
                    started_at=started,
                    duration_ms=duration,
                    tags=tags,
                    batch=True,
                )
            )
        return out


@dataclass
class _BatchInfo:
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    created_at: datetime | None = None
    ended_at: datetime | None = None
    tags: dict[str, str] | None = None

    def update(self, batch: Mapping[str, Any]) -> None:
        for name in ("created_at", "ended_at"):
            value = batch.get(name)
            if isinstance(value, str):
                with contextlib.suppress(ValueError):
                    setattr(self, name, parse_time(value))


def _envelope(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


def _json_object(raw: bytes | str) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _request_dict(a: _Attempt) -> dict[str, Any]:
    if a.request_body:
        value = _json_object(a.request_body)
        if value is not None:
            return value
    return a.request_json if isinstance(a.request_json, dict) else {}


def _body(a: _Attempt) -> bytes:
    """The decoded response body: read whole by httpx, or re-assembled from a tee of the raw stream."""
    if a.body is not None:
        return a.body
    raw = b"".join(a.chunks)
    encoding = a.content_encoding.lower().strip()
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(raw)
    if encoding == "deflate":
        try:
            return zlib.decompressobj().decompress(raw)
        except zlib.error:
            return zlib.decompressobj(-zlib.MAX_WBITS).decompress(raw)
    return raw


# -- SSE ------------------------------------------------------------------------------------------------------


def iter_sse(data: bytes) -> Iterator[tuple[str | None, str]]:
    """Yield (event name, data) for each server-sent event in `data` (blank-line separated, CRLF tolerant)."""
    text = data.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n")
    event: str | None = None
    lines: list[str] = []
    for line in text.split("\n"):
        if not line:
            if lines or event is not None:
                yield event, "\n".join(lines)
            event, lines = None, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "event":
            event = value
        elif name == "data":
            lines.append(value)
    if lines or event is not None:
        yield event, "\n".join(lines)


def accumulate_sse(data: bytes, *, pause: Callable[[], None] | None = None
                   ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Rebuild the final Message from a Messages SSE stream, the way the SDK's MessageStream accumulates it.

    Returns (message, error): the error is the stream's `error` event envelope, or an `incomplete_stream`
    envelope when the stream stopped before `message_stop`; the message is whatever was accumulated (None if
    `message_start` never came). `pause` is called every few events (the recorder passes `time.sleep(0)` so
    its thread hands the GIL back to the application instead of holding it for a whole switch interval).
    """
    message: dict[str, Any] | None = None
    partial_json: dict[int, str] = {}
    error: dict[str, Any] | None = None
    stopped = False
    for number, (event, payload) in enumerate(iter_sse(data)):
        if pause is not None and number % 16 == 15:
            pause()
        if event is None or event == "ping" or not payload:
            continue
        try:
            body = json.loads(payload)
        except ValueError:
            return message, _envelope("malformed_stream", f"event {event!r} carries data that is not JSON")
        if event == "error":
            return message, body if isinstance(body, dict) else _envelope("stream_error", payload[:500])
        if event == "message_start":
            message = dict(body.get("message") or {})
            message["content"] = list(message.get("content") or [])
            message["usage"] = dict(message.get("usage") or {})
            continue
        if message is None:
            continue
        content: list[dict[str, Any]] = message["content"]
        if event == "content_block_start":
            content.append(dict(body.get("content_block") or {}))
        elif event == "content_block_delta":
            index, delta = body.get("index"), body.get("delta") or {}
            if not isinstance(index, int) or not 0 <= index < len(content):
                continue
            block = content[index]
            kind = delta.get("type")
            if kind == "text_delta":
                block["text"] = block.get("text", "") + delta.get("text", "")
            elif kind == "input_json_delta":
                partial_json[index] = partial_json.get(index, "") + delta.get("partial_json", "")
            elif kind == "thinking_delta":
                block["thinking"] = block.get("thinking", "") + delta.get("thinking", "")
            elif kind == "signature_delta":
                block["signature"] = delta.get("signature", "")
            elif kind == "citations_delta":
                block["citations"] = list(block.get("citations") or []) + [delta.get("citation")]
        elif event == "content_block_stop":
            index = body.get("index")
            if isinstance(index, int) and index in partial_json and 0 <= index < len(content):
                text = partial_json.pop(index)
                try:
                    content[index]["input"] = json.loads(text) if text else {}
                except ValueError:
                    content[index]["input"] = text
        elif event == "message_delta":
            for key, value in (body.get("delta") or {}).items():
                message[key] = value
            for key, value in (body.get("usage") or {}).items():
                if value is not None:
                    message["usage"][key] = value
        elif event == "message_stop":
            stopped = True
    if message is not None and not stopped and error is None:
        error = _envelope("incomplete_stream", "the stream ended before message_stop")
    return message, error


# -- sinks ----------------------------------------------------------------------------------------------------


def _open_sink(sink: Sink) -> tuple[Callable[[Exchange], None], Callable[[], None], Callable[[], None]]:
    """(emit, flush, close) for a path (JSONL append), a text file object, or a callable taking an Exchange."""
    if isinstance(sink, (str, os.PathLike)):
        path = os.fspath(sink)
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise ParityError(f"wrap sink {path!r}: directory {directory!r} does not exist; create it first")
        # One O_APPEND write per Exchange: lines from several processes appending to one file never interleave.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

        def emit(exchange: Exchange) -> None:
            data = (exchange.to_json() + "\n").encode("utf-8")
            while data:
                data = data[os.write(fd, data):]

        return emit, lambda: None, lambda: os.close(fd)
    if hasattr(sink, "write"):
        stream: IO[str] = sink  # type: ignore[assignment]

        def emit_stream(exchange: Exchange) -> None:
            stream.write(exchange.to_json() + "\n")

        return emit_stream, getattr(stream, "flush", lambda: None), lambda: None
    if callable(sink):
        return sink, lambda: None, lambda: None  # type: ignore[return-value]
    raise ParityError(
        f"wrap sink must be a file path, a text file object or a callable taking an Exchange; got {type(sink).__name__}"
    )


_live: weakref.WeakSet[Recorder] = weakref.WeakSet()


@atexit.register
def _flush_all_at_exit() -> None:
    for recorder in list(_live):
        recorder.close(timeout=5.0)


# -- the middleware -------------------------------------------------------------------------------------------


def _path_of(url: str) -> str:
    return url.split("?", 1)[0]


def _recorded(method: str, path: str) -> bool:
    return "/v1/messages" in path and not path.endswith("count_tokens") and method in ("POST", "GET")


@functools.cache
def _sdk_classes() -> tuple[type, type, type]:
    """(RecordingMiddleware, sync tee, async tee), built on first use so `import parity` does not import the SDK."""
    import httpx2
    from anthropic import APITimeoutError
    from anthropic._middleware import Middleware

    class _SyncTee(httpx2.SyncByteStream):
        def __init__(self, inner: Any, attempt: _Attempt, recorder: Recorder, t0: float):
            self._inner, self._attempt, self._recorder, self._t0 = inner, attempt, recorder, t0
            self._done = False
            self._finished = False

        def __iter__(self) -> Iterator[bytes]:
            for chunk in self._inner:
                self._attempt.chunks.append(chunk)
                yield chunk
            self._finished = True

        def close(self) -> None:
            try:
                self._inner.close()
            finally:
                self._finish()

        def _finish(self) -> None:
            if not self._done:
                self._done = True
                self._attempt.stopped_early = not self._finished
                self._attempt.duration_ms = int((time.perf_counter() - self._t0) * 1000)
                self._recorder.submit(self._attempt)

    class _AsyncTee(httpx2.AsyncByteStream):
        def __init__(self, inner: Any, attempt: _Attempt, recorder: Recorder, t0: float):
            self._inner, self._attempt, self._recorder, self._t0 = inner, attempt, recorder, t0
            self._done = False
            self._finished = False

        async def __aiter__(self) -> Any:
            async for chunk in self._inner:
                self._attempt.chunks.append(chunk)
                yield chunk
            self._finished = True

        async def aclose(self) -> None:
            try:
                await self._inner.aclose()
            finally:
                if not self._done:
                    self._done = True
                    self._attempt.stopped_early = not self._finished
                    self._attempt.duration_ms = int((time.perf_counter() - self._t0) * 1000)
                    self._recorder.submit(self._attempt)

    class RecordingMiddleware(Middleware):
        """anthropic client middleware that records Messages and batch traffic through a `Recorder`.

        `wrap()` adds it for you; pass it yourself as `anthropic.Anthropic(middleware=[RecordingMiddleware(...)])`
        when you build the client.
        """

        def __init__(self, sink: Sink | Recorder, *, tags: Mapping[str, str] | None = None,
                     clock: Callable[[], float] | None = None):
            self.recorder = sink if isinstance(sink, Recorder) else Recorder(sink, tags, clock)

        def _begin(self, request: Any) -> _Attempt | None:
            method = str(request.method).upper()
            path = _path_of(str(request.url))
            if not _recorded(method, path):
                return None
            return _Attempt(
                method=method,
                path=path,
                started_at=self.recorder.clock(),
                tags=dict(_call_tags.get()),
                retries_taken=request.retries_taken,
            )

        def _failed(self, attempt: _Attempt, request: Any, exc: BaseException, t0: float) -> None:
            attempt.duration_ms = int((time.perf_counter() - t0) * 1000)
            attempt.request_json = _merged_json(request)
            attempt.failure = str(exc) or type(exc).__name__
            attempt.failure_type = "timeout_error" if isinstance(exc, APITimeoutError) else "api_connection_error"
            self.recorder.submit(attempt)

        def _capture(self, attempt: _Attempt, result: Any, t0: float, *, is_async: bool) -> None:
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

    return RecordingMiddleware, _SyncTee, _AsyncTee


def __getattr__(name: str) -> Any:
    if name == "RecordingMiddleware":
        return _sdk_classes()[0]
    raise AttributeError(f"module 'parity.wrap' has no attribute {name!r}")


def _merged_json(request: Any) -> Any:
    """The request body as the SDK would send it (json_data merged with extra_body), for attempts with no response."""
    options = request.options
    body = options.json_data
    extra = getattr(options, "extra_json", None)
    if isinstance(body, Mapping) and isinstance(extra, Mapping):
        return {**body, **extra}
    return body if body is not None else extra


def wrap(client: ClientT, *, sink: Sink, tags: Mapping[str, str] | None = None,
         clock: Callable[[], float] | None = None) -> ClientT:
    """Return a copy of `client` (anthropic.Anthropic or AsyncAnthropic) that records every Messages call.

    `sink` is a JSONL path (appended), an open text file, or a callable that receives each `Exchange`.
    `tags` are added to every Exchange; add per-call tags with `with tagged(task=...)` (`from parity.wrap import tagged`).
    The copy shares the original's connection pool and options; use it exactly as you used the original.
    `clock` gives each call's start time in epoch seconds (default: the wall clock); a replay of a simulated
    day passes the emulator's clock so the log's timestamps are the day's.
    Wrap once and keep the returned client: each call starts one background writer thread.
    """
    with_middleware = getattr(client, "with_middleware", None)
    if with_middleware is None:
        raise ParityError(
            f"parity.wrap needs an anthropic 2.x client (anthropic.Anthropic or anthropic.AsyncAnthropic); "
            f"got {type(client).__name__}. Upgrade with `pip install -U anthropic`."
        )
    return with_middleware(_sdk_classes()[0](sink, tags=tags, clock=clock))


def recorder_of(client: Any) -> Recorder | None:
    """The Recorder a wrapped client writes through (None if the client is not wrapped)."""
    for entry in getattr(client, "middleware", ()):
        if isinstance(entry, _sdk_classes()[0]):
            return entry.recorder
    return None


def flush(client: Any = None, timeout: float | None = 10.0) -> bool:
    """Wait until the Exchanges recorded so far are written (for one wrapped client, or for all of them)."""
    recorders = [recorder_of(client)] if client is not None else list(_live)
    return all(r.flush(timeout) for r in recorders if r is not None)
