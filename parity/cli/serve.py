"""`parity serve`: run the Anthropic-compatible gateway (routes proven tasks, falls back instantly, records all)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from parity.cli.base import app, console
from parity.gateway.upstream import DEFAULT_UPSTREAM

if TYPE_CHECKING:  # pragma: no cover
    from parity.gateway.routing import TaskRouter


@app.command("serve")
def serve(
    upstream: str = typer.Option(
        DEFAULT_UPSTREAM, help="Where requests go: the real API (default), another http(s) base URL, or 'emulator' "
        "(the local emulator in-process, simulated models).",
    ),
    port: int = typer.Option(8080, help="Port to listen on."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0 for every interface)."),
    policy: Optional[str] = typer.Option(
        None, help="Policy file written by `parity prove` (re-read when it changes). A route is taken only on a "
        "certificate that verifies; the others' traffic goes to their baseline."
    ),
    signing_key: Optional[str] = typer.Option(
        None, "--signing-key", help="Key file route certificates must be signed with (default: PARITY_SIGNING_KEY_FILE "
        "or PARITY_SIGNING_KEY); unsigned or wrongly signed certificates are then refused."
    ),
    ledger: str = typer.Option(
        "parity-ledger.db", help="Ledger: a SQLite file path (WAL mode) or a SQLAlchemy URL such as postgresql://...; "
        "'off' records nothing."
    ),
    keys: Optional[str] = typer.Option(
        None, help="Gateway keys file (`parity keys create`); without it any client key is accepted."
    ),
    redact: bool = typer.Option(False, "--redact/--no-redact", help="Mask prompt and answer text in the ledger."),
    public_url: Optional[str] = typer.Option(
        None, help="The URL clients use to reach the gateway (for batch results_url); default: from the Host header."
    ),
    stall_timeout: float = typer.Option(20.0, help="Seconds of silence from a routed stream before falling back."),
    candidate_timeout: float = typer.Option(120.0, help="Seconds a routed non-streaming answer may take before falling back."),
    read_timeout: float = typer.Option(600.0, help="Seconds to wait for upstream bytes on other requests."),
    max_retries: int = typer.Option(2, help="Retries of a failed upstream call (429, 5xx, 529, timeouts)."),
    state_dir: Optional[str] = typer.Option(
        None, help="Where drift rollbacks are kept across restarts; default: POLICY.state/ beside the policy file."
    ),
    otel_file: Optional[str] = typer.Option(
        None, help="Append OpenTelemetry GenAI spans (OTLP JSON lines, with gen_ai.usage.cost) to this file. Spans "
        "also go to a collector over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT (or ..._TRACES_ENDPOINT) is set; "
        "OTEL_EXPORTER_OTLP_HEADERS and the other standard variables apply."
    ),
    http_client: str = typer.Option(
        "lean", help="Client to the upstream: 'lean' (aiohttp, the default: about half the CPU per request) or 'httpx'."
    ),
    allow_open: bool = typer.Option(
        False, "--allow-open", help="Serve a non-loopback HOST without --keys although the gateway holds an upstream "
        "key (anyone who can reach it then spends on that key). Refused by default."
    ),
    journal: Optional[str] = typer.Option(
        None, help="Folder of the local journal: each answered request is written there before the client gets it, "
        "until the ledger has it; journals of killed replicas are replayed at start. Default: LEDGER.journal/ beside "
        "a SQLite ledger, ./parity-journal/ for a database URL; 'off' disables it."
    ),
    replica: Optional[str] = typer.Option(
        None, help="This replica's name in the shared ledger (reservations, rollbacks); default: hostname-pid."
    ),
    defer_max_wait: float = typer.Option(
        60.0, help="Seconds the oldest deferred request (x-parity-defer: true) waits before its batch is sent."
    ),
    defer_max_batch: int = typer.Option(1000, help="Deferred requests per Message Batch (sent at once when full)."),
    defer_poll: float = typer.Option(5.0, help="Seconds between looks at a Message Batch still running."),
    emulator_batch_s: float = typer.Option(
        60.0, help="With --upstream emulator: seconds a Message Batch takes to end on the emulator."
    ),
    log_level: str = typer.Option("warning", help="uvicorn log level."),
) -> None:
    """Serve the gateway at http://HOST:PORT; clients change only their base_url."""
    import uvicorn

    from parity.gateway.app import create_gateway
    from parity.gateway.config import GatewayConfig
    from parity.gateway.retry import RetryPolicy

    if journal is None and ledger != "off":
        journal = "parity-journal" if "://" in ledger else f"{ledger}.journal"
    if state_dir is None and policy is not None:
        state_dir = str(Path(policy).with_suffix(".state"))
    settings = dict(
        policy_path=policy, ledger_url=None if ledger == "off" else ledger, keys_path=keys, redact=redact,
        public_base_url=public_url, stall_timeout_s=stall_timeout, candidate_timeout_s=candidate_timeout,
        read_timeout_s=read_timeout, retry=RetryPolicy(max_retries=max_retries), state_dir=state_dir,
        http_client=http_client, signing_key_path=signing_key,
        journal_dir=None if journal in (None, "off") or ledger == "off" else journal, replica=replica,
        deferral_options={"max_wait_s": defer_max_wait, "max_batch": defer_max_batch, "poll_interval_s": defer_poll},
    )
    in_process = upstream == "emulator"
    if in_process:  # the emulator as the gateway's upstream transport: resolved here, never in the gateway
        from parity.cli.emulate import _HideCutConnections, make_brain
        from parity.emulator.service import Emulator
        from parity.gateway.local import emulator_config

        emulator = Emulator(brain=make_brain("simulated", 0))
        emulator.batches.processing_s = emulator_batch_s
        config = emulator_config(emulator, **settings)
        logging.getLogger("uvicorn.error").addFilter(_HideCutConnections())
    else:
        config = GatewayConfig(upstream=upstream, **settings)
    problem = None if in_process else open_gateway_problem(host, keys, config.resolved_upstream_key(), allow_open)
    if problem is not None:
        console.print(f"[bold red]error:[/] {problem}", highlight=False)
        raise typer.Exit(2)
    from parity.gateway import otel

    exporters = otel.exporters(otel_file)  # the file, and OTLP when OTEL_EXPORTER_OTLP_*ENDPOINT is set
    if exporters:
        otel.configure(exporters)
    gateway_app = create_gateway(config)
    base_url = f"http://{host}:{port}"
    where = "the in-process emulator (simulated models, not Claude)" if in_process else upstream
    console.print(f"[bold]Parity gateway[/] on [cyan]{base_url}[/] → {where}")
    gateway = gateway_app.state.gateway
    if gateway.tasks.policy.tasks:
        for line in policy_summary(gateway.tasks):
            console.print(line, highlight=False)
        if gateway.signing_key is not None:
            console.print(f"  certificates must be signed with key {gateway.signing_key.key_id}", highlight=False)
    else:
        console.print("  no policy: every request passes through and is recorded")
    from parity.gateway.shared_policy import SharedTaskRouter

    if isinstance(gateway.tasks, SharedTaskRouter) and gateway.tasks.version:
        console.print(f"  policy version {gateway.tasks.version} is shared with every replica on the ledger (the one "
                      "loaded last, by any of them, is in force)", highlight=False)
    if config.journal_dir:
        console.print(f"  journal: {config.journal_dir}   replica: {config.replica_name()}", highlight=False)
    console.print(f"  ledger: {ledger or 'off'}   keys: {keys or 'any client key accepted'}   metrics: {base_url}/metrics"
                  + (f"   spans: {', '.join(otel.describe(e) for e in exporters)}" if exporters else ""), highlight=False)
    console.print(f"Point clients at it: export ANTHROPIC_BASE_URL={base_url}")
    if not in_process and not config.resolved_upstream_key():
        console.print("  no upstream key set (PARITY_UPSTREAM_API_KEY): each client's own key is forwarded")
    uvicorn.run(gateway_app, host=host, port=port, log_level=log_level, access_log=False,
                timeout_graceful_shutdown=int(os.environ.get("PARITY_SHUTDOWN_S", "10")))


def is_loopback(host: str) -> bool:
    """Whether `host` (an interface to listen on) is reachable only from this machine."""
    import ipaddress

    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def open_gateway_problem(host: str, keys: str | None, upstream_key: str | None, allow_open: bool) -> str | None:
    """Why the gateway must not start as asked, or None: a gateway holding an upstream key, listening beyond this
    machine with no gateway keys, lets anyone who reaches it spend on that key."""
    if keys or not upstream_key or allow_open or is_loopback(host):
        return None
    return (
        f"refusing to serve {host} without gateway keys: this gateway holds an upstream key "
        "(PARITY_UPSTREAM_API_KEY or ANTHROPIC_API_KEY), so anyone who can reach it would spend on that key. "
        "Create keys (`parity keys create --name NAME --keys gateway-keys.json`) and pass --keys gateway-keys.json, "
        "or listen on 127.0.0.1, or pass --allow-open to serve it open on purpose"
    )


def policy_summary(tasks: TaskRouter) -> list[str]:
    """One line per task of the policy in force (Rich markup): its mode and models, the certificate a route
    stands on, or why the route was refused and the baseline serves the task instead."""
    from rich.markup import escape

    lines = []
    for name, task in sorted(tasks.policy.tasks.items()):
        head = f"  task [bold]{escape(name)}[/]: "
        refused = tasks.refused.get(name)
        if refused is not None:
            lines.append(head + f"[bold red]route refused[/], served by the baseline {escape(task.baseline_model)}: "
                         + escape(refused))
        elif task.mode == "route" and task.candidate_model and task.certificate is not None:
            lines.append(head + f"route ({escape(task.baseline_model)} → {escape(task.candidate_model)}) on "
                         f"certificate [bold]{escape(task.certificate.id)}[/]")
        else:
            target = f" → {task.candidate_model}" if task.mode != "observe" and task.candidate_model else ""
            lines.append(head + escape(f"{task.mode} ({task.baseline_model}{target})"))
    return lines
