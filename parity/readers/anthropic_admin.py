"""Anthropic Admin API reports: `GET /v1/organizations/usage_report/messages` pages → Exchanges, and
`GET /v1/organizations/cost_report` pages → billed cost lines (the ground truth `parity reconcile` ties out to).

A file holds one page (`{"data": [...], "has_more": ..., "next_page": ...}`), a JSON array of pages, or one page
per line. Each page's `data` is a list of time buckets `{starting_at, ending_at, results: [...]}`.

Usage rows: `uncached_input_tokens` (input *exclusive* of cache, as named), `cache_read_input_tokens`,
`cache_creation.{ephemeral_5m_input_tokens, ephemeral_1h_input_tokens}`, `output_tokens`, plus the grouped
dimensions (`model`, `service_tier`, `context_window`, ...). A row is an aggregate of many requests: it becomes one
Exchange dated at its bucket's start, tagged `source.aggregate`. Rows without a model (a report not grouped by
model) cannot be priced and are reported. Aggregates cannot say which requests crossed a long-prompt price band,
so such rows for models with one are reported too (request `group_by[]=context_window` and price per request).

Cost rows: `amount` is a decimal string in **cents** ("123.45" = $1.2345), `currency`, `cost_type`
(tokens|web_search|code_execution|session_usage), `token_type` (`uncached_input_tokens`, `output_tokens`,
`cache_read_input_tokens`, `cache_creation.ephemeral_5m_input_tokens`, `cache_creation.ephemeral_1h_input_tokens`),
`model`, `service_tier`, `description`. Only a report grouped by `description` carries those per row.

`fetch_report` gets either report from the API (or the emulator) with an Admin API key ($ANTHROPIC_ADMIN_KEY),
every page of it, and `write_pages` saves the pages as a file these readers read like any other.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from parity.errors import InputError
from parity.exchange import Exchange, Rejected
from parity.readers.common import RowError, count, exchange, json_records, model_id, money, timestamp, usage

USAGE_FORMAT = "anthropic-usage"
COST_FORMAT = "anthropic-cost"
TOKEN_TYPES = {
    "uncached_input_tokens": "input",
    "cache_creation.ephemeral_5m_input_tokens": "cache_write_5m",
    "cache_creation.ephemeral_1h_input_tokens": "cache_write_1h",
    "cache_read_input_tokens": "cache_read",
    "output_tokens": "output",
}
"""The cost report's `token_type` → Parity's billed category."""


def page_kind(value: Any) -> str | None:
    """'anthropic-usage' or 'anthropic-cost' for an Admin API report page (or a list of them), else None."""
    if isinstance(value, list) and value:
        value = value[0]
    if not isinstance(value, Mapping) or not isinstance(value.get("data"), list) or "has_more" not in value:
        return None
    for bucket in value["data"]:
        for result in (bucket.get("results") or []) if isinstance(bucket, Mapping) else []:
            if isinstance(result, Mapping) and "uncached_input_tokens" in result:
                return USAGE_FORMAT
            if isinstance(result, Mapping) and "amount" in result:
                return COST_FORMAT
    return USAGE_FORMAT if b"uncached_input_tokens" in repr(value).encode() else None


def _buckets(path: str | Path) -> Iterator[tuple[int, Any, Any]]:
    """(line, bucket, result) over every page in the file; malformed shapes come back as (line, None, RowError)."""
    for line, page, _ in json_records(path):
        if isinstance(page, RowError):
            yield line, None, page
            continue
        pages = page if isinstance(page, list) else [page]
        for item in pages:
            if not isinstance(item, Mapping) or not isinstance(item.get("data"), list):
                yield line, None, RowError("expected an Admin API report page with a 'data' list")
                continue
            for index, bucket in enumerate(item["data"]):
                results = bucket.get("results") if isinstance(bucket, Mapping) else None
                if not isinstance(results, list):
                    yield line, None, RowError(f"data[{index}] has no 'results' list")
                    continue
                for result in results:
                    yield line, bucket, result


def read_usage_report(path: str | Path) -> Iterator[tuple[int, Exchange | Rejected]]:
    """Yield (line, Exchange | Rejected) per usage-report result row (each an aggregate of many requests)."""
    from parity.pricing import default_table

    file = str(path)
    table = default_table()
    for line, bucket, result in _buckets(path):
        if isinstance(result, RowError):
            yield line, Rejected(file, line, str(result))
            continue
        try:
            yield line, _usage_row(bucket, result, table)
        except RowError as exc:
            yield line, Rejected(file, line, str(exc))


def _usage_row(bucket: Mapping[str, Any], result: Any, table: Any) -> Exchange:
    if not isinstance(result, Mapping):
        raise RowError("a usage result is not an object")
    if not result.get("model"):
        raise RowError("model is null: request the usage report with group_by[]=model, or it cannot be priced")
    model = model_id(result.get("model"), "model")
    started = timestamp(bucket.get("starting_at"), "starting_at")
    split = result.get("cache_creation") or {}
    if not isinstance(split, Mapping):
        raise RowError("cache_creation must be an object")
    five = count(split.get("ephemeral_5m_input_tokens"), "cache_creation.ephemeral_5m_input_tokens")
    hour = count(split.get("ephemeral_1h_input_tokens"), "cache_creation.ephemeral_1h_input_tokens")
    uncached = count(result.get("uncached_input_tokens"), "uncached_input_tokens")
    read = count(result.get("cache_read_input_tokens"), "cache_read_input_tokens")
    output = count(result.get("output_tokens"), "output_tokens")
    tier = result.get("service_tier") if isinstance(result.get("service_tier"), str) else None
    try:
        row = table.price_for(model, started)
    except Exception:  # unknown model: the audit reports it as unpriced with pricing's own words
        row = None
    prompt = uncached + read + five + hour
    if row is not None and row.long_prompt is not None and prompt > row.long_prompt.above_tokens:
        raise RowError(f"{model} has a long-prompt price band above {row.long_prompt.above_tokens:,} prompt tokens; "
                       "an aggregate row cannot say which of its requests crossed it. Audit per-request logs instead")
    tags = {"source.aggregate": "bucket"}
    for key in ("workspace_id", "api_key_id", "context_window", "inference_geo"):
        if result.get(key):
            tags[f"anthropic.{key}"] = str(result[key])
    usage_obj = usage(uncached, read, five, hour, output, service_tier=tier)
    if result.get("inference_geo") and result["inference_geo"] not in ("global", "not_available"):
        usage_obj["inference_geo"] = str(result["inference_geo"])
    return exchange(fmt=USAGE_FORMAT, model=model, usage_obj=usage_obj, started_at=started, batch=tier == "batch",
                    tags=tags)


# --- fetching the reports from the API --------------------------------------------------------------------

ADMIN_KEY_ENV = "ANTHROPIC_ADMIN_KEY"
BASE_URL_ENV = "ANTHROPIC_BASE_URL"
DEFAULT_BASE_URL = "https://api.anthropic.com"
ADMIN_API_VERSION = "2023-06-01"
REPORTS = {
    USAGE_FORMAT: ("/v1/organizations/usage_report/messages",
                   {"bucket_width": "1h", "limit": "168",
                    "group_by[]": ["model", "service_tier", "context_window", "inference_geo"]}),
    COST_FORMAT: ("/v1/organizations/cost_report",
                  {"bucket_width": "1d", "limit": "31", "group_by[]": ["description"]}),
}
"""Report → (path, query): usage by the hour per model, tier, context window and geo (what pricing needs); cost by
the day per description (what carries model, token type and tier)."""
MAX_PAGES = 10_000


def admin_key(value: str | None = None) -> str:
    """The Admin API key: `value`, else $ANTHROPIC_ADMIN_KEY; missing, an error that says which variable to set."""
    key = (value or os.environ.get(ADMIN_KEY_ENV) or "").strip()
    if not key:
        raise InputError(f"set {ADMIN_KEY_ENV} to an Admin API key (sk-ant-admin..., made in the Console under "
                         "Settings > Admin keys) to fetch Anthropic's reports, or give the report as a file")
    return key


def api_root(base_url: str | None = None) -> str:
    """Where the Admin API is: `base_url`, else $ANTHROPIC_BASE_URL, else the API itself."""
    return (base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/")


def fetch_report(kind: str, starting_at: datetime, ending_at: datetime, *, key: str | None = None,
                 base_url: str | None = None, transport: Any = None, timeout_s: float = 60.0) -> list[dict[str, Any]]:
    """Every page of one Admin API report (`anthropic-usage` or `anthropic-cost`) for [starting_at, ending_at),
    following `next_page` while `has_more`: the pages as the API sent them, for the readers above.

    `base_url` is read by `api_root`; `transport` is an httpx2 transport (tests pass the
    emulator's). An HTTP error stops with the API's own message; a refused key says it must be an admin key."""
    import httpx2

    path, fixed = REPORTS[kind]
    root = api_root(base_url)
    query: dict[str, Any] = {**fixed, "starting_at": _rfc3339(starting_at), "ending_at": _rfc3339(ending_at)}
    headers = {"x-api-key": admin_key(key), "anthropic-version": ADMIN_API_VERSION}
    pages: list[dict[str, Any]] = []
    seen: set[str] = set()
    with httpx2.Client(base_url=root, headers=headers, timeout=timeout_s, transport=transport) as client:
        while len(pages) < MAX_PAGES:
            try:
                response = client.get(path, params=query)
            except httpx2.HTTPError as exc:
                raise InputError(f"cannot reach {root}: {exc}", field=BASE_URL_ENV) from None
            page = _page_of(response, root + path)
            pages.append(page)
            token = page.get("next_page")
            if not page.get("has_more"):
                return pages
            if not isinstance(token, str) or not token or token in seen:
                raise InputError(f"{root}{path} said has_more but gave no new next_page (page {len(pages)}); the "
                                 "pages read so far are incomplete")
            seen.add(token)
            query["page"] = token
    raise InputError(f"{root}{path} kept paging past {MAX_PAGES} pages; ask for a shorter window")


def _page_of(response: Any, url: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 400:
        error = body.get("error") if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping) else {}
        what = f"{response.status_code} {error.get('type', 'error')}: {error.get('message', response.text[:200])}"
        if response.status_code in (401, 403):
            raise InputError(f"{url} refused the key ({what}); {ADMIN_KEY_ENV} must be an Admin API key "
                             "(sk-ant-admin...) of the organisation", field=ADMIN_KEY_ENV)
        raise InputError(f"{url} answered {what}")
    if not isinstance(body, dict) or not isinstance(body.get("data"), list) or "has_more" not in body:
        raise InputError(f"{url} did not answer with a report page (data, has_more, next_page)")
    return body


def write_pages(pages: list[dict[str, Any]], path: str | Path) -> Path:
    """Save fetched pages one per line: a file every reader here (and `--cost-report`) reads back."""
    from parity.files import write_atomic

    return write_atomic(path, "".join(json.dumps(page, separators=(",", ":")) + "\n" for page in pages))


def _rfc3339(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class CostLine:
    """One cost-report row: the day, model, Parity category (or the report's own cost type) and USD amount."""

    day: date
    model: str
    cost_type: str  # input | cache_write_5m | cache_write_1h | cache_read | output | batch | web_search | ...
    usd: Decimal
    line: int


def read_cost_report(path: str | Path) -> list[CostLine]:
    """Every cost-report row as a CostLine in USD; a malformed row stops with its file, line and field (a bill
    read in part would flag every cell it missed)."""
    file = str(path)
    out: list[CostLine] = []
    for line, bucket, result in _buckets(path):
        if isinstance(result, RowError):
            raise InputError(str(result), file=file, line=line)
        try:
            out.append(_cost_row(bucket, result, line))
        except RowError as exc:
            raise InputError(str(exc), file=file, line=line) from None
    if not out:
        raise InputError("no cost rows: is this a cost_report page (data[].results[].amount)?", file=file)
    return out


def _cost_row(bucket: Mapping[str, Any], result: Any, line: int) -> CostLine:
    if not isinstance(result, Mapping):
        raise RowError("a cost result is not an object")
    currency = result.get("currency") or "USD"
    if currency != "USD":
        raise RowError(f"currency is {currency!r}; Parity prices in USD")
    cents = money(result.get("amount"), "amount")
    if cents is None:
        raise RowError("amount is missing")
    day = timestamp(bucket.get("starting_at"), "starting_at").date()
    if result.get("cost_type") is None and result.get("token_type") is None and result.get("description") is None:
        raise RowError("this row has no cost_type, token_type or model: the report was not grouped by description; "
                       "request it with group_by[]=description (`parity reconcile` does when it fetches it)")
    model = model_id(result.get("model"), "model") if result.get("model") else "(no model)"
    kind = str(result.get("cost_type") or "tokens")
    if kind == "tokens":
        token_type = result.get("token_type")
        if token_type not in TOKEN_TYPES:
            raise RowError(f"token_type {token_type!r} is not one of {', '.join(TOKEN_TYPES)}")
        category = "batch" if result.get("service_tier") == "batch" else TOKEN_TYPES[token_type]
    else:
        category = kind
    return CostLine(day, model, category, cents.scaleb(-2), line)


__all__ = ["ADMIN_KEY_ENV", "BASE_URL_ENV", "COST_FORMAT", "DEFAULT_BASE_URL", "TOKEN_TYPES", "USAGE_FORMAT",
           "CostLine", "admin_key", "api_root", "fetch_report", "page_kind", "read_cost_report", "read_usage_report",
           "write_pages"]
