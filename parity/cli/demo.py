"""`parity demo`: the whole product on the built-in emulator."""

from __future__ import annotations

from parity.cli.app import app, console


@app.command("demo")
def demo() -> None:
    """Run a support-ticket pipeline on the built-in emulator and show the bill, what to fix, and what it saves."""
    from parity.demo import run_demo

    run_demo(console)
