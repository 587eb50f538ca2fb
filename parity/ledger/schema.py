"""The ledger's tables (SQLAlchemy Core) and their versioned migrations.

Money is stored as a decimal string (`cost_usd`, `charged_usd`) so SQLite and PostgreSQL both keep it exact.

Tables: `exchanges` (one row per Exchange, with its route, outcome, exact cost and what its key was charged),
`key_spend` (each key's charged total, kept in the transaction that inserts its rows; the row a replica locks
with `SELECT ... FOR UPDATE` while it checks and reserves), `key_reservations` (the worst case of each request in
flight against a budgeted key, deleted in the transaction that writes its answer's row), `drift_state` (a task
rolled back by any replica), `deferred` (the deferral queue: each request answered 202, until its result is
dropped), `policies` (every policy document a replica loaded, versioned: the newest is in force on all) and
`parity_schema` (the schema version).

Migrations are numbered; `create_engine` brings an older ledger up to `SCHEMA_VERSION` (one transaction, under
an advisory lock on PostgreSQL so replicas starting together do not race) and refuses a ledger written by a newer
Parity: a replica never writes rows it does not understand.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from parity.errors import InputError

SCHEMA_VERSION = 3
_MIGRATION_LOCK = 0x70617269  # "pari": the advisory lock id the migrations hold on PostgreSQL

metadata = sa.MetaData()

exchanges = sa.Table(
    "exchanges",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("started_at", sa.String(40), nullable=False, index=True),
    sa.Column("duration_ms", sa.Integer, nullable=False),
    sa.Column("task", sa.String(200), nullable=True, index=True),
    sa.Column("route", sa.String(40), nullable=True),
    sa.Column("model_requested", sa.String(100), nullable=True),
    sa.Column("model_served", sa.String(100), nullable=True),
    sa.Column("status_code", sa.Integer, nullable=True),
    sa.Column("batch", sa.Boolean, nullable=False, default=False),
    sa.Column("input_tokens", sa.Integer, nullable=True),
    sa.Column("output_tokens", sa.Integer, nullable=True),
    sa.Column("cache_read_input_tokens", sa.Integer, nullable=True),
    sa.Column("cache_creation_input_tokens", sa.Integer, nullable=True),
    sa.Column("cost_usd", sa.String(40), nullable=True),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("key_id", sa.String(64), nullable=True, index=True),
    sa.Column("exchange_json", sa.Text, nullable=False),
    # v2
    sa.Column("record_id", sa.String(64), nullable=True, unique=True),  # journal replay writes each row once
    sa.Column("charged_usd", sa.String(40), nullable=True),  # what the key was charged (cost, or a ceiling if unpriced)
)

key_reservations = sa.Table(
    "key_reservations",
    metadata,
    sa.Column("request_id", sa.String(64), primary_key=True),
    sa.Column("key_id", sa.String(64), nullable=False, index=True),
    sa.Column("amount_usd", sa.Numeric(20, 12), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),  # epoch seconds: a reservation a dead replica left expires
    sa.Column("replica", sa.String(80), nullable=True),
)

key_spend = sa.Table(
    "key_spend",
    metadata,
    sa.Column("key_id", sa.String(64), primary_key=True),
    sa.Column("charged_usd", sa.String(40), nullable=False),  # decimal text: exact on SQLite too
    sa.Column("rows", sa.Integer, nullable=False),  # the charged rows it sums
)

drift_state = sa.Table(
    "drift_state",
    metadata,
    sa.Column("task", sa.String(200), primary_key=True),
    sa.Column("state", sa.String(20), nullable=False),  # "rolled_back"
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("decided_at", sa.String(40), nullable=False),
    sa.Column("replica", sa.String(80), nullable=True),
    sa.Column("rollback_json", sa.Text, nullable=False),
)

deferred = sa.Table(
    "deferred",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),  # the handle's id, also the batch custom_id and the ledger record id
    sa.Column("state", sa.String(20), nullable=False, index=True),  # queued submitting submitted succeeded errored ...
    sa.Column("task", sa.String(200), nullable=True),
    sa.Column("key_id", sa.String(64), nullable=True),
    sa.Column("request_json", sa.Text, nullable=False),
    sa.Column("queued_at", sa.Float, nullable=False),  # epoch seconds
    sa.Column("started_at", sa.String(40), nullable=False),
    sa.Column("replica", sa.String(80), nullable=True),  # the replica that answered 202
    sa.Column("custom_id", sa.String(64), nullable=False),
    sa.Column("batch_id", sa.String(100), nullable=True, index=True),
    sa.Column("claim", sa.String(40), nullable=True, index=True),  # the flush (or collection) holding the row now
    sa.Column("claimed_at", sa.Float, nullable=True),
    sa.Column("result_json", sa.Text, nullable=True),  # the Message, or the error envelope
    sa.Column("finished_at", sa.Float, nullable=True),
)

policies = sa.Table(
    "policies",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("document", sa.Text, nullable=False),  # {"policy": ..., "certificates": {path as named: file text}}
    sa.Column("loaded_at", sa.String(40), nullable=False),
    sa.Column("replica", sa.String(80), nullable=True),
    sa.Column("source", sa.Text, nullable=True),
)

schema_version = sa.Table(
    "parity_schema",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.String(40), nullable=False),
)


def create_engine(url: str) -> sa.Engine:
    """An engine for `url`, its schema migrated to `SCHEMA_VERSION`; SQLite files get WAL mode and a busy timeout
    so readers never block the writer. Raises InputError on a ledger from a newer Parity."""
    url = ledger_url(url)
    if url.startswith("sqlite"):
        memory = url in ("sqlite://", "sqlite:///:memory:")  # one connection, or each would see its own database
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                                  **({"poolclass": sa.pool.StaticPool} if memory else {}))

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

    else:
        engine = sa.create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    try:
        migrate(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


def _now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat()


def _v2(conn: sa.Connection) -> None:
    """v1 -> v2: record ids and charged amounts on exchanges; reservations, budget keys, drift state."""
    columns = {c["name"] for c in sa.inspect(conn).get_columns("exchanges")}
    if "record_id" not in columns:
        conn.exec_driver_sql("ALTER TABLE exchanges ADD COLUMN record_id VARCHAR(64)")
        conn.exec_driver_sql("CREATE UNIQUE INDEX IF NOT EXISTS ix_exchanges_record_id ON exchanges (record_id)")
    if "charged_usd" not in columns:
        conn.exec_driver_sql("ALTER TABLE exchanges ADD COLUMN charged_usd VARCHAR(40)")
    conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS ix_exchanges_key_id ON exchanges (key_id)")
    metadata.create_all(conn, tables=[key_reservations, drift_state])


def _v3(conn: sa.Connection) -> None:
    """v2 -> v3: per-key spend totals (summed once from the rows; they replace v2's `budget_keys` as the row a
    budget check locks), the durable deferral queue, the shared policy versions."""
    metadata.create_all(conn, tables=[key_spend, deferred, policies])
    conn.exec_driver_sql("DROP TABLE IF EXISTS budget_keys")
    totals: dict[str, tuple[Decimal, int]] = {}
    amount = sa.func.coalesce(exchanges.c.charged_usd, exchanges.c.cost_usd)
    for key_id, value in conn.execute(sa.select(exchanges.c.key_id, amount).where(exchanges.c.key_id.is_not(None))):
        if value:
            total, rows = totals.get(key_id, (Decimal(0), 0))
            totals[key_id] = (total + Decimal(value), rows + 1)
    if totals:
        conn.execute(key_spend.insert(), [{"key_id": k, "charged_usd": str(t), "rows": n} for k, (t, n) in totals.items()])


#: version -> the step that brings a ledger at version-1 to it (version 1 is the original `exchanges` table).
MIGRATIONS = {2: _v2, 3: _v3}


def current_version(conn: sa.Connection) -> int:
    """The ledger's schema version: 0 for an empty database, 1 for a ledger from before versioning."""
    tables = set(sa.inspect(conn).get_table_names())
    if "parity_schema" in tables:
        found = conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar()
        if found is not None:
            return int(found)
    return 1 if "exchanges" in tables else 0


def migrate(engine: sa.Engine) -> int:
    """Bring the ledger to `SCHEMA_VERSION` in one transaction; refuse one this code does not know."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
        version = current_version(conn)
        if version > SCHEMA_VERSION:
            raise InputError(
                f"the ledger's schema is version {version}, written by a newer Parity; this one knows versions up "
                f"to {SCHEMA_VERSION}: upgrade Parity on this replica before starting it",
                field="--ledger",
            )
        if version == SCHEMA_VERSION:
            return version
        if version == 0:
            metadata.create_all(conn)
        else:
            metadata.create_all(conn, tables=[schema_version])
            for step in range(version + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[step](conn)
        conn.execute(schema_version.insert(), [{"version": v, "applied_at": _now()}
                                               for v in range(max(version, 0) + 1, SCHEMA_VERSION + 1)])
    return SCHEMA_VERSION


def insert_ignoring(bind: sa.Engine | sa.Connection, table: sa.Table, index_elements: list[str]) -> Any:
    """INSERT into `table` that skips a row whose `index_elements` are already there (SQLite or PostgreSQL)."""
    if bind.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table).on_conflict_do_nothing(index_elements=index_elements)


def ledger_url(value: str) -> str:
    """Accept a SQLAlchemy URL or a plain file path (taken as SQLite); `postgresql://` uses psycopg 3."""
    if "://" not in value:
        return f"sqlite:///{value}"
    for plain in ("postgresql://", "postgres://"):
        if value.startswith(plain):
            return "postgresql+psycopg://" + value[len(plain):]
    return value


def display_url(url: str) -> str:
    """A database URL with its password masked, as reports, pages and errors show it; a plain path as it is."""
    if "://" not in url:
        return url
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not parseable: nothing to mask reliably, so show only the scheme
        return url.split("://", 1)[0] + "://..."


def is_shared(url: str | None) -> bool:
    """Whether a ledger URL is a server several gateway replicas can share (PostgreSQL), not an embedded file."""
    return url is not None and ledger_url(url).startswith("postgresql")
