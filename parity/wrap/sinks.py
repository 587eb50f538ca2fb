"""Where recorded Exchanges go: a JSONL path (appended), an open text file, or a callable taking an Exchange."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import IO, Any, Union

from parity.errors import ParityError
from parity.exchange import Exchange

Sink = Union[str, "os.PathLike[str]", Callable[[Exchange], Any], IO[str]]


def open_sink(sink: Sink) -> tuple[Callable[[Exchange], None], Callable[[], None], Callable[[], None]]:
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


__all__ = ["Sink", "open_sink"]
