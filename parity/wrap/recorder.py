"""`SDKRecorder`: turns what the middleware captured about each HTTP attempt into Exchanges, off the caller's path.

Nothing is parsed or written on the caller's path: the middleware only takes timestamps and references to the
bytes and queues them; one background thread per recorder decodes them, builds Exchanges and hands them to the
sink. Batches: `messages.batches.create` remembers each request's params by `custom_id`; `retrieve` notes when
the batch ended; `results` yields one Exchange per result line (`batch=True`, started at the batch's `created_at`,
lasting until `ended_at`). Results for a batch created by another process carry a request holding only the model
and tag `parity.custom_id`, because its params were never seen.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import queue
import re
import threading
import time
import weakref
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from parity.exchange import Exchange, parse_time
from parity.wrap.sinks import Sink, open_sink
from parity.wrap.sse import accumulate_sse, envelope

log = logging.getLogger("parity.wrap")

_MESSAGES = re.compile(r"/v1/messages/?$")
_BATCHES = re.compile(r"/v1/messages/batches/?$")
_BATCH = re.compile(r"/v1/messages/batches/([^/?]+)/?$")
_RESULTS = re.compile(r"/v1/messages/batches/([^/?]+)/results/?$")


@dataclass
class Attempt:
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

class SDKRecorder:
    """Turns captured attempts into Exchanges on a background thread and hands them to the sink."""

    def __init__(self, sink: Sink, tags: Mapping[str, str] | None = None, clock: Callable[[], float] | None = None):
        self.tags = {str(k): str(v) for k, v in (tags or {}).items()}
        self.clock = clock or _now
        self._emit, self._flush_sink, self._close_sink = open_sink(sink)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._batches: dict[str, BatchInfo] = {}
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="parity-wrap-writer", daemon=True)
        self._thread.start()
        _live.add(self)

    def submit(self, attempt: Attempt) -> None:
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

    def _exchanges(self, a: Attempt) -> list[Exchange]:
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

    def _tags(self, a: Attempt) -> dict[str, str]:
        tags = {**self.tags, **a.tags}
        if a.retries_taken:
            tags["parity.attempt"] = str(a.retries_taken + 1)
        return tags

    def _message_exchange(self, a: Attempt) -> Exchange:
        request = _request_dict(a)
        response: dict[str, Any] | None = None
        error: dict[str, Any] | None = None
        if a.failure is not None:
            error = envelope(a.failure_type, a.failure)
        else:
            body = _body(a)
            if a.status is not None and 200 <= a.status < 300:
                if "text/event-stream" in a.content_type:
                    response, error = accumulate_sse(body, pause=_yield_gil)
                    if error and error["error"].get("type") == "incomplete_stream" and a.stopped_early:
                        error = envelope("incomplete_stream", "the caller closed the stream before message_stop")
                else:
                    response = _json_object(body)
                    if response is None:
                        error = envelope("malformed_response", f"HTTP {a.status} body is not a JSON object")
            else:
                error = _json_object(body) or envelope(
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

    def _note_batch_created(self, a: Attempt) -> None:
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
        info = self._batches.setdefault(batch["id"], BatchInfo())
        info.params.update(params)
        info.tags = self._tags(a)
        info.update(batch)

    def _note_batch_status(self, a: Attempt) -> None:
        if a.failure is not None or a.status is None or not 200 <= a.status < 300:
            return
        batch = _json_object(_body(a))
        if batch and isinstance(batch.get("id"), str):
            self._batches.setdefault(batch["id"], BatchInfo()).update(batch)

    def _batch_results(self, batch_id: str, a: Attempt) -> list[Exchange]:
        if a.failure is not None or a.status is None or not 200 <= a.status < 300:
            return []
        info = self._batches.get(batch_id) or BatchInfo()
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
                error = result.get("error") if isinstance(result.get("error"), dict) else envelope("errored", "")
            elif kind != "succeeded":
                error = envelope(str(kind), f"batch request was {kind}; not billed")
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
class BatchInfo:
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

def _json_object(raw: bytes | str) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _request_dict(a: Attempt) -> dict[str, Any]:
    if a.request_body:
        value = _json_object(a.request_body)
        if value is not None:
            return value
    return a.request_json if isinstance(a.request_json, dict) else {}


def _body(a: Attempt) -> bytes:
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


_live: weakref.WeakSet[SDKRecorder] = weakref.WeakSet()


def live_recorders() -> list[SDKRecorder]:
    """Every recorder not yet garbage-collected (what `parity.wrap.flush()` with no client waits for)."""
    return list(_live)


@atexit.register
def _flush_all_at_exit() -> None:
    for recorder in list(_live):
        recorder.close(timeout=5.0)


__all__ = ["Attempt", "SDKRecorder", "live_recorders"]
