"""GET /dashboard: the live dashboard page (`parity.report.dashboard`) for this gateway.

It reads the gateway's ledger (exact spend, routes, fallbacks), its drift monitors' live status (e-values), the
policy in force with the routes refused for want of a verified certificate, and its keys' live spend against their
budgets. The page is drawn off the event loop; plotting loads only when it is first asked for, so a gateway that
never serves the dashboard idles small.

Access: with a keys file, a request must present an active gateway key (there is no separate admin key yet):
as `x-api-key`, `Authorization: Bearer`, or as the password of HTTP Basic auth, which a browser asks for (the
401 carries `WWW-Authenticate: Basic`). Without a keys file the page is open, like the rest of the gateway.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from parity.api.headers import api_key_of
from parity.gateway.keys import KeyStore

REALM = 'Basic realm="parity dashboard", charset="UTF-8"'


class GatewayDashboard:
    """The dashboard of one composed gateway (`app.Gateway`); `routes()` contributes GET /dashboard."""

    def __init__(self, gateway: Any, *, refresh_s: int = 15):
        """`gateway` is the composed `app.Gateway` record (typed loosely: app.py imports this module)."""
        self.gateway = gateway
        self.refresh_s = refresh_s

    def allowed(self, request: Request) -> bool:
        """Whether the request may see the page (any active gateway key when the gateway has keys)."""
        return key_allowed(self.gateway.keys, request)

    def render(self) -> str:
        """The page as HTML (blocking: reads the ledger and draws the charts)."""
        from parity.audit.summary import LedgerSummary, summarize
        from parity.gateway.keys import spent_by_key
        from parity.ledger.schema import display_url
        from parity.report.dashboard import certificate_rows, key_rows, render_dashboard

        g = self.gateway
        url = g.config.ledger_url
        baselines = {name: task.baseline_model for name, task in g.tasks.policy.tasks.items()}
        summary = summarize(url, baselines=baselines) if url else LedgerSummary()
        drift = {task: monitor.status() for task, monitor in sorted(g.monitors.items())}
        # every replica's spend on a ledger (its running totals), this gateway's own without one
        spent = spent_by_key(url) if url else g.limits.spent
        keys = key_rows(g.keys.list(), spent) if g.keys is not None else None
        return render_dashboard(
            summary, drift=drift, drift_source="Live drift state of this gateway's monitors.",
            certificates=certificate_rows(g.tasks.policy, g.tasks.refused), keys=keys, refresh_s=self.refresh_s,
            source=display_url(url) if url else "none (serve with --ledger to see spend)",
        )

    def routes(self) -> list[BaseRoute]:
        async def dashboard(request: Request) -> Response:
            if not self.allowed(request):
                return unauthorized()
            html = await asyncio.to_thread(self.render)
            return HTMLResponse(html, headers={"cache-control": "no-store"})

        return [Route("/dashboard", dashboard, methods=["GET"])]


def key_allowed(store: KeyStore | None, request: Request) -> bool:
    """Whether `request` presents an active key of `store` (header, bearer or Basic password); True without one."""
    if store is None:
        return True
    return store.authenticate(api_key_of(request.headers) or _basic_password(request)) is not None


def unauthorized() -> Response:
    """The 401 a browser answers with its password prompt."""
    return Response("A gateway key is required: give it as the password (any user name).\n", status_code=401,
                    media_type="text/plain", headers={"www-authenticate": REALM})


def _basic_password(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[2] or None


def dashboard_routes(gateway: Any) -> list[BaseRoute]:
    """GET /dashboard for `gateway` (what `create_gateway` registers)."""
    return GatewayDashboard(gateway).routes()


__all__ = ["GatewayDashboard", "dashboard_routes", "key_allowed", "unauthorized"]
