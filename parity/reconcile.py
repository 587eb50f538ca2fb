"""Tie logged traffic out to Anthropic's own bill: Parity's price of every logged call against the Admin API
cost report, per day × model × cost type, each cell off by more than a tolerance (a cent) flagged with its
likely cause.

Cost types: `input`, `cache_write_5m`, `cache_write_1h`, `cache_read`, `output` for standard-tier traffic, and
`batch` for everything sent through the Message Batches API (the report bills batch rows by service tier, so batch
traffic is one cell per day and model, after its 50 % discount). Other billed cost types (web search, code
execution) are shown but not flagged: logs carry no price for them.

The logs are read by `parity.readers` (any format `parity audit` reads, detected from the file) and priced with
`parity.pricing.cost`, the same function behind every number Parity prints. The cost report is a file, or is
fetched from the Admin API for the days the logs cover (`fetch_cost_report`, with $ANTHROPIC_ADMIN_KEY).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from parity import catalog
from parity.catalog import UnknownModelError
from parity.errors import InputError
from parity.exchange import Exchange
from parity.pricing import CATEGORIES, PriceError, PriceTable, cost
from parity.readers import read_exchanges
from parity.readers.anthropic_admin import COST_FORMAT, fetch_report, read_cost_report, write_pages

COST_TYPES = (*CATEGORIES, "batch")
TOLERANCE = Decimal("0.01")
SCHEMA_ID = "parity.reconcile/1"

Cell = tuple[date, str, str]  # (day, model, cost type)
CostReport = str | Path | Callable[[date, date], str | Path]
"""A cost report file, or a function that gets one for the logs' first and last day (`fetch_cost_report`)."""


@dataclass(frozen=True)
class Row:
    """One day × model × cost type: what the logs cost at Parity's prices and what the report billed."""

    date: date
    model: str
    cost_type: str
    logged_usd: Decimal
    billed_usd: Decimal
    flagged: bool
    cause: str | None

    @property
    def difference_usd(self) -> Decimal:
        """Billed minus logged: positive when the bill is higher than the logs account for."""
        return self.billed_usd - self.logged_usd

    def to_dict(self) -> dict[str, Any]:
        return {"date": self.date.isoformat(), "model": self.model, "cost_type": self.cost_type,
                "logged_usd": _usd(self.logged_usd), "billed_usd": _usd(self.billed_usd),
                "difference_usd": _usd(self.difference_usd), "flagged": self.flagged, "cause": self.cause}


def _usd(amount: Decimal) -> str:
    return f"{amount.normalize():f}" if amount else "0"


def canonical(model: str) -> str:
    """The catalogue's id for a model (dated ids and aliases folded), so log and bill name it alike."""
    try:
        return catalog.resolve(model)
    except UnknownModelError:
        return model


def logged_cells(paths: Iterable[str], *, fmt: str = "auto", table: PriceTable | None = None
                 ) -> tuple[dict[Cell, Decimal], list[dict[str, Any]], int]:
    """(cells, unpriced records as {file, line, reason}, calls priced) for the logs."""
    cells: dict[Cell, Decimal] = {}
    skipped: list[dict[str, Any]] = []
    priced = 0
    for path in paths:
        for line, item in read_exchanges(path, format=fmt):
            if not isinstance(item, Exchange):
                skipped.append({"file": item.file, "line": item.line, "reason": item.reason})
                continue
            if item.response is None:
                continue  # an error response is not billed
            model = item.response.get("model") or item.request.get("model")
            try:
                breakdown = cost(str(model), item.response.get("usage") or {}, batch=item.batch, at=item.started_at,
                                 table=table)
            except (PriceError, UnknownModelError, TypeError) as exc:
                skipped.append({"file": str(path), "line": line, "reason": str(exc).split("\n", 1)[0]})
                continue
            priced += 1
            day, name = item.started_at.date(), canonical(breakdown.model)
            if breakdown.batch_discount:
                key = (day, name, "batch")
                cells[key] = cells.get(key, Decimal(0)) + breakdown.total
                continue
            for category in CATEGORIES:
                amount = getattr(breakdown, category)
                if amount:
                    key = (day, name, category)
                    cells[key] = cells.get(key, Decimal(0)) + amount
    return cells, skipped, priced


def billed_cells(cost_report: str | Path) -> dict[Cell, Decimal]:
    """The cost report summed per day × model × cost type, in USD."""
    cells: dict[Cell, Decimal] = {}
    for line in read_cost_report(cost_report):
        key = (line.day, canonical(line.model), line.cost_type)
        cells[key] = cells.get(key, Decimal(0)) + line.usd
    return cells


def fetch_cost_report(save_to: str | Path, *, key: str | None = None, base_url: str | None = None,
                      transport: Any = None) -> Callable[[date, date], Path]:
    """A CostReport that fetches the Admin API cost report for the logs' days (UTC, first to last, whole days),
    every page, and saves it to `save_to` (a file `--cost-report` reads back)."""
    def fetch(first: date, last: date) -> Path:
        start = datetime.combine(first, time(), timezone.utc)
        end = datetime.combine(last + timedelta(days=1), time(), timezone.utc)
        pages = fetch_report(COST_FORMAT, start, end, key=key, base_url=base_url, transport=transport)
        return write_pages(pages, save_to)

    return fetch


def reconcile(paths: Iterable[str], cost_report: CostReport, *, fmt: str = "auto", table: PriceTable | None = None,
              tolerance: Decimal = TOLERANCE) -> dict[str, Any]:
    """The reconciliation as a JSON document: `rows` (every cell), totals, flagged count, unpriced records."""
    paths = list(paths)
    logged, skipped, priced = logged_cells(paths, fmt=fmt, table=table)
    if callable(cost_report):
        days = sorted({key[0] for key in logged})
        if not days:
            raise InputError("the logs hold no priced calls, so there are no days to fetch a cost report for",
                             file=", ".join(paths))
        cost_report = cost_report(days[0], days[-1])
    billed = billed_cells(cost_report)
    keys = sorted(set(billed) | set(logged), key=lambda k: (k[0], k[1], _order(k[2])))
    off = {k for k in keys if k[2] in COST_TYPES
           and abs(billed.get(k, Decimal(0)) - logged.get(k, Decimal(0))) > tolerance}
    rows = []
    for key in keys:
        got, bill = logged.get(key, Decimal(0)), billed.get(key, Decimal(0))
        if key[2] not in COST_TYPES:
            cause = "not token traffic: logs carry no price for it"
        else:
            cause = _cause(key, logged, billed, off) if key in off else None
        rows.append(Row(key[0], key[1], key[2], got, bill, key in off, cause))
    total_logged = sum((r.logged_usd for r in rows), Decimal(0))
    total_billed = sum((r.billed_usd for r in rows), Decimal(0))
    return {
        "schema": SCHEMA_ID,
        "logs": paths,
        "cost_report": str(cost_report),
        "tolerance_usd": _usd(tolerance),
        "priced_calls": priced,
        "totals": {"logged_usd": _usd(total_logged), "billed_usd": _usd(total_billed),
                   "difference_usd": _usd(total_billed - total_logged)},
        "flagged": len(off),
        "rows": [r.to_dict() for r in rows],
        "unpriced": skipped,
    }


def _order(cost_type: str) -> int:
    return COST_TYPES.index(cost_type) if cost_type in COST_TYPES else len(COST_TYPES)


def _cause(key: Cell, logged: dict[Cell, Decimal], billed: dict[Cell, Decimal], off: set[Cell]) -> str:
    """The likely reason one flagged cell differs, from its sign and the cells beside it."""
    day, model, kind = key
    got, bill = logged.get(key, Decimal(0)), billed.get(key, Decimal(0))
    diff = bill - got

    def other(k: str) -> Decimal:
        return billed.get((day, model, k), Decimal(0)) - logged.get((day, model, k), Decimal(0))

    if kind == "cache_write_1h" and diff > 0 and (day, model, "cache_write_5m") in off and other("cache_write_5m") < 0:
        return "1-hour cache writes logged as 5-minute writes (the logs lost the TTL split): priced at 1.25x not 2x"
    if kind == "cache_write_5m" and diff < 0 and (day, model, "cache_write_1h") in off and other("cache_write_1h") > 0:
        return "1-hour cache writes logged as 5-minute writes (the logs lost the TTL split): priced at 1.25x not 2x"
    if kind == "batch" and diff > 0 and any((day, model, k) in off and other(k) < 0 for k in CATEGORIES):
        return "batch calls logged as standard calls (the logs do not mark the Message Batches API)"
    if kind in CATEGORIES and diff < 0 and (day, model, "batch") in off and other("batch") > 0:
        return "batch calls logged as standard calls (the logs do not mark the Message Batches API)"
    if kind == "cache_read" and got and bill and got == 2 * bill:
        return "cache reads counted twice in the logs"
    if kind == "input" and diff < 0 and logged.get((day, model, "cache_read")):
        return ("logged input exceeds the bill: input logged inclusive of cache tokens and priced again, or "
                "requests logged twice")
    if not got:
        return "billed but not in the logs: traffic from a client, key or workspace the logs do not cover"
    if not bill:
        return ("in the logs but not billed: another organisation's traffic, a proxy's response-cache hits logged "
                "as calls, or a model the bill names differently")
    if diff > 0:
        return (f"billed ${_usd(diff)} more than the logs account for: requests missing from the logs (retries, "
                "dropped log lines, other clients) or tokens the logs undercount")
    return (f"the logs account for ${_usd(-diff)} more than was billed: requests logged twice, or tokens the logs "
            "overcount")


__all__ = ["COST_TYPES", "SCHEMA_ID", "TOLERANCE", "CostReport", "Row", "billed_cells", "canonical",
           "fetch_cost_report", "logged_cells", "reconcile"]
