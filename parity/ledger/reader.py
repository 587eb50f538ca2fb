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
class LedgerRow:
    """One ledger row: the Exchange plus what the gateway added (route, why, exact cost, status, key)."""

    id: int
    exchange: Exchange
    route: str | None
    reason: str | None
    cost_usd: Decimal | None
    status_code: int | None
    key_id: str | None

    @property
    def reason_code(self) -> str | None:
        """The machine part of `reason` ("contract_label", "candidate_timeout", "rolled_back", ...)."""
        return self.reason.split(":", 1)[0].split(";", 1)[0].strip() if self.reason else None

    @property
    def answered_client(self) -> bool:
        """Whether this exchange is the answer a client received (not a discarded candidate attempt, a shadow
        copy or a drift call: those are recorded and priced, but nobody was answered by them)."""
        return self.exchange.tags.get("outcome") != "rejected" and self.route != "shadow"


def read_rows(url: str, *, task: str | None = None) -> Iterator[LedgerRow]:
    """Every row with the gateway's route, reason and exact cost, in the order written (a damaged row raises)."""
    engine = create_engine(ledger_url(url))
    t = exchanges.c
    query = sa.select(t.id, t.exchange_json, t.route, t.reason, t.cost_usd, t.status_code, t.key_id).order_by(t.id)
    if task is not None:
        query = query.where(t.task == task)
    try:
        with engine.connect() as conn:
            for row in conn.execute(query.execution_options(yield_per=1000)):
                exchange = Exchange.from_dict(json.loads(row.exchange_json), file=url, line=row.id)
                cost = Decimal(row.cost_usd) if row.cost_usd is not None else None
                yield LedgerRow(row.id, exchange, row.route, row.reason, cost, row.status_code, row.key_id)
    finally:
        engine.dispose()
