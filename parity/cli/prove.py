"""`parity prove`: tune a cheaper model's prompt, prove it non-inferior on the team's own prompts, write the
certificate (and the routing policy when it passes). `parity verify` (parity/cli/verify.py) re-checks it.

Exit codes of `parity prove`: 0 a candidate was proven and routed (switch); 1 the proof ran but nothing was
proven (do not switch, or inconclusive: keep the baseline); 2 nothing was decided: bad input or a setup error
(no API key, an unreachable or failing API, an unknown model; the one-line message says what to do), so a
script never reads a crash as a refusal; 130 interrupted (rerun the same command to resume from the run
directory; nothing paid for is lost).
"""

from __future__ import annotations

import os
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Optional

import anthropic
import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from parity.cli.base import app, console, err_console
from parity.errors import InputError, ParityError
from parity.proof.data import SPLIT_BYS, TaskData, load_jsonl, load_ledger
from parity.emulator.workloads import load_emulator_family
from parity.proof.runner import SCORINGS, Event, ProveConfig, prove
from parity.pricing import format_usd
from parity.report.certificate_html import proof_payback
from parity.report.tables import fit

VERDICT_STYLE = {"switch": "bold green", "do_not_switch": "bold red", "inconclusive": "bold yellow"}


def _budget(text: str | None) -> Decimal | None:
    if text is None:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise InputError(f"--budget-usd must be a number of dollars, got {text!r}", field="budget-usd") from None
    if value <= 0:
        raise InputError("--budget-usd must be positive", field="budget-usd")
    return value


def _load(task: str, data: Path | None, ledger: str | None, family: str | None, n: int, seed: int,
          baseline: str, fingerprint: str | None) -> TaskData:
    given = [x for x in (data, ledger, family) if x is not None]
    if len(given) != 1:
        raise InputError("give exactly one source of prompts: --data FILE, --ledger URL or --emulator-family FAMILY")
    if fingerprint is not None and family is not None:
        raise InputError("--fingerprint selects rows of a log; it does not apply to --emulator-family",
                         field="fingerprint")
    if data is not None:
        return load_jsonl(data, task=task, fingerprint=fingerprint)
    if ledger is not None:
        return load_ledger(ledger, task=task, fingerprint=fingerprint)
    return load_emulator_family(str(family), n, seed=seed, baseline_model=baseline, task=task)


def _client(use_emulator: bool, brain: str | None, seed: int) -> Any:
    """The emulator's in-process client, or the real API's; without a key the real API is a setup error."""
    if use_emulator:
        from parity.cli.emulate import make_brain
        from parity.emulator.service import Emulator

        emulator = Emulator(brain=make_brain(brain, seed) if brain else None, seed=seed)
        emulator.batches.processing_s = "instant"
        return emulator.client()
    if not (os.environ.get("ANTHROPIC_API_KEY") or os.environ.get("ANTHROPIC_AUTH_TOKEN")):
        raise InputError("no API key: set ANTHROPIC_API_KEY to prove against the real API, or pass --emulator to "
                         "run on the local emulator (no key, no cost)", field="ANTHROPIC_API_KEY")
    return anthropic.Anthropic()


def _setup_error(exc: Exception) -> str | None:
    """One line saying what to do about an API failure that stopped the proof; None if `exc` is not one."""
    resume = "; rerun the same command to resume (nothing paid for is lost)"
    if isinstance(exc, anthropic.APIConnectionError):
        where = os.environ.get("ANTHROPIC_BASE_URL") or "https://api.anthropic.com"
        return f"cannot reach the API at {where} ({exc}); check the network or ANTHROPIC_BASE_URL{resume}"
    if isinstance(exc, anthropic.AuthenticationError):
        return "the API refused the key (401): check ANTHROPIC_API_KEY"
    if isinstance(exc, anthropic.PermissionDeniedError):
        return f"the key may not do this (403): {_api_message(exc)}"
    if isinstance(exc, anthropic.NotFoundError):
        return f"the API does not know this model or endpoint (404): {_api_message(exc)}; check --baseline, " \
               "--candidate and --judge against `parity models`"
    if isinstance(exc, anthropic.APIStatusError):
        return f"the API failed with {exc.status_code} after retries: {_api_message(exc)}{resume}"
    return None


def _api_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error") if isinstance(body.get("error"), dict) else body
        if inner.get("message"):
            return str(inner["message"])
    return str(exc)


@app.command("prove")
def prove_command(
    task: str = typer.Option(..., "--task", help="The task's name (its tag in the logs; its key in the policy)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Exchange JSONL with the task's prompts and the baseline's outputs."),
    ledger: Optional[str] = typer.Option(None, "--ledger", help="Ledger URL (sqlite:///... or postgresql://...)."),
    emulator_family: Optional[str] = typer.Option(None, "--emulator-family", help="Simulated prompts of a task family, answered by the in-process emulator."),
    n: int = typer.Option(400, "--n", help="Prompts to generate with --emulator-family."),
    baseline: str = typer.Option(..., "--baseline", help="The model the task runs on today."),
    candidate: list[str] = typer.Option(..., "--candidate", help="A cheaper model to prove (repeat for several; α is split between them)."),
    margin: float = typer.Option(0.05, "--margin", help="Non-inferiority margin δ."),
    alpha: float = typer.Option(0.05, "--alpha", help="Chance of a wrong switch, at most."),
    n_max: int = typer.Option(400, "--n-max", help="Most test prompts to judge before giving up (inconclusive: keep the baseline)."),
    judge: Optional[str] = typer.Option(None, "--judge", help="Judge model (default: the baseline; never a candidate)."),
    budget_usd: Optional[str] = typer.Option(None, "--budget-usd", help="Never spend more than this on the proof."),
    sync: bool = typer.Option(False, "--sync", help="Synchronous calls instead of Message Batches (full price, no waiting)."),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Where calls are cached; rerun with the same directory to resume."),
    policy: Optional[Path] = typer.Option(None, "--policy", help="Policy file to add a route to when a candidate passes."),
    html: Optional[Path] = typer.Option(None, "--html", help="Also write the certificate as an HTML page."),
    scoring: str = typer.Option("auto", "--scoring", help=f"How prompts are scored: {', '.join(SCORINGS)}."),
    reference_guided: bool = typer.Option(False, "--reference-guided", help="Show the judge the gold answer."),
    split_by: str = typer.Option("auto", "--split-by", help="group (conversation/customer/template), time, or auto (group when the groups allow it, else time). Never by row."),
    seed: int = typer.Option(0, "--seed", help="Seed for the splits, the test order and the optimiser."),
    no_optimize: bool = typer.Option(False, "--no-optimize", help="Test the candidate on the team's prompt as it is."),
    monthly_requests: Optional[int] = typer.Option(None, "--monthly-requests", help="Requests per month, for the projected saving."),
    emulator: bool = typer.Option(False, "--emulator", help="Send calls to the in-process emulator (implied by --emulator-family and --brain)."),
    brain: Optional[str] = typer.Option(None, "--brain", help="The emulator's brain: 'simulated' (default) or 'replay:PATH' (recorded answers of the candidate)."),
    fingerprint: Optional[str] = typer.Option(None, "--fingerprint", help="Also take the log's untagged rows of this template fingerprint (fp_..., from `parity audit`) as the task."),
) -> None:
    """Tune the candidate's prompt, then test on held-out prompts that it is as good as the baseline.

    Exit 0 on a switch, 1 when nothing was proven (keep the baseline), 2 on bad input, 130 when interrupted.
    """
    directory: Path | None = run_dir
    try:
        if split_by not in SPLIT_BYS:
            raise InputError(f"unknown split {split_by!r}; use one of {', '.join(SPLIT_BYS)}", field="split-by")
        config = ProveConfig(
            task=task, baseline_model=baseline, candidate_models=tuple(candidate), judge_model=judge,
            margin=margin, alpha=alpha, n_max=n_max, budget_usd=_budget(budget_usd), sync=sync, scoring=scoring,
            reference_guided=reference_guided, split_by=split_by, seed=seed, optimize=not no_optimize,
            monthly_requests=monthly_requests,
        )
        directory = run_dir or Path(".parity") / "runs" / f"{task}-{config.digest()}"
        use_emulator = emulator or emulator_family is not None or brain is not None
        with _progress() as bar:
            loading = bar.add_task("reading the prompts", stage="data", total=None)
            task_data = _load(task, data, ledger, emulator_family, n, seed, baseline, fingerprint)
            bar.update(loading, description=escape(f"{len(task_data.items)} prompts from {task_data.source}"))
            client = _client(use_emulator, brain, seed)
            if task_data.selection is not None:
                console.print(_selection_line(task_data.selection), highlight=False)
            outcome = prove(config, task_data, client, run_dir=directory, progress=_rows(bar, {"data": loading}),
                            policy_path=policy, html_path=html, exact_token_counts=not use_emulator,
                            simulated=use_emulator)
    except ParityError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True, highlight=False)
        raise typer.Exit(2) from None
    except Exception as exc:  # an API failure is a setup error, never a verdict
        message = _setup_error(exc)
        if message is None:
            raise
        err_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True, highlight=False)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted.[/] Everything paid for so far is kept; run the same command again "
                          f"to resume{f' (--run-dir {directory})' if directory else ''}.", highlight=False)
        raise typer.Exit(130) from None
    _print_outcome(outcome, directory)
    if outcome.certificate["decision"]["verdict"] != "switch":
        raise typer.Exit(1)


def _selection_line(selection: Any) -> str:
    """How many rows of the source were taken as the task, by what, and how many were left out."""
    by = ", ".join(f"{n} by {how}" for how, n in selection["by"].items()) or "none"
    return (f"task {selection['task']}: {selection['taken']} rows taken ({by}); {selection['left_out']} rows of "
            "other or no task left out")


def _progress() -> Progress:
    """One row per stage (data, baseline, optimise, test, calls, policy), updated as the run goes."""
    return Progress(SpinnerColumn(), TextColumn("[bold]{task.fields[stage]:<9}[/]"), TextColumn("{task.description}"),
                    BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console, transient=False)


def _rows(bar: Progress, rows: dict[str, Any]):
    def on_event(event: Event) -> None:
        stage = event.stage
        if stage not in rows:
            for row in rows.values():  # a stage with no count of its own is done once the next one starts
                if bar.tasks[row].total is None:
                    bar.update(row, total=1, completed=1)
            rows[stage] = bar.add_task(escape(event.message[:90]), stage=stage, total=event.total)
        bar.update(rows[stage], description=escape(event.message[:90]), total=event.total,
                   completed=event.done if event.done is not None else None)

    return on_event


def _print_outcome(outcome: Any, directory: Path) -> None:
    cert = outcome.certificate
    table = Table(title=f"parity prove: {cert['task']}" + (" (simulated)" if cert.get("simulated") else ""))
    for col in ("candidate", "verdict", "stopped by", "n used", "estimate", "lower bound", "threshold", "cost/request"):
        table.add_column(col, justify="right" if col not in ("candidate", "verdict", "stopped by") else "left")
    for cand in cert["candidates"]:
        result = cand.get("result") or {}
        style = VERDICT_STYLE.get(cand["verdict"], "")
        table.add_row(cand["model"], f"[{style}]{cand['verdict']}[/]", cand["stopped_by"], str(cand["n_used"]),
                      _fmt(result.get("estimate")), _fmt(result.get("lower_bound")), _fmt(result.get("threshold")),
                      format_usd(cand.get("cost_per_request")))
    console.print(fit(table, console))
    decision = cert["decision"]
    console.print(f"[{VERDICT_STYLE.get(decision['verdict'], '')}]{escape(decision['summary'])}[/]")
    for warning in cert.get("warnings", []):
        console.print(f"[yellow]warning:[/] {escape(warning)}")
    cost = cert["cost"]
    net = cost.get("net_candidate_per_request")
    routing = (f" ({format_usd(net)} with fallbacks at {float(cost['fallback_rate'] or 0):.1%} and the drift "
               f"watch's {float(cost['shadow_rate']):.0%} sample)") if net is not None else ""
    console.print(f"baseline {format_usd(cost['baseline_per_request'])}/request → after "
                  f"{format_usd(cost['candidate_per_request'])}/request{routing}; projected monthly saving "
                  f"{format_usd(cost['projected_monthly_saving'])}; this proof cost {format_usd(cost['proof']['spent'])}"
                  f" ({outcome.network_calls} calls sent)")
    console.print(proof_payback(cost))
    console.print(f"certificate {cert['id']}: {outcome.certificate_path}")
    if outcome.html_path:
        console.print(f"HTML: {outcome.html_path}")
    if outcome.policy_entry is not None:
        console.print(f"policy entry: route {cert['task']} → {outcome.policy_entry.candidate_model}")
    console.print(f"[dim]resume or re-run with --run-dir {directory}[/]")


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.3f}"
