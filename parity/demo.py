"""`parity demo`: a support-ticket pipeline run on the built-in emulator, then billed to the micro-dollar.

The workload goes through the official `anthropic` SDK pointed at the in-process emulator and is recorded with
`parity.wrap`, exactly as a team would record its own traffic. Everything the simulated models answer, and so
every number printed here, is labelled simulated.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from parity import workloads
from parity.audit.cost import CostAcc, Pricer, usage_counts
from parity.emulator.clock import ManualClock
from parity.emulator.service import Emulator
from parity.exchange import Exchange
from parity.pricing import CostBreakdown, format_usd
from parity.wrap import flush, tagged, wrap

SIMULATED = "[bold magenta](simulated)[/]"
TRIAGE_MODEL = "claude-opus-4-8"
SUMMARY_MODEL = "claude-sonnet-4-6"
START = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)


@dataclass
class DemoSize:
    """How much traffic each part of the pipeline sends."""

    triage: int = 60
    summaries: int = 12
    stamped: int = 6
    overnight: int = 40


@dataclass
class Recorded:
    """The Exchanges the wrapped client wrote, kept in memory in arrival order."""

    exchanges: list[Exchange] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, exchange: Exchange) -> None:
        with self._lock:
            self.exchanges.append(exchange)

    def tagged(self, **tags: str) -> list[Exchange]:
        return [e for e in self.exchanges if all(e.tags.get(k) == v for k, v in tags.items())]


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def run_workload(emulator: Emulator, clock: ManualClock, console: Console, size: DemoSize) -> Recorded:
    """Send the pipeline's traffic through the SDK and record it; the emulator's clock stands in for the day."""
    recorded = Recorded()
    client = wrap(emulator.client(max_retries=2), sink=recorded)
    steps: list[tuple[str, dict[str, str], list[dict[str, Any]], float]] = [
        ("Ticket triage (Opus 4.8)", {"task": "ticket_triage"},
         workloads.triage_requests(size.triage, seed=1, model=TRIAGE_MODEL), 20.0),
        ("Thread summaries, no cache breakpoint", {"task": "thread_summary", "variant": "no_cache"},
         workloads.summary_requests(size.summaries, seed=2, model=SUMMARY_MODEL, cache=False), 45.0),
        ("Thread summaries, cache breakpoint", {"task": "thread_summary", "variant": "cached"},
         workloads.summary_requests(size.summaries, seed=2, model=SUMMARY_MODEL, cache=True), 45.0),
        ("Thread summaries, timestamp in prompt", {"task": "thread_summary", "variant": "stamped"},
         workloads.summary_requests(size.stamped, seed=3, model=SUMMARY_MODEL, cache=True, stamp=True), 45.0),
    ]
    jobs = workloads.overnight_batch(size.overnight, seed=4, model=SUMMARY_MODEL)
    with _progress(console) as progress:
        for label, tags, requests, gap_s in steps:
            bar = progress.add_task(label, total=len(requests))
            with tagged(**tags):
                for body in requests:
                    client.messages.create(**body)
                    clock.advance(gap_s)
                    progress.advance(bar)
        bar = progress.add_task("Overnight job via Message Batches", total=len(jobs))
        with tagged(task="overnight_job"):
            batch = client.messages.batches.create(requests=jobs)
            while batch.processing_status != "ended":
                clock.advance(600)
                batch = client.messages.batches.retrieve(batch.id)
            for _ in client.messages.batches.results(batch.id):
                progress.advance(bar)
    flush(client)
    return recorded


@dataclass
class Bill:
    """Exact cost by model and category, with the token counters behind it (from the usage fields)."""

    by_model: dict[str, tuple[CostBreakdown, int]]
    total: CostBreakdown
    tokens: dict[str, int]

    @property
    def cache_hit_ratio(self) -> float | None:
        t = self.tokens
        prompt = t["input"] + t["cache_write_5m"] + t["cache_write_1h"] + t["cache_read"]
        return None if prompt == 0 else t["cache_read"] / prompt


def bill(exchanges: list[Exchange], pricer: Pricer | None = None) -> Bill:
    """Price recorded Exchanges with the audit's exact accumulator (one way to price many requests)."""
    pricer = pricer or Pricer()
    acc = CostAcc()
    for exchange in exchanges:
        usage = exchange.usage
        if usage is None:
            continue
        counts = usage_counts(usage)
        model = exchange.model_served or exchange.model_requested or ""
        key = pricer.key(model, usage, counts, batch=exchange.batch, at=exchange.started_at)
        acc.add(key, 1, *counts)
    by_model = {str(m): v for m, v in pricer.grouped(acc, lambda k: k.model).items()}
    return Bill(by_model=by_model, total=pricer.breakdown(acc), tokens=acc.tokens())


def _usd(amount: Decimal) -> str:
    return format_usd(amount, 4)


def print_bill(console: Console, title: str, the_bill: Bill) -> None:
    """Categories down, models across: input is billed apart from output, cache tiers apart from each other."""
    table = Table(title=f"{title} {SIMULATED}", title_justify="left")
    table.add_column("cost category")
    models = sorted(the_bill.by_model, key=lambda m: the_bill.by_model[m][0].total, reverse=True)
    for model in models:
        table.add_column(model, justify="right")
    table.add_column("all models", justify="right")
    columns = [the_bill.by_model[m] for m in models] + [(the_bill.total, sum(n for _, n in the_bill.by_model.values()))]
    table.add_row("requests", *[f"{n:,}" for _, n in columns])
    for label, attr in (("input", "input"), ("5-minute cache writes", "cache_write_5m"),
                        ("1-hour cache writes", "cache_write_1h"), ("cache reads", "cache_read"),
                        ("output", "output"), ("batch discount", "batch_discount")):
        table.add_row(label, *[_usd(getattr(c, attr)) for c, _ in columns])
    table.add_row("[bold]total[/]", *[f"[bold]{_usd(c.total)}[/]" for c, _ in columns])
    console.print(table)
    tokens = the_bill.tokens
    ratio = the_bill.cache_hit_ratio
    console.print(
        f"Tokens {SIMULATED}: input {tokens['input']:,} · 5m writes {tokens['cache_write_5m']:,} · "
        f"1h writes {tokens['cache_write_1h']:,} · cache reads {tokens['cache_read']:,} · output {tokens['output']:,}.\n"
        f"Cache hit ratio, read from the usage fields (cache reads / all prompt tokens): "
        f"[bold]{'n/a' if ratio is None else f'{ratio:.1%}'}[/]"
    )


def print_cache_comparison(console: Console, recorded: Recorded, pricer: Pricer) -> None:
    """The same summaries without and with a breakpoint, and with a timestamp breaking the prefix."""
    table = Table(title=f"Thread summaries, 6,000-token system prompt {SIMULATED}", title_justify="left")
    for name in ("variant", "requests", "cache reads", "cache writes", "hit ratio", "cost"):
        table.add_column(name, justify="right" if name != "variant" else "left")
    for variant, label in (("no_cache", "no breakpoint"), ("cached", "breakpoint on system"),
                           ("stamped", "breakpoint, timestamp in prompt")):
        part = bill(recorded.tagged(variant=variant), pricer)
        t = part.tokens
        ratio = part.cache_hit_ratio
        table.add_row(label, str(sum(n for _, n in part.by_model.values())), f"{t['cache_read']:,}",
                      f"{t['cache_write_5m'] + t['cache_write_1h']:,}",
                      "n/a" if ratio is None else f"{ratio:.1%}", _usd(part.total.total))
    console.print(table)


Stage = Callable[[Console, "DemoContext"], None]


@dataclass
class DemoContext:
    emulator: Emulator
    clock: ManualClock
    recorded: Recorded
    pricer: Pricer
    results: dict[str, Any] = field(default_factory=dict)


def run_demo(console: Console, *, size: DemoSize | None = None, seed: int = 0) -> DemoContext:
    """The whole demo; returns what it measured so tests can check it."""
    started = time.perf_counter()
    size = size or DemoSize()
    clock = ManualClock(START.timestamp())
    emulator = Emulator(clock=clock, seed=seed)
    console.rule("[bold]Parity demo[/] on the built-in Claude API emulator")
    console.print(
        "Every model answer below comes from the emulator's [bold]simulated[/] models, so every number is "
        "simulated; prices are the real price table's."
    )
    console.print("\n[bold]1. A day of a support-ticket pipeline[/], sent through the official anthropic SDK")
    recorded = run_workload(emulator, clock, console, size)
    pricer = Pricer(emulator.table)
    ctx = DemoContext(emulator, clock, recorded, pricer)
    the_bill = bill(recorded.exchanges, pricer)
    ctx.results["bill"] = the_bill
    console.print()
    print_bill(console, "The bill", the_bill)
    print_cache_comparison(console, recorded, pricer)
    ctx.results["seconds"] = time.perf_counter() - started
    console.print(f"\nDemo finished in {ctx.results['seconds']:.1f} s.")
    return ctx
