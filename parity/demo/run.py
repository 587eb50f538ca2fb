"""`parity demo` from end to end: the day's traffic and its bill, the audit and its plan, two proofs, and the next
day through the gateway with the plan and the routes, with the audit's estimate next to the realised saving."""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel

from parity.audit.plan import build_plan, describe_plan, write_plan

from parity.audit.cost import Pricer
from parity.demo.audit_stage import audit_recorded, show_audit
from parity.demo.bill import bill, print_bill, print_cache_comparison
from parity.demo.gateway_stage import next_day_through_gateway
from parity.demo.next_day_report import family_lines, print_next_day
from parity.demo.pipeline import (REFUND_MODEL, SIMULATED_NOTE, START, TRIAGE_MODEL, DemoSize, Recorded,
                                  run_workload)
from parity.demo.prove_stage import print_proofs, prove_tasks
from parity.emulator.clock import ManualClock
from parity.emulator.service import Emulator
from parity.exchange import write_jsonl
from parity.report.audit_html import write_audit_html


@dataclass
class DemoContext:
    emulator: Emulator
    clock: ManualClock
    recorded: Recorded
    pricer: Pricer
    out: Path
    results: dict[str, Any] = field(default_factory=dict)


def run_demo(console: Console, *, size: DemoSize | None = None, seed: int = 0, out: Path | None = None) -> DemoContext:
    """The whole demo; returns what it measured so tests can check it. Files go to `out` (default: a new temp dir)."""
    started = time.perf_counter()
    size = size or DemoSize()
    out = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="parity-demo-"))
    out.mkdir(parents=True, exist_ok=True)
    clock = ManualClock(START.timestamp())
    emulator = Emulator(clock=clock, seed=seed)
    console.rule("[bold]Parity demo[/] on the built-in Claude API emulator")
    console.print(Panel(SIMULATED_NOTE, border_style="magenta", expand=False))
    console.print(f"Files: {out}")

    console.print("\n[bold]1. A day of a support-ticket pipeline[/], sent through the official anthropic SDK")
    recorded = run_workload(emulator.client(max_retries=2), clock, console, size)
    pricer = Pricer(emulator.table)
    ctx = DemoContext(emulator, clock, recorded, pricer, out)
    ctx.results["bill"] = the_bill = bill(recorded.exchanges, pricer)
    print_bill(console, "The bill", the_bill)
    print_cache_comparison(console, recorded, pricer)

    console.print("\n[bold]2. parity audit[/] on the day's log: where the money goes and what each lever saves")
    report = audit_recorded(recorded, emulator.table)
    report.write_json(out / "audit.json")
    write_audit_html(report.data, out / "audit.html", simulated=True)
    with (out / "day1.jsonl").open("w", encoding="utf-8") as log:
        write_jsonl(recorded.exchanges, log)
    ctx.results["audit"] = report
    show_audit(console, report)
    plan = build_plan(report.data)
    write_plan(plan, out / "plan.json")
    console.print(f"\n[bold]parity audit --plan[/] {out / 'plan.json'}: what the gateway applies, what it only "
                  "proposes, and what needs a proof")
    labels = {row["family"]: row["label"] for row in report.data.get("by_family", [])}
    for line in describe_plan(plan, labels):
        console.print(escape(line), soft_wrap=True)

    console.print("\n[bold]3. parity prove[/]: is Claude Haiku 4.5, with a prompt tuned for it, as good on these "
                  "tasks? Judged by the baseline's model class, tested sequentially on held-out prompts")
    proofs = prove_tasks(emulator, recorded, console, out,
                         {"ticket_triage": TRIAGE_MODEL, "refund_calc": REFUND_MODEL})
    ctx.results["proofs"] = proofs
    print_proofs(console, proofs)
    policy = write_plan(plan, proofs.policy_path)  # the proven routes and the plan, in the file the gateway serves
    ctx.results["policy"] = policy

    console.print("\n[bold]4. parity serve --policy[/] the next day, on new traffic (tickets, refund problems and "
                  "threads neither the optimiser nor the proofs' test split saw): the routes, the plan's cache "
                  "fixes, and the nightly job deferred to the Batch API")
    next_day = next_day_through_gateway(emulator, policy, console, out, size)
    ctx.results["next_day"] = next_day
    day1 = Counter(e.tags.get("task") or "" for e in recorded.exchanges)
    lines = family_lines(next_day, policy, report.data, day1, proofs.outcomes)
    ctx.results["families"] = lines
    print_next_day(console, next_day, lines)
    console.print(f"The same comparison from the ledger alone: parity savings --ledger {out / 'ledger.db'} "
                  f"--before {out / 'day1.jsonl'} --policy {proofs.policy_path}", soft_wrap=True)

    ctx.results["seconds"] = time.perf_counter() - started
    console.print(f"\nDemo finished in {ctx.results['seconds']:.1f} s.")
    return ctx
