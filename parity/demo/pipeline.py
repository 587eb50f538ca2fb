"""The demo's traffic: a day of a support-ticket pipeline, sent through the official SDK and recorded.

The workload goes through the `anthropic` SDK pointed at the in-process emulator and is recorded with
`parity.wrap`, exactly as a team would record its own traffic; the emulator's manual clock stands in for the day.
Each day draws its own tickets, refund problems and threads (`DAY_SEEDS`), and day 2 never repeats one day 1 sent:
the proofs learn and test on day 1, so the gateway on day 2 meets prompts neither the optimiser nor the test saw.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from parity.emulator import workloads
from parity.emulator.clock import ManualClock
from parity.exchange import Exchange
from parity.task import TASK_HEADER
from parity.wrap import flush, tagged, wrap

SIMULATED = "[bold magenta](simulated)[/]"
TRIAGE_MODEL = "claude-opus-4-8"
REFUND_MODEL = "claude-opus-4-8"
SUMMARY_MODEL = "claude-sonnet-4-6"
START = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)
SIMULATED_NOTE = (
    "[bold]Simulated:[/] every model answer, judge verdict and bill here comes from the local emulator: its simulated "
    "Opus, Sonnet and Haiku models and a simulated judge answer generated traffic (support tickets, refund "
    "arithmetic, support threads). No API key was used and nothing left this machine; only the prices are real "
    "(the public price table)."
)
# Which part of the pipeline draws from which item family, and each day's seed for it (the backlog runs on day 1).
PARTS = {"triage": "ticket_triage", "refunds": "math_reasoning", "summaries": "thread_summary",
         "stamped": "thread_summary", "backlog": "ticket_triage"}
DAY_SEEDS = {1: {"triage": 1, "refunds": 5, "summaries": 2, "stamped": 3, "backlog": 6},
             2: {"triage": 11, "refunds": 15, "summaries": 12, "stamped": 13, "backlog": 16}}


@dataclass
class DemoSize:
    """How much traffic each part of the pipeline sends in a day."""

    triage: int = 300
    refunds: int = 150
    summaries: int = 12
    stamped: int = 6
    overnight: int = 40
    backlog: int = 40


@dataclass
class Recorded:
    """The Exchanges a wrapped client wrote, kept in memory in arrival order."""

    exchanges: list[Exchange] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, exchange: Exchange) -> None:
        with self._lock:
            self.exchanges.append(exchange)

    def tagged(self, **tags: str) -> list[Exchange]:
        return [e for e in self.exchanges if all(e.tags.get(k) == v for k, v in tags.items())]


@dataclass(frozen=True)
class Step:
    """One part of the pipeline: a label for the progress bar, its tags, its requests, the gap between them."""

    label: str
    tags: dict[str, str]
    requests: list[dict[str, Any]]
    gap_s: float


def progress_bar(console: Console) -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def sent_before(size: DemoSize, day: int) -> frozenset[str]:
    """The keys of every ticket, problem and thread the synchronous traffic of the days before `day` sent."""
    keys: set[str] = set()
    for earlier in range(1, day):
        skip = sent_before(size, earlier)
        for part, seed in DAY_SEEDS[earlier].items():
            keys.update(item.key for item in workloads.items(PARTS[part], getattr(size, part), seed, exclude=skip))
    return frozenset(keys)


def interactive_steps(size: DemoSize, day: int = 1) -> list[Step]:
    """The requests somebody waits on: triage, refund arithmetic, and thread summaries three ways.

    Each `day` has its own seeds and skips every item an earlier day sent, so day 2 is new traffic, not a replay.
    """
    seeds, skip = DAY_SEEDS[day], sent_before(size, day)
    refunds = [workloads.request_for(item, model=REFUND_MODEL)
               for item in workloads.items("math_reasoning", size.refunds, seeds["refunds"], exclude=skip)]
    return [
        Step("Ticket triage (Opus 4.8)", {"task": "ticket_triage"},
             workloads.triage_requests(size.triage, seeds["triage"], TRIAGE_MODEL, exclude=skip), 20.0),
        Step("Refund arithmetic (Opus 4.8)", {"task": "refund_calc"}, refunds, 30.0),
        Step("Thread summaries, no cache breakpoint", {"task": "thread_summary", "variant": "no_cache"},
             workloads.summary_requests(size.summaries, seeds["summaries"], SUMMARY_MODEL, cache=False,
                                        exclude=skip), 45.0),
        Step("Thread summaries, cache breakpoint", {"task": "thread_summary", "variant": "cached"},
             workloads.summary_requests(size.summaries, seeds["summaries"], SUMMARY_MODEL, cache=True,
                                        exclude=skip), 45.0),
        Step("Daily digests, timestamp in prompt", {"task": "thread_digest", "variant": "stamped"},
             workloads.summary_requests(size.stamped, seeds["stamped"], SUMMARY_MODEL, cache=True, stamp=True,
                                        exclude=skip), 45.0),
    ]


def night_steps(size: DemoSize, day: int = 1) -> list[Step]:
    """Work nobody waits on that is still sent synchronously: the backlog re-classified at 02:00 (new tickets
    each day)."""
    skip = sent_before(size, day)
    return [Step("Backlog re-classification at 02:00", {"task": "backlog_reclassify", "job": "nightly-backlog"},
                 workloads.triage_requests(size.backlog, DAY_SEEDS[day]["backlog"], SUMMARY_MODEL, exclude=skip),
                 5.0)]


def send_steps(client: Any, steps: list[Step], clock: ManualClock, progress: Progress, *,
               label: str | None = None, name_tasks: bool = False) -> None:
    """Send each step's requests in order, advancing the emulator's clock between them: a progress bar per step,
    or one for them all under `label`. `name_tasks`: each request names its task in the `x-parity-task` header,
    as a team's code does for the gateway (the wrapped client of day 1 tags its log instead)."""
    one = progress.add_task(label, total=sum(len(s.requests) for s in steps)) if label else None
    for step in steps:
        bar = one if one is not None else progress.add_task(step.label, total=len(step.requests))
        headers = {TASK_HEADER: step.tags["task"]} if name_tasks else None
        with tagged(**step.tags):
            for body in step.requests:
                client.messages.create(**body, extra_headers=headers)
                clock.advance(step.gap_s)
                progress.advance(bar)


def _next_2am(now: float) -> float:
    day = datetime.fromtimestamp(now, timezone.utc).replace(hour=2, minute=0, second=0, microsecond=0)
    return (day if day.timestamp() > now else day + timedelta(days=1)).timestamp()


def run_workload(client: Any, clock: ManualClock, console: Console, size: DemoSize) -> Recorded:
    """A day of the pipeline through `client` (the SDK on the emulator), recorded with `parity.wrap`."""
    recorded = Recorded()
    wrapped = wrap(client, sink=recorded, clock=clock.now)
    jobs = workloads.overnight_batch(size.overnight, seed=4, model=SUMMARY_MODEL)
    with progress_bar(console) as progress:
        send_steps(wrapped, interactive_steps(size), clock, progress)
        bar = progress.add_task("Overnight job via Message Batches", total=len(jobs))
        with tagged(task="overnight_job"):
            batch = wrapped.messages.batches.create(requests=jobs)
            while batch.processing_status != "ended":
                clock.advance(600)
                batch = wrapped.messages.batches.retrieve(batch.id)
            for _ in wrapped.messages.batches.results(batch.id):
                progress.advance(bar)
        clock.advance(max(0.0, _next_2am(clock.now()) - clock.now()))
        send_steps(wrapped, night_steps(size), clock, progress)
    flush(wrapped)
    return recorded
