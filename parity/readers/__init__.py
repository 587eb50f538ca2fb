"""Readers: every source of logs yields the same (location, Exchange | Rejected) pairs.

`read_exchanges(source)` picks the reader: a database URL (`sqlite:///...`, `postgresql://...`) is the ledger;
a file whose first record holds `resourceSpans` (or a pretty-printed export naming it) is an OTLP JSON trace export;
anything else is Exchange JSONL. Pass `format=` to choose explicitly.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from parity.errors import InputError
from parity.exchange import Exchange, Rejected, read_jsonl
from parity.readers.otel import read_otlp

Format = Literal["auto", "jsonl", "otlp", "ledger"]
FORMATS: tuple[str, ...] = ("auto", "jsonl", "otlp", "ledger")

__all__ = ["FORMATS", "Format", "detect_format", "is_otlp_document", "read_exchanges", "read_otlp"]


HEAD_BYTES = 4096
"""How much of a file format detection reads: enough for the first record's opening, however long the record."""


def is_otlp_document(value: object) -> bool:
    """Whether a decoded JSON value is an OTLP trace export (`resourceSpans`, or `resource_spans` as protobuf
    JSON writers without camelCase emit it)."""
    return isinstance(value, dict) and ("resourceSpans" in value or "resource_spans" in value)


def detect_format(source: str | Path) -> str:
    """'ledger', 'otlp' or 'jsonl' for a source: the one place a log's format is judged.

    A URL (`sqlite:///...`, `postgresql://...`) is the ledger. Otherwise the first non-blank line decides: a JSON
    object holding `resourceSpans` is OTLP, any other is Exchange JSONL. A first line that is not JSON on its own
    (a pretty-printed document, or a record longer than the bytes read) is OTLP when the file's head names
    `resourceSpans`, else JSONL whose bad line the reader reports.
    """
    text = str(source)
    if "://" in text:
        return "ledger"
    path = Path(source)
    if not path.is_file():
        raise InputError("no such file (give an Exchange JSONL file, an OTLP JSON export or a ledger URL)", file=text)
    try:
        with open(path, "rb") as handle:
            head = handle.read(HEAD_BYTES)
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", file=text) from None
    first, newline, _ = head.lstrip().partition(b"\n")
    if not first.strip():
        return "jsonl"
    try:
        record = json.loads(first) if newline or len(head) < HEAD_BYTES else None
    except ValueError:
        record = None
    if record is not None:
        return "otlp" if is_otlp_document(record) else "jsonl"
    return "otlp" if b"resourceSpans" in head or b"resource_spans" in head else "jsonl"


def read_exchanges(source: str | Path, *, format: Format = "auto") -> Iterator[tuple[int, Exchange | Rejected]]:
    """Yield (line or row, Exchange | Rejected) from any supported source; bad records never stop the read."""
    kind = detect_format(source) if format == "auto" else format
    if kind not in FORMATS:
        raise InputError(f"unknown log format {format!r}; use one of {', '.join(FORMATS)}", file=str(source))
    if kind == "ledger":
        from parity.ledger.reader import read_ledger  # SQLAlchemy (~0.5 s to import) only for a ledger URL

        return read_ledger(str(source))
    if kind == "otlp":
        return read_otlp(source)
    return read_jsonl(source)
