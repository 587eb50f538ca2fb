"""Demo stage 4: the next day's traffic through `parity serve` with the plan and the proven routes, billed before
and after.

Day 2 is new traffic (`interactive_steps(size, day=2)` and the night's backlog): tickets, problems and threads day 1
never sent, so neither the optimiser nor the proofs' test split saw them and the gateway's savings measure
generalisation, not replay. "Before" is the same day-2 requests sent as the team sends them today (synchronously,
direct) to a twin emulator (same brain, same clock start, its own cache); "after" is what the gateway paid for
them. The SDK client changes only its base URL and names each request's task (`x-parity-task`); the nightly job
also adds `x-parity-defer: true`, as the plan asks, and polls its handles. Routed answers are checked against the
task's output contract; a failure falls back to the baseline at once, and the ledger records which answer the
client got and why.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from parity.demo.bill import Bill, bill
from parity.demo.pipeline import (DemoSize, Recorded, Step, interactive_steps, night_steps, progress_bar,
                                  send_steps)
from parity.emulator.clock import ManualClock
from parity.emulator.service import Emulator
from parity.exchange import Exchange
from parity.gateway.local import LocalGateway
from parity.ledger.reader import LedgerRow
from parity.policy import Policy
from parity.task import TASK_HEADER

DEFER_HEADER = "x-parity-defer"
BATCH_POLL_S = 600.0
"""How far the emulator's clock moves between polls of the deferred handles (a batch takes minutes)."""


@dataclass
class NextDay:
    """The next day: the gateway's ledger, the bills before (the same requests direct) and after (every call the
    gateway paid for, rejected candidate answers and the drift sample included), per family too, what happened to
    the clients' requests, and the day's direct Exchanges (the requests as the client sent them)."""

    rows: list[LedgerRow]
    before: Bill
    after: Bill
    routes: Counter
    fallbacks: Counter
    drift: dict[str, dict]
    direct: Recorded
    before_by_family: dict[str, Bill]
    after_by_family: dict[str, Bill]


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


def defer_steps(gateway: LocalGateway, steps: list[Step], clock: ManualClock, progress: Progress) -> int:
    """Send the nightly job through the gateway with `x-parity-defer: true` and poll each handle until its
    answer arrives (the gateway sends them as one Message Batch); returns how many were answered."""
    http = gateway.http()
    total = sum(len(step.requests) for step in steps)
    bar = progress.add_task("Day 2 nightly job, deferred to the Batch API", total=total)
    handles: list[str] = []
    for step in steps:
        for body in step.requests:
            reply = http.post("/v1/messages", json=body,
                              headers={TASK_HEADER: step.tags["task"], DEFER_HEADER: "true"})
            if reply.status_code != 202:
                raise RuntimeError(f"the gateway did not defer a nightly request: HTTP {reply.status_code} "
                                   f"{reply.text[:200]}")
            handles.append(reply.json()["poll_url"])
    answered = 0
    for _ in range(200):  # each round moves the emulator's clock BATCH_POLL_S: the batch ends within hours
        waiting = []
        for url in handles:
            reply = http.get(url)
            if reply.status_code == 202:
                waiting.append(url)
            elif reply.status_code == 200:
                answered += 1
                progress.advance(bar)
            else:
                raise RuntimeError(f"a deferred request failed: HTTP {reply.status_code} {reply.text[:200]}")
        handles = waiting
        if not handles:
            break
        clock.advance(BATCH_POLL_S)
        time.sleep(0.02)  # the gateway's deferral worker polls the batch in the background
    if handles:
        raise RuntimeError(f"{len(handles)} deferred requests were still waiting after "
                           f"{200 * BATCH_POLL_S / 3600:.0f} simulated hours")
    return answered


def by_family(exchanges: list[Exchange]) -> dict[str, Bill]:
    """One bill per task (the tag the demo's clients name), over every exchange given."""
    groups: dict[str, list[Exchange]] = {}
    for exchange in exchanges:
        groups.setdefault(exchange.tags.get("task") or "(untagged)", []).append(exchange)
    return {task: bill(group) for task, group in groups.items()}


def next_day_through_gateway(emulator: Emulator, policy: Policy, console: Console, out: Path,
                             size: DemoSize) -> NextDay:
    """Send the next day's traffic (new prompts) direct and through the gateway with `policy` (routes and plan)."""
    interactive, night = interactive_steps(size, day=2), night_steps(size, day=2)
    direct = send_direct(emulator, interactive + night, console)
    # The demo judges its shadow sample at once (`via: sync`); a deployed gateway sends it as Message Batches.
    # The nightly job's requests go upstream as one batch once all of them are queued.
    deferral = {"max_batch": max(1, sum(len(s.requests) for s in night)), "max_wait_s": 3600.0,
                "poll_interval_s": 0.01}
    with LocalGateway(emulator, policy=policy, ledger_url=str(out / "ledger.db"), shadow_seed=0,
                      drift_options={"via": "sync"}, deferral_options=deferral) as gateway:
        client = gateway.client(max_retries=2)
        with progress_bar(console) as progress:
            send_steps(client, interactive, emulator.clock, progress, name_tasks=True,
                       label="Day 2 through parity serve (the 'after' bill)")
            defer_steps(gateway, night, emulator.clock, progress)
        gateway.flush()
        drift = {task: m.status() for task, m in gateway.gateway.monitors.items()}
    rows = gateway.rows()
    fallbacks = Counter(reason for (_, reason) in gateway.fallbacks().elements())
    return NextDay(rows, bill(direct.exchanges), bill(row.exchange for row in rows), gateway.routes(), fallbacks,
                   drift, direct, by_family(direct.exchanges), by_family([row.exchange for row in rows]))


def saved(day: NextDay) -> tuple[Decimal, float]:
    """The day's cut: before minus after (everything the gateway paid for), and as a share of before."""
    cut = day.before.total.total - day.after.total.total
    return cut, float(cut / day.before.total.total) if day.before.total.total else 0.0
