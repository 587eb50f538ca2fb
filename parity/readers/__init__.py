"""Readers: every source of logs yields the same (location, Exchange | Rejected) pairs.

`read_exchanges(source)` picks the reader from `detect_format`, the one place a log's format is judged:

* `ledger`: a database URL (`sqlite:///...`, `postgresql://...`) of Parity's own ledger;
* `otlp`: OTLP JSON trace export (`resourceSpans`), one document or one per line;
* `litellm`: LiteLLM spend logs: a CSV export of `LiteLLM_SpendLogs`, `/spend/logs` JSON rows, or a
  `postgresql://` URL of the database holding that table (LiteLLM's DATABASE_URL, `?schema=` included);
* `langfuse`: a Langfuse observations export (JSONL, CSV, a JSON array, or Parquet with `pyarrow` installed);
* `helicone`: a Helicone export (`npx @helicone/export`, JSONL or a JSON array);
* `anthropic-usage`: Admin API `usage_report/messages` pages;
* `anthropic-cost`: Admin API `cost_report` pages (no token counts: for `parity reconcile`, not the audit);
* `jsonl`: Parity's Exchange JSONL (anything else, whose bad lines the reader reports).

Pass `format=` to choose explicitly.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from parity.errors import InputError
from parity.exchange import Exchange, Rejected, read_jsonl
from parity.readers.anthropic_admin import COST_FORMAT, USAGE_FORMAT, page_kind, read_usage_report
from parity.readers.common import PARQUET_MAGIC, csv_header, parquet_columns
from parity.readers.helicone import is_helicone_row, read_helicone
from parity.readers.langfuse import is_langfuse_row, read_langfuse
from parity.readers.litellm import is_litellm_database, is_litellm_row, read_litellm
from parity.readers.otel import read_otlp

Format = Literal["auto", "jsonl", "otlp", "ledger", "litellm", "langfuse", "helicone", "anthropic-usage",
                 "anthropic-cost"]
FORMATS: tuple[str, ...] = ("auto", "jsonl", "otlp", "ledger", "litellm", "langfuse", "helicone", USAGE_FORMAT,
                            COST_FORMAT)

__all__ = ["FORMATS", "Format", "detect_format", "is_otlp_document", "read_exchanges", "read_otlp"]


HEAD_BYTES = 65536
"""How much of a file format detection reads: enough for the first record's opening, however long the record."""


def is_otlp_document(value: object) -> bool:
    """Whether a decoded JSON value is an OTLP trace export (`resourceSpans`, or `resource_spans` as protobuf
    JSON writers without camelCase emit it)."""
    return isinstance(value, dict) and ("resourceSpans" in value or "resource_spans" in value)


def detect_format(source: str | Path) -> str:
    """The format of a source (one of FORMATS but 'auto'): the one place a log's format is judged.

    A URL is LiteLLM's database when it holds `LiteLLM_SpendLogs` or names a schema (Prisma's `?schema=`, which
    a Parity ledger URL never has), else Parity's ledger. Otherwise the file's head decides: Parquet (its magic
    bytes) and CSV by their column names; the first JSON record (a line, or the first element of a JSON array) by
    its keys; a pretty-printed document by the names its head holds. What matches nothing is Exchange JSONL, whose
    reader reports each bad line.
    """
    text = str(source)
    if "://" in text:
        return "litellm" if "schema=" in text.partition("?")[2] or is_litellm_database(text) else "ledger"
    path = Path(source)
    if not path.is_file():
        raise InputError("no such file (give a log file or a ledger URL)", file=text)
    try:
        with open(path, "rb") as handle:
            head = handle.read(HEAD_BYTES)
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", file=text) from None
    if head.startswith(PARQUET_MAGIC):
        return _classify_columns(set(parquet_columns(path)), text)
    body = head.lstrip().lstrip(b"\xef\xbb\xbf")
    first, newline, _ = body.partition(b"\n")
    if not first.strip():
        return "jsonl"
    if not body.startswith((b"{", b"[")):
        columns = set(csv_header(body))
        if is_litellm_row(columns) or is_langfuse_row(columns):
            return _classify_columns(columns, text)
        return "jsonl"
    try:
        record = json.loads(first) if newline or len(head) < HEAD_BYTES else None
    except ValueError:
        record = None
    if record is None and len(head) < HEAD_BYTES:
        try:
            record = json.loads(head)
        except ValueError:
            record = None
    if record is not None:
        return _classify(record)
    return _classify_text(head)


def _classify_columns(columns: set[str], file: str) -> str:
    """A table's format (CSV header or Parquet schema) by its column names; a Parquet file matching none is an
    error, as no reader could make sense of it."""
    if is_litellm_row(columns):
        return "litellm"
    if is_langfuse_row(columns):
        return "langfuse"
    raise InputError("a Parquet file whose columns match no export Parity reads (Langfuse observations, LiteLLM "
                     f"spend logs); its columns: {', '.join(sorted(columns)[:12])}", file=file)


def _classify(record: Any) -> str:
    if is_otlp_document(record):
        return "otlp"
    kind = page_kind(record)
    if kind is not None:
        return kind
    item = record[0] if isinstance(record, list) and record else record
    if isinstance(item, dict):
        if is_otlp_document(item):
            return "otlp"
        if is_litellm_row(item):
            return "litellm"
        if is_langfuse_row(item):
            return "langfuse"
        if is_helicone_row(item):
            return "helicone"
    return "jsonl"


def _classify_text(head: bytes) -> str:
    """A document too long for the bytes read: judged by the names its head holds."""
    if b"resourceSpans" in head or b"resource_spans" in head:
        return "otlp"
    if b'"has_more"' in head or b'"results"' in head:
        if b'"uncached_input_tokens"' in head:
            return USAGE_FORMAT
        if b'"amount"' in head and b'"token_type"' in head:
            return COST_FORMAT
    if b'"spend"' in head and b'"startTime"' in head:
        return "litellm"
    if b'"trace_id"' in head or b'"traceId"' in head:
        if b"usage_details" in head or b"usageDetails" in head:
            return "langfuse"
    if b'"costUSD"' in head or b'"prompt_cache_read_tokens"' in head:
        return "helicone"
    return "jsonl"


def read_exchanges(source: str | Path, *, format: Format | str = "auto") -> Iterator[tuple[int, Exchange | Rejected]]:
    """Yield (line or row, Exchange | Rejected) from any supported source; bad records never stop the read."""
    kind = detect_format(source) if format == "auto" else format
    if kind not in FORMATS or kind == "auto":
        raise InputError(f"unknown log format {format!r}; use one of {', '.join(FORMATS)}", file=str(source))
    if kind == "ledger":
        from parity.ledger.reader import read_ledger  # SQLAlchemy (~0.5 s to import) only for a ledger URL

        return read_ledger(str(source))
    if kind == "otlp":
        return read_otlp(source)
    if kind == "litellm":
        return read_litellm(source)
    if kind == "langfuse":
        return read_langfuse(source)
    if kind == "helicone":
        return read_helicone(source)
    if kind == USAGE_FORMAT:
        return read_usage_report(source)
    if kind == COST_FORMAT:
        raise InputError("this is an Anthropic cost report: it holds billed amounts, not token counts, so there is "
                         "nothing to audit. Tie your logs out to it with `parity reconcile LOG... --cost-report "
                         f"{source}`", file=str(source))
    return read_jsonl(source)
