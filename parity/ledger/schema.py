"""The ledger's tables (SQLAlchemy Core) and their versioned migrations.

Money is stored as a decimal string (`cost_usd`, `charged_usd`) so SQLite and PostgreSQL both keep it exact.

Tables: `exchanges` (one row per Exchange, with its route, outcome, exact cost and what its key was charged),
`key_reservations` (the worst case of each request in flight against a budgeted key, deleted in the transaction
that writes its answer's row), `budget_keys` (one row per budgeted key: the row a replica locks with
`SELECT ... FOR UPDATE` while it checks and reserves), `drift_state` (a task rolled back by any replica) and
`parity_schema` (the schema version).

Migrations are numbered; `create_engine` brings an older ledger up to `SCHEMA_VERSION` (one transaction, under
an advisory lock on PostgreSQL so replicas starting together do not race) and refuses a ledger written by a newer
Parity: a replica never writes rows it does not understand.
"""

from __future__ import annotations

import sqlalchemy as sa

from parity.errors import InputError

SCHEMA_VERSION = 2
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

budget_keys = sa.Table(
    "budget_keys",
    metadata,
    sa.Column("key_id", sa.String(64), primary_key=True),
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
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

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
    metadata.create_all(conn, tables=[key_reservations, budget_keys, drift_state])


#: version -> the step that brings a ledger at version-1 to it (version 1 is the original `exchanges` table).
MIGRATIONS = {2: _v2}


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


def ledger_url(value: str) -> str:
    """Accept a SQLAlchemy URL or a plain file path (taken as SQLite); `postgresql://` uses psycopg 3."""
    if "://" not in value:
        return f"sqlite:///{value}"
    for plain in ("postgresql://", "postgres://"):
        if value.startswith(plain):
            return "postgresql+psycopg://" + value[len(plain):]
    return value


def is_shared(url: str | None) -> bool:
    """Whether a ledger URL is a server several gateway replicas can share (PostgreSQL), not an embedded file."""
    return url is not None and ledger_url(url).startswith("postgresql")
