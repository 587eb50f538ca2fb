"""`parity reconcile`: the logged traffic, priced by Parity, against Anthropic's cost report."""

from __future__ import annotations

import json
import tempfile
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from parity.cli.base import app, console, err_console
from parity.errors import InputError, ParityError
from parity.pricing import PriceTable, format_usd
from parity.report.tables import fit


@app.command("reconcile")
def reconcile_command(
    logs: list[str] = typer.Argument(..., help="Log files in any format `parity audit` reads (or ledger URLs)."),
    cost_report: Optional[Path] = typer.Option(
        None, "--cost-report", help="Admin API cost_report page(s) as JSON. Without it the report is fetched from "
        "the API for the logs' days, with the Admin API key in $ANTHROPIC_ADMIN_KEY."),
    save_cost_report: Optional[Path] = typer.Option(
        None, "--save-cost-report",
        help="Keep the fetched cost report in this file (read it back with --cost-report)."),
    base_url: Optional[str] = typer.Option(
        None, "--base-url", help="API base URL to fetch the cost report from (default $ANTHROPIC_BASE_URL, else "
        "https://api.anthropic.com)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the rows as JSON (parity.reconcile/1)."),
    html_out: Optional[Path] = typer.Option(None, "--html", help="Write the rows as a self-contained HTML page."),
    fmt: str = typer.Option("auto", "--format", help="Force the logs' format (see `parity audit --help`)."),
    prices: Optional[list[Path]] = typer.Option(None, "--prices", help="Extra price table TOML file(s)."),
    tolerance: str = typer.Option("0.01", help="Flag cells off by more than this many US dollars."),
    all_rows: bool = typer.Option(False, "--all", help="Show every cell, not only the flagged ones."),
) -> None:
    """Tie Parity's price of the logged calls out to Anthropic's bill, per day x model x cost type, and flag each
    cell off by more than a cent with its likely cause. The bill is --cost-report, or fetched with
    $ANTHROPIC_ADMIN_KEY."""
    try:
        data = _reconcile(logs, cost_report, save_cost_report, base_url, fmt, prices, tolerance)
    except ParityError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True, highlight=False)
        raise typer.Exit(2) from None
    if json_out is not None:
        json_out.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    if html_out is not None:
        write_html(data, html_out)
    totals = data["totals"]
    console.print(f"[bold]logged (Parity's prices)[/] {format_usd(totals['logged_usd'])}  ·  [bold]billed[/] "
                  f"{format_usd(totals['billed_usd'])}  ·  difference {format_usd(totals['difference_usd'])}  ·  "
                  f"{data['priced_calls']:,} calls priced")
    rows = [r for r in data["rows"] if all_rows or r["flagged"]]
    if rows:
        out = Table(title="Cells off by more than " + format_usd(data["tolerance_usd"]) if not all_rows else
                    "Every cell", title_justify="left")
        for col in ("date", "model", "cost type", "logged", "billed", "difference", "likely cause"):
            out.add_column(col, justify="right" if col in ("logged", "billed", "difference") else "left",
                           overflow="fold")
        for r in rows:
            mark = "[red]" if r["flagged"] else ""
            out.add_row(r["date"], r["model"], r["cost_type"], format_usd(r["logged_usd"]),
                        format_usd(r["billed_usd"]), f"{mark}{format_usd(r['difference_usd'])}",
                        escape(r["cause"] or ""))
        console.print(fit(out, console))
    if data["flagged"]:
        console.print(f"[yellow]{data['flagged']} cell(s) flagged[/] of {len(data['rows'])}")
    else:
        console.print(f"[green]All {len(data['rows'])} cells tie out within {format_usd(data['tolerance_usd'])}.[/]")
    if data["unpriced"]:
        console.print(f"[yellow]{len(data['unpriced'])} log record(s) not priced:[/]")
        for u in data["unpriced"][:10]:
            console.print(f"  {escape(str(u['file']))}:{u['line']}: {escape(u['reason'])}")
    for label, path in (("JSON", json_out), ("HTML", html_out)):
        if path is not None:
            console.print(f"{label} written to {path}")


def _reconcile(logs: list[str], cost_report: Optional[Path], save_to: Optional[Path], base_url: Optional[str],
               fmt: str, prices: Optional[list[Path]], tolerance: str) -> dict[str, Any]:
    """The reconciliation against the report file, or against the report fetched for the logs' days."""
    from parity.readers.anthropic_admin import admin_key, api_root
    from parity.reconcile import fetch_cost_report, reconcile

    try:
        limit = Decimal(tolerance)
    except InvalidOperation:
        raise InputError(f"expected an amount in US dollars such as 0.01, got {tolerance!r}",
                         field="--tolerance") from None
    table = PriceTable.load([str(p) for p in prices]) if prices else None
    if cost_report is not None:
        return reconcile(logs, cost_report, fmt=fmt, table=table, tolerance=limit)
    key = admin_key()  # before reading any log: a missing key is said at once
    root = api_root(base_url)
    with tempfile.TemporaryDirectory(prefix="parity-cost-report-") as scratch:
        target = save_to or Path(scratch) / "cost_report.jsonl"
        data = reconcile(logs, fetch_cost_report(target, key=key, base_url=root), fmt=fmt, table=table,
                         tolerance=limit)
    data["cost_report"] = str(save_to) if save_to else f"{root}/v1/organizations/cost_report (fetched)"
    return data


def write_html(data: dict[str, Any], path: Path) -> None:
    """The reconciliation as an offline page: headline totals, the flagged cells with causes, then every cell."""
    from parity.report.html import Page, badge

    totals = data["totals"]
    page = Page("Parity reconcile: logs against Anthropic's bill",
                subtitle=f"{', '.join(data['logs'])} against {data['cost_report']}")
    page.cards({"logged (Parity's prices)": format_usd(totals["logged_usd"]), "billed": format_usd(totals["billed_usd"]),
                "difference": format_usd(totals["difference_usd"]), "cells flagged": data["flagged"]})
    headers = ("date", "model", "cost type", "logged", "billed", "difference", "likely cause")

    def cells(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [(r["date"], r["model"], r["cost_type"], format_usd(r["logged_usd"]), format_usd(r["billed_usd"]),
                 format_usd(r["difference_usd"]), r["cause"] or "") for r in rows]

    flagged = [r for r in data["rows"] if r["flagged"]]
    page.heading(f"Cells off by more than {format_usd(data['tolerance_usd'])}",
                 badges=[badge(str(len(flagged)), "bad" if flagged else "good")])
    if flagged:
        page.table(headers, cells(flagged), numeric=(3, 4, 5))
    else:
        page.paragraph("Every cell ties out.")
    page.heading("Every cell")
    page.table(headers, cells(data["rows"]), numeric=(3, 4, 5))
    if data["unpriced"]:
        page.heading("Log records not priced")
        page.table(("file", "line", "reason"), [(u["file"], u["line"], u["reason"]) for u in data["unpriced"]],
                   numeric=(1,))
    page.write(path)
