"""`parity ...`: each command lives in its own module and registers itself on the shared app (`cli.base.app`).

Only the module of the command being run is imported (all of them for `--help`): `parity serve` must not carry
the SDK, the emulator, statistics and plotting that other commands need, so a gateway idles small.
`from parity.cli import app` (tests, CliRunner) gets the app with every command registered.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

from parity.cli.base import err_console
from parity.errors import ParityError


def _audit() -> None:
    from parity.cli import audit  # noqa: F401  (registers audit and cache-diff)


def _count() -> None:
    from parity.cli import count  # noqa: F401


def _dashboard() -> None:
    from parity.cli import dashboard  # noqa: F401


def _demo() -> None:
    from parity.cli import demo  # noqa: F401


def _emulate() -> None:
    from parity.cli import emulate  # noqa: F401


def _keys() -> None:
    from parity.cli import keys  # noqa: F401


def _prove() -> None:
    from parity.cli import prove  # noqa: F401


def _reconcile() -> None:
    from parity.cli import reconcile  # noqa: F401


def _savings() -> None:
    from parity.cli import savings  # noqa: F401


def _serve() -> None:
    from parity.cli import serve  # noqa: F401


def _verdict() -> None:
    from parity.cli import verdict  # noqa: F401


def _verify() -> None:
    from parity.cli import verify  # noqa: F401  (registers verify and signing-key)


COMMANDS: dict[str, Callable[[], None]] = {
    "audit": _audit, "cache-diff": _audit, "count": _count, "dashboard": _dashboard, "demo": _demo,
    "emulate": _emulate, "keys": _keys, "prove": _prove, "reconcile": _reconcile, "savings": _savings,
    "serve": _serve, "verdict": _verdict, "verify": _verify, "signing-key": _verify,
}
"""Command name → what registers it."""


def register(argv: Sequence[str] = ()) -> Any:
    """Register the command named in `argv` (every command when it names none, as for --help); returns the app."""
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    loaders = [COMMANDS[command]] if command in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    for load in loaders:
        load()
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
