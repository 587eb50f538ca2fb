"""Demo stage 2: `parity audit` on the day's recorded traffic: where the money went and what each lever saves."""

from __future__ import annotations

from decimal import Decimal

from rich.console import Console
from rich.table import Table

from parity.audit import AuditReport, audit_exchanges
from parity.demo.bill import usd
from parity.demo.pipeline import SIMULATED, Recorded
from parity.pricing import PriceTable

LEVERS_SHOWN = ("cache", "batch", "rightsize")


def audit_recorded(recorded: Recorded, table: PriceTable | None = None) -> AuditReport:
    """Audit the recorded Exchanges as if they were a log file (line n is the n-th exchange)."""
    return audit_exchanges((("demo-log", n, e) for n, e in enumerate(recorded.exchanges, 1)), table=table)


def _where(finding: dict) -> str:
    if not finding.get("block_path"):
        return ""
    offset = finding.get("offset")
    return finding["block_path"] + ("" if offset is None else f" @ {offset}")


def print_audit(console: Console, report: AuditReport) -> None:
    """The findings that save money, then each lever alone and stacked (percentages are never added)."""
    data = report.data
    totals = data["totals"]
    share = Decimal(totals["output_cost_usd"]) / (Decimal(totals["cost_usd"]) or Decimal(1))
    console.print(f"Spend {SIMULATED}: [bold]{usd(Decimal(totals['cost_usd']))}[/] over {totals['requests']:,} "
                  f"requests; output is {share:.0%} of it.")
    table = Table(title=f"What the audit found {SIMULATED}", title_justify="left")
    for name in ("lever", "task", "cause", "where", "requests", "saving", "example lines"):
        table.add_column(name, justify="right" if name in ("requests", "saving") else "left")
    for f in data["findings"]:
        if f["lever"] not in LEVERS_SHOWN:
            continue
        saving = usd(Decimal(f["saving_usd"])) + (" if proven" if f.get("hypothesis") else "")
        table.add_row(f["lever"], f["family"], f["cause"], _where(f), f"{f['requests']:,}", saving,
                      ", ".join(map(str, f["example_lines"][:2])))
    console.print(table)
    stacked = data["savings"]["stacked"]
    steps = " → ".join(f"{s['lever']} {usd(Decimal(s['cost_after_usd']))}" for s in stacked["steps"])
    hyp = stacked["with_hypotheses"]
    console.print(
        f"Stacked on the same requests: {usd(Decimal(stacked['cost_before_usd']))} → {steps}.\n"
        f"Proven levers save {usd(Decimal(stacked['saving_usd']))} ({stacked['blended_saving_pct']:.1f}%); with the "
        f"right-size hypothesis {usd(Decimal(hyp['saving_usd']))} ({hyp['blended_saving_pct']:.1f}%), which "
        f"`parity prove` must confirm first."
    )
