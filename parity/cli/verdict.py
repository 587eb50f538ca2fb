"""`parity verdict`: the sequential non-inferiority test alone, for teams that already have both models' results.

The file is read as a stream in file order, one JSON object per line. Every line is checked before any
statistics run: a proof must never silently drop data, so a bad line stops the command (exit 2) naming the
file, the line and the field.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import typer
from rich.markup import escape
from rich.table import Table

from parity.cli.base import app, console, err_console
from parity.errors import InputError
from parity.proof.sequential import METHODS, MODES, SequentialResult, run_sequential
from parity.report.tables import fit

_FIELDS = {
    "paired-gold": ("baseline_correct", "candidate_correct"),
    "score": ("score",),
    "agreement": ("agree",),
}


def _flag(value: Any, path: str, line: int, name: str) -> int:
    """A correctness/agreement flag: JSON true/false (0 and 1 are accepted as the same)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and value in (0, 1):
        return value
    raise InputError(f"expected true or false, got {json.dumps(value)}", file=path, line=line, field=name)


def _score(value: Any, path: str, line: int) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"expected a number in [0, 1], got {json.dumps(value)}", file=path, line=line, field="score")
    if not 0.0 <= value <= 1.0:
        raise InputError(f"score {value:g} is outside [0, 1]", file=path, line=line, field="score")
    return float(value)


def read_observations(path: Path, mode: str) -> np.ndarray:
    """The file's observations in order, on the mode's scale (D = candidate − baseline for paired-gold).

    Blank lines are skipped; extra keys (ids, notes) are allowed; anything else wrong is an InputError.
    """
    if mode not in _FIELDS:
        raise InputError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}", field="mode")
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("file not found; pass the path of a JSONL file of pairs", file=name) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read it as UTF-8 text ({exc})", file=name) from None
    values: list[float] = []
    for line_no, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InputError(f"not valid JSON ({exc.msg} at column {exc.colno})", file=name, line=line_no) from None
        if not isinstance(obj, dict):
            raise InputError("expected a JSON object per line", file=name, line=line_no)
        for key in _FIELDS[mode]:
            if key not in obj:
                raise InputError(
                    f"missing; {mode} mode needs {' and '.join(_FIELDS[mode])} on every line",
                    file=name, line=line_no, field=key,
                )
        if mode == "paired-gold":
            cand = _flag(obj["candidate_correct"], name, line_no, "candidate_correct")
            base = _flag(obj["baseline_correct"], name, line_no, "baseline_correct")
            values.append(float(cand - base))
        elif mode == "agreement":
            values.append(float(_flag(obj["agree"], name, line_no, "agree")))
        else:
            values.append(_score(obj["score"], name, line_no))
    if not values:
        raise InputError("no observations: the file has no non-blank lines", file=name)
    return np.array(values)


def _fmt_e(value: float) -> str:
    return "∞" if math.isinf(value) else f"{value:.4g}"


def render_summary(result: SequentialResult, source: str, observations: int) -> Table:
    """A short table a person can read at a glance; the JSON holds the rest."""
    p = result.params
    colour = {"switch": "green", "do_not_switch": "red", "inconclusive": "yellow"}[result.verdict]
    scale = "mean D (candidate − baseline accuracy)" if p.mode == "paired-gold" else (
        "agreement rate" if p.mode == "agreement" else "mean score vs baseline"
    )
    table = Table(title=f"parity verdict · {source}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("verdict", f"[bold {colour}]{result.verdict}[/]")
    table.add_row("stopped by", result.stopped_by)
    budget = f", n_max {p.n_max}" if p.n_max is not None else ""
    table.add_row("n used", f"{result.n_used} of {observations} lines{budget}")
    table.add_row("null hypothesis", p.hypothesis.statement)
    if p.pool_size is None:
        table.add_row("about", "the population these lines are a random sample of (new prompts drawn alike)")
    else:
        table.add_row("about", f"[yellow]only the fixed pool of {p.pool_size} items (--finite-pool); not new "
                               "prompts, so it cannot back a route[/]")
    table.add_row("estimate", f"{result.estimate:.4f}  ({scale})")
    table.add_row(
        f"{100 * (1 - p.efficacy_alpha):g}% lower bound",
        f"{result.lower_bound:.4f}  (threshold {result.threshold:g}; empirical-Bernstein, for display)",
    )
    table.add_row("e-value (switch)", f"{_fmt_e(result.e_value)}  (needs ≥ {1 / p.efficacy_alpha:g})")
    if p.futility:
        table.add_row("e-value (futility)", f"{_fmt_e(result.futility_e_value)}  (needs ≥ {1 / p.futility_alpha:g})")
    table.add_row("method", f"{p.method}, α = {p.alpha:g}, margin = {p.margin:g}")
    if result.verdict == "switch" and result.lower_bound <= result.threshold:
        table.caption = (
            "The e-process decides; the displayed bound is valid at every n but wider, so it can trail the verdict."
        )
        table.caption_justify = "left"
    return table


@app.command("verdict")
def verdict_command(
    pairs: Path = typer.Argument(..., help="JSONL, one observation per line, read in file order."),
    mode: str = typer.Option(
        "paired-gold",
        "--mode",
        help="paired-gold: {baseline_correct, candidate_correct}; score: {score} in [0,1]; agreement: {agree}.",
    ),
    margin: float = typer.Option(
        0.05,
        "--margin",
        help="δ. paired-gold: accuracy points the candidate may lose; score: H0 mean ≤ ½ − δ; "
        "agreement: H0 rate ≤ 1 − δ.",
    ),
    alpha: float = typer.Option(0.05, "--alpha", help="Type-I error: chance of switching to a worse candidate."),
    n_max: int | None = typer.Option(None, "--n-max", help="Budget: stop inconclusive (keep baseline) here."),
    method: str = typer.Option("agrapa", "--method", help="Betting strategy: agrapa or grid."),
    futility: bool = typer.Option(True, "--futility/--no-futility", help="Stop early when clearly inferior."),
    pool_size: int | None = typer.Option(
        None, "--finite-pool", help="Opt-in: prove something about THESE N items only (the lines are drawn from "
        "a fixed pool of N without replacement). The default tests the population the lines are a sample of "
        "(future traffic); a finite-pool verdict says nothing about new prompts and never backs a route."
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Write the full result (with trajectory) here."),
) -> None:
    """Decide switch / do_not_switch / inconclusive from paired results, valid however often you look."""
    try:
        if mode not in MODES:
            raise InputError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}", field="--mode")
        if method not in METHODS:
            raise InputError(f"unknown method {method!r}; use one of {', '.join(METHODS)}", field="--method")
        xs = read_observations(pairs, mode)
        result = run_sequential(
            xs, mode=mode, margin=margin, alpha=alpha, n_max=n_max, method=method, futility=futility,
            pool_size=pool_size,
        )
    except InputError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True, highlight=False)
        raise typer.Exit(2) from None
    console.print(fit(render_summary(result, str(pairs), int(xs.size)), console))
    if json_out is not None:
        payload = {"source": str(pairs), "observations": int(xs.size), **result.to_dict()}
        json_out.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        console.print(f"wrote {json_out}")
