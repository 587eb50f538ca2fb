"""Read the ledger back as Exchanges, for the audit and the next proof."""

from __future__ import annotations

import json
from collections.abc import Iterator

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
