"""Tie logged traffic out to Anthropic's own bill: Parity's price of every logged call against the Admin API
cost report, per day × model × cost type, each cell off by more than a tolerance (a cent) flagged with its
likely cause.

Cost types: `input`, `cache_write_5m`, `cache_write_1h`, `cache_read`, `output` for standard-tier traffic, and
`batch` for everything sent through the Message Batches API (the report bills batch rows by service tier, so batch
traffic is one cell per day and model, after its 50 % discount). Other billed cost types (web search, code
execution) are shown but not flagged: logs carry no price for them.

The logs are read by `parity.readers` (any format `parity audit` reads, detected from the file) and priced with
`parity.pricing.cost`, the same function behind every number Parity prints.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from parity import catalog
from parity.catalog import UnknownModelError
from parity.exchange import Exchange
from parity.pricing import CATEGORIES, PriceError, PriceTable, cost
from parity.readers import read_exchanges
from parity.readers.anthropic_admin import read_cost_report

COST_TYPES = (*CATEGORIES, "batch")
TOLERANCE = Decimal("0.01")
SCHEMA_ID = "parity.reconcile/1"

Cell = tuple[date, str, str]  # (day, model, cost type)


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


def reconcile(paths: Iterable[str], cost_report: str | Path, *, fmt: str = "auto", table: PriceTable | None = None,
              tolerance: Decimal = TOLERANCE) -> dict[str, Any]:
    """The reconciliation as a JSON document: `rows` (every cell), totals, flagged count, unpriced records."""
    paths = list(paths)
    billed = billed_cells(cost_report)
    logged, skipped, priced = logged_cells(paths, fmt=fmt, table=table)
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


__all__ = ["COST_TYPES", "SCHEMA_ID", "TOLERANCE", "Row", "billed_cells", "canonical", "logged_cells", "reconcile"]
