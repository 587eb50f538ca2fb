"""What the demo prints about day 2: the bills before and after, and per family the lever, the audit's estimate
next to the saving realised in the usage fields, and what keeps the cut from going further.

The realised saving of a family is its day-2 traffic sent direct minus everything the gateway paid for it
(rejected candidate answers, fallbacks and the drift sample included), both read from the usage fields. The
audit's estimate is its day-1 saving for that family and lever, scaled to day 2's requests. `parity savings`
reads the same comparison from the ledger alone, where no twin run exists.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from parity.demo.bill import Bill, usd
from parity.demo.gateway_stage import NextDay, saved
from parity.demo.pipeline import SIMULATED
from parity.audit.realised import estimates_from_report, scaled_estimate
from parity.ledger.reader import LedgerRow
from parity.policy import CACHE_FIX_TAG, Policy, TaskPolicy
from parity.report.tables import fit

TARGET_CUT = 0.60
"""The cut the demo aims at on day 2 (issue: at least 60% off against the same traffic sent direct)."""
LEVER_NAMES = {"rightsize": "right-size", "cache": "cache", "batch": "batch", "none": "none"}


@dataclass(frozen=True)
class FamilyLine:
    """One family's day 2: the lever acted on, the audit's estimate for it, the realised saving, what happened."""

    family: str
    lever: str
    estimate: Decimal | None
    before: Decimal
    after: Decimal
    happened: str
    left: str | None = None
    """What keeps this family's saving below what it could be, when something does."""

    @property
    def realised(self) -> Decimal:
        return self.before - self.after


def family_lines(day: NextDay, policy: Policy, audit: Mapping[str, Any], day1_requests: Mapping[str, int],
                 outcomes: Mapping[str, Any]) -> list[FamilyLine]:
    """Per day-2 family: the lever, the audit's estimate scaled to day 2's requests, before/after, and notes."""
    estimates = estimates_from_report(audit)
    rows_of: dict[str, list[LedgerRow]] = {}
    for row in day.rows:
        rows_of.setdefault(row.exchange.tags.get("task") or "", []).append(row)
    lines = []
    for family, before in sorted(day.before_by_family.items(), key=lambda kv: -kv[1].total.total):
        after = day.after_by_family.get(family)
        lever, happened, left = _what_happened(rows_of.get(family, []), policy.tasks.get(family),
                                               outcomes.get(family), before, day1_requests.get(family, 0))
        lines.append(FamilyLine(family, lever, scaled_estimate(estimates.get((family, lever)), before.requests),
                                before.total.total, after.total.total if after else Decimal(0), happened, left))
    return lines


def _what_happened(rows: list[LedgerRow], task: TaskPolicy | None, outcome: Any, before: Bill,
                   day1_requests: int) -> tuple[str, str, str | None]:
    """(lever, what the gateway did, what keeps the saving down) for one family's day-2 rows."""
    routes = Counter(r.route or "passthrough" for r in rows if r.answered_client)
    if routes["deferred"]:
        return "batch", f"{routes['deferred']} deferred into one Message Batch (50% off)", None
    if task is not None and task.mode == "route":
        shadows = sum(1 for r in rows if r.route == "shadow")
        demos = outcome.certificate["cost"].get("demonstrations_per_request") if outcome is not None else None
        left = None
        if demos is not None and Decimal(demos) > 0:
            left = (f"the tuned prompt's demonstrations add ${Decimal(demos):.6f} to each routed request "
                    f"(${Decimal(demos) * routes['routed']:.4f} today); the bare prompt was less likely to "
                    "pass the test")
        return ("rightsize", f"{routes['routed']} routed to {task.candidate_model}, {routes['fallback']} fell back, "
                f"{shadows} drift-sample calls", left)
    if task is not None and task.cache_plan is not None:
        fixed = sum(1 for r in rows if r.exchange.tags.get(CACHE_FIX_TAG))
        return "cache", f"{', '.join(task.cache_plan.fixes)} applied to {fixed} requests", None
    if task is not None and task.proposals:
        proposed = sum((Decimal(p.estimated_saving_usd) for p in task.proposals), Decimal(0))
        per_day = scaled_estimate((proposed, day1_requests), before.requests) or proposed
        return ("cache", "left as sent: the fix changes the prompt",
                f"not applied: the plan proposes a prompt change ({', '.join(p.cause for p in task.proposals)}; "
                f"about {usd(per_day)} a day), and a prompt change is never applied silently: make it "
                "in code, or prove it with `parity prove`")
    if outcome is not None and outcome.certificate["decision"]["verdict"] != "switch":
        tried = ", ".join(c["model"] for c in outcome.certificate["candidates"])
        return ("none", "stays on its baseline", f"refused: no candidate ({tried}) proved as good, so "
                f"{usd(before.total.total)} a day stays at the baseline's price")
    return "none", "passthrough", None


def print_next_day(console: Console, day: NextDay, lines: list[FamilyLine]) -> None:
    table = Table(title=f"Day 2 (new prompts), direct vs through parity serve, per family {SIMULATED}",
                  title_justify="left")
    for name in ("family", "lever", "requests", "direct", "gateway", "realised", "audit estimate", "what happened"):
        table.add_column(name, justify="left" if name in ("family", "lever", "what happened") else "right")
    for line in lines:
        table.add_row(line.family, LEVER_NAMES.get(line.lever, line.lever),
                      f"{day.before_by_family[line.family].requests:,}", usd(line.before), usd(line.after),
                      usd(line.realised), "—" if line.estimate is None else usd(line.estimate), line.happened)
    cut, share = saved(day)
    table.add_row("[bold]all[/]", "", f"{day.before.requests:,}", f"[bold]{usd(day.before.total.total)}[/]",
                  f"[bold]{usd(day.after.total.total)}[/]", f"[bold]{usd(cut)}[/]",
                  usd(sum((line.estimate for line in lines if line.estimate is not None), Decimal(0))), "")
    console.print(fit(table, console))
    console.print(f"[bold]Day 2's bill: {usd(day.before.total.total)} direct → {usd(day.after.total.total)} through the "
                  f"gateway, {share:.1%} off[/] {SIMULATED}, everything the gateway paid included (rejected "
                  f"candidate answers, {day.routes.get('fallback', 0)} fallbacks, the drift sample). Every routed "
                  "task stands on a verified certificate.")
    reasons = ", ".join(f"{r} {n}" for r, n in day.fallbacks.most_common()) or "none"
    console.print(f"Requests by route: {', '.join(f'{k} {n}' for k, n in sorted(day.routes.items()))}; fallbacks by "
                  f"reason: {reasons}.")
    left = [line for line in lines if line.left]
    if share < TARGET_CUT and left:
        console.print(f"Short of the {TARGET_CUT:.0%} target; what limits it:")
    elif left:
        console.print("Still on the table:")
    for line in left:
        console.print(f"  {line.family}: {escape(line.left or '')}")
    for task, st in day.drift.items():
        seg = st["current_segment"]
        mean = "n/a" if seg["mean_score"] is None else f"{seg['mean_score']:.2f}"
        console.print(
            f"Drift watch on {task}: {st['judged']} of {st['observed']} routed answers ({st['rate']:.0%} sampled) "
            f"were also answered by {st['baseline_model']} and judged {SIMULATED}; mean score {mean}, futility "
            f"e-value {seg['futility_e_value']:.2f} (the task rolls back to its baseline by itself at "
            f"{1 / st['alpha']:.0f}): {st['state'].replace('_', ' ')}.")
