"""`create_gateway(config)`: the Anthropic-compatible gateway as a Starlette ASGI app, composed from its parts.

This module only builds the gateway's collaborators from the config and puts their routes together; each part
says what it does:

* `messages.MessagesEndpoint`: POST /v1/messages, streaming or not, routed per task (`routing`) or deferred to
  Message Batches (`deferral`); `proxy.ProxyEndpoint`: count_tokens, batches, models and any other /v1/ path.
* `upstream.Upstream`: the one client to the upstream (its key, retries, breakers), over `config.transport`.
* `routing.TaskRouter`: the policy in force. A task is routed only on a verified certificate
  (`certified.route_problem`, checked when the policy is loaded and reloaded); a refused route's traffic passes
  through to its baseline. With a signing key (the config's `signing_key_path`, else PARITY_SIGNING_KEY_FILE or
  PARITY_SIGNING_KEY), only certificates signed with it count.
* `keys.KeyCheck`: with a keys file, a client must present a gateway key; its budget and rate limit apply. Without
  one, any key is accepted. Either way the upstream only ever sees the gateway's own upstream key.
* `recorder.GatewayRecorder` (exact cost, ledger, spans through `otel`), `metrics.GatewayMetrics` (/metrics),
  `drift_watch.DriftWatch` (/v1/parity/drift), `deferral.DeferralQueue` (/v1/parity/deferred),
  `cachefix.CacheHygiene`.

Every error the gateway itself produces is the API's envelope with a `request-id` (`parity.api.handlers`), so the
SDK raises the class it would raise against the API; nothing a client sends can produce a 500 with a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from parity.api.handlers import http_error_handler, unexpected_handler
from parity.gateway import otel
from parity.gateway.cachefix import CacheHygiene
from parity.gateway.certified import reason_code
from parity.gateway.config import GatewayConfig
from parity.gateway.dashboard import dashboard_routes
from parity.gateway.deferral import Deferred, DeferralQueue
from parity.gateway.drift_watch import DriftWatch
from parity.gateway.keys import KeyCheck, KeyLimits, KeyStore, spent_by_key
from parity.gateway.messages import MessagesEndpoint
from parity.gateway.metrics import GatewayMetrics
from parity.gateway.proxy import ProxyEndpoint
from parity.gateway.recorder import GatewayRecorder, Record
from parity.gateway.refusals import Refusals
from parity.gateway.retry import CircuitBreaker
from parity.gateway.routing import MessageRouter, TaskRouter
from parity.gateway.shared_policy import SharedTaskRouter
from parity.gateway.upstream import Upstream
from parity.ledger.journal import Journal
from parity.ledger.writer import LedgerWriter
from parity.proof.signing import SigningKey, load_signing_key

if TYPE_CHECKING:  # the e-process needs numpy: loaded when the first routed task is watched
    from parity.gateway.drift import DriftMonitor

log = logging.getLogger("parity.gateway")


@dataclass
class Gateway:
    """The collaborators of one gateway as `create_gateway` composed them (`app.state.gateway`): what `parity serve`,
    the demo and the tests read, and what `aclose` stops."""

    config: GatewayConfig
    upstream: Upstream
    metrics: GatewayMetrics
    signing_key: SigningKey | None
    tasks: TaskRouter
    keys: KeyStore | None
    limits: KeyLimits
    recorder: GatewayRecorder
    drift: DriftWatch
    hygiene: CacheHygiene
    router: MessageRouter
    deferral: DeferralQueue

    @property
    def monitors(self) -> dict[str, DriftMonitor]:
        """task -> its drift monitor, for the routed tasks watched now."""
        return self.drift.monitors

    async def aclose(self) -> None:
        """Stop: send what deferral still holds, stop drift workers, close the upstream, drain the ledger."""
        with contextlib.suppress(Exception):
            await self.deferral.aclose()
        await self.drift.aclose()
        if isinstance(self.tasks, SharedTaskRouter):
            self.tasks.close()
        await self.upstream.aclose()
        await asyncio.to_thread(self.recorder.flush, 30.0)  # off the loop: records handed over last still arrive
        self.recorder.close()
        with contextlib.suppress(Exception):
            otel.flush()


def create_gateway(config: GatewayConfig) -> Starlette:
    """The gateway app for `config`; `app.state.gateway` is its `Gateway` (tests flush its recorder there)."""
    config.check()
    upstream = Upstream(
        config.upstream,
        api_key=config.resolved_upstream_key(),
        transport=config.transport,
        connect_timeout_s=config.connect_timeout_s,
        read_timeout_s=config.read_timeout_s,
        retry=config.retry,
        breaker=CircuitBreaker(config.breaker_threshold, config.breaker_cooldown_s),
        http_client=config.http_client,
    )
    metrics = GatewayMetrics()
    signing_key = load_signing_key(config.signing_key_path)
    store = KeyStore(config.keys_path) if config.keys_path else None
    ledger = LedgerWriter(config.ledger_url) if config.ledger_url else None
    shared = config.shared_state()  # PostgreSQL: budgets, rollbacks, policy, deferral queue across replicas
    limits = KeyLimits(spent_by_key(config.ledger_url) if config.ledger_url and store is not None
                       and shared is None else {}, shared=shared.budget if shared else None)
    keys = KeyCheck(store, limits)
    journal = Journal(config.journal_dir, replica=config.replica_name()) if config.journal_dir and ledger else None
    recorder = GatewayRecorder(metrics, limits, ledger=ledger, redact=config.redact, scrub=upstream.scrub,
                               span_hook=otel.record_span, journal=journal)
    if journal is not None:
        recorder.replay(config.journal_dir)  # what replicas killed before their ledger write answered
    drift = DriftWatch(upstream, recorder, metrics, seed=config.shadow_seed, options=config.drift_options,
                       state_dir=config.state_dir, shared=shared.drift if shared else None, poll_s=config.drift_poll_s)
    drift.start()
    try:
        checked = _on_routes_checked(metrics, drift)
        tasks = SharedTaskRouter(shared.policies, config.policy, config.policy_path, signing_key=signing_key,
                                 on_checked=checked, poll_s=config.policy_poll_s) if shared else \
            TaskRouter(config.policy, config.policy_path, signing_key=signing_key, on_checked=checked)
    except BaseException:  # a policy that cannot be read: stop what was started (the ledger's writer)
        recorder.close()
        raise
    hygiene = CacheHygiene()
    router = MessageRouter(
        upstream, recorder, metrics, hygiene=hygiene, drift=drift, connect_timeout_s=config.connect_timeout_s,
        stall_timeout_s=config.stall_timeout_s, candidate_timeout_s=config.candidate_timeout_s,
        seed=config.shadow_seed,
    )
    deferral = DeferralQueue(upstream, store=config.deferral_store(shared), replica=config.replica_name(),
                             on_finished=_record_deferred(recorder, tasks), **config.deferral_options)
    refuse = Refusals(metrics, upstream.scrub)
    messages = MessagesEndpoint(
        keys=keys, tasks=tasks, hygiene=hygiene, router=router, deferral=deferral, upstream=upstream,
        recorder=recorder, refuse=refuse, max_body_bytes=config.max_body_bytes,
    )
    proxy = ProxyEndpoint(upstream=upstream, keys=keys, metrics=metrics, refuse=refuse,
                          max_body_bytes=config.max_body_bytes, public_base_url=config.public_base_url)
    gateway = Gateway(config=config, upstream=upstream, metrics=metrics, signing_key=signing_key, tasks=tasks,
                      keys=store, limits=limits, recorder=recorder, drift=drift, hygiene=hygiene, router=router,
                      deferral=deferral)

    auth = keys.identify if store is not None else None
    routes: list[BaseRoute] = [
        *drift.routes(auth),
        *deferral.routes(auth),
        *messages.routes(),
        *proxy.routes(),
        *metrics.routes(upstream.breaker),
        *dashboard_routes(gateway),
        Route("/healthz", _health(tasks, config.upstream_name or config.upstream), methods=["GET"]),
        *proxy.fallback_routes(),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        deferral.start()  # what a replica killed earlier (or another replica) left queued or in a batch
        yield
        await gateway.aclose()

    app = Starlette(
        routes=routes,
        exception_handlers={
            HTTPException: http_error_handler(),
            Exception: unexpected_handler("Internal server error in the parity gateway (see its log)", log,
                                          what="gateway bug", not_a_bug=_client_gone),
        },
        lifespan=lifespan,
    )
    app.router.redirect_slashes = False
    app.state.gateway = gateway
    return app


def _on_routes_checked(metrics: GatewayMetrics, drift: DriftWatch) -> Callable[[Mapping[str, str]], None]:
    """What the gateway does when the policy in force refuses routes (task -> problem): count them, and stop
    watching their drift (a persisted rollback stays; only a new certificate clears it)."""

    def checked(refused: Mapping[str, str]) -> None:
        metrics.refused({task: reason_code(problem) for task, problem in refused.items()})
        drift.forget(refused)

    return checked


def _record_deferred(recorder: GatewayRecorder, tasks: TaskRouter) -> Callable[[Deferred, Any], None]:
    """A deferred request's batch result arrived: recorded like any exchange (priced at batch rates, charged to its
    key, redacted, metered, traced), off the request path."""

    def finished(item: Deferred, cost: Any) -> None:
        label = item.task if item.task in tasks.policy.tasks else ("unmatched" if item.task else "")
        duration = max(0.0, (item.finished_at or item.queued_at) - item.queued_at)
        recorder.record(Record(
            endpoint="messages", request=item.request, started_at=item.started_at, duration_s=duration,
            route="deferred", status=item.status_code, task=item.task, task_label=label, reason=item.reason,
            message=item.message, error=item.error, key_id=item.key_id, tags=item.ledger_tags(), counted=False,
            batch=True,
            record_id=item.id,  # one ledger row per deferred request, whichever replica records it, however often
        ))

    return finished


def _health(tasks: TaskRouter, upstream: str) -> Callable[[Request], Any]:
    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "tasks": sorted(tasks.policy.tasks), "upstream": upstream})

    return health


def _client_gone(request: Request, exc: Exception) -> Response | None:
    """A client that went away mid-answer is not a gateway bug."""
    if isinstance(exc, OSError) and "disconnect" in str(exc):
        log.debug("client went away during %s %s", request.method, request.url.path)
        return Response(status_code=499)
    return None


__all__ = ["Gateway", "create_gateway"]
