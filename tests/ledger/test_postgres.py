"""The ledger on the real PostgreSQL: versioned migrations, refusal of an unknown schema, exact money, journal
replay without duplicates, shared budgets on per-key totals, drift state, the deferral queue and policy versions."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from decimal import Decimal

import pytest
import sqlalchemy as sa

from parity.errors import InputError
from parity.exchange import Exchange
from parity.ledger.budget import BudgetExceeded, SharedBudget, charged
from parity.ledger.deferred import QUEUED, DeferredRow, DeferredStore
from parity.ledger.policies import PolicyStore
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


# ---- key totals: kept with the rows, read instead of them --------------------------------------------------------


def _rows_total(engine: sa.Engine) -> dict[str, Decimal]:
    from parity.ledger.schema import exchanges

    totals: dict[str, Decimal] = {}
    amount = sa.func.coalesce(exchanges.c.charged_usd, exchanges.c.cost_usd)
    with engine.connect() as conn:
        for key_id, value in conn.execute(sa.select(exchanges.c.key_id, amount).where(exchanges.c.key_id.is_not(None))):
            totals[key_id] = totals.get(key_id, Decimal(0)) + Decimal(value)
    return totals


def test_key_totals_equal_the_rows_under_two_concurrent_writers_and_replays(pg):
    """Two replicas' writers insert rows for three keys at once, each also replaying rows the other already wrote
    (a journal replay): every key's total is the exact sum of its rows, no replayed row counted twice."""
    writers = [LedgerWriter(pg, batch_size=7), LedgerWriter(pg, batch_size=5)]
    entries = [LedgerEntry(_exchange(i), cost_usd=Decimal("0.000012345678") * (1 + i % 4), key_id=f"k{i % 3}",
                           charged_usd=Decimal("0.000012345678") * (1 + i % 4), record_id=f"r{i}", status_code=200)
               for i in range(240)]

    def write(which: int) -> None:
        for i, entry in enumerate(entries):
            if i % 2 == which or i % 5 == 0:  # every fifth row written by both
                writers[which].write(entry)

    threads = [threading.Thread(target=write, args=(w,)) for w in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for writer in writers:
        writer.flush(60)
        writer.close()
    engine = create_engine(pg)
    with engine.connect() as conn:
        totals = charged(conn)
    expected = {f"k{k}": sum(e.charged_usd for e in entries if e.key_id == f"k{k}") for k in range(3)}
    assert totals == expected == _rows_total(engine)
    engine.dispose()


def test_a_budget_check_reads_the_key_total_not_the_ledger_rows(pg):
    writer = LedgerWriter(pg)
    for i in range(50):
        writer.write(LedgerEntry(_exchange(i), cost_usd=Decimal("0.01"), key_id="k", charged_usd=Decimal("0.01"),
                                 record_id=f"r{i}", status_code=200))
    writer.flush()
    writer.close()
    budget = SharedBudget(pg, replica="a")
    statements: list[str] = []
    sa.event.listen(budget.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    assert budget.reserve("k", Decimal("1.00"), "req", Decimal("0.30")) == Decimal("0.50")
    with pytest.raises(BudgetExceeded) as refused:
        budget.reserve("k", Decimal("0.80"), "req2", Decimal("0.01"))
    assert refused.value.spent == Decimal("0.80")
    assert statements and not [s for s in statements if "exchanges" in s], statements
    budget.close()


def test_a_v2_ledger_gets_its_key_totals_from_its_rows(pg):
    from parity.ledger.schema import exchanges

    engine = create_engine(pg)
    with engine.begin() as conn:  # back to what v2 was: no totals, queue or policies; a budget_keys table
        conn.exec_driver_sql("DROP TABLE key_spend, deferred, policies")
        conn.exec_driver_sql("CREATE TABLE budget_keys (key_id VARCHAR(64) PRIMARY KEY)")
        conn.execute(schema_version.delete().where(schema_version.c.version == 3))
        for i in range(12):
            row = {"started_at": "2026-11-24T10:00:00Z", "duration_ms": 1, "exchange_json": _exchange(i).to_json(),
                   "key_id": f"k{i % 2}", "cost_usd": "0.000012345678", "record_id": f"r{i}",
                   "charged_usd": None if i % 3 else "0.5"}
            conn.execute(exchanges.insert().values(**row))
    engine.dispose()
    engine = create_engine(pg)
    with engine.connect() as conn:
        assert current_version(conn) == SCHEMA_VERSION == 3
        assert "budget_keys" not in sa.inspect(conn).get_table_names()
        # per key: two rows charged $0.50 (a ceiling), four at their cost
        assert charged(conn) == _rows_total(engine) == {"k0": Decimal("1.000049382712"),
                                                        "k1": Decimal("1.000049382712")}
    engine.dispose()


# ---- the deferral queue and the policy, shared ---------------------------------------------------------------------


def _queued(i: int) -> DeferredRow:
    return DeferredRow(f"pdef_{i:04d}", QUEUED, {"model": "claude-haiku-4-5", "max_tokens": 5, "messages": []},
                       1000.0 + i, datetime(2026, 11, 24, tzinfo=timezone.utc), key_id="k")


def test_two_replicas_claiming_at_once_never_take_one_request_twice(pg):
    stores = [DeferredStore(pg), DeferredStore(pg)]
    for i in range(120):
        stores[i % 2].add(_queued(i))
    claimed: list[str] = []
    lock = threading.Lock()

    def flush(store: DeferredStore, n: int) -> None:
        while True:
            token, rows = store.claim(7, now=2000.0)
            if not rows:
                return
            store.submitted(token, f"batch-{token}")
            with lock:
                claimed.extend(r.id for r in rows)

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(flush, [stores[i % 2] for i in range(6)], range(6)))
    assert sorted(claimed) == [f"pdef_{i:04d}" for i in range(120)]  # each once

    batch = stores[0].batches()[0]
    in_batch = sorted(i for i in claimed if stores[0].get(i).batch_id == batch)
    results = {r: {"type": "succeeded", "message": {"id": r}} for r in claimed}
    with ThreadPoolExecutor(4) as pool:  # both replicas collect the same ended batch at once
        finished = list(pool.map(lambda s: s.collect(batch, results, 3000.0), [stores[0], stores[1]] * 2))
    collected = [row.id for rows in finished for row in rows]
    assert sorted(collected) == in_batch  # each row of the batch finished once, by one of the four
    assert all(stores[1].get(i).state == "succeeded" for i in collected)
    for store in stores:
        store.close()


def test_a_claim_left_by_a_dead_flush_is_queued_again_after_its_lease(pg):
    store = DeferredStore(pg, lease_s=60.0)
    store.add(_queued(1))
    _, rows = store.claim(10, now=2000.0)  # the replica dies before its batch is created
    assert [r.id for r in rows] == ["pdef_0001"] and store.claim(10, now=2030.0)[1] == []
    assert [r.id for r in store.claim(10, now=2061.0)[1]] == ["pdef_0001"]
    store.close()


def test_policy_versions(pg):
    store = PolicyStore(pg, replica="one")
    assert store.newest() is None and store.newest_version() == 0
    first = store.publish({"policy": {"version": 1, "tasks": {}}, "certificates": {}})
    assert store.publish({"certificates": {}, "policy": {"tasks": {}, "version": 1}}) == first  # the same document
    second = PolicyStore(pg, replica="two").publish({"policy": {"version": 1, "tasks": {"t": {}}}, "certificates": {}})
    assert second == first + 1 and store.newest() == (second, {"policy": {"version": 1, "tasks": {"t": {}}},
                                                               "certificates": {}})
    store.close()
