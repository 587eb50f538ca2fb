"""`parity demo`: the whole product on the built-in emulator."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from parity.cli.base import app, console


@app.command("demo")
def demo(
    out: Optional[Path] = typer.Option(None, "--out", help="Directory for the demo's files (audit, certificates, "
                                                          "policy, ledger); default: a new temporary directory."),
    seed: int = typer.Option(0, "--seed", help="Seed of the simulated models."),
) -> None:
    """Run a support-ticket pipeline on the built-in emulator: the bill, the audit, two proofs, and the gateway."""
    from parity.demo import run_demo

    run_demo(console, out=out, seed=seed)
