"""`parity prove` and `parity verify`: tune a cheaper model's prompt, prove it non-inferior on the team's own
prompts, write the certificate (and the routing policy when it passes); re-check a certificate offline.

Exit codes of `parity prove`: 0 a candidate was proven and routed (switch); 1 the proof ran but nothing was
proven (do not switch, or inconclusive: keep the baseline); 2 bad input (the message says what and where);
130 interrupted (rerun the same command to resume from the run directory; nothing paid for is lost).
`parity verify`: 0 verified, 1 the evidence does not give the stored verdict, 2 not a readable certificate.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from parity.cli.app import app, console, err_console
from parity.errors import InputError, ParityError
from parity.proof import certificate as certs
from parity.proof.data import SPLIT_BYS, TaskData, load_emulator_family, load_jsonl, load_ledger
from parity.proof.runner import SCORINGS, Event, ProveConfig, prove

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
          baseline: str) -> TaskData:
    given = [x for x in (data, ledger, family) if x is not None]
    if len(given) != 1:
        raise InputError("give exactly one source of prompts: --data FILE, --ledger URL or --emulator-family FAMILY")
    if data is not None:
        return load_jsonl(data, task=task)
    if ledger is not None:
        return load_ledger(ledger, task=task)
    return load_emulator_family(str(family), n, seed=seed, baseline_model=baseline, task=task)


def _client(use_emulator: bool, seed: int) -> Any:
    if use_emulator:
        from parity.emulator.service import Emulator

        emulator = Emulator(seed=seed)
        emulator.batches.processing_s = "instant"
        return emulator.client()
    import anthropic

    return anthropic.Anthropic()


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
    emulator: bool = typer.Option(False, "--emulator", help="Send calls to the in-process emulator (implied by --emulator-family)."),
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
        with _progress() as bar:
            loading = bar.add_task("reading the prompts", stage="data", total=None)
            task_data = _load(task, data, ledger, emulator_family, n, seed, baseline)
            bar.update(loading, description=escape(f"{len(task_data.items)} prompts from {task_data.source}"))
            client = _client(emulator or emulator_family is not None, seed)
            outcome = prove(config, task_data, client, run_dir=directory, progress=_rows(bar, {"data": loading}),
                            policy_path=policy, html_path=html)
    except ParityError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True, highlight=False)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted.[/] Everything paid for so far is kept; run the same command again "
                          f"to resume{f' (--run-dir {directory})' if directory else ''}.", highlight=False)
        raise typer.Exit(130) from None
    _print_outcome(outcome, directory)
    if outcome.certificate["decision"]["verdict"] != "switch":
        raise typer.Exit(1)


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
                      certs._money(cand.get("cost_per_request")))
    console.print(table)
    decision = cert["decision"]
    console.print(f"[{VERDICT_STYLE.get(decision['verdict'], '')}]{escape(decision['summary'])}[/]")
    for warning in cert.get("warnings", []):
        console.print(f"[yellow]warning:[/] {escape(warning)}")
    cost = cert["cost"]
    console.print(f"baseline {certs._money(cost['baseline_per_request'])}/request → after "
                  f"{certs._money(cost['candidate_per_request'])}/request; projected monthly saving "
                  f"{certs._money(cost['projected_monthly_saving'])}; this proof cost {certs._money(cost['proof']['spent'])}"
                  f" ({outcome.network_calls} calls sent)")
    console.print(f"certificate {cert['id']}: {outcome.certificate_path}")
    if outcome.html_path:
        console.print(f"HTML: {outcome.html_path}")
    if outcome.policy_entry is not None:
        console.print(f"policy entry: route {cert['task']} → {outcome.policy_entry.candidate_model}")
    console.print(f"[dim]resume or re-run with --run-dir {directory}[/]")


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.3f}"


@app.command("verify")
def verify_command(path: Path = typer.Argument(..., help="certificate.json written by `parity prove`.")) -> None:
    """Recompute a certificate's verdict from its stored scores, offline; exit 1 if it does not hold."""
    try:
        result = certs.verify(path)
    except ParityError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True, highlight=False)
        raise typer.Exit(2) from None
    table = Table(title=f"parity verify: {result.certificate_id}")
    for col in ("candidate", "stored", "recomputed", "n stored", "n recomputed", "estimate"):
        table.add_column(col)
    for check in result.candidates:
        table.add_row(check.model, check.stored_verdict, check.recomputed_verdict, str(check.stored_n),
                      str(check.recomputed_n), _fmt(check.estimate))
    console.print(table)
    for problem in result.problems:
        console.print(f"[red]problem:[/] {escape(problem)}")
    if result.ok:
        console.print(f"[bold green]verified[/]: the stored evidence gives the same verdict ({result.verdict})")
        return
    console.print(f"[bold red]not verified[/]: {len(result.problems)} problem(s)")
    raise typer.Exit(1)
