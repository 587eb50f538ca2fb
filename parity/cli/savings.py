"""`parity savings`: the saving the plan delivered, read from the gateway's ledger, next to the audit's estimate."""

from __future__ import annotations

import html
import json
from decimal import Decimal
from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from parity.cli.base import app, console


@app.command("savings")
def savings(
    ledger: str = typer.Option(..., "--ledger", help="The gateway's ledger URL (a SQLite path, sqlite:///... or postgresql://...)."),
    before: Optional[list[str]] = typer.Option(None, "--before", help="Log(s) of the period before the plan: the baseline and the audit's estimate."),
    policy: Optional[Path] = typer.Option(None, "--policy", help="The policy served, to price routed requests against their baseline."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the comparison as JSON."),
    html_out: Optional[Path] = typer.Option(None, "--html", help="Write an HTML page with a before/after plot."),
) -> None:
    """Realised saving per lever and family (from usage in the ledger) next to the audit's estimate, with the cache
    hit ratio before and after, and a flag on every fix that did not deliver."""
    from parity.audit.cost import Pricer
    from parity.audit.realised import estimates_from_report, period, realised
    from parity.ledger.reader import read_rows

    pricer = Pricer()
    after = period((r.exchange for r in read_rows(ledger)), pricer)
    was = estimates = None
    if before:
        from parity.audit.run import audit_paths
        from parity.readers import read_exchanges
        from parity.exchange import Exchange

        report = audit_paths(before, workers=1).to_json()
        estimates = estimates_from_report(report)
        was = period((item for path in before for _, item in read_exchanges(path) if isinstance(item, Exchange)),
                     pricer)
    baselines: dict[str, str] = {}
    baseline_costs: dict[str, Decimal] = {}
    if policy is not None:
        from parity.policy import load_policy

        tasks = load_policy(policy).tasks
        baselines = {name: t.baseline_model for name, t in tasks.items()}
        baseline_costs = certified_baseline_costs(tasks, policy.parent)
    view = realised(after, pricer, before=was, estimates=estimates, baselines=baselines,
                    before_label=", ".join(before) if before else None, baseline_costs=baseline_costs)
    data = view.to_dict()
    _print(data)
    if json_out is not None:
        json_out.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        console.print(f"JSON written to {json_out}")
    if html_out is not None:
        html_out.write_text(render_html(data), encoding="utf-8")
        console.print(f"HTML written to {html_out}")


def certified_baseline_costs(tasks: dict[str, Any], folder: Path) -> dict[str, Decimal]:
    """Per routed task, the baseline's cost per request its certificate measured (read as the gateway reads it,
    relative to the policy's folder); a certificate that cannot be read leaves that task to the token-based
    estimate."""
    from parity.errors import ParityError
    from parity.gateway.certified import certificate_path
    from parity.proof.certificate import load

    out: dict[str, Decimal] = {}
    for name, task in tasks.items():
        path = certificate_path(task, folder) if task.mode == "route" else None
        if path is None:
            continue
        try:
            value = load(path)["cost"]["baseline_per_request"]
        except (ParityError, OSError, KeyError, TypeError):
            continue
        if value is not None:
            out[name] = Decimal(str(value))
    return out


def _print(data: dict[str, Any]) -> None:
    table = Table(title="Realised saving vs the audit's estimate" + ("" if data["before"] else " (no --before: "
                                                                          "no estimate, caching against none)"))
    for name in ("family", "lever", "estimate", "realised", "hit before", "hit after", "requests", "fixes applied"):
        table.add_column(name, justify="right" if name not in ("family", "lever", "fixes applied") else "left")
    for r in data["rows"]:
        table.add_row(r["family"], r["lever"], _money(r["estimate_usd"]), _money(r["realised_usd"]),
                      _pct(r["hit_ratio_before"]), _pct(r["hit_ratio_after"]),
                      f"{r['requests_before']} → {r['requests_after']}",
                      ", ".join(f"{k} ×{v}" for k, v in r["fixes_applied"].items()))
    console.print(table)
    for lever, t in data["totals"].items():
        console.print(f"{lever}: realised {_money(t['realised_usd'])}, estimated {_money(t['estimate_usd'])}")
    for r in data["rows"]:
        if r["flag"]:
            console.print(f"[bold yellow]{escape(r['family'])} {r['lever']}[/]: {escape(r['flag'])}")


def _money(value: str | None) -> str:
    return "—" if value is None else f"${value}"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def render_html(data: dict[str, Any]) -> str:
    """A self-contained page: the table, and an inline SVG plot of estimate vs realised and hit ratio before/after."""
    rows = data["rows"]
    bars, width, height = [], 640, 28 * max(1, len(rows)) + 40
    top = max([abs(float(r["realised_usd"])) for r in rows] + [abs(float(r["estimate_usd"] or 0)) for r in rows]
              + [1e-12])
    for i, r in enumerate(rows):
        y = 30 + 28 * i
        est, real = float(r["estimate_usd"] or 0), float(r["realised_usd"])
        bars.append(f'<text x="0" y="{y + 10}" font-size="11">{html.escape(r["family"][:18])} {r["lever"]}</text>')
        bars.append(f'<rect x="200" y="{y}" width="{max(0.0, est) / top * 200:.1f}" height="9" fill="#9ab"/>')
        bars.append(f'<rect x="200" y="{y + 10}" width="{max(0.0, real) / top * 200:.1f}" height="9" fill="#2a6"/>')
        hb, ha = r["hit_ratio_before"] or 0.0, r["hit_ratio_after"]
        bars.append(f'<rect x="440" y="{y}" width="{hb * 180:.1f}" height="9" fill="#c96"/>')
        bars.append(f'<rect x="440" y="{y + 10}" width="{ha * 180:.1f}" height="9" fill="#36c"/>')
    legend = ('<text x="200" y="14" font-size="11">estimate (grey) / realised (green)</text>'
              '<text x="440" y="14" font-size="11">hit ratio before (brown) / after (blue)</text>')
    svg = f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">{legend}{"".join(bars)}</svg>'
    head = "".join(f"<th>{h}</th>" for h in ("family", "lever", "estimate", "realised", "hit before", "hit after",
                                             "requests", "flag"))
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in (
            r["family"], r["lever"], _money(r["estimate_usd"]), _money(r["realised_usd"]),
            _pct(r["hit_ratio_before"]), _pct(r["hit_ratio_after"]),
            f"{r['requests_before']} → {r['requests_after']}", r["flag"] or "")) + "</tr>" for r in rows)
    return ("<!doctype html><meta charset='utf-8'><title>parity savings</title>"
            "<style>body{font:14px system-ui;margin:2em}td,th{padding:2px 8px;border-bottom:1px solid #ddd}</style>"
            f"<h1>Realised saving vs estimate</h1><p>Before: {html.escape(str(data['before']))}</p>{svg}"
            f"<table><tr>{head}</tr>{body}</table><h2>Method</h2><pre>{html.escape(data['method'])}</pre>")
