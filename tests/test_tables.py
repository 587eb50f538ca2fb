"""Every CLI table reads at 80 columns: whole when it fits, stacked one block per row when it does not."""

from __future__ import annotations

from io import StringIO

from rich.console import Console
from rich.table import Table
from typer.testing import CliRunner

from parity.cli import app
from parity.report.tables import fit, fits


def _render(renderable, width: int) -> str:
    out = StringIO()
    Console(file=out, width=width, force_terminal=False).print(renderable)
    return out.getvalue()


def _wide() -> Table:
    table = Table(title="parity prove: ticket_triage")
    for name in ("candidate", "verdict", "stopped by", "n used", "estimate", "lower bound", "cost/request"):
        table.add_column(name)
    table.add_row("claude-haiku-4-5", "do_not_switch", "futility", "20", "0.212", "0.000", "$0.000412")
    table.add_row("claude-sonnet-4-6", "switch", "efficacy", "118", "0.495", "0.429", "$0.001250")
    return table


def test_a_table_that_fits_is_left_as_it_is():
    console = Console(file=StringIO(), width=200)
    assert fits(_wide(), console) and fit(_wide(), console).__class__ is Table


def test_a_table_too_wide_for_80_columns_is_stacked_with_every_value_whole():
    text = _render(fit(_wide(), Console(file=StringIO(), width=80)), 80)
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80
    for value in ("claude-haiku-4-5", "do_not_switch", "futility", "$0.000412", "claude-sonnet-4-6", "$0.001250"):
        assert value in text
    assert "stopped by" in text and "parity prove: ticket_triage" in text


def test_the_prove_command_reads_at_80_columns(tmp_path):
    result = CliRunner().invoke(app, ["prove", "--task", "ticket_triage", "--emulator-family", "ticket_triage",
                                      "--n", "60", "--baseline", "claude-opus-4-8", "--candidate", "claude-haiku-4-5",
                                      "--margin", "0.1", "--no-optimize", "--sync", "--run-dir", str(tmp_path / "r")],
                                env={"COLUMNS": "80"})
    assert result.exit_code in (0, 1), result.output
    table = result.output[result.output.index("parity prove: ticket_triage"):]
    assert "claude-haiku-4-5" in table and "…" not in table.split("certificate")[0]
