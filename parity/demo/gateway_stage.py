"""Demo stage 4: the next day's traffic through `parity serve` with the proven policy, billed before and after.

Day 2 is new traffic (`interactive_steps(size, day=2)`): tickets, problems and threads day 1 never sent, so neither
the optimiser nor the proofs' test split saw them and the gateway's savings measure generalisation, not replay.
"Before" is the same day-2 requests sent direct to a twin emulator (same brain, same clock start, its own cache);
"after" is what the gateway paid for them. The SDK client changes nothing but its base URL: it talks to the gateway
app in-process (`LocalGateway`), and the gateway talks to the in-process emulator. Routed answers are checked
against the task's output contract; a failure falls back to the baseline at once, and the ledger records which
answer the client got and why.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.table import Table

from parity.demo.bill import Bill, bill, usd
from parity.demo.pipeline import SIMULATED, DemoSize, Recorded, Step, interactive_steps, progress_bar, send_steps
from parity.emulator.clock import ManualClock
from parity.emulator.service import Emulator
from parity.exchange import Exchange
from parity.gateway.local import LocalGateway
from parity.ledger.reader import LedgerRow
from parity.policy import Policy
from parity.report.tables import fit


@dataclass
class NextDay:
    """The next day: the gateway's ledger, the bills before (the same requests direct) and after (every call the
    gateway paid for, rejected candidate answers included), what happened to the clients' requests, and the day's
    direct Exchanges (the requests as the client sent them)."""

    rows: list[LedgerRow]
    before: Bill
    after: Bill
    routes: Counter
    fallbacks: Counter
    drift: dict[str, dict]
    direct: Recorded


def send_direct(emulator: Emulator, steps: list[Step], console: Console) -> Recorded:
    """What `steps` cost without the gateway: each request answered by a twin of `emulator` (same brain and price
    table, a clock at the same time, a cold cache of its own) on its one Messages code path, the one every HTTP
    route calls, so the answers and usage are those the SDK would get (without the SDK's round trip, which would
    add seconds to the demo); each pair is recorded as an Exchange."""
    twin = Emulator(emulator.brain, ManualClock(emulator.clock.now()), table=emulator.table, seed=emulator.seed)
    recorded = Recorded()
    with progress_bar(console) as progress:
        bar = progress.add_task("Day 2 direct, no gateway (the 'before' bill)",
                                total=sum(len(step.requests) for step in steps))
        for step in steps:
            for body in step.requests:
                started = datetime.fromtimestamp(twin.clock.now(), timezone.utc)
                recorded(Exchange(request=body, response=twin.create_message(body), started_at=started,
                                  tags=dict(step.tags)))
                twin.clock.advance(step.gap_s)
                progress.advance(bar)
    return recorded


def next_day_through_gateway(emulator: Emulator, policy: Policy, console: Console, out: Path,
                           size: DemoSize) -> NextDay:
    """Send the next day's interactive traffic (new prompts) direct and through the gateway with `policy`."""
    steps = interactive_steps(size, day=2)
    direct = send_direct(emulator, steps, console)
    # The demo judges its shadow sample at once (`via: sync`); a deployed gateway sends it as Message Batches.
    with LocalGateway(emulator, policy=policy, ledger_url=str(out / "ledger.db"), shadow_seed=0,
                      drift_options={"via": "sync"}) as gateway:
        client = gateway.client(max_retries=2)
        with progress_bar(console) as progress:
            send_steps(client, steps, emulator.clock, progress, label="Day 2 through parity serve (the 'after' bill)")
        gateway.flush()
        drift = {task: m.status() for task, m in gateway.gateway.monitors.items()}
    rows = gateway.rows()
    before = bill(direct.exchanges)
    after = bill(row.exchange for row in rows)
    fallbacks = Counter(reason for (_, reason) in gateway.fallbacks().elements())
    return NextDay(rows, before, after, gateway.routes(), fallbacks, drift, direct)


def print_next_day(console: Console, day: NextDay) -> None:
    table = Table(title=f"Day 2's interactive traffic (new prompts), direct vs through parity serve {SIMULATED}",
                  title_justify="left")
    for name in ("", "requests answered", "calls paid for", "cost", "answered by Haiku"):
        table.add_column(name, justify="left" if not name else "right")
    answered = sum(day.routes.values())
    haiku = sum(1 for r in day.rows if r.answered_client and (r.exchange.model_served or "").startswith("claude-haiku"))
    table.add_row("before (direct)", f"{day.before.requests:,}", f"{day.before.requests:,}",
                  usd(day.before.total.total), "0%")
    table.add_row("after (gateway)", f"{answered:,}", f"{day.after.requests:,}", usd(day.after.total.total),
                  f"{haiku / answered:.0%}" if answered else "n/a")
    console.print(fit(table, console))
    drift_cost = bill(r.exchange for r in day.rows if r.route == "shadow").total.total
    answering = day.after.total.total - drift_cost
    saved = day.before.total.total - answering
    pct = saved / day.before.total.total if day.before.total.total else 0
    routes = ", ".join(f"{name} {n}" for name, n in sorted(day.routes.items()))
    reasons = ", ".join(f"{r} {n}" for r, n in day.fallbacks.most_common()) or "none"
    console.print(f"Saved {usd(saved)} ({pct:.1%}) on answering this traffic, rejected candidate answers included; "
                  f"the drift sample below cost {usd(drift_cost)} on top (sent synchronously here, at half price "
                  f"through the Batch API, the gateway's default). Requests by route: {routes}.\n"
                  f"Fallbacks to the baseline, the client getting the baseline's answer: "
                  f"{day.routes.get('fallback', 0)}, by reason: {reasons}.")
    for task, st in day.drift.items():
        seg = st["current_segment"]
        mean = "n/a" if seg["mean_score"] is None else f"{seg['mean_score']:.2f}"
        console.print(
            f"Drift watch on {task}: {st['judged']} of {st['observed']} routed answers ({st['rate']:.0%} sampled) "
            f"were also answered by {st['baseline_model']} and judged {SIMULATED}; mean score {mean}, futility "
            f"e-value {seg['futility_e_value']:.2f} (the task rolls back to its baseline by itself at "
            f"{1 / st['alpha']:.0f}): {st['state'].replace('_', ' ')}.")
