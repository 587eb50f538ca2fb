"""The ledger's tables (SQLAlchemy Core): one row per Exchange, with its route, outcome and exact cost.

Money is stored as a decimal string (`cost_usd`) so SQLite and PostgreSQL both keep it exact.
"""

from __future__ import annotations

import sqlalchemy as sa

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
    sa.Column("key_id", sa.String(64), nullable=True),
    sa.Column("exchange_json", sa.Text, nullable=False),
)


def create_engine(url: str) -> sa.Engine:
    """An engine for `url`; SQLite files get WAL mode and a busy timeout so readers never block the writer."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

    else:
        engine = sa.create_engine(url, pool_pre_ping=True)
    metadata.create_all(engine)
    return engine


def ledger_url(value: str) -> str:
    """Accept a SQLAlchemy URL or a plain file path (taken as SQLite)."""
    if "://" in value:
        return value
    return f"sqlite:///{value}"
