"""`prove_task`: one call that proves one task and hands back its headline numbers (the demo, notebooks).

Everything else stays in the certificate `parity.proof.runner.prove` writes; this only chooses demo-sized
defaults. `parity.emulator.prove.prove_scenario` runs it on generated prompts and a fresh in-process emulator.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.markup import escape

from parity.policy import TaskPolicy
from parity.pricing import PriceTable
from parity.proof.data import TaskData
from parity.proof.records import ProveConfig
from parity.proof.runner import Event, ProgressFn, ProveOutcome, prove


@dataclass(frozen=True)
class TaskProof:
    """The headline of one task's proof: what was decided, on how much evidence, and what it costs and saves.

    Money is Decimal USD. `proof_cost_usd` is what the proof itself spent (at batch prices unless `sync`);
    `proof_cost_sync_usd` is what the same calls cost at standard prices. The per-request costs are at standard
    prices on the test prompts, before (baseline) and after (the chosen candidate with its tuned prompt).
    """

    task: str
    verdict: str
    candidate: str | None
    stopped_by: str
    n_used: int
    estimate: float | None
    lower_bound: float | None
    threshold: float | None
    proof_cost_usd: Decimal
    proof_cost_sync_usd: Decimal | None
    cost_per_request_before: Decimal | None
    cost_per_request_after: Decimal | None
    """The candidate's own answer with its tuned prompt (what the test measured)."""
    net_cost_per_request_after: Decimal | None
    """What routing really costs per request: the answer, the fallbacks the test saw, the drift watch's share."""
    projected_monthly_saving: Decimal | None
    policy_entry: TaskPolicy | None
    certificate_id: str
    certificate_path: Path
    html_path: Path | None
    simulated: bool
    outcome: ProveOutcome



def _dec_or_none(value: Any) -> Decimal | None:
    return None if value in (None, "") else Decimal(str(value))


def prove_task(
    task: str,
    *,
    data: TaskData,
    client: Any,
    run_dir: str | Path,
    baseline: str = "claude-opus-4-8",
    candidates: Sequence[str] = ("claude-haiku-4-5",),
    n_max: int = 150,
    margin: float = 0.1,
    alpha: float = 0.05,
    seed: int = 0,
    max_prompt_candidates: int = 8,
    budget_usd: Decimal | None = None,
    sync: bool = False,
    monthly_requests: int | None = None,
    progress: ProgressFn | Any = None,
    policy_path: str | Path | None = None,
    html_path: str | Path | None = None,
    sleep: Callable[[float], None] | None = None,
    table: PriceTable | None = None,
    simulated: bool = False,
) -> TaskProof:
    """Prove one task and return its headline numbers; the whole record stays in the certificate.

    Prompts come from `data` (e.g. `items_from_exchanges` over a recorded log); calls go to `client` (an
    `anthropic.Anthropic`); `sleep` is how batch polling waits. `progress` is a callback taking an `Event`, or a
    `rich.progress.Progress`, which gets one row for this task. On the emulator,
    `parity.emulator.prove.prove_scenario` generates the prompts and builds the client. With the defaults, 300
    prompts (150 of them sealed for the test), at most 150 test prompts, δ = 0.10 and 8 prompt candidates take
    two to four seconds per task on the emulator. Smaller tasks often end inconclusive: the test is about future
    traffic, so a few dozen prompts rarely rule out a loss of δ.
    """
    simulated = simulated or data.simulated
    config = ProveConfig(task=task, baseline_model=baseline, candidate_models=tuple(candidates), margin=margin,
                         alpha=alpha, n_max=n_max, budget_usd=budget_usd, sync=sync, seed=seed,
                         max_prompt_candidates=max_prompt_candidates, monthly_requests=monthly_requests)
    outcome = prove(config, data, client, run_dir=run_dir, progress=_progress_fn(progress, task),
                    policy_path=policy_path, html_path=html_path, sleep=sleep, table=table, simulated=simulated)
    cert = outcome.certificate
    chosen = outcome.chosen
    shown = chosen or (outcome.candidates[0] if outcome.candidates else None)
    result = (shown.result or {}) if shown is not None else {}
    cost = cert["cost"]
    return TaskProof(
        task=task, verdict=cert["decision"]["verdict"], candidate=chosen.model if chosen else None,
        stopped_by=shown.stopped_by if shown else "budget", n_used=shown.n_used if shown else 0,
        estimate=result.get("estimate"), lower_bound=result.get("lower_bound"), threshold=result.get("threshold"),
        proof_cost_usd=outcome.spent, proof_cost_sync_usd=_dec_or_none(cost["proof_at_standard_prices"]),
        cost_per_request_before=_dec_or_none(cost["baseline_per_request"]),
        cost_per_request_after=_dec_or_none(shown.cost_per_request if shown else None),
        net_cost_per_request_after=_dec_or_none(cost.get("net_candidate_per_request")),
        projected_monthly_saving=_dec_or_none(cost["projected_monthly_saving"]),
        policy_entry=outcome.policy_entry, certificate_id=cert["id"], certificate_path=outcome.certificate_path,
        html_path=outcome.html_path, simulated=bool(cert.get("simulated")), outcome=outcome,
    )


def _progress_fn(progress: ProgressFn | Any, task: str) -> ProgressFn | None:
    """A callback as is; a rich Progress as one row ("prove <task>: <stage>: <message>") that it keeps current."""
    if progress is None or callable(progress) and not hasattr(progress, "add_task"):
        return progress
    row = progress.add_task(f"prove {task}", total=None)

    def update(event: Event) -> None:
        progress.update(row, description=escape(f"prove {task}: {event.stage}: {event.message}"[:80]),
                        total=event.total, completed=event.done if event.done is not None else None)

    return update


__all__ = ["TaskProof", "prove_task"]
