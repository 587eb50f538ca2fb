"""Read the ledger back as Exchanges, for the audit and the next proof."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa

from parity.errors import InputError
from parity.exchange import Exchange, Rejected
from parity.ledger.schema import create_engine, exchanges, ledger_url


def read_ledger(url: str, *, task: str | None = None) -> Iterator[tuple[int, Exchange | Rejected]]:
    """Yield (row id, Exchange or Rejected) in insertion order; a damaged row is reported, never fatal."""
    url = ledger_url(url)
    engine = create_engine(url)
    query = sa.select(exchanges.c.id, exchanges.c.exchange_json).order_by(exchanges.c.id)
    if task is not None:
        query = query.where(exchanges.c.task == task)
    try:
        with engine.connect() as conn:
            for row_id, text in conn.execute(query.execution_options(yield_per=1000)):
                try:
                    yield row_id, Exchange.from_dict(json.loads(text), file=url, line=row_id)
                except (json.JSONDecodeError, InputError) as exc:
                    yield row_id, Rejected(url, row_id, str(exc))
    finally:
        engine.dispose()


@dataclass(frozen=True)
class Outcome:
    """What the gateway did with one upstream call, from the ledger's own columns (no JSON parsing)."""

    row_id: int
    task: str | None
    route: str | None
    model_served: str | None
    status_code: int | None
    cost_usd: Decimal | None
    reason: str | None

    @property
    def reason_kind(self) -> str | None:
        """The reason's machine-readable head, e.g. `contract_label` of `contract_label: 'x' is not one of ...`."""
        return None if self.reason is None else self.reason.split(":", 1)[0].strip()


def read_outcomes(url: str, *, task: str | None = None) -> Iterator[Outcome]:
    """Yield each ledger row's route, reason and exact cost in insertion order (for counting fallbacks and spend)."""
    engine = create_engine(ledger_url(url))
    c = exchanges.c
    query = sa.select(c.id, c.task, c.route, c.model_served, c.status_code, c.cost_usd, c.reason).order_by(c.id)
    if task is not None:
        query = query.where(c.task == task)
    try:
        with engine.connect() as conn:
            for row in conn.execute(query.execution_options(yield_per=1000)):
                cost = None if row.cost_usd is None else Decimal(row.cost_usd)
                yield Outcome(row.id, row.task, row.route, row.model_served, row.status_code, cost, row.reason)
    finally:
        engine.dispose()
