"""The gateway in-process, in front of the in-process emulator: what `parity demo`, notebooks and examples use.

No socket, no port: the official SDK's client talks to the gateway's ASGI app through an in-process transport,
and the gateway talks to the emulator the same way (`emulator_config`: the emulator's app as the gateway's
upstream transport, which is also what `parity serve --upstream emulator` runs). This module sits above both, like
the CLI and the demo; the rest of the gateway never names the emulator. After the run, `rows()` reads the ledger
back with each exchange's route, reason and exact cost, and `fallbacks()` / `routes()` count what happened.

    with LocalGateway(emulator, policy=policy) as gw:
        client = gw.client()                       # anthropic.Anthropic, base_url = the gateway
        client.messages.create(model=..., max_tokens=..., messages=..., extra_headers={"x-parity-task": "triage"})
        rows = gw.rows()                           # flushed: every exchange so far, in order
        gw.fallbacks()                             # Counter({("triage", "contract_schema"): 3, ...})
"""

from __future__ import annotations

import tempfile
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx2

from parity.api.transport import AsyncASGITransport, EventLoopThread, SyncASGITransport
from parity.emulator.service import DEFAULT_API_KEY, DEFAULT_BASE_URL, Emulator
from parity.gateway.app import create_gateway
from parity.gateway.config import GatewayConfig
from parity.ledger.reader import LedgerRow, read_rows

BASE_URL = "http://gateway.local"
CLIENT_KEY = "sk-local-client"


def emulator_config(emulator: Emulator, **options: Any) -> GatewayConfig:
    """A `GatewayConfig` whose upstream is `emulator`, in-process: its ASGI app as the transport (unless `options`
    give one), its base URL and its key (unless `options` give `upstream_key`), "emulator" on /healthz. Other
    keywords go to `GatewayConfig`."""
    if not options.get("upstream_key"):
        options["upstream_key"] = DEFAULT_API_KEY
    if options.get("transport") is None:
        options["transport"] = emulator.async_transport()
    return GatewayConfig(upstream=DEFAULT_BASE_URL, upstream_name="emulator", **options)


class LocalGateway:
    """A gateway (`create_gateway`) in front of `emulator`, reachable by SDK clients in-process.

    `policy` (a `parity.policy.Policy`) or `policy_path`; `ledger_url` defaults to a SQLite file in a temporary
    directory removed on `close()`. Other keywords go to `GatewayConfig` (e.g. `shadow_seed=0`,
    `drift_options={"via": "sync"}`, `redact=True`)."""

    def __init__(self, emulator: Emulator | None = None, *, policy: Any = None, policy_path: str | None = None,
                 ledger_url: str | None = None, **options: Any):
        self.emulator = emulator or Emulator()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if ledger_url is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="parity-gateway-")
            ledger_url = str(Path(self._tmp.name) / "ledger.db")
        self.ledger_url = ledger_url
        self.config = emulator_config(self.emulator, policy=policy, policy_path=policy_path, ledger_url=ledger_url,
                                      **options)
        self.app = create_gateway(self.config)
        self.gateway = self.app.state.gateway
        self._loop = EventLoopThread("parity-local-gateway")
        self._http: list[Any] = []
        self._closed = False
        self._final: list[LedgerRow] | None = None

    # ---- clients --------------------------------------------------------------------------------------------

    def client(self, **kwargs: Any) -> anthropic.Anthropic:
        """A sync SDK client whose base_url is the gateway (api_key defaults to a placeholder the gateway ignores)."""
        http = httpx2.Client(transport=SyncASGITransport(self.app, loop_thread=self._loop), base_url=BASE_URL)
        self._http.append(http)
        kwargs.setdefault("api_key", CLIENT_KEY)
        return anthropic.Anthropic(base_url=BASE_URL, http_client=http, **kwargs)

    def http(self) -> httpx2.Client:
        """A plain HTTP client to the gateway, for what the SDK has no method for (a deferred request's handle at
        /v1/parity/deferred/ID, /v1/parity/drift, /metrics); send the client key as `x-api-key` where keys are on."""
        http = httpx2.Client(transport=SyncASGITransport(self.app, loop_thread=self._loop), base_url=BASE_URL,
                             headers={"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"})
        self._http.append(http)
        return http

    def async_client(self, **kwargs: Any) -> anthropic.AsyncAnthropic:
        """An async SDK client; the gateway then runs on the caller's event loop (close with `await aclose()`)."""
        http = httpx2.AsyncClient(transport=AsyncASGITransport(self.app), base_url=BASE_URL)
        self._http.append(http)
        kwargs.setdefault("api_key", CLIENT_KEY)
        return anthropic.AsyncAnthropic(base_url=BASE_URL, http_client=http, **kwargs)

    # ---- what happened ----------------------------------------------------------------------------------------

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every exchange so far is priced and in the ledger."""
        self.gateway.recorder.flush(timeout)

    def rows(self) -> list[LedgerRow]:
        """The ledger so far (flushed first); after `close()`, the whole ledger as it was at the end."""
        if self._final is not None:
            return list(self._final)
        if not self._closed:
            self.flush()
        return list(read_rows(self.ledger_url))

    def routes(self) -> Counter[str]:
        """How the clients' requests were answered: passthrough, routed, fallback, deferred, ..."""
        return Counter(row.route or "passthrough" for row in self.rows() if row.answered_client)

    def fallbacks(self) -> Counter[tuple[str, str]]:
        """(task, reason code) -> routed requests the baseline answered instead."""
        return Counter((row.exchange.tags.get("task", ""), row.reason_code or "")
                       for row in self.rows() if row.route == "fallback")

    def cost(self, *, answered_only: bool = False) -> Decimal:
        """Exact total cost in the ledger (every paid call by default; `answered_only`: what the clients got)."""
        return sum((row.cost_usd or Decimal(0) for row in self.rows() if row.answered_client or not answered_only),
                   Decimal(0))

    # ---- shutdown ---------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the gateway (drains deferral, drift workers and the ledger) and close the clients."""
        if self._closed:
            return
        self._closed = True
        self._loop.submit(self.gateway.aclose()).result(timeout=60)
        for http in self._http:
            if isinstance(http, httpx2.Client):
                http.close()
        self._cleanup()

    async def aclose(self) -> None:
        """`close()` for async use (the gateway ran on the caller's loop)."""
        if self._closed:
            return
        self._closed = True
        await self.gateway.aclose()
        for http in self._http:
            if isinstance(http, httpx2.AsyncClient):
                await http.aclose()
            else:
                http.close()
        self._cleanup()

    def _cleanup(self) -> None:
        if self._tmp is not None:
            self._final = list(read_rows(self.ledger_url))  # the temporary ledger goes; what it held stays readable
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> LocalGateway:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def __aenter__(self) -> LocalGateway:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()


__all__ = ["LocalGateway", "emulator_config"]
