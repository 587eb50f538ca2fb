"""`parity.wrap(client)`: record every Messages API call an `anthropic` client makes as an Exchange.

It uses the SDK's own extension point, client middleware (anthropic 2.x `middleware=`), added with
`client.with_middleware(...)`. The returned client is the same class with the same options, sharing the same
HTTP connection pool; return values, exceptions, retries and streaming are the SDK's own, because the middleware
hands back exactly what the rest of the chain returned. `bench/wrap_overhead.py` measures the added latency.

The parts: `middleware.py` captures each HTTP attempt (`RecordingMiddleware`), `recorder.py` turns attempts into
Exchanges on a background thread (`SDKRecorder`), `sse.py` rebuilds a streamed Message, `sinks.py` writes them,
`tags.py` adds per-call tags.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from parity.errors import ParityError
from parity.wrap.recorder import SDKRecorder, live_recorders
from parity.wrap.sinks import Sink
from parity.wrap.sse import accumulate_sse, iter_sse
from parity.wrap.tags import tagged

ClientT = TypeVar("ClientT")


def _middleware_class() -> type:
    """The middleware class, importing the anthropic SDK the first time a client is wrapped: `import parity`
    (and the gateway, which never wraps a client) stays free of it."""
    from parity.wrap.middleware import RecordingMiddleware

    return RecordingMiddleware


def __getattr__(name: str) -> Any:
    if name == "RecordingMiddleware":
        return _middleware_class()
    raise AttributeError(f"module 'parity.wrap' has no attribute {name!r}")


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
    return with_middleware(_middleware_class()(sink, tags=tags, clock=clock))


def recorder_of(client: Any) -> SDKRecorder | None:
    """The SDKRecorder a wrapped client writes through (None if the client is not wrapped)."""
    for entry in getattr(client, "middleware", ()):
        recorder = getattr(entry, "recorder", None)
        if isinstance(recorder, SDKRecorder):
            return recorder
    return None


def flush(client: Any = None, timeout: float | None = 10.0) -> bool:
    """Wait until the Exchanges recorded so far are written (for one wrapped client, or for all of them)."""
    recorders = [recorder_of(client)] if client is not None else live_recorders()
    return all(r.flush(timeout) for r in recorders if r is not None)


__all__ = ["RecordingMiddleware", "SDKRecorder", "Sink", "accumulate_sse", "flush", "iter_sse", "recorder_of",
           "tagged", "wrap"]
