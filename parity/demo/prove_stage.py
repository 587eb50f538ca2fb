"""Demo stage 3: `parity prove` on two of the day's tasks, from the recorded prompts and the baseline's answers.

Ticket triage (the audit's right-size hypothesis) and refund arithmetic (the next biggest Opus spend) are each
tested against Claude Haiku 4.5 with a prompt tuned for it; the judge is the baseline's model class. A candidate
that passes becomes a routing policy entry; one that does not is refused, which is the point of proving before
routing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from parity.demo.bill import usd
from parity.demo.pipeline import SIMULATED, Recorded, progress_bar
from parity.emulator.service import Emulator
from parity.policy import Policy, TaskPolicy, save_policy
from parity.proof.data import items_from_exchanges
from parity.proof.runner import Event, ProveConfig, ProveOutcome, prove
from parity.report.certificate_html import proof_payback
from parity.report.tables import fit

CANDIDATE = "claude-haiku-4-5"
CANDIDATES = {"ticket_triage": (CANDIDATE,), "refund_calc": (CANDIDATE,)}
"""What each task is tested against. More candidates split α between them (Bonferroni), which at this volume and
margin leaves each too little power: on the emulator, Sonnet 5.5 tested beside Haiku 4.5 on the refunds ends
inconclusive after all 74 test prompts, and Haiku is refused either way."""
VERDICT_STYLE = {"switch": "bold green", "do_not_switch": "bold red", "inconclusive": "bold yellow"}


@dataclass
class Proofs:
    """Each task's proof outcome, and the policy the switched ones make."""

    outcomes: dict[str, ProveOutcome]
    policy: Policy
    policy_path: Path


def _on_event(progress: Progress, bar: int):
    def update(event: Event) -> None:
        progress.update(bar, description=escape(f"{event.stage}: {event.message}"[:70]),
                        total=event.total, completed=event.done if event.done is not None else None)
    return update


def prove_tasks(emulator: Emulator, recorded: Recorded, console: Console, out: Path, baselines: dict[str, str],
                *, n_max: int = 300, days_per_month: int = 30) -> Proofs:
    """Prove each task on its recorded traffic (Message Batches on the emulator's clock) and write the policy."""
    outcomes: dict[str, ProveOutcome] = {}
    tasks: dict[str, TaskPolicy] = {}
    with progress_bar(console) as progress:
        for task in CANDIDATES:
            rows = [(n, e) for n, e in enumerate(recorded.exchanges, 1) if e.task == task]
            if not rows:
                continue
            # The log came from the emulator: the certificate must say it is simulated (its page and `verify` do).
            data = replace(items_from_exchanges(rows, task=task, source="demo-log"), simulated=True)
            # No gold answers in the log: the baseline-class judge rules on each pair of answers (`--scoring judge`);
            # the label set read from the baseline's answers still becomes the routed task's output contract.
            config = ProveConfig(task=task, baseline_model=baselines[task], candidate_models=CANDIDATES[task],
                                 n_max=n_max, scoring="judge", monthly_requests=len(rows) * days_per_month)
            bar = progress.add_task(f"prove {task}", total=None)
            outcome = prove(config, data, emulator.client(max_retries=2), run_dir=out / "runs" / task,
                            progress=_on_event(progress, bar), html_path=out / f"certificate-{task}.html",
                            sleep=emulator.clock.advance, table=emulator.table)
            progress.update(bar, description=f"prove {task}: {outcome.certificate['decision']['verdict']}")
            outcomes[task] = outcome
            if outcome.policy_entry is not None:
                tasks[task] = outcome.policy_entry
    policy = Policy(tasks)
    policy_path = out / "policy.json"
    save_policy(policy, policy_path)
    return Proofs(outcomes, policy, policy_path)


def _money(value: object) -> str:
    return "n/a" if value is None else usd(Decimal(str(value)))


def print_proofs(console: Console, proofs: Proofs) -> None:
    table = Table(title=f"parity prove: cheaper models with tuned prompts vs the baseline {SIMULATED}",
                  title_justify="left")
    for name in ("task", "candidate", "verdict", "stopped by", "n", "estimate", "lower bound", "$/request now",
                 "routed", "saving/month", "proof cost"):
        table.add_column(name, justify="left" if name in ("task", "candidate", "verdict", "stopped by") else "right")
    for task, outcome in proofs.outcomes.items():
        cert = outcome.certificate
        cost = cert["cost"]
        for cand in cert["candidates"]:
            result = cand.get("result") or {}
            verdict = cand["verdict"]
            chosen = cand["model"] == cert["decision"]["candidate"]
            table.add_row(task, cand["model"], f"[{VERDICT_STYLE.get(verdict, '')}]{verdict}[/]", cand["stopped_by"],
                          str(cand["n_used"]), _fmt(result.get("estimate")), _fmt(result.get("lower_bound")),
                          _money(cost.get("baseline_per_request")),
                          _money(cand.get("cost_per_request")) if chosen else "—",
                          _money(cost.get("projected_monthly_saving")) if chosen else "—",
                          _money(cost["proof"]["spent"]))
    console.print(fit(table, console))
    for task, outcome in proofs.outcomes.items():
        console.print(f"  {task}: {escape(outcome.certificate['decision']['summary'])}")
        console.print(f"    {escape(proof_payback(outcome.certificate['cost']))}")
        if outcome.html_path is not None:
            console.print(f"    certificate: {outcome.certificate_path} · {outcome.html_path}")
    routed = ", ".join(f"{t} → {p.candidate_model}" for t, p in proofs.policy.tasks.items()) or "nothing"
    console.print(f"Policy for the gateway ({proofs.policy_path}): route {routed}.")


def _fmt(value: object) -> str:
    return "n/a" if value is None else f"{float(value):.3f}"  # type: ignore[arg-type]
