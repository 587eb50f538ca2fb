"""Demo stage 4: the next day's traffic through `parity serve` with the proven policy, billed before and after.

The SDK client changes nothing but its base URL: it talks to the gateway app in-process, and the gateway talks
to the same in-process emulator. Routed answers are checked against the task's output contract; a failure falls
back to the baseline at once, and the ledger records which answer the client got and why.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx2
from rich.console import Console
from rich.table import Table

from parity.demo.bill import Bill, bill, usd
from parity.demo.pipeline import SIMULATED, DemoSize, Recorded, interactive_steps, progress_bar, send_steps
from parity.emulator.service import Emulator
from parity.emulator.transport import EventLoopThread, SyncASGITransport
from parity.exchange import Exchange
from parity.gateway.app import create_gateway
from parity.gateway.config import GatewayConfig
from parity.ledger.reader import read_ledger, read_outcomes
from parity.policy import Policy


@dataclass
class Replay:
    """The replayed day: the gateway's ledger and the bills before (direct) and after (through the gateway)."""

    ledger: list[Exchange]
    before: Bill
    after: Bill
    routes: Counter
    reasons: Counter


def replay_through_gateway(emulator: Emulator, recorded: Recorded, policy: Policy, console: Console, out: Path,
                           size: DemoSize) -> Replay:
    """Send the interactive part of the day again, this time through the gateway with `policy`."""
    ledger_path = out / "ledger.db"
    config = GatewayConfig(upstream="emulator", emulator=emulator, policy=policy, ledger_url=str(ledger_path),
                           shadow_seed=0)
    app = create_gateway(config)
    gateway = app.state.gateway
    loop = EventLoopThread("parity-demo-gateway")
    http = httpx2.Client(transport=SyncASGITransport(app, loop_thread=loop), base_url="http://gateway.local")
    client = anthropic.Anthropic(base_url="http://gateway.local", api_key="sk-demo-client", http_client=http,
                                 max_retries=2)
    steps = interactive_steps(size)
    try:
        with progress_bar(console) as progress:
            send_steps(client, steps, emulator.clock, progress)
        gateway.recorder.flush()
    finally:
        loop.submit(gateway.aclose()).result(timeout=60)
        http.close()
    ledger = [e for _, e in read_ledger(str(ledger_path)) if isinstance(e, Exchange)]
    tasks = {t for s in steps for t in (s.tags["task"],)}
    before = bill(e for e in recorded.exchanges if e.task in tasks and not e.batch)
    outcomes = list(read_outcomes(str(ledger_path)))
    routes = Counter(o.route or "passthrough" for o in outcomes)
    reasons = Counter(o.reason_kind or "unspecified" for o in outcomes if o.route == "fallback")
    return Replay(ledger, before, bill(ledger), routes, reasons)


def print_replay(console: Console, replay: Replay) -> None:
    table = Table(title=f"The same interactive traffic, direct vs through parity serve {SIMULATED}",
                  title_justify="left")
    for name in ("", "requests billed", "cost", "haiku share of requests"):
        table.add_column(name, justify="left" if not name else "right")
    for label, part in (("before (direct)", replay.before), ("after (gateway)", replay.after)):
        haiku = sum(n for m, (_, n) in part.by_model.items() if "haiku" in m)
        table.add_row(label, f"{part.requests:,}", usd(part.total.total),
                      f"{haiku / part.requests:.0%}" if part.requests else "n/a")
    console.print(table)
    saved = replay.before.total.total - replay.after.total.total
    pct = saved / replay.before.total.total if replay.before.total.total else 0
    routes = ", ".join(f"{name} {n}" for name, n in sorted(replay.routes.items()))
    reasons = ", ".join(f"{r} {n}" for r, n in replay.reasons.most_common()) or "none"
    console.print(f"Saved {usd(saved)} ({pct:.1%}) on this traffic, the rejected candidate answers included. "
                  f"Ledger rows by route: {routes}.\n"
                  f"Fallbacks to the baseline, the client getting the baseline's answer: "
                  f"{replay.routes.get('fallback', 0)}, by reason: {reasons}.")


