"""`parity audit` (where the money goes, what each lever saves) and `parity cache-diff` (can B read A's cache)."""

from __future__ import annotations

import importlib.util
import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape
from rich.panel import Panel
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from parity.cli.app import app, console, err_console
from parity.errors import InputError
from parity.pricing import PriceTable, format_usd

LEVER_NAMES = {"cost": "Cost", "tokens": "Tokens", "cache": "Cache", "batch": "Batch", "rightsize": "Right-size"}


@app.command("audit")
def audit(
    paths: list[str] = typer.Argument(..., help="Exchange JSONL files, OTLP JSON files, or ledger URLs."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the report as JSON (docs/audit-json.md)."),
    html_out: Optional[Path] = typer.Option(None, "--html", help="Write a self-contained HTML report with plots."),
    fmt: str = typer.Option("auto", "--format", help="auto, jsonl, otlp (OpenTelemetry GenAI spans) or ledger."),
    prices: Optional[list[Path]] = typer.Option(None, "--prices", help="Extra price table TOML file(s)."),
    workers: Optional[int] = typer.Option(None, help="Processes for large JSONL files (default: up to 2)."),
    top: int = typer.Option(10, help="Rows shown per table."),
    max_families: int = typer.Option(2000, help="Template families tracked; later ones share '(other)'."),
    max_malformed: int = typer.Option(10_000, help="Malformed lines listed (all are counted); 0 = no limit."),
    candidate_model: Optional[str] = typer.Option(None, help="Cheaper model to price right-size candidates at."),
    night_hours: str = typer.Option("0-6", help="UTC hours counted as night for batch detection, e.g. 22-6."),
    recount: int = typer.Option(0, help="Recount this many sampled requests' tokens and compare with logged usage."),
    base_url: Optional[str] = typer.Option(None, help="API base URL for --recount (count_tokens); else an estimate."),
    api_key: Optional[str] = typer.Option(None, envvar="ANTHROPIC_API_KEY", help="API key for --recount."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No terminal report (write --json/--html only)."),
) -> None:
    """Audit Claude API logs: exact spend, cache breaks (the block and offset), batchable traffic, right-size
    candidates, and the savings of each lever, stacked."""
    from parity.audit.batch import NightPolicy
    from parity.audit.run import AuditOptions, audit_paths

    table = PriceTable.load([str(p) for p in prices]) if prices else None
    options = AuditOptions(max_families=max_families, max_malformed=max_malformed, top=top,
                           night=_night(night_hours), candidate_model=candidate_model, recount=recount)
    counter = None
    if recount and (base_url or api_key):
        from parity.tokens import TokenCounter

        counter = TokenCounter(base_url=base_url, api_key=api_key)
    started = time.perf_counter()
    with Progress(TextColumn("[bold]auditing[/]"), BarColumn(), DownloadColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=err_console, transient=True, disable=quiet) as progress:
        task = progress.add_task("audit", total=None)

        def report_progress(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total or None)

        report = audit_paths(paths, fmt=fmt, options=options, table=table, workers=workers,
                             progress=report_progress, counter=counter)
    elapsed = time.perf_counter() - started
    data = report.to_json()
    if json_out is not None:
        report.write_json(json_out)
    if html_out is not None:
        if importlib.util.find_spec("parity.report.audit_html") is None:
            raise InputError("the HTML report (parity.report.audit_html) is not installed", field="--html")
        from parity.report.audit_html import write_audit_html

        write_audit_html(data, html_out)
    if not quiet:
        render(data, top=top, elapsed=elapsed)
        for label, path in (("JSON", json_out), ("HTML", html_out)):
            if path is not None:
                console.print(f"{label} report written to {path}")


def _night(spec: str) -> Any:
    from parity.audit.batch import NightPolicy

    try:
        start, end = (int(x) for x in spec.split("-", 1))
        if not (0 <= start <= 23 and 0 <= end <= 24):
            raise ValueError
    except ValueError:
        raise InputError(f"expected two UTC hours like 0-6 or 22-6, got {spec!r}", field="--night-hours") from None
    return NightPolicy(start_hour=start, end_hour=end)


# --- the terminal report -------------------------------------------------------------------------------------


def _usd(value: Any) -> str:
    return format_usd(Decimal(str(value)))


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%"


def render(data: dict[str, Any], *, top: int = 10, elapsed: float | None = None) -> None:
    """Print the audit report (the JSON document) as Rich tables."""
    totals = data["totals"]
    period = data.get("period") or {}
    sources = ", ".join(f"{i['file']} ({i['records']:,} records)" for i in data["inputs"])
    head = (f"[bold]{_usd(totals['cost_usd'])}[/] over {totals['requests']:,} priced requests"
            f"  ·  {period.get('first') or '?'} → {period.get('last') or '?'}\n{escape(sources)}")
    if totals["malformed"] or totals["errors"]:
        head += (f"\n[yellow]{totals['malformed']:,} malformed or unpriced line(s) skipped[/]"
                 f"  ·  {totals['errors']:,} error responses (not billed)")
    if elapsed is not None:
        head += f"\n[dim]audited in {elapsed:.1f} s[/]"
    console.print(Panel(head, title="parity audit", expand=False))

    split = Table(title="Spend: input vs output", title_justify="left")
    for col in ("", "tokens", "cost", "share"):
        split.add_column(col, justify="right" if col else "left")
    tokens, breakdown, whole = totals["tokens"], totals["breakdown"], Decimal(totals["cost_usd"]) or Decimal(1)
    split.add_row("[bold]input side[/]", f"{sum(v for k, v in tokens.items() if k != 'output'):,}",
                  _usd(totals["input_cost_usd"]), _pct(float(Decimal(totals["input_cost_usd"]) / whole)))
    for name in ("input", "cache_write_5m", "cache_write_1h", "cache_read"):
        split.add_row(f"  {name}", f"{tokens[name]:,}", _usd(breakdown[name]), "")
    split.add_row("[bold]output[/]", f"{tokens['output']:,}", _usd(totals["output_cost_usd"]),
                  _pct(float(Decimal(totals["output_cost_usd"]) / whole)))
    if Decimal(breakdown["batch_discount"]):
        split.add_row("  batch discount (in the lines above)", "", _usd(breakdown["batch_discount"]), "")
    console.print(split)

    models = Table(title="By model", title_justify="left")
    for col in ("model", "requests", "input", "output", "total"):
        models.add_column(col, justify="left" if col == "model" else "right")
    for row in data["by_model"][:top]:
        b = row["breakdown"]
        inp = sum(Decimal(b[k]) for k in ("input", "cache_write_5m", "cache_write_1h", "cache_read"))
        models.add_row(row["model"], f"{row['requests']:,}", _usd(inp), _usd(b["output"]), _usd(row["cost_usd"]))
    console.print(models)

    fams = Table(title="Top templates by spend", title_justify="left")
    for col in ("family", "template", "requests", "cost", "share", "output share"):
        fams.add_column(col, justify="left" if col in ("family", "template") else "right", overflow="fold")
    for row in data["top_templates"][:top]:
        fams.add_row(row["family"], escape(row["label"]), f"{row['requests']:,}", _usd(row["cost_usd"]),
                     _pct(row["share"]), _pct(row["output_share"]))
    console.print(fams)

    if len(data["by_day"]) > 1:
        days = Table(title="By day", title_justify="left")
        for col in ("day", "requests", "cost"):
            days.add_column(col, justify="left" if col == "day" else "right")
        for row in data["by_day"][-14:]:
            days.add_row(row["day"], f"{row['requests']:,}", _usd(row["cost_usd"]))
        console.print(days)

    cache = Table(title="Cache, per family", title_justify="left")
    for col in ("family", "requests", "hit ratio", "written", "read", "missed", "breakpoint", "TTL", "causes"):
        cache.add_column(col, justify="left" if col in ("family", "breakpoint", "causes", "TTL") else "right",
                         overflow="fold")
    for row in data["cache"]["families"][:top]:
        bp = row["breakpoint"]
        ttl = row.get("ttl") or {}
        cache.add_row(row["family"], f"{row['requests']:,}", _pct(row["hit_ratio"]), f"{row['written_tokens']:,}",
                      f"{row['read_tokens']:,}", f"{row['missed_tokens']:,}",
                      bp.get("path") or f"none (→ {bp.get('suggested_path')})",
                      f"{ttl.get('current', '')} → {ttl.get('recommended', '')}",
                      ", ".join(row["causes"]) or "[green]healthy[/]")
    console.print(cache)

    findings = [f for f in data["findings"] if f["lever"] in ("cache", "tokens")]
    if findings:
        console.print("[bold]Cache findings[/]")
        for f in findings[: top * 2]:
            where = f["block_path"] or ""
            if f["offset"] is not None:
                where += f" offset {f['offset']}"
            lines = ", ".join(map(str, f["example_lines"]))
            console.print(f"  [bold]{f['cause']}[/] in [cyan]{escape(f['family'])}[/] at [magenta]{escape(where)}[/]"
                          f" (lines {lines}; {f['requests']:,} requests, saving {_usd(f['saving_usd'])})")
            console.print(f"    [dim]{escape(f['fix'])}[/]")

    if data["batch"]["families"]:
        bt = Table(title="Batch: traffic nobody waits on", title_justify="left")
        for col in ("family", "requests", "why", "cost now", "at 50%", "saving"):
            bt.add_column(col, justify="left" if col in ("family", "why") else "right")
        for row in data["batch"]["families"][:top]:
            bt.add_row(row["family"], f"{row['requests']:,}", ", ".join(f"{k} {v}" for k, v in row["reasons"].items()),
                       _usd(row["cost_now_usd"]), _usd(row["cost_batched_usd"]), _usd(row["saving_usd"]))
        console.print(bt)

    if data["rightsize"]["candidates"]:
        rt = Table(title="Right-size candidates (hypotheses until `parity prove` passes)", title_justify="left")
        for col in ("family", "model", "try", "why", "cost", "if proven", "saving"):
            rt.add_column(col, justify="left" if col in ("family", "model", "try", "why") else "right",
                          overflow="fold")
        for row in data["rightsize"]["candidates"][:top]:
            rt.add_row(row["family"], row["model"], row["candidate_model"], "; ".join(row["reasons"]),
                       _usd(row["cost_usd"]), _usd(row["cost_if_proven_usd"]), _usd(row["saving_if_proven_usd"]))
        console.print(rt)

    savings = data["savings"]
    stacked = savings["stacked"]
    wf = Table(title="Savings, stacked (each lever on what the previous left)", title_justify="left")
    for col in ("step", "saving", "spend after", "alone, on today's bill"):
        wf.add_column(col, justify="left" if col == "step" else "right")
    alone = {lv["lever"]: lv for lv in savings["levers"]}
    wf.add_row("spend now", "", _usd(stacked["cost_before_usd"]), "")
    for step in stacked["steps"]:
        name = LEVER_NAMES[step["lever"]] + (" [yellow](hypothesis)[/]" if step["hypothesis"] else "")
        wf.add_row(name, "-" + _usd(step["saving_usd"]), _usd(step["cost_after_usd"]),
                   _usd(alone[step["lever"]]["saving_usd"]))
    console.print(wf)
    console.print(f"  proven levers: [bold]{_usd(stacked['saving_usd'])}[/] saved, "
                  f"[bold]{stacked['blended_saving_pct']:.1f}%[/] blended; with right-size hypotheses: "
                  f"{_usd(stacked['with_hypotheses']['saving_usd'])} ({stacked['with_hypotheses']['blended_saving_pct']:.1f}%)")
    console.print("  [dim]assumptions:[/]")
    for text in savings["assumptions"]:
        console.print(f"  [dim]- {escape(text)}[/]")

    if data["malformed"]:
        console.print(f"[yellow]Skipped {totals['malformed']:,} line(s):[/]")
        for m in data["malformed"][:top]:
            console.print(f"  {escape(m['file'])}:{m['line']}: {escape(m['reason'])}")
        if totals["malformed"] > top:
            console.print(f"  … {totals['malformed'] - top:,} more in the JSON report")


# --- cache-diff -----------------------------------------------------------------------------------------------


@app.command("cache-diff")
def cache_diff_command(
    a: Path = typer.Argument(..., help="Request body A (JSON; an Exchange record's request is used too)."),
    b: Path = typer.Argument(..., help="Request body B, sent after A."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the diagnosis as JSON."),
) -> None:
    """Could request B read the prompt cache request A wrote? If not: the block, the offset and the cause."""
    from parity.audit.cache import cache_diff

    result = cache_diff(_load_request(a), _load_request(b))
    if json_out is not None:
        json_out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if result["breaks_cache"]:
        where = result["block_path"] or ""
        if result["offset"] is not None:
            where += f" offset {result['offset']}"
        console.print(f"[bold red]B breaks the cache[/] from the [bold]{result['invalidated_from']}[/] level at "
                      f"[magenta]{escape(where)}[/]: {result['cause'] or 'unclassified change'}"
                      + (f" ({escape(result['example'])})" if result.get("example") else ""))
        if result.get("fix"):
            console.print(f"  fix: {escape(result['fix'])}")
    else:
        console.print(f"[bold green]B can reuse A's cached prefix[/] (about {result['reusable_tokens']:,} tokens, "
                      "estimated)")
    for warning in result["warnings"]:
        console.print(f"  [yellow]{warning['cause']}[/]: {escape(warning['message'])}")
    if json_out is not None:
        console.print(f"JSON written to {json_out}")


def _load_request(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", file=str(path)) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})", file=str(path),
                         line=exc.lineno) from None
    if isinstance(data, dict) and "messages" not in data and isinstance(data.get("request"), dict):
        data = data["request"]  # an Exchange record
    if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
        raise InputError("expected a Messages API request body (an object with 'messages')", file=str(path))
    return data
