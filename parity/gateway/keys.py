"""Gateway keys: what clients present to the gateway, kept apart from the one upstream key the gateway holds.

A key looks like `sk-parity-<id>_<secret>`. The file stores only the id, a random salt and
sha256(salt + secret), so a leaked keys file lets nobody in. Each key may carry a budget in USD (lifetime,
counted from the ledger's exact costs) and a rate limit in requests per minute. The gateway re-reads the file
when it changes, so `parity keys revoke` takes effect without a restart.

File format (JSON): {"version": 1, "keys": [{"id", "name", "salt", "hash", "created_at", "revoked_at",
"budget_usd", "rate_limit_rpm"}]}.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from functools import lru_cache
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

    def get(self, key_id: str) -> GatewayKey | None:
        """The stored record of a key id (active or not), else None."""
        return self._keys.get(key_id)

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


# ---- budgets: the worst case is reserved before a request is sent, the real charge settles it -------------------

#: Seconds after which a reservation whose request never reported back stops counting (longer than any request).
RESERVATION_TTL_S = 900.0

#: Tokens added to a prompt's byte count for what the API adds itself (tool-use system prompt, message framing).
PROMPT_OVERHEAD_TOKENS = 1000


@lru_cache(maxsize=1)
def _ceiling() -> tuple[Decimal, Decimal]:
    """The highest input-side and output rate (USD per MTok) of any model, band, speed and region in the table:
    what a model the table cannot price is charged at."""
    from parity import pricing

    table = pricing.default_table()
    top_in, top_out = Decimal(0), Decimal(0)
    for model in table.models():
        for row in table.rows(model):
            geo = max([Decimal(1), *(row.inference_geo or {}).values()])
            bands = [row.rates, row.fast, row.long_prompt.rates if row.long_prompt else None]
            for rates in filter(None, bands):
                top_in = max(top_in, geo * max(rates.input, rates.cache_write_5m, rates.cache_write_1h))
                top_out = max(top_out, geo * rates.output)
    return top_in, top_out


def _model_ceiling(model: Any) -> tuple[Decimal, Decimal]:
    """The highest input-side and output rate a request to `model` can be billed at (the table's ceiling when
    the model has no price)."""
    from parity import pricing

    if not isinstance(model, str):
        return _ceiling()
    try:
        rows = pricing.default_table().rows(model)
    except Exception:
        return _ceiling()
    top_in, top_out = Decimal(0), Decimal(0)
    for row in rows:
        geo = max([Decimal(1), *(row.inference_geo or {}).values()])
        for rates in filter(None, [row.rates, row.fast, row.long_prompt.rates if row.long_prompt else None]):
            top_in = max(top_in, geo * max(rates.input, rates.cache_write_5m, rates.cache_write_1h))
            top_out = max(top_out, geo * rates.output)
    return top_in, top_out


def worst_case_cost(body: Any, body_bytes: int, *, calls: int = 1) -> Decimal:
    """An upper bound on what one request can cost: every byte of it a prompt token at the model's highest
    input-side rate, plus `max_tokens` at its highest output rate; `calls` answers (a routed candidate and its
    baseline fallback) each at the dearer model's rates."""
    body = body if isinstance(body, dict) else {}
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 0:
        max_tokens = 0  # the API refuses it; nothing will be generated
    rate_in, rate_out = _model_ceiling(body.get("model"))
    one = (Decimal(body_bytes + PROMPT_OVERHEAD_TOKENS) * rate_in + Decimal(max_tokens) * rate_out).scaleb(-6)
    return one * calls


def conservative_cost(usage: Any, *, batch: bool = False) -> Decimal | None:
    """What a key is charged for an answer from a model the price table cannot price: its usage at the table's
    highest rates (never free). None when there is no usage to count."""
    if not isinstance(usage, dict):
        return None
    rate_in, rate_out = _ceiling()

    def count(name: str) -> int:
        value = usage.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0

    prompt = count("input_tokens") + count("cache_read_input_tokens") + count("cache_creation_input_tokens")
    total = (Decimal(prompt) * rate_in + Decimal(count("output_tokens")) * rate_out).scaleb(-6)
    return total / 2 if batch else total


def _over_budget(key: GatewayKey, spent: Decimal) -> APIError:
    return APIError(
        400,
        f"You have reached your specified API usage limits: gateway key {key.name!r} ({key.id}) has spent "
        f"${spent} of its ${key.budget} budget (requests in flight included); raise it or create another key",
    )


class KeyLimits:
    """Per-key spend (exact USD, fed from the ledger's costs), the worst case of each request in flight, and a
    per-key token bucket of requests per minute.

    With `shared` (a `parity.ledger.budget.SharedBudget` on the replicas' PostgreSQL), budget admission is decided
    in the database, so one key's budget holds across every replica; otherwise in this process."""

    def __init__(self, spent: dict[str, Decimal] | None = None, clock: Any = time.monotonic, *,
                 shared: Any = None):
        self._spent: dict[str, Decimal] = dict(spent or {})
        self._reserved: dict[str, tuple[str, Decimal, float]] = {}  # request id -> (key id, worst case, when)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._clock = clock
        self._lock = threading.Lock()
        self.shared = shared

    def spent(self, key_id: str) -> Decimal:
        return self._spent.get(key_id, Decimal(0))

    def reserved(self, key_id: str) -> Decimal:
        with self._lock:
            return self._held(key_id)

    def _held(self, key_id: str) -> Decimal:
        """Live reservations of a key (lock held); one whose request never reported back expires after
        RESERVATION_TTL_S, so a bug on one request cannot block a key for good."""
        now = self._clock()
        stale = [r for r, (_, _, at) in self._reserved.items() if now - at > RESERVATION_TTL_S]
        for request_id in stale:
            del self._reserved[request_id]
        return sum((a for k, a, _ in self._reserved.values() if k == key_id), Decimal(0))

    def charge(self, key_id: str, amount: Decimal) -> None:
        with self._lock:
            self._spent[key_id] = self._spent.get(key_id, Decimal(0)) + amount

    def reserve(self, key: GatewayKey, request_id: str, amount: Decimal) -> APIError | None:
        """Hold `amount` (the request's worst case) against the key's budget before the request is sent; refuse
        when charged + held already reach the budget. Blocking when shared (call it off the event loop)."""
        budget = key.budget
        if budget is None:
            return None
        if self.shared is not None:
            from parity.ledger.budget import BudgetExceeded

            try:
                self.shared.reserve(key.id, budget, request_id, amount)
            except BudgetExceeded as exc:
                return _over_budget(key, exc.spent)
            except Exception as exc:  # the budget cannot be checked: refuse rather than spend unchecked
                return APIError(503, f"The gateway cannot reach its shared ledger to check key {key.id}'s budget "
                                     f"({type(exc).__name__}); retry shortly", type="api_error")
            with self._lock:
                self._reserved[request_id] = (key.id, amount, self._clock())
            return None
        with self._lock:
            spent = self._spent.get(key.id, Decimal(0)) + self._held(key.id)
            if spent >= budget:
                return _over_budget(key, spent)
            self._reserved[request_id] = (key.id, amount, self._clock())
        return None

    def settle(self, key_id: str, request_id: str | None, charged: Decimal | None) -> bool:
        """Charge a recorded answer; when it is the request's final answer (`request_id`), drop its reservation.
        Returns whether a reservation was held for it."""
        with self._lock:
            if charged:
                self._spent[key_id] = self._spent.get(key_id, Decimal(0)) + charged
            return request_id is not None and self._reserved.pop(request_id, None) is not None

    def admit(self, key: GatewayKey) -> APIError | None:
        """None if `key` may make a request now; else the API error to answer with (budget: 400, rate: 429)."""
        budget = key.budget
        if budget is not None and self.shared is None and self.spent(key.id) + self.reserved(key.id) >= budget:
            return _over_budget(key, self.spent(key.id) + self.reserved(key.id))
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

    async def reserve(self, key_id: str | None, request_id: str, body: Any, body_bytes: int, *,
                      routed: bool = False) -> APIError | None:
        """Hold the request's worst case against its key's budget before it is sent (both answers when it is
        routed: a candidate that fails the contract is paid for, and so is the baseline that replaces it)."""
        if key_id is None or self.store is None:
            return None
        key = self.store.get(key_id)
        if key is None or key.budget is None:
            return None
        amount = worst_case_cost(body, body_bytes, calls=2 if routed else 1)
        if self.limits.shared is not None:
            return await asyncio.to_thread(self.limits.reserve, key, request_id, amount)
        return self.limits.reserve(key, request_id, amount)

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
    """Total exact charge per gateway key id in a ledger: its running totals (`key_spend`, kept in the same
    transaction as the rows), so neither a gateway's start nor a dashboard refresh sums the ledger, and on a
    shared ledger every replica's spend is in it."""
    from parity.ledger.budget import charged
    from parity.ledger.schema import create_engine, ledger_url as normalise

    engine = create_engine(normalise(ledger_url))
    try:
        with engine.connect() as conn:
            return charged(conn)
    finally:
        engine.dispose()
