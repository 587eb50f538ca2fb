"""What the dashboard shows, read from a ledger (read-only): exact spend over time by cost category, the realised
saving by lever (`parity.audit.realised`, as `parity savings`), requests by route, fallbacks by reason, shadow traffic
per task and spend per gateway key.

Money is priced exactly as `parity audit` prices it (`parity.audit.cost`: the same `usage_counts`, `Pricer` and
the same rules for which rows count: an error is not billed, the model is the response's else the request's), so
the total here equals the audit's `totals.cost_usd` on the same ledger. Category amounts are net of the batch
discount (each line of a batch request is halved), so the categories add up to the total exactly.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any

from parity.audit.cost import EXACT, CostAcc, Pricer, UnpricedError, usage_counts
from parity.audit.realised import period, realised
from parity.exchange import Exchange
from parity.ledger.reader import LedgerRow, read_rows
from parity.pricing import PriceTable
from parity.task import named_task

__all__ = ["CATEGORIES", "LedgerSummary", "drift_states", "summarize"]

CATEGORIES = ("input", "cache writes", "cache reads", "output")
"""The dashboard's cost categories: 5-minute and 1-hour cache writes are shown as one."""

_ZERO = Decimal(0)


@dataclass
class LedgerSummary:
    """The dashboard's figures for one ledger; amounts are exact Decimals."""

    rows: int = 0
    priced: int = 0
    errors: int = 0  # rows without a response: not billed
    unpriced: list[tuple[int, str]] = field(default_factory=list)  # (row id, why), as the audit's `malformed`
    total_usd: Decimal = _ZERO
    by_category: dict[str, Decimal] = field(default_factory=lambda: dict.fromkeys(CATEGORIES, _ZERO))
    bucket: str = "hour"  # minute | hour | day
    spend_over_time: list[tuple[datetime, dict[str, Decimal]]] = field(default_factory=list)
    routes: dict[str, int] = field(default_factory=dict)
    fallbacks: dict[str, int] = field(default_factory=dict)
    shadowed: dict[str, int] = field(default_factory=dict)  # task -> drift (shadow) calls recorded
    spend_by_key: dict[str, Decimal] = field(default_factory=dict)  # gateway key id -> ledger cost_usd, as budgets
    savings: dict[str, Decimal | None] = field(default_factory=dict)  # lever -> realised saving (see `summarize`)
    first: datetime | None = None
    last: datetime | None = None


def summarize(url: str, *, table: PriceTable | None = None, bucket: str | None = None,
              baselines: Mapping[str, str] | None = None) -> LedgerSummary:
    """Read every row of the ledger at `url` once and gather the dashboard's figures.

    `bucket` (minute, hour or day) is chosen from the time span when not given. The realised saving of each lever is
    `parity savings`' own (`parity.audit.realised`, on this ledger as the after period with no before period): cache
    (every cached token billed as plain input, minus what was paid), batch (batch rows at standard rates, minus what
    was paid) and rightsize (routed rows billed on their task's baseline model, minus what was paid; only with
    `baselines`, task -> baseline model, e.g. from the policy; else None)."""
    pricer = Pricer(table)
    out = LedgerSummary()
    timed: list[tuple[datetime, Any, tuple[int, int, int, int, int]]] = []
    routes: Counter[str] = Counter()
    fallbacks: Counter[str] = Counter()
    shadowed: Counter[str] = Counter()

    def exchanges() -> Iterator[Exchange]:
        """The ledger's exchanges, for `realised.period`, gathering the dashboard's figures on the way."""
        for row in read_rows(url):
            _observe(row, out, pricer, timed, routes, fallbacks, shadowed)
            yield row.exchange

    families = period(exchanges(), pricer)
    out.routes = dict(routes.most_common())
    out.fallbacks = dict(fallbacks.most_common())
    out.shadowed = dict(sorted(shadowed.items()))
    out.bucket = bucket or _bucket_for(out.first, out.last)
    per_bucket: dict[datetime, CostAcc] = {}
    for at, key, counts in timed:
        per_bucket.setdefault(_floor(at, out.bucket), CostAcc()).add(key, 1, *counts)
    for start in sorted(per_bucket):
        amounts = _categories(pricer, per_bucket[start])
        out.spend_over_time.append((start, amounts))
        with localcontext(EXACT):
            for name, amount in amounts.items():
                out.by_category[name] += amount
    with localcontext(EXACT):
        out.total_usd = sum(out.by_category.values(), _ZERO)
    totals = realised(families, pricer, baselines=baselines or {}).totals()
    out.savings = {lever: Decimal(str(t["realised_usd"])) for lever, t in totals.items()}
    if not baselines:
        out.savings["rightsize"] = None
    return out


def _observe(row: LedgerRow, out: LedgerSummary, pricer: Pricer, timed: list[Any], routes: Counter[str],
             fallbacks: Counter[str], shadowed: Counter[str]) -> None:
    """One ledger row into the summary, by the audit's rules for what is billed and how it is priced."""
    out.rows += 1
    route = row.route or row.exchange.route or "unrecorded"
    routes[route] += 1
    if route == "fallback":
        fallbacks[row.reason_code or "unspecified"] += 1
    if route == "shadow":
        shadowed[_task_of(row)] += 1
    if row.key_id is not None and row.cost_usd:
        out.spend_by_key[row.key_id] = out.spend_by_key.get(row.key_id, _ZERO) + row.cost_usd
    ex = row.exchange
    if ex.response is None:
        out.errors += 1
        return
    model = ex.response.get("model") or ex.request.get("model")
    if not isinstance(model, str) or not model:
        out.unpriced.append((row.id, "no model: neither response.model nor request.model is a model id"))
        return
    usage = ex.response.get("usage")
    try:
        counts = usage_counts(usage)
        key = pricer.key(model, usage, counts, batch=ex.batch, at=ex.started_at)
    except UnpricedError as exc:
        out.unpriced.append((row.id, str(exc)))
        return
    out.priced += 1
    at = ex.started_at if ex.started_at.tzinfo else ex.started_at.replace(tzinfo=timezone.utc)
    out.first = at if out.first is None or at < out.first else out.first
    out.last = at if out.last is None or at > out.last else out.last
    timed.append((at, key, counts))


def _categories(pricer: Pricer, acc: CostAcc) -> dict[str, Decimal]:
    """Exact cost of `acc` by dashboard category, the batch discount taken from each line it applies to."""
    amounts = dict.fromkeys(CATEGORIES, _ZERO)
    for batch in (False, True):
        part = acc.filtered(lambda k, b=batch: k.batch is b)
        if not part.v:
            continue
        b = pricer.breakdown(part)
        with localcontext(EXACT):
            lines = {"input": b.input, "cache writes": b.cache_write_5m + b.cache_write_1h,
                     "cache reads": b.cache_read, "output": b.output}
            for name, amount in lines.items():
                amounts[name] += amount / 2 if batch else amount
    return amounts


def _task_of(row: Any) -> str:
    """The task of a row by the one task rule (the ledger writer's), "unnamed" when none."""
    ex = row.exchange
    named = named_task(ex.request, tags=ex.tags) if isinstance(ex.request, dict) else None
    return named.name if named is not None else "unnamed"


def _bucket_for(first: datetime | None, last: datetime | None) -> str:
    if first is None or last is None:
        return "hour"
    span = last - first
    return "minute" if span <= timedelta(hours=3) else "hour" if span <= timedelta(days=4) else "day"


def _floor(at: datetime, bucket: str) -> datetime:
    if bucket == "minute":
        return at.replace(second=0, microsecond=0)
    if bucket == "hour":
        return at.replace(minute=0, second=0, microsecond=0)
    return at.replace(hour=0, minute=0, second=0, microsecond=0)


def drift_states(state_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Persisted drift rollbacks (the gateway's drift-<task>.json files in its state directory): task -> state,
    with the e-values of the test that fired. A task without a file has not been rolled back."""
    out: dict[str, dict[str, Any]] = {}
    directory = Path(state_dir)
    if not directory.is_dir():
        return out
    for path in sorted(directory.glob("drift-*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or not isinstance(data.get("task"), str):
            continue
        evidence = data.get("evidence") if isinstance(data.get("evidence"), dict) else {}
        test = evidence.get("test") if isinstance(evidence.get("test"), dict) else {}
        out[data["task"]] = {
            "task": data["task"], "state": "rolled_back", "rolled_back_at": data.get("rolled_back_at"),
            "reason": data.get("reason"), "candidate_model": evidence.get("candidate_model"),
            "baseline_model": evidence.get("baseline_model"), "judged": evidence.get("judged"),
            "e_value": test.get("e_value"), "futility_e_value": test.get("futility_e_value"),
        }
    return out
