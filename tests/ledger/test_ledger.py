from datetime import datetime, timezone
from decimal import Decimal

import sqlalchemy as sa

from parity.exchange import Exchange
from parity.ledger.reader import read_ledger
from parity.ledger.schema import create_engine, exchanges
from parity.ledger.writer import LedgerEntry, LedgerWriter


def _exchange(i: int) -> Exchange:
    return Exchange(
        request={"model": "claude-haiku-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": f"hi {i}"}]},
        response={"id": f"msg_{i}", "type": "message", "model": "claude-haiku-4-5", "content": [],
                  "usage": {"input_tokens": 10 + i, "output_tokens": 2}},
        started_at=datetime(2026, 11, 24, 10, 0, i, tzinfo=timezone.utc),
        duration_ms=5,
        tags={"task": "triage"},
        route="routed",
    )


def test_writer_is_durable_and_exact(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    writer = LedgerWriter(url)
    for i in range(50):
        writer.write(LedgerEntry(_exchange(i), cost_usd=Decimal("0.000012345678"), reason=None, status_code=200))
    writer.flush()
    writer.close()
    assert writer.written == 50 and writer.failed == 0

    engine = create_engine(url)
    with engine.connect() as conn:
        mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
        costs = [Decimal(c) for (c,) in conn.execute(sa.select(exchanges.c.cost_usd))]
    assert mode == "wal"
    assert sum(costs) == Decimal("0.000012345678") * 50

    rows = list(read_ledger(url))
    assert [r[0] for r in rows] == list(range(1, 51))
    first = rows[0][1]
    assert isinstance(first, Exchange)
    assert first.route == "routed" and first.usage["input_tokens"] == 10


def test_damaged_row_is_reported_not_fatal(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    writer = LedgerWriter(url)
    writer.write(LedgerEntry(_exchange(1)))
    writer.flush()
    writer.close()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(exchanges.insert(), [{"started_at": "x", "duration_ms": 0, "batch": False, "exchange_json": "{not json"}])
    results = list(read_ledger(url))
    assert len(results) == 2
    assert type(results[1][1]).__name__ == "Rejected"
    assert results[1][1].line == 2


def test_read_rows_gives_route_reason_and_exact_cost(tmp_path):
    from dataclasses import replace

    from parity.ledger.reader import read_rows

    url = str(tmp_path / "ledger.db")
    writer = LedgerWriter(url)
    plain = replace(_exchange(1), tags={}, route="passthrough")
    writer.write(LedgerEntry(plain, cost_usd=Decimal("0.000123")))
    writer.write(LedgerEntry(_exchange(2), cost_usd=Decimal("0.5"), reason="contract_label: 'Billing.' is not a label"))
    writer.close()
    rows = list(read_rows(url))
    assert [(r.exchange.task, r.route, r.cost_usd, r.reason_code) for r in rows] == [
        (None, "passthrough", Decimal("0.000123"), None), ("triage", "routed", Decimal("0.5"), "contract_label")]
    assert rows[1].exchange.request == _exchange(2).request and rows[1].answered_client
    assert [r.id for r in read_rows(url, task="triage")] == [rows[1].id]


def test_one_bad_row_never_loses_the_rest_of_its_batch(tmp_path):
    from dataclasses import replace

    url = str(tmp_path / "ledger.db")
    writer = LedgerWriter(url)
    odd_model = replace(_exchange(1), request={**_exchange(1).request, "model": {"not": "a string"}})
    broken = replace(_exchange(2), started_at=None)  # cannot be formatted: this row fails on its own
    for entry in (_exchange(0), odd_model, broken, _exchange(3)):
        writer.write(LedgerEntry(entry, cost_usd=Decimal("0.01")))
    writer.close()
    assert (writer.written, writer.failed) == (3, 1)
    rows = [ex for _, ex in read_ledger(url)]
    assert [ex.request["messages"][0]["content"] for ex in rows] == ["hi 0", "hi 1", "hi 3"]
    assert rows[1].request["model"] == {"not": "a string"}


def test_a_v2_sqlite_ledger_migrates_to_v3_with_exact_key_totals(tmp_path):
    from parity.ledger.budget import charged
    from parity.ledger.schema import SCHEMA_VERSION, current_version, schema_version

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:  # back to what v2 was
        for table in ("key_spend", "deferred", "policies"):
            conn.exec_driver_sql(f"DROP TABLE {table}")
        conn.exec_driver_sql("CREATE TABLE budget_keys (key_id VARCHAR(64) PRIMARY KEY)")
        conn.execute(schema_version.delete().where(schema_version.c.version == 3))
    engine.dispose()
    engine = sa.create_engine(url)  # rows as a v2 writer left them: no totals
    with engine.begin() as conn:
        for i in range(30):
            conn.execute(exchanges.insert().values(started_at="2026-11-24T10:00:00Z", duration_ms=1, key_id="k",
                                                   exchange_json=_exchange(i).to_json(), cost_usd="0.000000100003"))
    engine.dispose()
    engine = create_engine(url)
    with engine.connect() as conn:
        assert current_version(conn) == SCHEMA_VERSION == 3
        assert charged(conn) == {"k": Decimal("0.00000300009")}  # exact: 30 x 0.000000100003, no float in between
        assert "budget_keys" not in sa.inspect(conn).get_table_names()
    engine.dispose()
    writer = LedgerWriter(url)  # from now on the writer keeps the total with the rows
    writer.write(LedgerEntry(_exchange(1), cost_usd=Decimal("0.1"), key_id="k", status_code=200, record_id="x"))
    writer.write(LedgerEntry(_exchange(1), cost_usd=Decimal("0.1"), key_id="k", status_code=200, record_id="x"))
    writer.flush()
    writer.close()
    engine = create_engine(url)
    with engine.connect() as conn:
        assert charged(conn) == {"k": Decimal("0.10000300009")}  # the replayed row counted once
    engine.dispose()
