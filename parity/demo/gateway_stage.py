"""Demo stage 4: the next day's traffic through `parity serve` with the proven policy, billed before and after.

The SDK client changes nothing but its base URL: it talks to the gateway app in-process (`LocalGateway`), and the
gateway talks to the same in-process emulator. Routed answers are checked against the task's output contract; a
failure falls back to the baseline at once, and the ledger records which answer the client got and why.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from parity.demo.bill import Bill, bill, usd
from parity.demo.pipeline import SIMULATED, DemoSize, Recorded, interactive_steps, progress_bar, send_steps
from parity.emulator.service import Emulator
from parity.gateway.local import LocalGateway
from parity.ledger.reader import LedgerRow
from parity.policy import Policy


@dataclass
class Replay:
    """The replayed day: the gateway's ledger, the bills before (direct) and after (every call the gateway paid
    for, rejected candidate answers included), and what happened to the clients' requests."""

    rows: list[LedgerRow]
    before: Bill
    after: Bill
    routes: Counter
    fallbacks: Counter
    drift: dict[str, dict]


def replay_through_gateway(emulator: Emulator, recorded: Recorded, policy: Policy, console: Console, out: Path,
                           size: DemoSize) -> Replay:
    """Send the interactive part of the day again, this time through the gateway with `policy`."""
    steps = interactive_steps(size)
    # The demo judges its shadow sample at once (`via: sync`); a deployed gateway sends it as Message Batches.
    with LocalGateway(emulator, policy=policy, ledger_url=str(out / "ledger.db"), shadow_seed=0,
                      drift_options={"via": "sync"}) as gateway:
        client = gateway.client(max_retries=2)
        with progress_bar(console) as progress:
            send_steps(client, steps, emulator.clock, progress)
        gateway.flush()
        drift = {task: m.status() for task, m in gateway.gateway.monitors.items()}
    rows = gateway.rows()
    tasks = {s.tags["task"] for s in steps}
    before = bill(e for e in recorded.exchanges if e.task in tasks and not e.batch)
    after = bill(row.exchange for row in rows)
    fallbacks = Counter(reason for (_, reason) in gateway.fallbacks().elements())
    return Replay(rows, before, after, gateway.routes(), fallbacks, drift)


def print_replay(console: Console, replay: Replay) -> None:
    table = Table(title=f"The same interactive traffic, direct vs through parity serve {SIMULATED}",
                  title_justify="left")
    for name in ("", "requests answered", "calls paid for", "cost", "answered by Haiku"):
        table.add_column(name, justify="left" if not name else "right")
    answered = sum(replay.routes.values())
    haiku = sum(1 for r in replay.rows if r.answered_client and (r.exchange.model_served or "").startswith("claude-haiku"))
    table.add_row("before (direct)", f"{replay.before.requests:,}", f"{replay.before.requests:,}",
                  usd(replay.before.total.total), "0%")
    table.add_row("after (gateway)", f"{answered:,}", f"{replay.after.requests:,}", usd(replay.after.total.total),
                  f"{haiku / answered:.0%}" if answered else "n/a")
    console.print(table)
    drift_cost = bill(r.exchange for r in replay.rows if r.route == "shadow").total.total
    answering = replay.after.total.total - drift_cost
    saved = replay.before.total.total - answering
    pct = saved / replay.before.total.total if replay.before.total.total else 0
    routes = ", ".join(f"{name} {n}" for name, n in sorted(replay.routes.items()))
    reasons = ", ".join(f"{r} {n}" for r, n in replay.fallbacks.most_common()) or "none"
    console.print(f"Saved {usd(saved)} ({pct:.1%}) on answering this traffic, rejected candidate answers included; "
                  f"the drift sample below cost {usd(drift_cost)} on top (sent synchronously here, at half price "
                  f"through the Batch API, the gateway's default). Requests by route: {routes}.\n"
                  f"Fallbacks to the baseline, the client getting the baseline's answer: "
                  f"{replay.routes.get('fallback', 0)}, by reason: {reasons}.")
    for task, st in replay.drift.items():
        seg = st["current_segment"]
        mean = "n/a" if seg["mean_score"] is None else f"{seg['mean_score']:.2f}"
        console.print(
            f"Drift watch on {task}: {st['judged']} of {st['observed']} routed answers ({st['rate']:.0%} sampled) "
            f"were also answered by {st['baseline_model']} and judged {SIMULATED}; mean score {mean}, futility "
            f"e-value {seg['futility_e_value']:.2f} (the task rolls back to its baseline by itself at "
            f"{1 / st['alpha']:.0f}): {st['state'].replace('_', ' ')}.")
