"""The deferral queue's rows in the ledger database (`deferred`), so a request answered 202 outlives its replica.

A row is written before the gateway answers 202 and goes through these states:

    queued -> submitting -> submitted -> succeeded | errored | canceled | expired
                 (claimed by one flush)   (in batch_id)   (result_json holds the Message or the error)

Any replica may move any row, so on one PostgreSQL ledger the queue is shared and a handle resolves on every
replica. Each move that must happen once is one conditional UPDATE that starts its transaction (`claim`,
`collect`): on PostgreSQL the rows are picked with `FOR UPDATE SKIP LOCKED`, so two replicas flushing together
take disjoint rows and never send one request twice; two collecting one batch's results record each row once. On
SQLite the UPDATE takes the database's write lock first, so the same holds between processes sharing the file.

A flush that died between its claim and its batch leaves rows `submitting`; after `lease_s` they are queued again
(the batch may then have been sent twice: the window is one upstream call). An embedded store (no ledger) is an
in-memory SQLite database: the same code, without the durability.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from parity.ledger.schema import create_engine, deferred, exchanges

QUEUED, SUBMITTING, SUBMITTED = "queued", "submitting", "submitted"
FINAL = ("succeeded", "errored", "canceled", "expired")
SUBMIT_LEASE_S = 900.0  # longer than any one upstream call to create a batch


@dataclass
class DeferredRow:
    """One row of the queue, decoded."""

    id: str
    state: str
    request: dict[str, Any]
    queued_at: float
    started_at: datetime
    task: str | None = None
    key_id: str | None = None
    replica: str | None = None
    batch_id: str | None = None
    result: dict[str, Any] | None = None
    finished_at: float | None = None

    @property
    def custom_id(self) -> str:
        return self.id


def _decode(row: Any) -> DeferredRow:
    result = json.loads(row.result_json) if row.result_json else None
    return DeferredRow(id=row.id, state=row.state, request=json.loads(row.request_json), queued_at=row.queued_at,
                       started_at=datetime.fromisoformat(row.started_at), task=row.task, key_id=row.key_id,
                       replica=row.replica, batch_id=row.batch_id, result=result, finished_at=row.finished_at)


def _token() -> str:
    return uuid.uuid4().hex


class DeferredStore:
    """The `deferred` table of the ledger at `url` (an in-memory SQLite database when None); blocking calls."""

    def __init__(self, url: str | None = None, *, engine: sa.Engine | None = None, lease_s: float = SUBMIT_LEASE_S):
        self.engine = engine or create_engine(url or "sqlite://")
        self.durable = url is not None or engine is not None
        self.lease_s = lease_s
        self._lock = threading.Lock()  # one connection in memory; elsewhere it only orders this process's calls

    def add(self, row: DeferredRow) -> int:
        """Write a queued row (before its 202 goes out); returns how many rows are queued now."""
        text = json.dumps(row.request, default=str)  # ASCII: a lone surrogate or a NUL a client sent is escaped
        with self._lock, self.engine.begin() as conn:
            conn.execute(deferred.insert().values(
                id=row.id, state=QUEUED, task=row.task, key_id=row.key_id, request_json=text,
                queued_at=row.queued_at, started_at=row.started_at.isoformat(), replica=row.replica,
                custom_id=row.custom_id,
            ))
            return int(conn.execute(sa.select(sa.func.count()).where(deferred.c.state == QUEUED)).scalar() or 0)

    def get(self, deferred_id: str) -> DeferredRow | None:
        with self._lock, self.engine.connect() as conn:
            row = conn.execute(sa.select(deferred).where(deferred.c.id == deferred_id)).first()
        return None if row is None else _decode(row)

    def queue_state(self) -> tuple[int, float | None]:
        """(rows queued, when the oldest was queued)."""
        with self._lock, self.engine.connect() as conn:
            return self._queue_state(conn)

    @staticmethod
    def _queue_state(conn: sa.Connection) -> tuple[int, float | None]:
        count, oldest = conn.execute(sa.select(sa.func.count(), sa.func.min(deferred.c.queued_at))
                                     .where(deferred.c.state == QUEUED)).one()
        return int(count or 0), oldest

    def pending(self) -> tuple[int, float | None, list[str]]:
        """(rows queued, when the oldest was queued, the batches some rows wait on): what the worker looks at."""
        with self._lock, self.engine.connect() as conn:
            return (*self._queue_state(conn), self._batches(conn))

    def claim(self, limit: int, now: float) -> tuple[str, list[DeferredRow]]:
        """Take up to `limit` queued rows, oldest first, for one batch: (claim token, rows). Rows a dead flush left
        `submitting` longer than `lease_s` are queued again first."""
        token = _token()
        picked = (sa.select(deferred.c.id).where(deferred.c.state == QUEUED)
                  .order_by(deferred.c.queued_at, deferred.c.id).limit(limit).with_for_update(skip_locked=True))
        with self._lock, self.engine.begin() as conn:
            conn.execute(deferred.update().where(deferred.c.state == SUBMITTING,
                                                 deferred.c.claimed_at < now - self.lease_s)
                         .values(state=QUEUED, claim=None, claimed_at=None))
            conn.execute(deferred.update().where(deferred.c.id.in_(picked.scalar_subquery()), deferred.c.state == QUEUED)
                         .values(state=SUBMITTING, claim=token, claimed_at=now))
            rows = conn.execute(sa.select(deferred).where(deferred.c.claim == token)
                                .order_by(deferred.c.queued_at, deferred.c.id)).all()
        return token, [_decode(r) for r in rows]

    def submitted(self, token: str, batch_id: str) -> None:
        """The claimed rows went upstream as batch `batch_id`."""
        with self._lock, self.engine.begin() as conn:
            conn.execute(deferred.update().where(deferred.c.claim == token, deferred.c.state == SUBMITTING)
                         .values(state=SUBMITTED, batch_id=batch_id, claim=None))

    def unclaim(self, token: str) -> None:
        """Sending the claimed rows failed: queue them again."""
        with self._lock, self.engine.begin() as conn:
            conn.execute(deferred.update().where(deferred.c.claim == token, deferred.c.state == SUBMITTING)
                         .values(state=QUEUED, claim=None, claimed_at=None))

    def batches(self) -> list[str]:
        """The batches some rows still wait on."""
        with self._lock, self.engine.connect() as conn:
            return self._batches(conn)

    @staticmethod
    def _batches(conn: sa.Connection) -> list[str]:
        return [b for (b,) in conn.execute(sa.select(deferred.c.batch_id).distinct()
                                           .where(deferred.c.state == SUBMITTED, deferred.c.batch_id.is_not(None)))]

    def requeue(self, batch_id: str) -> int:
        """The upstream no longer knows batch `batch_id`: its rows wait for the next batch instead."""
        with self._lock, self.engine.begin() as conn:
            return conn.execute(deferred.update().where(deferred.c.batch_id == batch_id, deferred.c.state == SUBMITTED)
                                .values(state=QUEUED, batch_id=None, claim=None, claimed_at=None)).rowcount

    def collect(self, batch_id: str, results: Mapping[str, Mapping[str, Any]], now: float) -> list[DeferredRow]:
        """Store the results of an ended batch (`results`: custom_id -> result; a row with none expired). Returns
        the rows this call finished: each row is finished by one caller only, whichever replica collects first."""
        token = _token()
        with self._lock, self.engine.begin() as conn:
            conn.execute(deferred.update().where(deferred.c.batch_id == batch_id, deferred.c.state == SUBMITTED)
                         .values(claim=token))
            rows = [_decode(r) for r in conn.execute(sa.select(deferred).where(deferred.c.claim == token))]
            for row in rows:
                result = dict(results.get(row.custom_id) or {"type": "expired"})
                kind = str(result.get("type"))
                row.state = kind if kind in FINAL else "errored"
                row.result = result
                row.finished_at = now
                conn.execute(deferred.update().where(deferred.c.id == row.id).values(
                    state=row.state, result_json=json.dumps(result, default=str),
                    finished_at=now, claim=None))
        return rows

    def unrecorded(self, before: float) -> list[DeferredRow]:
        """Finished rows (before `before`) whose ledger row is missing: their replica died between the two."""
        recorded = sa.select(exchanges.c.id).where(exchanges.c.record_id == deferred.c.id).exists()
        with self._lock, self.engine.connect() as conn:
            rows = conn.execute(sa.select(deferred).where(deferred.c.state.in_(FINAL), deferred.c.finished_at < before,
                                                          ~recorded)).all()
        return [_decode(r) for r in rows]

    def prune(self, before: float) -> int:
        """Drop rows whose result arrived before `before`."""
        with self._lock, self.engine.begin() as conn:
            return conn.execute(deferred.delete().where(deferred.c.state.in_(FINAL),
                                                        deferred.c.finished_at < before)).rowcount

    def counts(self) -> dict[str, int]:
        """Rows per state."""
        with self._lock, self.engine.connect() as conn:
            return {s: int(n) for s, n in conn.execute(sa.select(deferred.c.state, sa.func.count())
                                                       .group_by(deferred.c.state))}

    def close(self) -> None:
        self.engine.dispose()
