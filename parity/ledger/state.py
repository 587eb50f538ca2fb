"""Drift rollbacks shared by gateway replicas through the ledger database (`drift_state`).

A replica whose drift monitor rolls a task back writes the rollback here; every replica polls the table (every
second by default) and rolls back the same task, so the baseline serves it everywhere within seconds. A row names
the certificate it was decided under: a replica routing the task on a newer certificate ignores it.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from parity.ledger.schema import create_engine, drift_state


class SharedDriftState:
    """Read and write the `drift_state` table."""

    def __init__(self, url: str, *, replica: str = "", engine: sa.Engine | None = None):
        self.engine = engine or create_engine(url)
        self.replica = replica[:80]

    def publish(self, task: str, rollback: dict[str, Any]) -> None:
        """Record that `task` is rolled back (replacing any earlier row for it)."""
        row = {"task": task, "state": "rolled_back", "reason": str(rollback.get("reason", ""))[:4000],
               "decided_at": datetime.now(timezone.utc).isoformat(), "replica": self.replica,
               "rollback_json": json.dumps(rollback, default=str)}
        with self.engine.begin() as conn:
            conn.execute(drift_state.delete().where(drift_state.c.task == task))
            conn.execute(drift_state.insert().values(**row))

    def rolled_back(self) -> dict[str, dict[str, Any]]:
        """task -> the rollback as its deciding replica recorded it."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(drift_state.c.task, drift_state.c.rollback_json)
                                .where(drift_state.c.state == "rolled_back")).all()
        out = {}
        for task, text in rows:
            try:
                out[task] = json.loads(text)
            except ValueError:
                out[task] = {"task": task, "reason": "rolled back by another replica (record unreadable)"}
        return out

    def clear(self, task: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(drift_state.delete().where(drift_state.c.task == task))

    def close(self) -> None:
        self.engine.dispose()
