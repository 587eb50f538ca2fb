"""Readers: every source of logs yields the same (location, Exchange | Rejected) pairs.

`read_exchanges(source)` picks the reader: a database URL (`sqlite:///...`, `postgresql://...`) is the ledger;
a file whose first record holds `resourceSpans` (or a pretty-printed JSON document) is an OTLP JSON trace export;
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

__all__ = ["FORMATS", "Format", "detect_format", "read_exchanges", "read_otlp"]


def detect_format(source: str | Path) -> str:
    """'ledger', 'otlp' or 'jsonl' for a source, judged from its name and its first non-blank line."""
    text = str(source)
    if "://" in text:
        return "ledger"
    path = Path(source)
    if not path.is_file():
        raise InputError("no such file (give an Exchange JSONL file, an OTLP JSON export or a ledger URL)", file=text)
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.strip():
                break
        else:
            return "jsonl"
    try:
        first = json.loads(line)
    except ValueError:
        return "otlp" if line.lstrip().startswith("{") else "jsonl"
    if isinstance(first, dict) and ("resourceSpans" in first or "resource_spans" in first):
        return "otlp"
    return "jsonl"


def read_exchanges(source: str | Path, *, format: Format = "auto") -> Iterator[tuple[int, Exchange | Rejected]]:
    """Yield (line or row, Exchange | Rejected) from any supported source; bad records never stop the read."""
    kind = detect_format(source) if format == "auto" else format
    if kind not in FORMATS:
        raise InputError(f"unknown log format {format!r}; use one of {', '.join(FORMATS)}", file=str(source))
    if kind == "ledger":
        from parity.ledger.reader import read_ledger

        return read_ledger(str(source))
    if kind == "otlp":
        return read_otlp(source)
    return read_jsonl(source)
