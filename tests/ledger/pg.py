"""A scratch schema on the real PostgreSQL of this machine (127.0.0.1:5432, database `test`), one per test.

Tests that need it skip only when no PostgreSQL server answers there (a machine without one), saying so."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

SERVER = os.environ.get("PARITY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def _connect():  # type: ignore[no-untyped-def]
    import psycopg

    try:
        return psycopg.connect(SERVER, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL server at {SERVER} ({exc.__class__.__name__}); these tests need a real one")


@contextmanager
def scratch_schema() -> Iterator[str]:
    """A ledger URL whose tables live in a new schema, dropped afterwards."""
    name = f"parity_t_{uuid.uuid4().hex[:12]}"
    with _connect() as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    try:
        yield f"{SERVER}?options=-csearch_path%3D{name}"
    finally:
        with _connect() as conn:
            conn.execute(f'DROP SCHEMA "{name}" CASCADE')
