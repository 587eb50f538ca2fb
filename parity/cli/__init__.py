"""`parity ...`: each command lives in its own module and registers itself on the shared app."""

from __future__ import annotations

import sys

from parity.cli.app import app, err_console
from parity.errors import ParityError

# Importing a command module registers its commands on `app`.
from parity.cli import emulate as _emulate  # noqa: F401,E402
from parity.cli import demo as _demo  # noqa: F401,E402
from parity.cli import verdict as _verdict  # noqa: F401,E402
from parity.cli import count as _count  # noqa: F401,E402
from parity.cli import audit as _audit  # noqa: F401,E402
from parity.cli import serve as _serve  # noqa: F401,E402
from parity.cli import keys as _keys  # noqa: F401,E402
from parity.cli import prove as _prove  # noqa: F401,E402
from parity.cli import verify as _verify  # noqa: F401,E402


def main() -> None:
    """Entry point: run the app; a ParityError is printed as one clear line, not a traceback."""
    try:
        app()
    except ParityError as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)
