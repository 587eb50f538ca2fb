"""The audit in a terminal: the full Rich report `parity audit` prints, and a compact summary for the demo.

Both read the JSON document (`AuditReport.data`), so what a terminal shows is exactly what `--json` holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from parity.report.tables import fit
from parity.pricing import format_usd

__all__ = ["LEVER_NAMES", "print_audit", "render_report", "render_sources"]

LEVER_NAMES = {"cost": "Cost", "tokens": "Tokens", "cache": "Cache", "batch": "Batch", "rightsize": "Right-size"}


# --- the full report -------------------------------------------------------------------------------------


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%"


def render_report(data: Mapping[str, Any], console: Console | None = None, *, top: int = 10,
                  elapsed: float | None = None) -> None:
    """Print the whole audit report (the JSON document) as Rich tables: what `parity audit` shows."""
    console = console or Console()
    totals = data["totals"]
    period = data.get("period") or {}
    sources = ", ".join(f"{i['file']} ({i['records']:,} records)" for i in data["inputs"])
    head = (f"[bold]{format_usd(totals['cost_usd'])}[/] over {totals['requests']:,} priced requests"
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
                  format_usd(totals["input_cost_usd"]), _pct(float(Decimal(totals["input_cost_usd"]) / whole)))
    for name in ("input", "cache_write_5m", "cache_write_1h", "cache_read"):
        split.add_row(f"  {name}", f"{tokens[name]:,}", format_usd(breakdown[name]), "")
    split.add_row("[bold]output[/]", f"{tokens['output']:,}", format_usd(totals["output_cost_usd"]),
                  _pct(float(Decimal(totals["output_cost_usd"]) / whole)))
    if Decimal(breakdown["batch_discount"]):
        split.add_row("  batch discount (in the lines above)", "", format_usd(breakdown["batch_discount"]), "")
    console.print(fit(split, console))

    models = Table(title="By model", title_justify="left")
    for col in ("model", "requests", "input", "output", "total"):
        models.add_column(col, justify="left" if col == "model" else "right")
    for row in data["by_model"][:top]:
        b = row["breakdown"]
        inp = sum(Decimal(b[k]) for k in ("input", "cache_write_5m", "cache_write_1h", "cache_read"))
        models.add_row(row["model"], f"{row['requests']:,}", format_usd(inp), format_usd(b["output"]), format_usd(row["cost_usd"]))
    console.print(fit(models, console))

    fams = Table(title="Top templates by spend", title_justify="left")
    for col in ("family", "template", "requests", "cost", "share", "output share"):
        fams.add_column(col, justify="left" if col in ("family", "template") else "right", overflow="fold")
    for row in data["top_templates"][:top]:
        fams.add_row(row["family"], escape(row["label"]), f"{row['requests']:,}", format_usd(row["cost_usd"]),
                     _pct(row["share"]), _pct(row["output_share"]))
    console.print(fit(fams, console))

    if len(data["by_day"]) > 1:
        days = Table(title="By day", title_justify="left")
        for col in ("day", "requests", "cost"):
            days.add_column(col, justify="left" if col == "day" else "right")
        for row in data["by_day"][-14:]:
            days.add_row(row["day"], f"{row['requests']:,}", format_usd(row["cost_usd"]))
        console.print(fit(days, console))

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
    console.print(fit(cache, console))

    findings = [f for f in data["findings"] if f["lever"] in ("cache", "tokens")]
    if findings:
        console.print("[bold]Cache findings[/]")
        for f in findings[: top * 2]:
            where = f["block_path"] or ""
            if f["offset"] is not None:
                where += f" offset {f['offset']}"
            lines = ", ".join(map(str, f["example_lines"]))
            console.print(f"  [bold]{f['cause']}[/] in [cyan]{escape(f['family'])}[/] at [magenta]{escape(where)}[/]"
                          f" (lines {lines}; {f['requests']:,} requests, saving {format_usd(f['saving_usd'])})")
            console.print(f"    [dim]{escape(f['fix'])}[/]")

    if data["batch"]["families"]:
        bt = Table(title="Batch: traffic nobody waits on", title_justify="left")
        for col in ("family", "requests", "why", "cost now", "at 50%", "saving"):
            bt.add_column(col, justify="left" if col in ("family", "why") else "right")
        for row in data["batch"]["families"][:top]:
            bt.add_row(row["family"], f"{row['requests']:,}", ", ".join(f"{k} {v}" for k, v in row["reasons"].items()),
                       format_usd(row["cost_now_usd"]), format_usd(row["cost_batched_usd"]), format_usd(row["saving_usd"]))
        console.print(fit(bt, console))

    if data["rightsize"]["candidates"]:
        rt = Table(title="Right-size candidates (hypotheses until `parity prove` passes)", title_justify="left")
        for col in ("family", "model", "try", "why", "cost", "if proven", "saving"):
            rt.add_column(col, justify="left" if col in ("family", "model", "try", "why") else "right",
                          overflow="fold")
        for row in data["rightsize"]["candidates"][:top]:
            rt.add_row(row["family"], row["model"], row["candidate_model"], "; ".join(row["reasons"]),
                       format_usd(row["cost_usd"]), format_usd(row["cost_if_proven_usd"]), format_usd(row["saving_if_proven_usd"]))
        console.print(fit(rt, console))

    savings = data["savings"]
    stacked = savings["stacked"]
    wf = Table(title="Savings, stacked (each lever on what the previous left)", title_justify="left")
    for col in ("step", "saving", "spend after", "alone, on today's bill"):
        wf.add_column(col, justify="left" if col == "step" else "right")
    alone = {lv["lever"]: lv for lv in savings["levers"]}
    wf.add_row("spend now", "", format_usd(stacked["cost_before_usd"]), "")
    for step in stacked["steps"]:
        name = LEVER_NAMES[step["lever"]] + (" [yellow](hypothesis)[/]" if step["hypothesis"] else "")
        wf.add_row(name, "-" + format_usd(step["saving_usd"]), format_usd(step["cost_after_usd"]),
                   format_usd(alone[step["lever"]]["saving_usd"]))
    console.print(fit(wf, console))
    console.print(f"  proven levers: [bold]{format_usd(stacked['saving_usd'])}[/] saved, "
                  f"[bold]{stacked['blended_saving_pct']:.1f}%[/] blended; with right-size hypotheses: "
                  f"{format_usd(stacked['with_hypotheses']['saving_usd'])} ({stacked['with_hypotheses']['blended_saving_pct']:.1f}%)")
    console.print("  [dim]assumptions:[/]")
    for text in savings["assumptions"]:
        console.print(f"  [dim]- {escape(text)}[/]")

    render_sources(data, console)

    if data["malformed"]:
        console.print(f"[yellow]Skipped {totals['malformed']:,} line(s):[/]")
        for m in data["malformed"][:top]:
            console.print(f"  {escape(m['file'])}:{m['line']}: {escape(m['reason'])}")
        if totals["malformed"] > top:
            console.print(f"  … {totals['malformed'] - top:,} more in the JSON report")




def render_sources(data: Mapping[str, Any], console: Console) -> None:
    """Each input's cost by Parity beside the source's own, the bug pattern a difference matches, and what a
    source without request bodies could not be audited for."""
    sources = data.get("sources") or []
    if not sources:
        return
    table = Table(title="Sources: Parity's cost beside the source's own", title_justify="left")
    for col in ("source", "format", "records", "Parity", "source says", "difference", "why"):
        table.add_column(col, justify="right" if col in ("records", "Parity", "source says", "difference") else "left",
                         overflow="fold")
    for s in sources:
        if s["source_cost_usd"] is None:
            why = "the source carries no cost"
        elif s["agrees"]:
            why = "[green]agrees[/]"
        else:
            why = escape(s["explanation"] or "")
        table.add_row(escape(s["path"]), s["format"], f"{s['records']:,}", format_usd(s["cost_usd"]),
                      format_usd(s["source_cost_usd"]), format_usd(s["difference_usd"]), why)
        if len(s.get("models") or []) > 1 and s["source_cost_usd"] is not None:
            for m in s["models"]:
                table.add_row(f"  {m['model']}", "", f"{m['requests']:,}", format_usd(m["cost_usd"]),
                              format_usd(m["source_cost_usd"]), "", "")
    console.print(fit(table, console))
    bodiless = [s for s in sources if s.get("needs_bodies")]
    if bodiless:
        console.print(f"[yellow]Cost-level audit only[/] for {escape(', '.join(s['path'] for s in bodiless))}: "
                      "without request bodies these need them: " + "; ".join(bodiless[0]["needs_bodies"]) + ".")


# --- the compact summary (the demo, notebooks) ---------------------------------------------------------------


def _where(finding: Mapping[str, Any]) -> str:
    where = finding.get("block_path") or ""
    if finding.get("offset") is not None:
        where += f" offset {finding['offset']}"
    return where


def print_audit(report: Any, console: Console | None = None, *, limit: int = 8) -> None:
    """A one-screen summary of an audit: the input/output split, the `limit` findings that save most (cause,
    block path, offset, example lines), and the savings per lever alone and stacked with the blended number.

    `report` is an `AuditReport` or its JSON document. Cost findings (top spend) are left to the full report.
    """
    data: Mapping[str, Any] = getattr(report, "data", report)
    console = console or Console()
    totals = data["totals"]
    whole = Decimal(totals["cost_usd"])
    share = (lambda part: _pct(float(Decimal(part) / whole)) if whole else "0.0%")
    line = (f"[bold]{format_usd(totals['cost_usd'])}[/] over {totals['requests']:,} priced requests: "
            f"input side {format_usd(totals['input_cost_usd'])} ({share(totals['input_cost_usd'])}), "
            f"output {format_usd(totals['output_cost_usd'])} ({share(totals['output_cost_usd'])})")
    if totals["malformed"]:
        first = data["malformed"][0] if data["malformed"] else None
        line += f"\n[yellow]{totals['malformed']:,} line(s) skipped[/]" + (
            f" (first: {escape(str(first['file']))}:{first['line']}: {escape(first['reason'])})" if first else "")
    console.print(line)

    findings = [f for f in data["findings"] if f["lever"] != "cost"]
    findings.sort(key=lambda f: -Decimal(f["saving_usd"]))
    if findings:
        table = Table(title="What the audit found", title_justify="left")
        for col in ("lever", "family", "cause", "where", "lines", "requests", "saving"):
            table.add_column(col, justify="right" if col in ("requests", "saving") else "left", overflow="fold")
        for f in findings[:limit]:
            saving = format_usd(f["saving_usd"]) + (" if proven" if f.get("hypothesis") else "")
            table.add_row(LEVER_NAMES[f["lever"]], escape(f["family"]), f["cause"], escape(_where(f)),
                          ", ".join(map(str, f["example_lines"][:2])), f"{f['requests']:,}", saving)
        console.print(fit(table, console))
        if len(findings) > limit:
            console.print(f"  [dim]… {len(findings) - limit} more findings in the full report[/]")
    else:
        console.print("[green]No cache, batch or right-size finding.[/]")

    savings = data["savings"]
    stacked = savings["stacked"]
    alone = ", ".join(f"{LEVER_NAMES[lv['lever']]} {format_usd(lv['saving_usd'])}"
                      + (" (hypothesis)" if lv.get("hypothesis") else "") for lv in savings["levers"])
    steps = " → ".join(f"{LEVER_NAMES[s['lever']]} {format_usd(s['cost_after_usd'])}" for s in stacked["steps"])
    hyp = stacked["with_hypotheses"]
    console.print(f"Each lever alone on today's bill: {alone} (these overlap; they do not add up).")
    console.print(f"Stacked: {format_usd(stacked['cost_before_usd'])} → {steps}. Proven levers save "
                  f"[bold]{format_usd(stacked['saving_usd'])}[/] ({stacked['blended_saving_pct']:.1f}% blended); with the "
                  f"right-size hypothesis {format_usd(hyp['saving_usd'])} ({hyp['blended_saving_pct']:.1f}%), which "
                  "`parity prove` must confirm first.")
