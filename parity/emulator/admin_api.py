"""The Admin API's usage and cost reports, for the traffic this emulator has answered, so that tying logs out to
the bill (`parity reconcile`) runs offline: `GET /v1/organizations/usage_report/messages` and
`GET /v1/organizations/cost_report` (reference landscape.md §10.3.5).

What is recorded: every call the emulator answers, at the one point all of them pass (`EmulatorCore.commit`:
plain, streamed and batch requests alike): its usage (uncached input, cache reads, 5-minute and 1-hour writes,
output) summed per minute of the emulator's clock and per model, workspace, service tier, context window, geo and
speed, and its exact price summed per day and billed line (`UsageLog`). A request that fails is never committed,
so never billed, as on the API.

Credentials: the Admin API takes an Admin API key (`sk-ant-admin...`) in `x-api-key` (or as a Bearer token); any
other key is answered 401 `authentication_error`, since Messages API keys are not credentials there.

Query (both): `starting_at` (required, snapped to the start of its bucket in UTC), `ending_at` (default: now on
the emulator's clock; buckets starting before it are returned), `bucket_width`, `limit` (buckets per page),
`page` (the previous page's `next_page`), `group_by[]`. Usage: widths `1m`/`1h`/`1d` (limit default 60/24/7,
at most 1440/168/31), groups and filters (`models[]`, `workspace_ids[]`, `service_tiers[]`, `context_window[]`,
`inference_geos[]`, `speeds[]`, ...) by the documented dimensions; a dimension not grouped by is null, and the
emulator knows no API key, account or service-account ids (null, as for Console traffic). Cost: `1d` only (limit
default 7, at most 31), grouped by `workspace_id` and/or `description`; only rows grouped by `description` carry
the model, token type, service tier, context window and geo, else a bucket has one total. Empty buckets are
returned with no results. The default workspace is reported as null.

Cost `amount`: the token type's price by `parity.pricing.cost` with the emulator's price table (long-prompt band,
geo and speed included), halved for batch calls, summed exactly and written in cents as a decimal string
("123.45" = $1.2345), as the API writes it.
"""

from __future__ import annotations

import base64
import binascii
import logging
import math
import threading
from collections.abc import Mapping
from datetime import datetime, timezone
from decimal import Decimal, localcontext
from typing import Any, NamedTuple

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from parity import catalog, pricing
from parity.api.errors import APIError, invalid
from parity.api.headers import api_key_of
from parity.audit.cost import EXACT
from parity.emulator.context import DEFAULT_WORKSPACE, request_context
from parity.readers.anthropic_admin import TOKEN_TYPES

log = logging.getLogger(__name__)

ADMIN_KEY_PREFIX = "sk-ant-admin"
USAGE_PATH = "/v1/organizations/usage_report/messages"
COST_PATH = "/v1/organizations/cost_report"
WIDTHS = {"1m": (60, 60, 1440), "1h": (3600, 24, 168), "1d": (86400, 7, 31)}
"""bucket_width → (seconds, default limit, largest limit)."""
USAGE_GROUPS = ("api_key_id", "workspace_id", "model", "service_tier", "context_window", "inference_geo", "speed",
                "account_id", "service_account_id")
USAGE_FILTERS = {"api_key_ids": "api_key_id", "workspace_ids": "workspace_id", "models": "model",
                 "service_tiers": "service_tier", "context_window": "context_window", "inference_geos": "inference_geo",
                 "speeds": "speed", "account_ids": "account_id", "service_account_ids": "service_account_id"}
"""usage_report filter parameter → the dimension it restricts."""
COST_GROUPS = ("workspace_id", "description")
COST_DIMENSIONS = ("model", "service_tier", "context_window", "inference_geo")
FAST_BETA = "fast-mode-2026-02-01"
LONG_CONTEXT_ABOVE = 200_000
_TOKEN_WORDS = {"uncached_input_tokens": "input tokens", "output_tokens": "output tokens",
                "cache_read_input_tokens": "cache read tokens",
                "cache_creation.ephemeral_5m_input_tokens": "5-minute cache write tokens",
                "cache_creation.ephemeral_1h_input_tokens": "1-hour cache write tokens"}


# ---- what was answered -----------------------------------------------------------------------------------------


class Dims(NamedTuple):
    """The report dimensions the emulator knows of a call (API key, account and service-account ids it does not:
    they read null, as for Console traffic)."""

    workspace_id: str | None  # None: the default workspace, as the reports name it
    model: str
    service_tier: str
    context_window: str
    inference_geo: str
    speed: str


COUNTS = ("uncached_input_tokens", "cache_read_input_tokens", "cache_creation.ephemeral_5m_input_tokens",
          "cache_creation.ephemeral_1h_input_tokens", "output_tokens", "server_tool_use.web_search_requests")
"""The usage counts kept per minute, by the report's names for them."""


def _count(usage: Mapping[str, Any], field: str) -> int:
    source: Any = usage
    for part in ("input_tokens" if field == "uncached_input_tokens" else field).split("."):
        source = source.get(part) if isinstance(source, Mapping) else None
    return int(source or 0)


class UsageLog:
    """What both reports need of every answered call, summed as it is recorded: token counts per minute (the
    finest bucket) and dimensions, and exact USD per day and billed line (priced per call, so the long-prompt band,
    geo and speed of each call count). Memory grows with the minutes traffic spans, not with the calls."""

    def __init__(self, table: pricing.PriceTable | None = None) -> None:
        self.table = table
        self._usage: dict[tuple[int, Dims], list[int]] = {}
        self._cost: dict[tuple[int, Dims, str], Decimal] = {}  # (day, dims, token_type) -> USD
        self._lock = threading.Lock()

    def record(self, at: float, model: str, workspace: str, usage: Mapping[str, Any]) -> None:
        """One answered call: `at` on the emulator's clock, the model that answered, its workspace and usage."""
        counts = [_count(usage, field) for field in COUNTS]
        prompt = counts[0] + counts[1] + counts[2] + counts[3]
        dims = Dims(None if workspace == DEFAULT_WORKSPACE else workspace, model,
                    str(usage.get("service_tier") or "standard"),
                    "200k-1M" if prompt > LONG_CONTEXT_ABOVE else "0-200k",
                    str(usage.get("inference_geo") or "global"), str(usage.get("speed") or "standard"))
        try:
            breakdown = pricing.cost(model, usage, at=datetime.fromtimestamp(at, timezone.utc), table=self.table)
        except (pricing.PriceError, catalog.UnknownModelError) as exc:  # answered, but the table cannot bill it
            log.warning("the cost report leaves out a %s call: %s", model, str(exc).split("\n", 1)[0])
            breakdown = None
        minute, day = int(at // 60) * 60, int(at // 86400) * 86400
        with self._lock, localcontext(EXACT):
            sums = self._usage.setdefault((minute, dims), [0] * len(COUNTS))
            for i, n in enumerate(counts):
                sums[i] += n
            for token_type, category in TOKEN_TYPES.items():
                amount = getattr(breakdown, category) if breakdown is not None else Decimal(0)
                if amount:
                    key = (day, dims, token_type)
                    self._cost[key] = self._cost.get(key, Decimal(0)) + (
                        amount / 2 if dims.service_tier == "batch" else amount)

    def usage(self) -> list[tuple[int, Dims, list[int]]]:
        """(minute start, dimensions, counts in COUNTS order) for every minute with traffic."""
        with self._lock:
            return [(minute, dims, list(sums)) for (minute, dims), sums in self._usage.items()]

    def cost(self) -> list[tuple[int, Dims, str, Decimal]]:
        """(day start, dimensions, token type, USD after any batch discount) for every billed line."""
        with self._lock:
            return [(day, dims, token_type, usd) for (day, dims, token_type), usd in self._cost.items()]


def usage_log(emulator: Any) -> UsageLog:
    """The emulator's UsageLog, created on first use: from then on every call it commits is recorded once, through
    its `on_commit` hooks (the one point every answer passes: plain, streamed or batch); the app installs it when
    it builds its routes, before any request."""
    recorder = emulator.__dict__.get("usage_log")
    if recorder is None:
        recorder = UsageLog(emulator.table)
        emulator.on_commit.append(
            lambda prepared: recorder.record(prepared.started_at, prepared.model, prepared.workspace,
                                             prepared.message["usage"]))
        emulator.usage_log = recorder
    return recorder


# ---- the query -------------------------------------------------------------------------------------------------


def _values(query: QueryParams, name: str) -> list[str]:
    """A list parameter, sent as `name[]=a&name[]=b` (the SDKs) or `name=a&name=b`."""
    return [v for key in (f"{name}[]", name) for v in query.getlist(key) if v != ""]


def _time(query: QueryParams, name: str) -> float | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    try:
        parsed = datetime.fromisoformat(raw.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise invalid(f"{name}: Input should be a valid RFC 3339 datetime, got {raw!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def _limit(query: QueryParams, default: int, maximum: int) -> int:
    raw = query.get("limit")
    if raw is None or raw == "":
        return default
    try:
        limit = int(raw)
    except ValueError:
        raise invalid(f"limit: Input should be a valid integer, got {raw!r}") from None
    if not 1 <= limit <= maximum:
        raise invalid(f"limit: Input should be between 1 and {maximum} for this bucket_width, got {limit}")
    return limit


def _groups(query: QueryParams, allowed: tuple[str, ...]) -> tuple[str, ...]:
    groups = _values(query, "group_by")
    for name in groups:
        if name not in allowed:
            raise invalid(f"group_by: Input should be {', '.join(repr(a) for a in allowed)}, got {name!r}")
    return tuple(dict.fromkeys(groups))


def page_token(start: float) -> str:
    """The `next_page` cursor: the next bucket's start, as the API's own tokens are (`page_` + base64 RFC 3339)."""
    return "page_" + base64.b64encode(_rfc3339(start).encode()).decode()


def _page_start(token: str) -> float:
    try:
        text = base64.b64decode(token.removeprefix("page_"), validate=True).decode()
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise invalid(f"page: {token!r} is not a page token; pass the next_page of the previous response") from None


def _rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _buckets(query: QueryParams, widths: tuple[str, ...], now: float) -> tuple[int, list[float], str | None]:
    """(bucket seconds, the starts of this page's buckets, next_page or None)."""
    width = query.get("bucket_width") or "1d"
    if width not in widths:
        raise invalid(f"bucket_width: Input should be {' or '.join(repr(w) for w in widths)}, got {width!r}")
    seconds, default, maximum = WIDTHS[width]
    start = _time(query, "starting_at")
    if start is None:
        raise invalid("starting_at: Field required")
    end = _time(query, "ending_at")
    end = now if end is None else end
    if end <= start:
        raise invalid("ending_at: must be after starting_at")
    first = math.floor(start / seconds) * seconds
    token = query.get("page")
    if token:
        cursor = _page_start(token)
        if cursor < first or (cursor - first) % seconds:
            raise invalid(f"page: {token!r} does not belong to this query; pass the next_page of the previous "
                          "response with the same starting_at and bucket_width")
        first = int(cursor)
    limit = _limit(query, default, maximum)
    starts: list[float] = []
    at = first
    while at < end and len(starts) < limit:
        starts.append(at)
        at += seconds
    return seconds, starts, page_token(at) if at < end else None


def _canonical(model: str) -> str:
    try:
        return catalog.resolve(model)
    except catalog.UnknownModelError:
        return model


# ---- the reports -----------------------------------------------------------------------------------------------


def usage_report(recorded: UsageLog, query: QueryParams, *, now: float, betas: tuple[str, ...] = ()) -> dict[str, Any]:
    """One page of `usage_report/messages`: token counts per bucket and group."""
    groups = _groups(query, USAGE_GROUPS)
    if "speed" in groups and FAST_BETA not in betas:
        raise invalid(f"group_by: grouping by speed requires the {FAST_BETA} beta header")
    filters = {dim: set(values) for param, dim in USAGE_FILTERS.items() if (values := _values(query, param))}
    if "model" in filters:
        filters["model"] = {_canonical(m) for m in filters["model"]}
    seconds, starts, next_page = _buckets(query, tuple(WIDTHS), now)
    rows: dict[float, dict[tuple[Any, ...], dict[str, Any]]] = {s: {} for s in starts}
    for minute, dims, counts in recorded.usage():
        bucket = rows.get(minute // seconds * seconds)
        if bucket is None or any(getattr(dims, d, None) not in wanted for d, wanted in filters.items()):
            continue
        key = tuple(getattr(dims, g, None) for g in groups)
        row = bucket.get(key)
        if row is None:
            row = bucket[key] = {
                "uncached_input_tokens": 0, "cache_creation": {"ephemeral_1h_input_tokens": 0,
                                                               "ephemeral_5m_input_tokens": 0},
                "cache_read_input_tokens": 0, "output_tokens": 0, "server_tool_use": {"web_search_requests": 0},
                **{d: (key[groups.index(d)] if d in groups else None) for d in USAGE_GROUPS}}
        for field, n in zip(COUNTS, counts):
            parent, _, leaf = field.rpartition(".")
            (row[parent] if parent else row)[leaf] += n
    return _page(rows, seconds, next_page)


def cost_report(recorded: UsageLog, query: QueryParams, *, now: float) -> dict[str, Any]:
    """One page of `cost_report`: USD per day, per token type and dimensions when grouped by description."""
    groups = _groups(query, COST_GROUPS)
    seconds, starts, next_page = _buckets(query, ("1d",), now)
    totals: dict[float, dict[tuple[Any, ...], Decimal]] = {s: {} for s in starts}
    with localcontext(EXACT):
        for day, dims, token_type, usd in recorded.cost():
            bucket = totals.get(day // seconds * seconds)
            if bucket is None:
                continue
            detail = (token_type, *(getattr(dims, d) for d in COST_DIMENSIONS)) if "description" in groups else None
            key = (dims.workspace_id if "workspace_id" in groups else None, detail)
            bucket[key] = bucket.get(key, Decimal(0)) + usd
    rows = {s: {key: _cost_row(key, usd) for key, usd in bucket.items()} for s, bucket in totals.items()}
    return _page(rows, seconds, next_page)


def _cost_row(key: tuple[Any, ...], usd: Decimal) -> dict[str, Any]:
    workspace, detail = key
    token_type, model, tier, window, geo = detail or (None,) * 5
    with localcontext(EXACT):
        cents = (usd * 100).normalize()
    return {"currency": "USD", "amount": f"{cents:f}", "workspace_id": workspace,
            "description": f"{model} ({tier}) {_TOKEN_WORDS[token_type]}" if detail else None,
            "cost_type": "tokens" if detail else None, "context_window": window, "model": model,
            "service_tier": tier, "token_type": token_type, "inference_geo": geo}


def _page(rows: Mapping[float, Mapping[tuple[Any, ...], dict[str, Any]]], seconds: int,
          next_page: str | None) -> dict[str, Any]:
    data = [{"starting_at": _rfc3339(start), "ending_at": _rfc3339(start + seconds),
             "results": [bucket[k] for k in sorted(bucket, key=repr)]} for start, bucket in rows.items()]
    return {"data": data, "has_more": next_page is not None, "next_page": next_page}


# ---- HTTP ------------------------------------------------------------------------------------------------------


def require_admin_key(request: Request) -> None:
    """401 `authentication_error` unless the request carries an Admin API key."""
    key = api_key_of(request.headers) or ""
    if not key.startswith(ADMIN_KEY_PREFIX):
        raise APIError(401, "invalid x-api-key: the Admin API takes an Admin API key (sk-ant-admin...), not a "
                            "Messages API key")


def routes(emulator: Any) -> list[Route]:
    """The two report endpoints; building them starts recording the emulator's answered calls."""
    recorded = usage_log(emulator)

    async def usage(request: Request) -> Response:
        require_admin_key(request)
        return JSONResponse(usage_report(recorded, request.query_params, now=emulator.clock.now(),
                                         betas=request_context(request).betas))

    async def cost(request: Request) -> Response:
        require_admin_key(request)
        return JSONResponse(cost_report(recorded, request.query_params, now=emulator.clock.now()))

    return [Route(USAGE_PATH, usage, methods=["GET"]), Route(COST_PATH, cost, methods=["GET"])]


__all__ = ["ADMIN_KEY_PREFIX", "COST_PATH", "USAGE_PATH", "Dims", "UsageLog", "cost_report", "page_token",
           "require_admin_key", "routes", "usage_log", "usage_report"]
