"""Deterministic generators of realistic Messages API requests: the support-ticket demo and the proof datasets.

Every generator is seeded: the same (n, seed, options) gives byte-identical request bodies, so a demo, a test and
a benchmark all see the same traffic. Items come from parity.emulator.brains.scenarios, which also knows each
item's gold answer; the simulated brain reads the answer back out of the text, so nothing hidden travels in a request.

- `triage_requests`: ticket classification (short system prompt, label set).
- `summary_requests`: thread summaries under a ~6,000-token policy manual, with or without a cache breakpoint on
  the system block, optionally with a per-request timestamp at the top that silently breaks the cached prefix.
- `overnight_batch`: a job list nobody waits on, in the Message Batches API `requests` shape.
- `dataset`: proof items (id, group, request, gold, reference) for any scenario.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from collections.abc import Collection
from random import Random
from typing import Any

from parity.emulator.brains import scenarios
from parity.emulator.brains.scenarios.base import Item
from parity.emulator.brains.scenarios.invoice_extraction import INVOICE_SCHEMA
from parity.errors import InputError
from parity.proof.data import ProofItem, TaskData

DEFAULT_MODEL = "claude-opus-4-8"
SCENARIO_NAMES: tuple[str, ...] = tuple(scenarios.SCENARIOS)
_DEMO_STREAM = "demos"  # demonstrations are drawn from their own stream, never from the items they precede
_EPOCH = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)


@dataclass(frozen=True)
class TaskItem:
    """One proof item: the request to send, how to group it for splits, and its gold answer."""

    id: str
    scenario: str
    group: str  # customer, vendor or template: split by this, never by row (proof-science §3.6)
    request: dict[str, Any]
    gold: Any
    reference: str  # the gold written as an ideal answer (for demonstrations and reference-guided judging)
    difficulty: float


def items(
    scenario: str, n: int, seed: int = 0, *, stream: str = "items", exclude: Collection[str] = ()
) -> list[Item]:
    """`n` generated items of `scenario`, none whose key (e.g. "T-12345") is in `exclude`.

    Streams (e.g. "demos") and seeds draw independently, so two of them can meet on an item by chance; pass the
    keys already used as `exclude` when items must be new (the next day's traffic, after a proof saw today's).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    source = scenarios.get(scenario)
    rng = Random(f"parity-workloads/{scenario}/{stream}/{seed}")
    out: list[Item] = []
    seen: set[str] = set()
    while len(out) < n:
        item = source.generate(rng, len(out))
        if item.key in seen or item.key in exclude:
            continue
        seen.add(item.key)
        out.append(item)
    return out


def demo_turns(scenario: str, k: int, seed: int = 0) -> list[dict[str, Any]]:
    """`k` worked examples as alternating user/assistant turns (gold answers), to put before a request's messages."""
    source = scenarios.get(scenario)
    turns: list[dict[str, Any]] = []
    for item in items(scenario, k, seed, stream=_DEMO_STREAM):
        turns.append({"role": "user", "content": item.text})
        turns.append({"role": "assistant", "content": source.reference(item.gold)})
    return turns


def request_for(
    item: Item,
    *,
    model: str = DEFAULT_MODEL,
    clear: bool = False,
    demos: list[dict[str, Any]] | None = None,
    cache: bool = False,
    structured: bool = False,
    stamp: datetime | None = None,
) -> dict[str, Any]:
    """The Messages API body a team would send for `item`.

    `clear`: the scenario's clear instruction instead of the plain one. `demos`: leading example turns.
    `cache`: a cache breakpoint on the system block. `structured`: JSON-schema output (invoice extraction only).
    `stamp`: a "Current time" line at the top of the system prompt, which changes every request.
    """
    source = scenarios.get(item.scenario)
    system = source.system_prompt(clear=clear)
    if stamp is not None:
        system = f"Current time: {stamp.strftime('%Y-%m-%dT%H:%M:%SZ')}\n{system}"
    block: dict[str, Any] = {"type": "text", "text": system}
    if cache:
        block["cache_control"] = {"type": "ephemeral"}
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": source.max_tokens,
        "system": [block],
        "messages": [*copy.deepcopy(demos or []), {"role": "user", "content": item.text}],
        "metadata": {"user_id": _user_id(item.group)},
    }
    if structured:
        if item.scenario != "invoice_extraction":
            raise ValueError(f"structured output is defined for invoice_extraction only, not {item.scenario!r}")
        body["output_config"] = {"format": {"type": "json_schema", "schema": copy.deepcopy(INVOICE_SCHEMA)}}
    return body


def _user_id(group: str) -> str:
    return "cust-" + "".join(c for c in group.lower().replace(" ", "-") if c.isalnum() or c == "-")


def triage_requests(
    n: int,
    seed: int = 0,
    model: str = DEFAULT_MODEL,
    *,
    clear: bool = False,
    demos: int = 0,
    exclude: Collection[str] = (),
) -> list[dict[str, Any]]:
    """Ticket-classification requests of the demo pipeline (no ticket whose id is in `exclude`)."""
    turns = demo_turns("ticket_triage", demos, seed) if demos else None
    chosen = items("ticket_triage", n, seed, exclude=exclude)
    return [request_for(i, model=model, clear=clear, demos=turns) for i in chosen]


def summary_requests(
    n: int,
    seed: int = 0,
    model: str = DEFAULT_MODEL,
    cache: bool = False,
    *,
    stamp: bool = False,
    exclude: Collection[str] = (),
) -> list[dict[str, Any]]:
    """Thread-summary requests under the ~6,000-token policy manual (no thread whose id is in `exclude`).

    `cache=True` puts a breakpoint on the system block (reads after the first request); `stamp=True` adds a
    per-request timestamp above the manual, the classic silent cache breaker the audit should point at.
    """
    out = []
    for index, item in enumerate(items("thread_summary", n, seed, exclude=exclude)):
        when = _EPOCH + timedelta(seconds=37 * index) if stamp else None
        out.append(request_for(item, model=model, cache=cache, stamp=when))
    return out


def overnight_batch(n: int, seed: int = 0, model: str = DEFAULT_MODEL) -> list[dict[str, Any]]:
    """The nightly job list (re-summarise closed threads, classify the backlog) as Batch API request entries."""
    half = (n + 1) // 2
    jobs = [("summary", r) for r in summary_requests(half, seed, model, cache=True)]
    jobs += [("triage", r) for r in triage_requests(n - half, seed + 1, model)]
    return [{"custom_id": f"{kind}-{i:05d}", "params": params} for i, (kind, params) in enumerate(jobs)]


def dataset(
    scenario: str,
    n: int,
    seed: int = 0,
    *,
    model: str = DEFAULT_MODEL,
    clear: bool = False,
    demos: int = 0,
    structured: bool = False,
    cache: bool = False,
) -> list[TaskItem]:
    """`n` proof items of `scenario` with their gold answers (every scenario here has one)."""
    source = scenarios.get(scenario)
    turns = demo_turns(scenario, demos, seed) if demos else None
    out = []
    for item in items(scenario, n, seed):
        request = request_for(item, model=model, clear=clear, demos=turns, cache=cache, structured=structured)
        out.append(
            TaskItem(
                f"{scenario}-{seed}-{item.key}",
                scenario,
                item.group,
                request,
                item.gold,
                source.reference(item.gold),
                item.difficulty,
            )
        )
    return out


def load_emulator_family(family: str, n: int, *, seed: int = 0, baseline_model: str, task: str | None = None) -> TaskData:
    """Generated prompts of a simulated scenario as a task for `parity prove`, with gold answers and no baseline
    outputs yet (the emulator answers those)."""
    if family not in SCENARIO_NAMES:
        raise InputError(f"unknown emulator family {family!r}; use one of {', '.join(SCENARIO_NAMES)}",
                         field="emulator-family")
    items = [
        ProofItem(id=t.id, group=t.group, request=t.request, gold=t.gold, reference=t.reference,
                  stratum=f"difficulty {t.difficulty:g}")
        for t in dataset(family, n, seed, model=baseline_model)
    ]
    return TaskData(task or family, tuple(items), f"emulator:{family}:n={n}:seed={seed}", simulated=True)
