"""`parity emulate`: serve the local Claude API emulator over HTTP for any SDK or tool."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from parity.cli.base import app, console
from parity.errors import InputError


class _HideCutConnections(logging.Filter):
    """A `cut_stream` fault drops the connection by raising; that is the point, not a server error to print."""

    def filter(self, record: logging.LogRecord) -> bool:
        from parity.emulator.server import CutConnection

        exc = record.exc_info[1] if record.exc_info else None
        while exc is not None:
            if isinstance(exc, CutConnection):
                return False
            exc = exc.__cause__ or exc.__context__
        return True


def make_brain(spec: str, seed: int):
    """`simulated` or `replay:PATH` as a Brain."""
    if spec == "simulated":
        from parity.emulator.brains.simulated import SimulatedBrain

        return SimulatedBrain(seed=seed)
    if spec.startswith("replay:"):
        path = Path(spec.split(":", 1)[1]).expanduser()
        if not path.exists():
            raise InputError(
                f"no such file {str(path)!r}; pass replay:PATH to a file of recorded outputs", field="--brain"
            )
        from parity.emulator.brains.replay import ReplayBrain

        return ReplayBrain(path)
    raise InputError(f"unknown brain {spec!r}; use 'simulated' or 'replay:PATH'", field="--brain")


@app.command("emulate")
def emulate(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8787, help="Port to listen on."),
    brain: str = typer.Option("simulated", help="Who answers: 'simulated' or 'replay:PATH'."),
    faults: str | None = typer.Option(
        None,
        "--faults",
        "--fault-rate",
        help="Scheduled faults, e.g. 'overloaded=0.02,rate_limit=0.01' (kinds: rate_limit, server_error, "
        "overloaded, timeout, cut_stream, stall, malformed_json). Scheduled faults are retryable like the real "
        "API's; a request header 'x-emulator-fault: KIND' asks for one fault with x-should-retry: false.",
    ),
    seed: int = typer.Option(0, help="Seed of the brain and of the fault schedule (same seed, same answers)."),
    api_key: list[str] | None = typer.Option(
        None, "--api-key", help="Accept only this key (repeat for several). Default: any key is accepted."
    ),
    latency: bool = typer.Option(False, "--latency/--no-latency", help="Wait the simulated generation time."),
    timeout_s: float = typer.Option(30.0, help="How long a 'timeout' fault holds the answer before its 504."),
    stall_s: float = typer.Option(30.0, help="How long a 'stall' fault pauses a stream."),
    batch_processing_s: float = typer.Option(60.0, help="How long a Message Batch takes to end."),
) -> None:
    """Serve a local Claude API (simulated models) at http://HOST:PORT for the anthropic SDK: Messages (and
    streaming), count_tokens, Message Batches, Models, and the Admin API's usage and cost reports for the calls it
    answered (with an `sk-ant-admin...` key)."""
    import uvicorn

    from parity.emulator.faults import FaultSchedule
    from parity.emulator.service import Emulator

    schedule = FaultSchedule(faults, seed=seed, timeout_s=timeout_s, stall_s=stall_s)
    emulator = Emulator(
        brain=make_brain(brain, seed), faults=schedule, sleep_latency=latency, seed=seed, api_keys=api_key or None
    )
    emulator.batches.processing_s = batch_processing_s
    base_url = f"http://{host}:{port}"
    console.print(f"[bold]Parity emulator[/] (simulated models, not Claude) listening on [cyan]{base_url}[/]")
    console.print("Point the anthropic SDK at it:")
    console.print(f"  export ANTHROPIC_BASE_URL={base_url}")
    console.print(
        f"  export ANTHROPIC_API_KEY={'<one of your --api-key values>' if api_key else 'sk-emulator  # any key works'}"
    )
    console.print(f"  or: anthropic.Anthropic(base_url={base_url!r}, api_key=...)")
    if schedule.rates:
        console.print("Scheduled faults: " + ", ".join(f"{k}={v:g}" for k, v in schedule.rates.items()))
    logging.getLogger("uvicorn.error").addFilter(_HideCutConnections())
    uvicorn.run(emulator.app(), host=host, port=port, log_level="warning")
