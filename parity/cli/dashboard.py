"""`parity dashboard --ledger URL`: the live dashboard served on its own, reading a ledger (and optionally the
policy, keys file and drift state directory a gateway uses), for when the gateways themselves are not to be
reached, or several replicas share one PostgreSQL ledger."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from parity.cli.base import app, console


def dashboard_app(ledger: str, *, policy: Optional[Path] = None, keys: Optional[Path] = None,
                  state_dir: Optional[Path] = None, prices: Optional[list[Path]] = None,
                  refresh_s: int = 15) -> Any:
    """The standalone dashboard as a Starlette app: GET / and GET /dashboard. With a keys file, a gateway key is
    required (as on the gateway)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, Response
    from starlette.routing import Route

    from parity.gateway.dashboard import key_allowed, unauthorized
    from parity.gateway.keys import KeyStore

    store = KeyStore(keys) if keys is not None else None

    async def page(request: Request) -> Response:
        if not key_allowed(store, request):
            return unauthorized()
        import anyio.to_thread

        html = await anyio.to_thread.run_sync(lambda: render_page(ledger, policy=policy, store=store,
                                                                  state_dir=state_dir, prices=prices,
                                                                  refresh_s=refresh_s))
        return HTMLResponse(html, headers={"cache-control": "no-store"})

    return Starlette(routes=[Route("/", page, methods=["GET"]), Route("/dashboard", page, methods=["GET"])])


def render_page(ledger: str, *, policy: Optional[Path] = None, store: Any = None, state_dir: Optional[Path] = None,
                prices: Optional[list[Path]] = None, refresh_s: int = 15) -> str:
    """The dashboard page for a ledger, read afresh (each refresh shows what the gateways wrote since)."""
    from parity.audit.summary import drift_states, summarize
    from parity.ledger.schema import display_url
    from parity.policy import load_policy
    from parity.pricing import PriceTable
    from parity.report.dashboard import certificate_rows, key_rows, render_dashboard

    table = PriceTable.load([str(p) for p in prices]) if prices else None
    loaded = load_policy(policy) if policy is not None else None
    baselines = {name: task.baseline_model for name, task in loaded.tasks.items()} if loaded else None
    summary = summarize(ledger, table=table, baselines=baselines)
    certificates = certificate_rows(loaded, _refused(loaded, policy)) if loaded and policy else []
    drift = drift_states(state_dir) if state_dir is not None else {}
    source = (f"Persisted drift state in {state_dir} (rollbacks only; live e-values are on each gateway's "
              "/dashboard)." if state_dir is not None else "Drift calls from the ledger; pass --state-dir for "
              "rollbacks (live e-values are on each gateway's /dashboard).")
    keys = key_rows(store.list(), summary.spend_by_key) if store is not None else None
    return render_dashboard(summary, drift=drift, drift_source=source, certificates=certificates, keys=keys,
                            refresh_s=refresh_s, source=display_url(ledger))


def _refused(policy: Any, path: Path) -> dict[str, str]:
    """Which route entries a gateway would refuse (no verified certificate), as the gateway checks them."""
    from parity.gateway.certified import route_problem
    from parity.proof.signing import load_signing_key

    signing_key = load_signing_key(None)
    refused = {}
    for name, task in policy.tasks.items():
        if task.mode != "route" or not task.candidate_model:
            continue
        try:
            problem = route_problem(task, signing_key=signing_key, base_dir=Path(path).resolve().parent)
        except Exception as exc:  # noqa: BLE001 - shown, never fatal
            problem = f"certificate_unreadable: {type(exc).__name__}: {exc}"
        if problem is not None:
            refused[name] = problem.split(":", 1)[0]
    return refused


def _check_exists(ledger: str) -> None:
    """A SQLite ledger must exist: opening a mistyped path would create an empty ledger and show nothing."""
    from parity.errors import InputError
    from parity.ledger.schema import ledger_url

    url = ledger_url(ledger)
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        path = Path(url[len("sqlite:///"):])
        if not path.exists():
            raise InputError("no such ledger; give the file or URL `parity serve --ledger` writes to", file=ledger)


@app.command("dashboard")
def dashboard(
    ledger: str = typer.Option(..., "--ledger", help="Ledger URL or SQLite path (as `parity serve --ledger`)."),
    port: int = typer.Option(8090, "--port", help="Port to serve on."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind; use --keys beyond this machine."),
    policy: Optional[Path] = typer.Option(None, "--policy", help="Policy file: certificates and their verdicts."),
    keys: Optional[Path] = typer.Option(None, "--keys", help="Gateway keys file: budgets (and a key is required)."),
    state_dir: Optional[Path] = typer.Option(None, "--state-dir", help="The gateway's state dir: drift rollbacks."),
    prices: Optional[list[Path]] = typer.Option(None, "--prices", help="Extra price table TOML file(s)."),
    refresh: int = typer.Option(15, "--refresh", help="Seconds between the page's own reloads."),
    html_out: Optional[Path] = typer.Option(None, "--html", help="Write the page once to this file and exit."),
) -> None:
    """Serve the live dashboard for a ledger: spend over time by category, routes, fallbacks, drift, certificates,
    key budgets; the figures agree with `parity audit` on the same ledger."""
    _check_exists(ledger)
    if html_out is not None:
        from parity.files import write_atomic
        from parity.gateway.keys import KeyStore

        store = KeyStore(keys) if keys is not None else None
        write_atomic(html_out, render_page(ledger, policy=policy, store=store, state_dir=state_dir, prices=prices,
                                           refresh_s=refresh))
        console.print(f"wrote {html_out}")
        return
    import uvicorn

    application = dashboard_app(ledger, policy=policy, keys=keys, state_dir=state_dir, prices=prices,
                                refresh_s=refresh)
    console.print(f"Parity dashboard on http://{host}:{port}/ (ledger {ledger}); Ctrl-C stops it")
    uvicorn.run(application, host=host, port=port, log_level="warning", access_log=False)
