"""`parity keys create|list|revoke`: the gateway's client keys (stored hashed; shown once at creation)."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from parity.cli.base import app, console
from parity.report.tables import fit

keys_app = typer.Typer(help="Manage the gateway's client keys (`parity serve --keys FILE`).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

KEYS_OPTION = typer.Option(..., "--keys", "-k", help="The keys file (created if missing).")


@keys_app.command("create")
def create(
    name: str = typer.Option(..., help="Who the key is for (shown in errors and the ledger's key list)."),
    keys: str = KEYS_OPTION,
    budget_usd: Optional[str] = typer.Option(None, help="Lifetime spend limit in USD (exact, from the ledger)."),
    rpm: Optional[int] = typer.Option(None, help="Rate limit in requests per minute."),
) -> None:
    """Create a key; it is printed once and only its salted hash is stored."""
    from parity.gateway.keys import KeyStore

    secret, record = KeyStore(keys).create(name, budget_usd=budget_usd, rate_limit_rpm=rpm)
    console.print(f"Created key [bold]{record.id}[/] for {name!r}. Copy it now; it is not stored:")
    console.print(secret, highlight=False, soft_wrap=True)


@keys_app.command("list")
def list_keys(keys: str = KEYS_OPTION) -> None:
    """List keys (ids, names, limits, state; never secrets)."""
    from parity.gateway.keys import KeyStore

    table = Table("id", "name", "created", "budget (USD)", "rpm", "state")
    for key in KeyStore(keys).list():
        table.add_row(key.id, key.name, key.created_at, key.budget_usd or "-",
                      str(key.rate_limit_rpm or "-"), "active" if key.active else f"revoked {key.revoked_at}")
    console.print(fit(table, console))


@keys_app.command("revoke")
def revoke(key_id: str = typer.Argument(..., help="The key id (from `parity keys list`)."), keys: str = KEYS_OPTION) -> None:
    """Revoke a key; a running gateway notices within a second."""
    from parity.gateway.keys import KeyStore

    key = KeyStore(keys).revoke(key_id)
    console.print(f"Revoked key {key.id} ({key.name}) at {key.revoked_at}")
