"""Gateway keys: what clients present to the gateway, kept apart from the one upstream key the gateway holds.

A key looks like `sk-parity-<id>_<secret>`. The file stores only the id, a random salt and
sha256(salt + secret), so a leaked keys file lets nobody in. Each key may carry a budget in USD (lifetime,
counted from the ledger's exact costs) and a rate limit in requests per minute. The gateway re-reads the file
when it changes, so `parity keys revoke` takes effect without a restart.

File format (JSON): {"version": 1, "keys": [{"id", "name", "salt", "hash", "created_at", "revoked_at",
"budget_usd", "rate_limit_rpm"}]}.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from starlette.requests import Request

from parity.api.errors import APIError
from parity.api.headers import api_key_of
from parity.errors import InputError
from parity.files import write_atomic
from parity.exchange import format_time

KEY_PREFIX = "sk-parity-"


@dataclass
class GatewayKey:
    """One gateway key as stored (never the secret itself)."""

    id: str
    name: str
    salt: str
    hash: str
    created_at: str
    revoked_at: str | None = None
    budget_usd: str | None = None  # a decimal string, exact
    rate_limit_rpm: int | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @property
    def budget(self) -> Decimal | None:
        return Decimal(self.budget_usd) if self.budget_usd is not None else None


def _digest(salt: str, secret: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + secret.encode("utf-8", "surrogatepass")).hexdigest()


def split_key(presented: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed gateway key, else None."""
    if not presented.startswith(KEY_PREFIX):
        return None
    key_id, sep, secret = presented[len(KEY_PREFIX) :].partition("_")
    if not sep or not key_id or not secret or len(presented) > 200:
        return None
    return key_id, secret


class KeyStore:
    """The keys file: create, list, revoke (for the CLI) and authenticate (for the gateway, reloading on change)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._keys: dict[str, GatewayKey] = {}
        self._mtime: float | None = None
        self._checked = 0.0
        self._load()

    # ---- file ------------------------------------------------------------------------------------------------

    def _load(self) -> None:
        if not self.path.exists():
            self._keys, self._mtime = {}, None
            return
        file = str(self.path)
        try:
            mtime = self.path.stat().st_mtime
            data = json.loads(self.path.read_text())
        except json.JSONDecodeError as exc:
            raise InputError(f"not valid JSON: {exc.msg}", file=file, line=exc.lineno) from None
        if not isinstance(data, dict) or data.get("version") != 1 or not isinstance(data.get("keys"), list):
            raise InputError('expected {"version": 1, "keys": [...]} (written by `parity keys create`)', file=file)
        keys: dict[str, GatewayKey] = {}
        known = set(GatewayKey.__dataclass_fields__)
        for i, raw in enumerate(data["keys"]):
            if not isinstance(raw, dict) or not {"id", "name", "salt", "hash", "created_at"} <= set(raw):
                raise InputError("each key needs id, name, salt, hash and created_at", file=file, field=f"keys.{i}")
            key = GatewayKey(**{k: v for k, v in raw.items() if k in known})
            if key.budget_usd is not None:
                try:
                    Decimal(str(key.budget_usd))
                except InvalidOperation:
                    raise InputError("must be a decimal number of USD", file=file, field=f"keys.{i}.budget_usd") from None
                key.budget_usd = str(key.budget_usd)
            keys[key.id] = key
        self._keys, self._mtime = keys, mtime

    def _save(self) -> None:
        data = {"version": 1, "keys": [asdict(k) for k in self._keys.values()]}
        write_atomic(self.path, json.dumps(data, indent=2) + "\n", mode=0o600)
        self._mtime = self.path.stat().st_mtime

    def reload_if_changed(self, every_s: float = 1.0) -> None:
        """Re-read the file if it changed (checked at most every `every_s` seconds)."""
        now = time.monotonic()
        if now - self._checked < every_s:
            return
        self._checked = now
        try:
            mtime = self.path.stat().st_mtime if self.path.exists() else None
        except OSError:
            return
        if mtime != self._mtime:
            with self._lock:
                try:
                    self._load()
                except InputError:
                    pass  # keep the last good keys; `parity keys list` shows the problem

    # ---- CLI operations --------------------------------------------------------------------------------------

    def create(self, name: str, *, budget_usd: Decimal | str | None = None, rate_limit_rpm: int | None = None) -> tuple[str, GatewayKey]:
        """A new key: returns the full key string (shown once, never stored) and its stored record."""
        if budget_usd is not None:
            try:
                budget = Decimal(str(budget_usd))
            except InvalidOperation:
                raise InputError(f"budget must be a decimal number of USD, got {budget_usd!r}", field="--budget-usd") from None
            if budget < 0:
                raise InputError("budget must be >= 0", field="--budget-usd")
            budget_usd = str(budget)
        if rate_limit_rpm is not None and rate_limit_rpm < 1:
            raise InputError("rate limit must be at least 1 request per minute", field="--rpm")
        with self._lock:
            self._load()
            key_id = secrets.token_hex(5)
            while key_id in self._keys:
                key_id = secrets.token_hex(5)
            secret = secrets.token_urlsafe(32)
            salt = secrets.token_hex(16)
            record = GatewayKey(
                id=key_id, name=name, salt=salt, hash=_digest(salt, secret),
                created_at=format_time(datetime.now(timezone.utc)),
                budget_usd=budget_usd, rate_limit_rpm=rate_limit_rpm,
            )
            self._keys[key_id] = record
            self._save()
        return f"{KEY_PREFIX}{key_id}_{secret}", record

    def revoke(self, key_id: str) -> GatewayKey:
        with self._lock:
            self._load()
            key = self._keys.get(key_id)
            if key is None:
                raise InputError(f"no key with id {key_id!r}; `parity keys list` shows the ids", file=str(self.path))
            if key.revoked_at is None:
                key.revoked_at = format_time(datetime.now(timezone.utc))
                self._save()
            return key

    def list(self) -> list[GatewayKey]:
        with self._lock:
            return sorted(self._keys.values(), key=lambda k: k.created_at)

    # ---- the gateway -----------------------------------------------------------------------------------------

    def authenticate(self, presented: str | None) -> GatewayKey | None:
        """The active key record for a presented key string, else None (constant-time hash comparison)."""
        if not presented:
            return None
        parts = split_key(presented)
        if parts is None:
            return None
        self.reload_if_changed()
        key = self._keys.get(parts[0])
        if key is None or not key.active:
            return None
        if not hmac.compare_digest(_digest(key.salt, parts[1]), key.hash):
            return None
        return key


class KeyLimits:
    """Per-key spend (exact USD, fed from the ledger's costs) and a per-key token bucket of requests per minute."""

    def __init__(self, spent: dict[str, Decimal] | None = None, clock: Any = time.monotonic):
        self._spent: dict[str, Decimal] = dict(spent or {})
        self._buckets: dict[str, tuple[float, float]] = {}
        self._clock = clock
        self._lock = threading.Lock()

    def spent(self, key_id: str) -> Decimal:
        return self._spent.get(key_id, Decimal(0))

    def charge(self, key_id: str, amount: Decimal) -> None:
        with self._lock:
            self._spent[key_id] = self._spent.get(key_id, Decimal(0)) + amount

    def admit(self, key: GatewayKey) -> APIError | None:
        """None if `key` may make a request now; else the API error to answer with (budget: 400, rate: 429)."""
        budget = key.budget
        if budget is not None and self.spent(key.id) >= budget:
            return APIError(
                400,
                f"You have reached your specified API usage limits: gateway key {key.name!r} ({key.id}) has spent "
                f"${self.spent(key.id)} of its ${budget} budget; raise it or create another key",
            )
        if key.rate_limit_rpm:
            rate = key.rate_limit_rpm / 60.0
            now = self._clock()
            with self._lock:
                tokens, last = self._buckets.get(key.id, (float(key.rate_limit_rpm), now))
                tokens = min(float(key.rate_limit_rpm), tokens + (now - last) * rate)
                if tokens < 1.0:
                    self._buckets[key.id] = (tokens, now)
                    wait = (1.0 - tokens) / rate
                    return APIError(
                        429,
                        f"Gateway key {key.name!r} ({key.id}) is limited to {key.rate_limit_rpm} requests per minute; "
                        f"retry after {wait:.1f} s",
                        headers={"retry-after": str(max(1, int(wait + 0.999)))},
                    )
                self._buckets[key.id] = (tokens - 1.0, now)
        return None


class KeyCheck:
    """Who may call the gateway: with a keys file (`store`), a request must present an active gateway key (as
    `x-api-key` or `Authorization: Bearer`); without one, every request may, unnamed.

    Both checks answer (gateway key id or None, the API error to answer with or None)."""

    def __init__(self, store: KeyStore | None, limits: KeyLimits):
        self.store = store
        self.limits = limits

    def admit(self, request: Request) -> tuple[str | None, APIError | None]:
        """A request to the API: the key's budget and rate limit apply."""
        if self.store is None:
            return None, None
        key = self.store.authenticate(api_key_of(request.headers))
        if key is None:
            return None, _unauthorized()
        return key.id, self.limits.admit(key)

    def identify(self, request: Request) -> tuple[str | None, APIError | None]:
        """A request to the gateway's own endpoints: only the key (reading a deferred answer already paid for, or
        drift status, costs nothing)."""
        if self.store is None:
            return None, None
        key = self.store.authenticate(api_key_of(request.headers))
        if key is None:
            return None, _unauthorized()
        return key.id, None


def _unauthorized() -> APIError:
    return APIError(401, "invalid x-api-key: present a gateway key (`parity keys create`)")


def spent_by_key(ledger_url: str) -> dict[str, Decimal]:
    """Total exact cost per gateway key id recorded in a ledger (read once at gateway start)."""
    import sqlalchemy as sa

    from parity.ledger.schema import create_engine, exchanges, ledger_url as normalise

    engine = create_engine(normalise(ledger_url))
    totals: dict[str, Decimal] = {}
    try:
        with engine.connect() as conn:
            query = sa.select(exchanges.c.key_id, exchanges.c.cost_usd).where(exchanges.c.key_id.is_not(None))
            for key_id, cost in conn.execute(query):
                if cost:
                    totals[key_id] = totals.get(key_id, Decimal(0)) + Decimal(cost)
    finally:
        engine.dispose()
    return totals
