"""Write Exchanges to the ledger from a background thread, so no request ever waits on the database.

Each transaction inserts a batch of rows, raises their keys' spend totals by what those rows charged
(`budget.add_spend`) and deletes the budget reservations they settle: the three together or not at all."""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from parity.exchange import Exchange, format_time
from parity.ledger.budget import add_spend
from parity.ledger.schema import create_engine, exchanges, insert_ignoring, key_reservations, ledger_url
from parity.task import named_task

log = logging.getLogger("parity.ledger")

_STOP = object()


@dataclass(frozen=True)
class LedgerEntry:
    """An Exchange plus what the ledger adds: its exact cost, why it took its route, and the gateway key used."""

    exchange: Exchange
    cost_usd: Decimal | None = None
    reason: str | None = None
    key_id: str | None = None
    status_code: int | None = None
    record_id: str | None = None  # unique: a journal replay never writes the row twice
    charged_usd: Decimal | None = None  # what the key was charged (the cost, or a ceiling for an unpriced model)
    settles: str | None = None  # the request whose budget reservation this row replaces (deleted with the insert)


@dataclass(frozen=True)
class Settle:
    """Only delete a request's budget reservation (a request that wrote no row, e.g. one deferred)."""

    request_id: str


def _text(value: Any) -> str | None:
    """A column value as text: a model the client sent as a number or an object is kept as its JSON."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _task_name(ex: Exchange) -> str | None:
    """The task column, by the one task rule (tag or metadata), so `--task` finds what the gateway recorded."""
    named = named_task(ex.request, tags=ex.tags) if isinstance(ex.request, dict) else None
    return named.name if named is not None else None


def _row(entry: LedgerEntry) -> dict[str, Any]:
    ex = entry.exchange
    usage = ex.usage if isinstance(ex.usage, dict) else {}
    return {
        "started_at": format_time(ex.started_at),
        "duration_ms": ex.duration_ms,
        "task": _text(_task_name(ex)),
        "route": ex.route,
        "model_requested": _text(ex.model_requested),
        "model_served": _text(ex.model_served),
        "status_code": entry.status_code,
        "batch": ex.batch,
        "input_tokens": _count(usage.get("input_tokens")),
        "output_tokens": _count(usage.get("output_tokens")),
        "cache_read_input_tokens": _count(usage.get("cache_read_input_tokens")),
        "cache_creation_input_tokens": _count(usage.get("cache_creation_input_tokens")),
        "cost_usd": None if entry.cost_usd is None else str(entry.cost_usd),
        "reason": entry.reason,
        "key_id": entry.key_id,
        "exchange_json": ex.to_json(),
        "record_id": entry.record_id,
        "charged_usd": None if entry.charged_usd is None else str(entry.charged_usd),
    }


def _insert_statement(engine: sa.Engine) -> Any:
    """INSERT that skips a row whose record_id is already there (a replayed journal entry), and returns what each
    row it did write charged, for the key totals."""
    return insert_ignoring(engine, exchanges, ["record_id"]).returning(
        exchanges.c.key_id, sa.func.coalesce(exchanges.c.charged_usd, exchanges.c.cost_usd))


class LedgerWriter:
    """A durable, non-blocking ledger: `write` only enqueues; a worker thread inserts in small transactions."""

    def __init__(self, url: str, *, batch_size: int = 256,
                 on_committed: Callable[[list[str]], None] | None = None):
        self.url = ledger_url(url)
        self.engine = create_engine(self.url)
        self._statement = _insert_statement(self.engine)
        self.on_committed = on_committed  # told the record ids of each committed batch (the journal trims)
        self._queue: queue.Queue[Any] = queue.Queue()
        self._batch_size = batch_size
        self._written = 0
        self._failed = 0
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._run, name="parity-ledger", daemon=True)
        self._thread.start()

    @property
    def written(self) -> int:
        return self._written

    @property
    def failed(self) -> int:
        return self._failed

    def settle(self, request_id: str) -> None:
        """Queue the deletion of a request's budget reservation (in order with the rows written before it)."""
        self._idle.clear()
        self._queue.put(Settle(request_id))

    def write(self, entry: LedgerEntry) -> None:
        """Queue one entry; returns at once."""
        self._idle.clear()
        self._queue.put(entry)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far is in the database."""
        self._queue.join()
        return self._idle.wait(timeout)

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout=30)
        self.engine.dispose()

    def write_now(self, entries: list[LedgerEntry]) -> None:
        """Insert at once on the calling thread (journal replay at start); raises when the database refuses."""
        self._transaction(entries)

    def _transaction(self, entries: list[Any]) -> None:
        rows = [_row(e) for e in entries if isinstance(e, LedgerEntry)]
        settled = [e.settles if isinstance(e, LedgerEntry) else e.request_id for e in entries]
        settled = [s for s in settled if s]
        with self.engine.begin() as conn:
            if rows:
                add_spend(conn, conn.execute(self._statement, rows).all())  # the key totals, in the same transaction
            if settled:  # the answer's charge is in; its reservation goes in the same transaction
                conn.execute(key_reservations.delete().where(key_reservations.c.request_id.in_(settled)))
        ids = [e.record_id for e in entries if isinstance(e, LedgerEntry) and e.record_id]
        if ids and self.on_committed is not None:
            try:
                self.on_committed(ids)
            except Exception:
                log.exception("ledger commit callback failed")

    def _insert(self, entries: list[Any]) -> None:
        """One transaction for the batch; if it fails, row by row, so one bad row never loses the others."""
        try:
            self._transaction(entries)
            self._written += sum(isinstance(e, LedgerEntry) for e in entries)
            return
        except Exception:  # the ledger must never take the gateway down; retry one by one, count and log
            if len(entries) == 1:
                self._failed += 1
                log.exception("ledger write failed for one row")
                return
        for entry in entries:
            self._insert([entry])

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            pending = [item]
            while len(pending) < self._batch_size:
                try:
                    pending.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(p is _STOP for p in pending)
            entries = [p for p in pending if p is not _STOP]
            if entries:
                self._insert(entries)
            for _ in pending:
                self._queue.task_done()
            if self._queue.empty():
                self._idle.set()
            if stop:
                return
