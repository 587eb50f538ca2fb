"""What every importer of another tool's logs shares: token counts in, an Anthropic usage object and Exchange out.

Other tools log a call as a row of counts, not as the Messages API request and response, and each counts input
tokens its own way (inclusive or exclusive of cache tokens; 1-hour writes split out or not; landscape.md §10.3).
An importer reads its row's fields, settles those conventions, and hands the five billed counts here; this module
builds the one usage object `parity.pricing.cost` reads, so every source is priced by the same rules.

Files are read here too, whatever their shape: `records` gives (line, record) for CSV, JSON (lines, an array or
one document, by the one JSON reader `json_records`, which OTLP uses as well) and Parquet (with pyarrow, an
optional extra), and `rows` runs an importer's row function over them, or over a database table's rows.

A row that cannot be read raises `RowError` (the reader yields it as Rejected with its line, nothing else is lost);
numbers that contradict the convention the reader assumed for its file raise `SemanticsError`, which stops the
read: guessing would misprice every row after it.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from parity.errors import InputError
from parity.exchange import Exchange, Rejected

SOURCE_COST_TAG = "source.cost_usd"
"""Tag holding the source's own cost of the call (a decimal string in USD), compared with Parity's."""
BODIES_TAG = "source.bodies"
"""Tag set to "no" when the source carried no request body: the audit is then cost-level only."""
FORMAT_TAG = "source.format"

NEEDS_BODIES = (
    "cache-break diagnosis (which block and offset break the prefix)",
    "cache breakpoint placement and TTL advice per template",
    "right-size output-shape check (short, closed-set, extractive answers)",
    "token recount with count_tokens",
)
"""Diagnoses that read the request or response text; a source without bodies gets the cost-level audit only."""

csv.field_size_limit(1 << 30)  # LiteLLM rows carry whole prompts and model_map_information in one cell


class RowError(ValueError):
    """One row that cannot become an Exchange; the message names the field and says why."""


class SemanticsError(InputError):
    """A file whose token counts contradict the convention assumed for its source: stop rather than guess."""


def count(value: Any, field: str) -> int:
    """A non-negative integer token count from JSON or CSV text; a missing or empty value is 0."""
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        raise RowError(f"{field} must be an integer token count, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            value = int(text)
        except ValueError:
            try:
                as_float = float(text)
            except ValueError:
                raise RowError(f"{field} must be an integer token count, got {value!r}") from None
            if not as_float.is_integer():
                raise RowError(f"{field} must be an integer token count, got {value!r}") from None
            value = int(as_float)
    if not isinstance(value, int):
        raise RowError(f"{field} must be an integer token count, got {value!r}")
    if value < 0:
        raise RowError(f"{field} must not be negative, got {value}")
    return value


def money(value: Any, field: str) -> Decimal | None:
    """A source's own cost as an exact Decimal (from the text of the number, never via a float sum); None if absent."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise RowError(f"{field} must be a number of US dollars, got {value!r}")
    try:
        amount = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value).strip())
    except InvalidOperation:
        raise RowError(f"{field} must be a number of US dollars, got {value!r}") from None
    if not amount.is_finite():
        raise RowError(f"{field} must be a finite number, got {value!r}")
    return amount


def timestamp(value: Any, field: str) -> datetime:
    """A UTC datetime from RFC 3339, `YYYY-MM-DD HH:MM:SS.ffffff` (Langfuse, LiteLLM CSV), epoch seconds/ms, or
    a datetime (Parquet and database columns; without a zone it is UTC, as LiteLLM and Langfuse store it)."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = value / 1000 if value > 10**11 else value
        return datetime.fromtimestamp(seconds, timezone.utc)
    if not isinstance(value, str) or not value.strip():
        raise RowError(f"{field} is missing; the call cannot be dated, so it cannot be priced")
    text = value.strip().replace(" UTC", "").replace("Z", "+00:00").replace("z", "+00:00")
    if len(text) > 10 and text[10] == " ":
        text = text[:10] + "T" + text[11:]
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise RowError(f"{field} is not a timestamp: {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def json_cell(value: Any, field: str) -> Any:
    """A JSON column: already decoded (JSON exports) or a JSON string (CSV exports); empty means absent."""
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            return json.loads(value)
        except ValueError:
            raise RowError(f"{field} is not valid JSON") from None
    return value


def model_id(value: Any, field: str) -> str:
    """The model id without a router's provider prefix (`anthropic/claude-...`, `bedrock/...`)."""
    if not isinstance(value, str) or not value.strip():
        raise RowError(f"{field} is missing; the call cannot be priced")
    text = value.strip()
    return text.rsplit("/", 1)[-1] if "/" in text else text


def usage(uncached: int, read: int, write_5m: int, write_1h: int, output: int, *,
          service_tier: str | None = None) -> dict[str, Any]:
    """The Anthropic usage object for five billed counts (input exclusive of cache, as the API reports it)."""
    out: dict[str, Any] = {
        "input_tokens": uncached,
        "cache_creation_input_tokens": write_5m + write_1h,
        "cache_read_input_tokens": read,
        "cache_creation": {"ephemeral_5m_input_tokens": write_5m, "ephemeral_1h_input_tokens": write_1h},
        "output_tokens": output,
    }
    if service_tier:
        out["service_tier"] = service_tier
    return out


def exchange(*, fmt: str, model: str, usage_obj: Mapping[str, Any], started_at: datetime, duration_ms: int = 0,
             ident: str = "", source_cost: Decimal | None = None, batch: bool = False,
             request: dict[str, Any] | None = None, content: list[dict[str, Any]] | None = None,
             tags: Mapping[str, str] | None = None, error: str | None = None) -> Exchange:
    """An Exchange for one logged call; without a request body the request is `{model, messages: []}`, tagged so,
    and (unless the source names a task) its task is its model, so the cost-level audit reads per model."""
    all_tags = {"source": fmt, FORMAT_TAG: fmt, **(tags or {})}
    if source_cost is not None:
        all_tags[SOURCE_COST_TAG] = f"{source_cost:f}"
    if request is None or not request.get("messages"):
        all_tags[BODIES_TAG] = "no"
        all_tags.setdefault("task", model)  # no prompt to fingerprint: the cost-level audit groups by model
        request = {"model": model, "messages": [], **(request or {})}
        request["model"] = request.get("model") or model
    if error is not None:
        return Exchange(request=request, error={"type": "error", "error": {"type": "api_error", "message": error}},
                        started_at=started_at, duration_ms=max(0, duration_ms), tags=all_tags, batch=batch)
    response = {"id": ident or "msg_imported", "type": "message", "role": "assistant", "model": model,
                "content": content or [], "stop_reason": None, "stop_sequence": None, "usage": dict(usage_obj)}
    return Exchange(request=request, response=response, started_at=started_at, duration_ms=max(0, duration_ms),
                    tags=all_tags, batch=batch)


def split_inclusive(total: int, read: int, write: int, *, field: str, file: str, line: int, source: str) -> int:
    """Uncached input from an input count that includes cache reads and writes; stops the read if it cannot."""
    if total < read + write:
        raise SemanticsError(
            f"{field} is {total}, smaller than its cache reads + writes ({read} + {write}); {source} is read as "
            "counting input inclusive of cache tokens, and this row contradicts that. Parity stops rather than "
            "guess; if this file counts input exclusive of cache, say which tool and version wrote it",
            file=file, line=line, field=field)
    return total - read - write


# --- file shapes ----------------------------------------------------------------------------------------

PARQUET_MAGIC = b"PAR1"
"""The four bytes every Parquet file starts (and ends) with."""
PARQUET_EXTRA = "pip install 'parity[parquet]'"

Records = Iterable[tuple[int, Any]]
"""(line or row number, record or RowError) pairs: what every file shape, and a database table, yields."""


def file_shape(path: str | Path) -> str:
    """'parquet' (by its magic bytes), 'json' (the first byte past whitespace and a BOM is `{` or `[`) or 'csv'."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", file=str(path)) from None
    if head.startswith(PARQUET_MAGIC):
        return "parquet"
    return "json" if head.lstrip().lstrip(b"\xef\xbb\xbf").lstrip()[:1] in (b"{", b"[") else "csv"


def records(path: str | Path, shape: str | None = None) -> Records:
    """The records of a CSV, JSON (lines, array or document) or Parquet file, its shape found if not given."""
    shape = shape or file_shape(path)
    if shape == "csv":
        return csv_records(path)
    if shape == "parquet":
        return parquet_records(path)
    return ((line, value) for line, value, _ in json_records(path))


def json_records(path: str | Path) -> Iterator[tuple[int, Any, str | None]]:
    """(line, decoded value, document) for JSON lines, or for each element of a file holding one JSON
    array/document: the one JSON reader every importer uses.

    JSON lines are streamed and decoded one by one, so a bad line is reported as (line, RowError) and the rest
    still read; `document` is then None. A whole-file document (pretty-printed, or a JSON array) yields its array
    items at the line where each starts, or the document itself at line 1, with `document` the file's text, so a
    reader can place nested records on their own lines (OTLP spans by their spanId).
    """
    with open(path, encoding="utf-8", errors="replace") as handle:
        first = ""
        for raw in handle:
            if raw.strip():
                first = raw.strip()
                break
        if not first:
            return
        if not first.startswith("[") and _is_json(first):
            handle.seek(0)
            for number, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                try:
                    yield number, json.loads(raw), None
                except ValueError as exc:
                    yield number, RowError(f"not valid JSON ({exc})"), None
            return
        handle.seek(0)
        text = handle.read()
    try:
        whole = json.loads(text)
    except ValueError as exc:
        yield getattr(exc, "lineno", 1), RowError(f"not valid JSON, nor JSON lines ({exc})"), None
        return
    if not isinstance(whole, list):
        yield 1, whole, text
        return
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    line, counted = 1, 0
    for item in whole:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        line += text.count("\n", counted, pos)  # counted once, item by item: linear in the file
        counted = pos
        yield line, item, text
        try:
            pos = decoder.raw_decode(text, pos)[1]
        except ValueError:
            pass


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def csv_records(path: str | Path) -> Iterator[tuple[int, dict[str, str] | RowError]]:
    """(line where the row starts, row as a dict by header) for a CSV export; quoted newlines are kept."""
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield 1, RowError(f"unreadable CSV header ({exc})")
            return
        previous = reader.line_num
        while True:
            start = previous + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                previous = reader.line_num
                yield start, RowError(f"unreadable CSV row ({exc})")
                continue
            previous = reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                yield start, RowError(f"has {len(row)} cells but the header names {len(header)} columns")
                continue
            yield start, dict(zip(header, row))


def csv_header(head: bytes) -> list[str]:
    """The column names on a CSV file's first line (for format detection)."""
    text = head.decode("utf-8-sig", errors="replace")
    try:
        return next(csv.reader(io.StringIO(text.split("\n", 1)[0])))
    except (StopIteration, csv.Error):
        return []


def _parquet(path: str | Path) -> Any:
    """`pyarrow.parquet`, or an error saying how to install it (Parquet is an optional extra)."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(f"this is a Parquet file; reading it needs pyarrow: {PARQUET_EXTRA}",
                         file=str(path)) from None
    return pq


def parquet_columns(path: str | Path) -> list[str]:
    """The column names of a Parquet file (for format detection)."""
    pq = _parquet(path)
    try:
        return list(pq.read_schema(path).names)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... for a damaged file
        raise InputError(f"unreadable Parquet file ({exc})", file=str(path)) from None


def parquet_records(path: str | Path, batch_rows: int = 4096) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    """(row number from 1, row as a dict by column) for a Parquet file, a row group at a time; map columns
    (Langfuse's `usage_details`, `cost_details`) come back as dicts, timestamps as datetimes."""
    pq = _parquet(path)
    number = 0
    try:
        handle = pq.ParquetFile(path)
        for batch in handle.iter_batches(batch_size=batch_rows):
            for row in batch.to_pylist(maps_as_pydicts="lossy"):
                number += 1
                yield number, row
    except Exception as exc:  # a damaged row group: what was read stays, the rest is reported where it starts
        yield number + 1, RowError(f"unreadable Parquet data from this row on ({exc})")


def rows(file: str, source: Records, read_row: Any) -> Iterator[tuple[int, Exchange | Rejected]]:
    """Run `read_row(line, record)` over a source's records, turning RowError into Rejected (file, line, reason).

    `read_row` returns an Exchange, or None for a record that is not a billed Claude call (skipped by design)."""
    for line, record in source:
        if isinstance(record, RowError):
            yield line, Rejected(file, line, str(record))
            continue
        try:
            item = read_row(line, record)
        except RowError as exc:
            yield line, Rejected(file, line, str(exc))
            continue
        if item is not None:
            yield line, item


__all__ = [
    "BODIES_TAG", "FORMAT_TAG", "NEEDS_BODIES", "PARQUET_EXTRA", "PARQUET_MAGIC", "SOURCE_COST_TAG", "Records",
    "RowError", "SemanticsError", "count", "csv_header", "csv_records", "exchange", "file_shape", "json_cell",
    "json_records", "model_id", "money", "parquet_columns", "parquet_records", "records", "rows", "split_inclusive",
    "timestamp", "usage",
]
