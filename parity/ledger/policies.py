"""The policy in force on every replica of one ledger database (`policies`): each policy a replica loads is stored
as a new version, with the text of the certificate files its routes name, and the newest version is the one every
replica serves (`parity.gateway.shared_policy` polls for it and checks its certificates itself)."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from parity.ledger.schema import create_engine, policies


def digest(document: dict[str, Any]) -> str:
    """The sha256 of a policy document's canonical JSON: the same policy and certificates, the same digest."""
    return hashlib.sha256(json.dumps(document, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class PolicyStore:
    """Read and write the `policies` table (blocking calls)."""

    def __init__(self, url: str, *, replica: str = "", engine: sa.Engine | None = None):
        self.engine = engine or create_engine(url)
        self.replica = replica[:80]

    def publish(self, document: dict[str, Any], *, source: str | None = None) -> int:
        """Put `document` in force for every replica; returns its version (the newest one unchanged when it is
        already that document)."""
        sha = digest(document)
        with self.engine.begin() as conn:
            newest = conn.execute(sa.select(policies.c.version, policies.c.digest)
                                  .order_by(policies.c.version.desc()).limit(1)).first()
            if newest is not None and newest.digest == sha:
                return int(newest.version)
            return int(conn.execute(policies.insert().values(
                digest=sha, document=json.dumps(document, sort_keys=True), replica=self.replica, source=source,
                loaded_at=datetime.now(timezone.utc).isoformat(),
            ).returning(policies.c.version)).scalar_one())

    def newest_version(self) -> int:
        """The version in force (0 when no replica has published a policy)."""
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(policies.c.version), 0))).scalar() or 0)

    def newest(self) -> tuple[int, dict[str, Any]] | None:
        """(version, document) in force, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(policies.c.version, policies.c.document)
                               .order_by(policies.c.version.desc()).limit(1)).first()
        return None if row is None else (int(row.version), json.loads(row.document))

    def close(self) -> None:
        self.engine.dispose()
