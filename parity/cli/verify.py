"""`parity verify` and `parity signing-key`: re-check a certificate offline, and make the key that signs them.

`parity verify CERT [--key FILE] [--require-signature]` recomputes the verdict from the stored evidence and checks
the signature. It says plainly what was checked and what was not: without a signature, a certificate shows that
its verdict follows from its evidence, not that the evidence came from real calls, nor that nobody rewrote it
and re-hashed the id. It also says whether the certificate can back a route (a switch, not a finite pool).
Exit codes: 0 verified; 1 the evidence or the signature does not hold; 2 not a readable certificate or key.

`parity signing-key PATH` writes a new Ed25519 private key (mode 0600) and its public half to PATH.pub.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from parity.cli.base import app, console, err_console
from parity.errors import ParityError
from parity.files import write_atomic
from parity.proof import certificate as certs
from parity.proof import signing
from parity.report.certificate_html import num
from parity.report.tables import fit


def _fail(exc: ParityError) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True, highlight=False)
    return typer.Exit(2)


@app.command("verify")
def verify_command(
    path: Path = typer.Argument(..., help="certificate.json written by `parity prove`."),
    key: Optional[Path] = typer.Option(None, "--key", help="The issuer's key: an Ed25519 public (or private) PEM "
                                       "file, or a file holding the HMAC secret. Default: PARITY_SIGNING_KEY_FILE "
                                       "or PARITY_SIGNING_KEY when set."),
    require_signature: bool = typer.Option(False, "--require-signature",
                                           help="Fail an unsigned certificate (implied by --key)."),
) -> None:
    """Recompute a certificate's verdict from its stored evidence and check its signature, offline.

    Exit 0 verified, 1 the evidence or the signature does not hold, 2 not a readable certificate or key.
    """
    try:
        signing_key = signing.load_signing_key(key)
        result = certs.verify(path, signing_key, required=require_signature or key is not None)
    except ParityError as exc:
        raise _fail(exc) from None
    table = Table(title=f"parity verify: {result.certificate_id}" + (" (simulated)" if result.simulated else ""))
    for col in ("candidate", "stored", "recomputed", "n stored", "n recomputed", "estimate"):
        table.add_column(col)
    for check in result.candidates:
        table.add_row(check.model, check.stored_verdict, check.recomputed_verdict, str(check.stored_n),
                      str(check.recomputed_n), num(check.estimate))
    console.print(fit(table, console))
    if result.hypothesis:
        console.print(f"hypothesis: {escape(result.hypothesis)}", highlight=False)
    if result.simulated:
        console.print("[yellow]simulated:[/] made on the emulator; its answers and judgments are not a real "
                      "model's", highlight=False)
    for problem in result.problems:
        console.print(f"[red]problem:[/] {escape(problem)}", highlight=False)
    if not result.ok:
        console.print(f"[bold red]not verified[/]: {len(result.problems)} problem(s)")
        raise typer.Exit(1)
    console.print(f"[bold green]verified[/]: the stored evidence gives the same verdict ({result.verdict}); every "
                  "per-prompt score follows from the stored answers and judge replies", highlight=False)
    console.print(_signature_line(result), highlight=False)
    if result.upstream_ids:
        console.print(f"{result.upstream_ids} answers carry the upstream id the API gave them (for the provider "
                      "to confirm the calls were made)")
    if result.route_problem is None:
        console.print("[green]can back a route[/]: a switch, about the task's future traffic")
    else:
        console.print(f"[yellow]cannot back a route[/]: {escape(result.route_problem)}", highlight=False)


def _signature_line(result: certs.VerifyResult) -> str:
    """What the signature shows, and what no check here shows."""
    if result.signature == "verified":
        return (f"[green]signature verified[/]: signed by key {result.signed_by}, the key given; nothing was "
                "changed since it was signed")
    if result.signature == "intact":
        return (f"signature intact: unchanged since it was signed by Ed25519 key {result.signed_by}; whose key "
                "that is was not checked (pass --key with the issuer's public key)")
    if result.signature == "unchecked":
        return (f"[yellow]signature not checked[/]: signed with HMAC key {result.signed_by}; pass --key with the "
                "secret (or set PARITY_SIGNING_KEY) to check it")
    return ("[yellow]not verified, because the certificate is unsigned[/]: that the evidence came from real model "
            "calls, and that nobody rewrote it and re-computed its id. Ask the issuer for a signed certificate "
            "(PARITY_SIGNING_KEY_FILE when proving) and check it with --key")


@app.command("signing-key")
def signing_key_command(
    path: Path = typer.Argument(..., help="Where to write the new private key (never overwritten)."),
) -> None:
    """Create an Ed25519 key that signs certificates: PATH (private, mode 0600) and PATH.pub (to share)."""
    try:
        key = signing.generate_key_file(path)
        public = write_atomic(Path(f"{path}.pub"), key.public_pem())
    except ParityError as exc:
        raise _fail(exc) from None
    console.print(f"Created signing key [bold]{key.key_id}[/] in {escape(str(path))} (keep it private) and its "
                  f"public key in {escape(str(public))}.", highlight=False)
    console.print(f"Sign certificates: export {signing.ENV_FILE}={escape(str(path))} before `parity prove`.",
                  highlight=False)
    console.print(f"Check one: parity verify certificate.json --key {escape(str(public))}", highlight=False)
