"""The one Typer application every `parity` command registers on."""

from __future__ import annotations

import typer
from rich.console import Console

app = typer.Typer(
    name="parity",
    help="Cut your Claude API bill without cutting quality, and prove it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

console = Console()
err_console = Console(stderr=True)


@app.callback()
def _group() -> None:
    """Cut your Claude API bill without cutting quality, and prove it."""
    # a callback keeps `parity` a group of commands even when only the one being run is registered
