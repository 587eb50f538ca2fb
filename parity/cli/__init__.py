"""`parity ...`: each command lives in its own module and registers itself on the shared app (`cli.base.app`).

Only the module of the command being run is imported (all of them for `--help`): `parity serve` must not carry
the SDK, the emulator, statistics and plotting that other commands need, so a gateway idles small.
`from parity.cli import app` (tests, CliRunner) gets the app with every command registered.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any

from parity.cli.base import err_console
from parity.errors import ParityError

COMMANDS: dict[str, str] = {
    "audit": "audit", "cache-diff": "audit", "count": "count", "demo": "demo", "emulate": "emulate",
    "keys": "keys", "prove": "prove", "reconcile": "reconcile", "savings": "savings", "serve": "serve", "verdict": "verdict", "verify": "verify",
    "signing-key": "verify", "dashboard": "dashboard",
}
"""Command name → the parity.cli module that defines it."""


def register(argv: Sequence[str] = ()) -> Any:
    """Import the module of the command in `argv` (every command module when it names none, as for --help);
    returns the app."""
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    modules = [COMMANDS[command]] if command in COMMANDS else sorted(set(COMMANDS.values()))
    for module in modules:
        importlib.import_module(f"parity.cli.{module}")  # our own command table above, nothing from input
    from parity.cli.base import app

    return app


def main() -> None:
    """Entry point: run the app; a ParityError is printed as one clear line, not a traceback."""
    app = register(sys.argv[1:])
    try:
        app()
    except ParityError as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)


def __getattr__(name: str) -> Any:
    if name == "app":
        return register()
    raise AttributeError(f"module 'parity.cli' has no attribute {name!r}")
