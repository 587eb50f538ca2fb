"""Demo stage 2: `parity audit` on the day's recorded traffic: where the money went and what each lever saves."""

from __future__ import annotations

from rich.console import Console

from parity.audit import AuditReport, audit_exchanges
from parity.report.audit_terminal import print_audit
from parity.demo.pipeline import SIMULATED, Recorded
from parity.pricing import PriceTable


def audit_recorded(recorded: Recorded, table: PriceTable | None = None) -> AuditReport:
    """Audit the recorded Exchanges as if they were a log file (line n is the n-th exchange)."""
    return audit_exchanges(recorded.exchanges, table=table, source="demo-log")


def show_audit(console: Console, report: AuditReport) -> None:
    console.print(f"Every amount below is priced from the simulated models' usage {SIMULATED}.")
    print_audit(report, console, limit=8)
