"""Key budgets shared by every gateway replica on one PostgreSQL ledger, without a shared counter that can race.

A key's spend is its charged total (`key_spend`, one row per key) plus the worst case of each of its requests
still in flight (`key_reservations`). The total is not a cache beside the ledger: `add_spend` raises it in the
same transaction that inserts the rows it sums (`LedgerWriter`), from the rows the insert really wrote (a journal
replay of a row already there adds nothing), so it always equals the sum of the key's ledger rows and a budget check
reads one row instead of summing them.

A replica admits a request in one transaction: it locks the key's `key_spend` row (`SELECT ... FOR UPDATE`, so
admissions of one key are serialised across replicas, and no answer of that key can commit its charge meanwhile),
adds the live reservations, refuses when the budget is already reached, else inserts the request's reservation.
The reservation is deleted in the transaction that writes the answer's row and raises the total, so at no moment
is a request counted neither as reserved nor as charged. Every request admitted saw spend + reservations below the
budget, and its reservation bounds its real cost, so the total can exceed the budget by at most the one request
admitted last. A reservation left by a replica that died expires after `ttl_s`; its answer, if one was given,
comes back with the journal replay.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from decimal import Decimal

import sqlalchemy as sa

from parity.ledger.schema import create_engine, insert_ignoring, key_reservations, key_spend

RESERVATION_TTL_S = 900.0


class BudgetExceeded(Exception):
    """The key's budget is reached: `spent` is charged plus reserved."""

    def __init__(self, spent: Decimal):
        super().__init__(f"spent {spent}")
        self.spent = spent


def add_spend(conn: sa.Connection, charges: Iterable[tuple[str | None, str | Decimal | None]]) -> None:
    """Raise each key's total by the (key id, amount) charges of rows just inserted on `conn`, in its transaction.

    Keys are locked in sorted order, so two replicas writing batches of several keys never deadlock."""
    totals: dict[str, tuple[Decimal, int]] = {}
    for key_id, amount in charges:
        if key_id is None or amount is None or Decimal(amount) == 0:
            continue
        total, rows = totals.get(key_id, (Decimal(0), 0))
        totals[key_id] = (total + Decimal(amount), rows + 1)
    if not totals:
        return
    keys = sorted(totals)
    conn.execute(insert_ignoring(conn, key_spend, ["key_id"]), [{"key_id": k, "charged_usd": "0", "rows": 0} for k in keys])
    held = dict(conn.execute(sa.select(key_spend.c.key_id, key_spend.c.charged_usd)
                             .where(key_spend.c.key_id.in_(keys)).order_by(key_spend.c.key_id).with_for_update()).all())
    for key_id in keys:
        amount, rows = totals[key_id]
        conn.execute(key_spend.update().where(key_spend.c.key_id == key_id).values(
            charged_usd=str(Decimal(held[key_id]) + amount), rows=key_spend.c.rows + rows))


def charged(conn: sa.Connection, key_id: str | None = None) -> dict[str, Decimal]:
    """key id -> its charged total (every key, or only `key_id`), exact."""
    query = sa.select(key_spend.c.key_id, key_spend.c.charged_usd)
    if key_id is not None:
        query = query.where(key_spend.c.key_id == key_id)
    return {k: Decimal(v) for k, v in conn.execute(query)}


class SharedBudget:
    """Admission against a key budget kept in the shared ledger (see the module docstring)."""

    def __init__(self, url: str, *, replica: str = "", ttl_s: float = RESERVATION_TTL_S, engine: sa.Engine | None = None):
        self.engine = engine or create_engine(url)
        self.replica = replica[:80]
        self.ttl_s = ttl_s

    def _reserved(self, conn: sa.Connection, key_id: str) -> Decimal:
        live = key_reservations.c.created_at > time.time() - self.ttl_s
        total = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(key_reservations.c.amount_usd), 0))
                             .where(key_reservations.c.key_id == key_id, live)).scalar()
        return Decimal(total)

    def spent(self, conn: sa.Connection, key_id: str) -> Decimal:
        """Charged (the key's total) plus reserved (live reservations) for `key_id`, exact."""
        return charged(conn, key_id).get(key_id, Decimal(0)) + self._reserved(conn, key_id)

    def reserve(self, key_id: str, budget: Decimal, request_id: str, amount: Decimal) -> Decimal:
        """Reserve `amount` for `request_id` if the key's spend is below `budget`; returns the spend seen before.
        Raises BudgetExceeded otherwise."""
        locked = sa.select(key_spend.c.charged_usd).where(key_spend.c.key_id == key_id).with_for_update()
        with self.engine.begin() as conn:
            total = conn.execute(locked).scalar()
            if total is None:  # the key's first request: its row, then its lock
                conn.execute(insert_ignoring(conn, key_spend, ["key_id"]).values(key_id=key_id, charged_usd="0", rows=0))
                total = conn.execute(locked).scalar_one()
            # The lock is held: an answer of this key cannot commit its charge (nor drop its reservation with it)
            # before this transaction ends, so the reservations read next agree with the total just read.
            spent = Decimal(total) + self._reserved(conn, key_id)
            if spent >= budget:
                raise BudgetExceeded(spent)
            conn.execute(key_reservations.insert().values(
                request_id=request_id, key_id=key_id, amount_usd=amount, created_at=time.time(), replica=self.replica,
            ))
        return spent

    def release(self, request_id: str) -> None:
        """Drop a reservation whose request never reached the upstream."""
        with self.engine.begin() as conn:
            conn.execute(key_reservations.delete().where(key_reservations.c.request_id == request_id))

    def total(self, key_id: str) -> Decimal:
        with self.engine.connect() as conn:
            return self.spent(conn, key_id)

    def close(self) -> None:
        self.engine.dispose()
