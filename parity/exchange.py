"""The Exchange: one Messages API request and its response or error, the record every part of Parity shares.

The on-disk form is Exchange JSONL, one object per line::

    {"request": {...Messages API request body...},
     "response": {...Message as the API returns it...} | "error": {...error envelope...},
     "started_at": "2026-11-24T10:00:00Z", "duration_ms": 812, "tags": {"task": "triage"},
     "route": "baseline", "batch": false}

`route` and `batch` are optional (written by the gateway and the SDK wrapper).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import orjson

from parity.errors import InputError


@dataclass
class Exchange:
    """One request/response pair with its timing, tags and route."""

    request: dict[str, Any]
    response: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    duration_ms: int = 0
    tags: dict[str, str] = field(default_factory=dict)
    route: str | None = None
    batch: bool = False

    @property
    def model_requested(self) -> str | None:
        return self.request.get("model")

    @property
    def model_served(self) -> str | None:
        if self.response is not None:
            return self.response.get("model")
        return None

    @property
    def usage(self) -> dict[str, Any] | None:
        if self.response is not None:
            return self.response.get("usage")
        return None

    @property
    def task(self) -> str | None:
        """The explicit task name: a `task` tag, else `metadata.task` style tags are left to the caller."""
        return self.tags.get("task")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"request": self.request}
        if self.response is not None:
            out["response"] = self.response
        if self.error is not None:
            out["error"] = self.error
        out["started_at"] = format_time(self.started_at)
        out["duration_ms"] = self.duration_ms
        if self.tags:
            out["tags"] = self.tags
        if self.route is not None:
            out["route"] = self.route
        if self.batch:
            out["batch"] = True
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Any, *, file: str | None = None, line: int | None = None) -> Exchange:
        """Build an Exchange from a decoded JSON object, or raise InputError naming the field at fault."""

        def bad(reason: str, fld: str | None = None) -> InputError:
            return InputError(reason, file=file, line=line, field=fld)

        if not isinstance(data, dict):
            raise bad(f"expected a JSON object, got {type(data).__name__}")
        request = data.get("request")
        if not isinstance(request, dict):
            raise bad("missing or not an object (the Messages API request body)", "request")
        response = data.get("response")
        error = data.get("error")
        if response is None and error is None:
            raise bad("neither 'response' nor 'error' is present; one of them is required", "response")
        if response is not None and not isinstance(response, dict):
            raise bad("must be an object (the Message as the API returns it)", "response")
        if error is not None and not isinstance(error, dict):
            raise bad("must be an object (the API error envelope)", "error")
        started_raw = data.get("started_at")
        if not isinstance(started_raw, str):
            raise bad("missing or not an RFC 3339 string", "started_at")
        try:
            started_at = parse_time(started_raw)
        except ValueError:
            raise bad(f"not an RFC 3339 timestamp: {started_raw!r}", "started_at") from None
        duration = data.get("duration_ms", 0)
        if not isinstance(duration, (int, float)) or isinstance(duration, bool) or duration < 0:
            raise bad(f"must be a non-negative number of milliseconds, got {duration!r}", "duration_ms")
        tags = data.get("tags") or {}
        if not isinstance(tags, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
            raise bad("must be an object of string to string", "tags")
        route = data.get("route")
        if route is not None and not isinstance(route, str):
            raise bad("must be a string", "route")
        return cls(
            request=request,
            response=response,
            error=error,
            started_at=started_at,
            duration_ms=int(duration),
            tags=dict(tags),
            route=route,
            batch=bool(data.get("batch", False)),
        )


def json_dict(value: Any) -> dict[str, Any]:
    """A Message, batch or error as its JSON object, whether the SDK gave a model or a mapping."""
    if isinstance(value, Mapping):
        return dict(value)
    dump = getattr(value, "model_dump", None)
    if dump is not None:
        return dump(mode="json")
    raise TypeError(f"expected a JSON object or an anthropic SDK model, got {type(value).__name__}")


def parse_time(text: str) -> datetime:
    """Parse RFC 3339 (a trailing Z included) into an aware datetime in UTC."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with a Z, millisecond precision."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Rejected:
    """A line that could not be read, kept so it can be reported with file:line."""

    file: str
    line: int
    reason: str


def read_jsonl(path: str | Path) -> Iterator[tuple[int, Exchange | Rejected]]:
    """Yield (1-based line number, Exchange or Rejected) for every non-blank line; never stops on bad input."""
    for number, item, _ in read_jsonl_span(path):
        yield number, item


def read_jsonl_span(path: str | Path, start: int = 0, end: int | None = None, first_line: int = 1
                    ) -> Iterator[tuple[int, Exchange | Rejected, int]]:
    """(line, Exchange | Rejected, bytes read since `start`) for the lines that start in [start, end).

    The one JSONL reader: `read_jsonl` reads a whole file with it, and the audit splits a large file into byte
    ranges at line boundaries (`first_line` numbers the range's first line) so several processes share it.
    """
    name = str(path)
    with open(path, "rb") as handle:
        handle.seek(start)
        pos = start
        number = first_line - 1
        for raw in handle:
            if end is not None and pos >= end:
                break
            pos += len(raw)
            number += 1
            if raw.isspace():  # stops at the first other byte: no copy of a long line
                continue
            try:
                data = _loads(raw)
            except ValueError as exc:
                yield number, Rejected(name, number, f"not valid JSON ({exc})"), pos - start
                continue
            try:
                yield number, _from_record(data, name, number), pos - start
            except InputError as exc:
                reason = exc.reason if exc.field is None else f"field {exc.field!r}: {exc.reason}"
                yield number, Rejected(name, number, reason), pos - start


def _loads(raw: bytes) -> Any:
    """orjson (several times faster on big logs); the standard library for what orjson refuses but JSON readers
    commonly accept (integers beyond 64 bits, NaN), and for its error message."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def _from_record(data: Any, name: str, number: int) -> Exchange:
    """`Exchange.from_dict`, with a shortcut for the well-formed record (the common case on a big log).

    The shortcut accepts exactly what from_dict accepts and builds the same Exchange; anything unusual goes to
    from_dict, which also words the rejection.
    """
    if type(data) is dict:
        get = data.get
        request, response, error = get("request"), get("response"), get("error")
        started, duration, tags, route = get("started_at"), get("duration_ms", 0), get("tags"), get("route")
        if (type(request) is dict and type(started) is str and type(duration) is int and duration >= 0
                and (type(response) is dict or (response is None and type(error) is dict))
                and (error is None or type(error) is dict) and (route is None or type(route) is str)
                and (tags is None or (type(tags) is dict
                                      and all(type(k) is str and type(v) is str for k, v in tags.items())))):
            try:
                started_at = parse_time(started)
            except ValueError:
                pass
            else:
                return Exchange(request, response, error, started_at, duration, dict(tags) if tags else {}, route,
                                bool(get("batch", False)))
    return Exchange.from_dict(data, file=name, line=number)


def write_jsonl(exchanges: Iterator[Exchange] | list[Exchange], out: IO[str]) -> int:
    """Write Exchanges one per line; returns how many were written."""
    count = 0
    for exchange in exchanges:
        out.write(exchange.to_json())
        out.write("\n")
        count += 1
    return count
