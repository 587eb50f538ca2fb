"""The answers the gateway gives by itself, without the upstream (a bad key, a bad body, an upstream that failed).

Each is the API's error envelope with a `request-id`, so the SDK raises the class it would raise against the API;
the message is scrubbed of the upstream key, and the request is counted in the metrics as route "rejected".
"""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.responses import JSONResponse

from parity.api.errors import APIError
from parity.api.handlers import error_response
from parity.gateway.metrics import GatewayMetrics


class Refusals:
    """Renders and counts the gateway's own error answers (see the module docstring)."""

    def __init__(self, metrics: GatewayMetrics, scrub: Callable[[str], str]):
        self.metrics = metrics
        self.scrub = scrub

    def __call__(self, error: APIError, request_id: str, endpoint: str, t0: float,
                 outcome: str | None = None) -> JSONResponse:
        """`error` answered to a request to `endpoint` that arrived at `t0` (perf_counter); `outcome` defaults to
        client_error below 500, gateway_error from 500."""
        if outcome is None:
            outcome = "client_error" if error.status < 500 else "gateway_error"
        self.metrics.request(endpoint, "rejected", "", outcome, time.perf_counter() - t0)
        return error_response(error, request_id, scrub=self.scrub)
