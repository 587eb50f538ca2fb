"""The ledger on the real PostgreSQL: versioned migrations, refusal of an unknown schema, exact money, journal
replay without duplicates, shared budgets and drift state."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from decimal import Decimal

import pytest
import sqlalchemy as sa

from parity.errors import InputError
from parity.exchange import Exchange
from parity.ledger.budget import BudgetExceeded, SharedBudget
from parity.ledger.reader import read_rows
from parity.ledger.schema import SCHEMA_VERSION, create_engine, current_version, key_reservations, schema_version
from parity.ledger.state import SharedDriftState
from parity.ledger.writer import LedgerEntry, LedgerWriter

from .pg import scratch_schema


@pytest.fixture
def pg():
    with scratch_schema() as url:
        yield url


def _exchange(i: int) -> Exchange:
    return Exchange(
        request={"model": "claude-haiku-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": f"hi {i}"}]},
        response={"id": f"msg_{i}", "type": "message", "model": "claude-haiku-4-5", "content": [],
                  "usage": {"input_tokens": 10, "output_tokens": 2}},
        started_at=datetime(2026, 11, 24, 10, 0, i % 60, tzinfo=timezone.utc), duration_ms=5, tags={"task": "t"},
        route="passthrough",
    )


def test_schema_is_versioned_and_an_unknown_version_is_refused(pg):
    engine = create_engine(pg)
    with engine.begin() as conn:
        assert current_version(conn) == SCHEMA_VERSION
        conn.execute(schema_version.insert().values(version=SCHEMA_VERSION + 1, applied_at="later"))
    engine.dispose()
    with pytest.raises(InputError, match="newer Parity"):
        create_engine(pg)


def test_replicas_starting_together_migrate_once(pg):
    engines = []
    errors = []

    def start() -> None:
        try:
            engines.append(create_engine(pg))
        except Exception as exc:  # pragma: no cover - what the test is looking for
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with engines[0].connect() as conn:
        versions = [v for (v,) in conn.execute(sa.select(schema_version.c.version).order_by(schema_version.c.version))]
    assert versions == list(range(1, SCHEMA_VERSION + 1))
    for engine in engines:
        engine.dispose()


def test_writer_is_exact_and_idempotent_on_record_ids(pg):
    writer = LedgerWriter(pg)
    entries = [LedgerEntry(_exchange(i), cost_usd=Decimal("0.000012345678"), status_code=200, record_id=f"r{i}",
                           key_id="k", charged_usd=Decimal("0.000012345678")) for i in range(20)]
    for entry in entries:
        writer.write(entry)
    writer.flush()
    writer.write_now(entries[:5])  # a journal replay of rows already written
    writer.close()
    rows = list(read_rows(pg))
    assert len(rows) == 20 and sum(r.cost_usd for r in rows) == Decimal("0.000012345678") * 20


def test_shared_budget_admits_until_reached_across_engines(pg):
    a, b = SharedBudget(pg, replica="a"), SharedBudget(pg, replica="b")
    budget = Decimal("1.00")
    admitted: list[str] = []
    refused = 0
    lock = threading.Lock()

    def attempt(i: int) -> None:
        nonlocal refused
        budget_of = a if i % 2 else b
        try:
            budget_of.reserve("k", budget, f"req{i}", Decimal("0.30"))
            with lock:
                admitted.append(f"req{i}")
        except BudgetExceeded:
            with lock:
                refused += 1

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(attempt, range(16)))
    assert len(admitted) == 4 and refused == 12  # 0, .3, .6, .9 < 1.00 admitted; then refused
    assert a.total("k") == Decimal("1.20")
    writer = LedgerWriter(pg)  # the answers arrive: each row replaces its reservation in one transaction
    for request_id in admitted:
        writer.write(LedgerEntry(_exchange(0), cost_usd=Decimal("0.01"), key_id="k", charged_usd=Decimal("0.01"),
                                 settles=request_id, status_code=200))
    writer.flush()
    writer.close()
    assert b.total("k") == Decimal("0.04")
    with a.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(key_reservations)).scalar() == 0
    a.close(), b.close()


def test_drift_state_is_shared(pg):
    one, two = SharedDriftState(pg, replica="one"), SharedDriftState(pg, replica="two")
    assert two.rolled_back() == {}
    one.publish("triage", {"task": "triage", "reason": "drifted", "certificate": "c1"})
    assert two.rolled_back()["triage"]["certificate"] == "c1"
    two.clear("triage")
    assert one.rolled_back() == {}
    one.close(), two.close()
