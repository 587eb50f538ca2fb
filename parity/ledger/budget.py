"""Key budgets shared by every gateway replica on one PostgreSQL ledger, without a shared counter that can race.

A key's spend is what the ledger says it was charged (`exchanges.charged_usd`, else `cost_usd`), plus the worst
case of each of its requests still in flight (`key_reservations`). A replica admits a request in one
transaction: it locks the key's row in `budget_keys` (`SELECT ... FOR UPDATE`, so admissions of one key are
serialised across replicas), sums both, refuses when the budget is already reached, else inserts the request's
reservation. The reservation is deleted in the same transaction that writes the answer's ledger row
(`LedgerWriter`), so at no moment is a request counted neither as reserved nor as charged. Every request admitted
saw spend + reservations below the budget, and its reservation bounds its real cost, so the total can exceed the
budget by at most the one request admitted last. A reservation left by a replica that died expires after
`ttl_s`; its answer, if one was given, comes back with the journal replay.
"""

from __future__ import annotations

import time
from decimal import Decimal

import sqlalchemy as sa

from parity.ledger.schema import budget_keys, create_engine, exchanges, key_reservations

RESERVATION_TTL_S = 900.0


class BudgetExceeded(Exception):
    """The key's budget is reached: `spent` is charged plus reserved."""

    def __init__(self, spent: Decimal):
        super().__init__(f"spent {spent}")
        self.spent = spent


class SharedBudget:
    """Admission against a key budget kept in the shared ledger (see the module docstring)."""

    def __init__(self, url: str, *, replica: str = "", ttl_s: float = RESERVATION_TTL_S, engine: sa.Engine | None = None):
        self.engine = engine or create_engine(url)
        self.replica = replica[:80]
        self.ttl_s = ttl_s

    def spent(self, conn: sa.Connection, key_id: str) -> Decimal:
        """Charged (ledger rows) plus reserved (live reservations) for `key_id`, exact."""
        # One statement, so one snapshot: an answer committed between two separate reads (its row inserted and its
        # reservation deleted together) would otherwise be seen in neither.
        amount = sa.func.coalesce(exchanges.c.charged_usd, exchanges.c.cost_usd)
        charged = (
            sa.select(sa.func.coalesce(sa.func.sum(sa.cast(amount, sa.Numeric(30, 12))), 0))
            .where(exchanges.c.key_id == key_id).scalar_subquery()
        )
        reserved = (
            sa.select(sa.func.coalesce(sa.func.sum(key_reservations.c.amount_usd), 0))
            .where(key_reservations.c.key_id == key_id, key_reservations.c.created_at > time.time() - self.ttl_s)
            .scalar_subquery()
        )
        total = conn.execute(sa.select(charged + reserved)).scalar()
        return Decimal(total)

    def reserve(self, key_id: str, budget: Decimal, request_id: str, amount: Decimal) -> Decimal:
        """Reserve `amount` for `request_id` if the key's spend is below `budget`; returns the spend seen before.
        Raises BudgetExceeded otherwise."""
        from sqlalchemy.dialects.postgresql import insert

        with self.engine.begin() as conn:
            conn.execute(insert(budget_keys).values(key_id=key_id).on_conflict_do_nothing())
            conn.execute(sa.select(budget_keys.c.key_id).where(budget_keys.c.key_id == key_id).with_for_update())
            spent = self.spent(conn, key_id)
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
