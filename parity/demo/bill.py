"""The demo's bill: exact cost by model and category, priced with the audit's accumulator."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from rich.console import Console
from rich.table import Table

from parity.audit.cost import CostAcc, Pricer, usage_counts
from parity.demo.pipeline import SIMULATED, Recorded
from parity.exchange import Exchange
from parity.pricing import CostBreakdown, format_usd
from parity.report.tables import fit

CATEGORIES = (("input", "input"), ("5-minute cache writes", "cache_write_5m"), ("1-hour cache writes", "cache_write_1h"),
              ("cache reads", "cache_read"), ("output", "output"), ("batch discount", "batch_discount"))


@dataclass
class Bill:
    """Exact cost by model and category, with the token counters behind it (from the usage fields)."""

    by_model: dict[str, tuple[CostBreakdown, int]]
    total: CostBreakdown
    tokens: dict[str, int]

    @property
    def requests(self) -> int:
        return sum(n for _, n in self.by_model.values())

    @property
    def cache_hit_ratio(self) -> float | None:
        t = self.tokens
        prompt = t["input"] + t["cache_write_5m"] + t["cache_write_1h"] + t["cache_read"]
        return None if prompt == 0 else t["cache_read"] / prompt


def bill(exchanges: Iterable[Exchange], pricer: Pricer | None = None) -> Bill:
    """Price recorded Exchanges with the audit's exact accumulator (one way to price many requests)."""
    pricer = pricer or Pricer()
    acc = CostAcc()
    for exchange in exchanges:
        usage = exchange.usage
        if usage is None:
            continue
        counts = usage_counts(usage)
        model = exchange.model_served or exchange.model_requested or ""
        key = pricer.key(model, usage, counts, batch=exchange.batch, at=exchange.started_at)
        acc.add(key, 1, *counts)
    by_model = {str(m): v for m, v in pricer.grouped(acc, lambda k: k.model).items()}
    return Bill(by_model=by_model, total=pricer.breakdown(acc), tokens=acc.tokens())


def usd(amount: Decimal) -> str:
    return format_usd(amount, 4)


def print_bill(console: Console, title: str, the_bill: Bill) -> None:
    """Categories down, models across: input is billed apart from output, cache tiers apart from each other."""
    table = Table(title=f"{title} {SIMULATED}", title_justify="left")
    table.add_column("cost category")
    models = sorted(the_bill.by_model, key=lambda m: the_bill.by_model[m][0].total, reverse=True)
    for model in models:
        table.add_column(model, justify="right")
    table.add_column("all models", justify="right")
    columns = [the_bill.by_model[m] for m in models] + [(the_bill.total, the_bill.requests)]
    table.add_row("requests", *[f"{n:,}" for _, n in columns])
    for label, attr in CATEGORIES:
        table.add_row(label, *[usd(getattr(c, attr)) for c, _ in columns])
    table.add_row("[bold]total[/]", *[f"[bold]{usd(c.total)}[/]" for c, _ in columns])
    console.print(fit(table, console))
    tokens = the_bill.tokens
    ratio = the_bill.cache_hit_ratio
    console.print(
        f"Tokens {SIMULATED}: input {tokens['input']:,} · 5m writes {tokens['cache_write_5m']:,} · "
        f"1h writes {tokens['cache_write_1h']:,} · cache reads {tokens['cache_read']:,} · output {tokens['output']:,}.\n"
        f"Cache hit ratio, read from the usage fields (cache reads / all prompt tokens): "
        f"[bold]{'n/a' if ratio is None else f'{ratio:.1%}'}[/]"
    )


def print_cache_comparison(console: Console, recorded: Recorded, pricer: Pricer) -> None:
    """The same summaries without and with a breakpoint, and with a timestamp breaking the prefix."""
    table = Table(title=f"Thread summaries, 6,000-token system prompt {SIMULATED}", title_justify="left")
    for name in ("variant", "requests", "cache reads", "cache writes", "hit ratio", "cost"):
        table.add_column(name, justify="right" if name != "variant" else "left")
    for variant, label in (("no_cache", "no breakpoint"), ("cached", "breakpoint on system"),
                           ("stamped", "breakpoint, timestamp in prompt")):
        part = bill(recorded.tagged(variant=variant), pricer)
        t = part.tokens
        ratio = part.cache_hit_ratio
        table.add_row(label, str(part.requests), f"{t['cache_read']:,}", f"{t['cache_write_5m'] + t['cache_write_1h']:,}",
                      "n/a" if ratio is None else f"{ratio:.1%}", usd(part.total.total))
    console.print(fit(table, console))
