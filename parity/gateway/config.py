"""Everything `parity serve` is told, in one record; `create_gateway(config)` builds the app from it.

The upstream is the real API (`https://api.anthropic.com`) unless told otherwise: any http(s) base URL, reached
through `transport` when one is given (an httpx2 async transport; this is how the CLI and `LocalGateway` put the
emulator in-process, as httpx users pass `ASGITransport(app)`). The upstream key comes from `upstream_key`, else
the environment (`PARITY_UPSTREAM_API_KEY`, then `ANTHROPIC_API_KEY`). Without one, and without a keys file, each
client's own credential is forwarded (a transparent proxy); with a keys file an upstream key is required, because
gateway keys never leave the gateway.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import httpx2

from parity.api.body import MAX_BODY_BYTES
from parity.errors import InputError
from parity.gateway.retry import RetryPolicy
from parity.gateway.upstream import DEFAULT_UPSTREAM
from parity.policy import Policy

UPSTREAM_KEY_ENV = ("PARITY_UPSTREAM_API_KEY", "ANTHROPIC_API_KEY")


@dataclass
class SharedState:
    """The state gateway replicas on one PostgreSQL ledger share (`parity.ledger`): key budgets, drift rollbacks,
    the policy in force and the deferral queue, over one engine."""

    budget: Any
    drift: Any
    policies: Any
    deferred: Any


@dataclass
class GatewayConfig:
    """Settings of one gateway. Times are seconds.

    `read_timeout_s`: the longest wait for upstream bytes (a whole non-streaming answer, or between stream
    chunks). `stall_timeout_s`: the longest silence tolerated from a *routed* candidate's stream (or the whole
    non-streaming candidate answer, `candidate_timeout_s`) before falling back to the baseline.
    `transport`: the httpx2 async transport calls to `upstream` go through (default: the network, see
    `http_client`); `upstream_name` is what /healthz calls the upstream (default: its URL).
    `policy`: a loaded `Policy` (else read from `policy_path`, re-read when the file changes).
    `signing_key_path`: the key file route certificates must be signed with (else PARITY_SIGNING_KEY_FILE or
    PARITY_SIGNING_KEY from the environment; with none, certificates are verified but signatures are not required).
    """

    upstream: str = DEFAULT_UPSTREAM
    upstream_key: str | None = None
    policy_path: str | None = None
    policy: Policy | None = None
    signing_key_path: str | None = None
    ledger_url: str | None = None
    keys_path: str | None = None
    redact: bool = False
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 600.0
    stall_timeout_s: float = 20.0
    candidate_timeout_s: float = 120.0
    breaker_threshold: int = 5
    breaker_cooldown_s: float = 30.0
    max_body_bytes: int = MAX_BODY_BYTES
    public_base_url: str | None = None
    transport: httpx2.AsyncBaseTransport | None = None
    upstream_name: str | None = None
    shadow_seed: int | None = None
    http_client: str = "lean"  # "lean" (aiohttp, parity.gateway.aiohttp_transport) or "httpx" (httpx2's own)
    state_dir: str | None = None  # where drift rollbacks are kept across restarts (drift-<task>.json)
    drift_options: dict[str, Any] = field(default_factory=dict)  # DriftMonitor keywords (via, batch_size, ...)
    deferral_options: dict[str, Any] = field(default_factory=dict)  # DeferralQueue keywords (max_batch, ...)
    journal_dir: str | None = None  # local journal of answered requests until the ledger has them (and replay)
    replica: str | None = None  # this replica's name in shared state (default: host-pid)
    drift_poll_s: float = 1.0  # how often a replica on a shared ledger reads the rollbacks others decided
    policy_poll_s: float = 1.0  # ... and the policy version another replica loaded

    def replica_name(self) -> str:
        if self.replica:
            return self.replica
        import socket

        return f"{socket.gethostname()}-{os.getpid()}"

    def shared_state(self) -> SharedState | None:
        """What replicas share through the ledger's database when they can (PostgreSQL); None for an embedded
        SQLite ledger or none."""
        from parity.ledger.schema import create_engine, is_shared

        if not is_shared(self.ledger_url):
            return None
        from parity.ledger.budget import SharedBudget
        from parity.ledger.deferred import DeferredStore
        from parity.ledger.policies import PolicyStore
        from parity.ledger.state import SharedDriftState

        assert self.ledger_url is not None
        engine = create_engine(self.ledger_url)
        name, url = self.replica_name(), self.ledger_url
        return SharedState(SharedBudget(url, replica=name, engine=engine), SharedDriftState(url, replica=name, engine=engine),
                           PolicyStore(url, replica=name, engine=engine), DeferredStore(url, engine=engine))

    def deferral_store(self, shared: SharedState | None) -> Any:
        """Where the deferral queue lives: the shared database, else the ledger's file, else memory."""
        from parity.ledger.deferred import DeferredStore

        if shared is not None:
            return shared.deferred
        return DeferredStore(self.ledger_url) if self.ledger_url else DeferredStore()

    def resolved_upstream_key(self) -> str | None:
        """The key the gateway sends upstream (never a client's gateway key)."""
        if self.upstream_key:
            return self.upstream_key
        for name in UPSTREAM_KEY_ENV:
            value = os.environ.get(name)
            if value:
                return value
        return None

    def check(self) -> None:
        """Refuse settings that cannot work, saying what to change."""
        if not self.upstream.startswith(("http://", "https://")):
            raise InputError(f"must be an http(s) URL such as {DEFAULT_UPSTREAM}, got {self.upstream!r}", field="--upstream")
        if self.keys_path and not self.resolved_upstream_key():
            raise InputError(
                "a keys file is configured, so the gateway needs its own upstream key: set PARITY_UPSTREAM_API_KEY "
                "(or ANTHROPIC_API_KEY) in the gateway's environment",
                field="--keys",
            )
        if self.http_client not in ("lean", "httpx"):
            raise InputError(f"must be 'lean' or 'httpx', got {self.http_client!r}", field="--http-client")
        for name in ("connect_timeout_s", "read_timeout_s", "stall_timeout_s", "candidate_timeout_s"):
            if getattr(self, name) <= 0:
                raise InputError(f"must be > 0, got {getattr(self, name)}", field=name)
