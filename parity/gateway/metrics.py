"""Prometheus metrics of one gateway, in a registry of its own (several gateways in one process never mix).

Labels are bounded: `task` is a policy task name, "unmatched" for a task name the policy does not know, or ""
when no task was named; `route` is passthrough | routed | fallback | shadow | deferred | rejected; `outcome` is
ok | client_error | upstream_error | gateway_error. `parity_policy_refused_routes{task, reason}` is 1 for each
`route` entry of the policy in force that no verified certificate backs (its traffic goes to the baseline; the
reason codes are `parity.gateway.certified.REASONS`). Cost is also a Prometheus counter (a float, for dashboards);
the exact amounts are in the ledger.
"""

from __future__ import annotations

from decimal import Decimal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from parity.gateway.retry import CircuitBreaker

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class GatewayMetrics:
    """The gateway's counters and histograms; `render()` is the /metrics body."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "parity_gateway_requests", "Requests answered, by endpoint, route, task and outcome.",
            ["endpoint", "route", "task", "outcome"], registry=r,
        )
        self.fallbacks = Counter(
            "parity_gateway_fallbacks", "Routed requests answered by the baseline instead, by task and reason.",
            ["task", "reason"], registry=r,
        )
        self.latency = Histogram(
            "parity_gateway_request_duration_seconds", "Time from request to the last byte of the answer.",
            ["endpoint", "route"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.cost = Counter(
            "parity_gateway_cost_usd", "List-price cost of upstream answers in USD (exact values: the ledger).",
            ["task", "route", "model"], registry=r,
        )
        self.upstream_retries = Counter(
            "parity_gateway_upstream_retries", "Upstream attempts retried, by what went wrong.", ["reason"], registry=r,
        )
        self.circuit_open = Gauge(
            "parity_gateway_circuit_open", "1 while a model's circuit breaker is open.", ["model"], registry=r,
        )
        self.rolled_back = Gauge(
            "parity_gateway_task_rolled_back", "1 while drift monitoring has rolled a routed task back to its baseline.",
            ["task"], registry=r,
        )
        self.rollbacks = Counter(
            "parity_gateway_rollbacks", "Routed requests sent to the baseline because drift rolled the task back.",
            ["task"], registry=r,
        )

        self.refused_routes = Gauge(
            "parity_policy_refused_routes",
            "1 for each route entry of the policy in force refused for want of a verified certificate (its task is "
            "served by the baseline), by task and reason.", ["task", "reason"], registry=r,
        )

    def refused(self, refusals: dict[str, str]) -> None:
        """The policy in force refuses these routes (task -> reason code); earlier refusals no longer hold."""
        self.refused_routes.clear()
        for task, reason in refusals.items():
            self.refused_routes.labels(task, reason).set(1)

    def request(self, endpoint: str, route: str, task: str, outcome: str, seconds: float) -> None:
        self.requests.labels(endpoint, route, task, outcome).inc()
        self.latency.labels(endpoint, route).observe(seconds)

    def fallback(self, task: str, reason: str) -> None:
        self.fallbacks.labels(task, reason).inc()

    def spend(self, task: str, route: str, model: str, usd: Decimal) -> None:
        if usd:
            self.cost.labels(task, route, model).inc(float(usd))

    def retries(self, reasons: list[str]) -> None:
        for reason in reasons:
            self.upstream_retries.labels(reason).inc()

    def breakers(self, open_models: list[str], known: set[str]) -> None:
        for model in known:
            self.circuit_open.labels(model).set(1 if model in open_models else 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def routes(self, breaker: CircuitBreaker) -> list[BaseRoute]:
        """GET /metrics: the Prometheus text, with `breaker`'s open circuits read at scrape time."""

        async def metrics(request: Request) -> Response:
            self.breakers(breaker.open_models(), set(breaker.open_models()))
            return Response(self.render(), media_type=self.content_type)

        return [Route("/metrics", metrics, methods=["GET"])]
