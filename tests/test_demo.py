"""The demo is the README's first command: it must run, bill exactly, and label simulated numbers."""

from decimal import Decimal

from rich.console import Console
from typer.testing import CliRunner

from parity.cli import app
from parity.demo import DemoSize, bill, run_demo
from parity.pricing import cost


def test_demo_bills_exactly_what_the_usage_fields_say():
    console = Console(record=True, width=120)
    ctx = run_demo(console, size=DemoSize(triage=8, summaries=4, stamped=3, overnight=6))
    exchanges = ctx.recorded.exchanges
    assert len(exchanges) == 8 + 4 + 4 + 3 + 6
    # The bill equals the sum of per-request exact costs.
    expected = sum((cost(e.model_served, e.usage, batch=e.batch, at=e.started_at).total for e in exchanges), Decimal(0))
    the_bill = ctx.results["bill"]
    assert the_bill.total.total == expected
    assert the_bill.total.batch_discount < 0  # the overnight job went through the Batch API
    assert sum(1 for e in exchanges if e.batch) == 6
    # With a breakpoint the summaries read the 6,000-token prefix after the first write; with a timestamp never.
    cached = bill(ctx.recorded.tagged(variant="cached"), ctx.pricer)
    stamped = bill(ctx.recorded.tagged(variant="stamped"), ctx.pricer)
    uncached = bill(ctx.recorded.tagged(variant="no_cache"), ctx.pricer)
    assert cached.tokens["cache_read"] >= 3 * 6000
    assert cached.total.total < uncached.total.total
    assert stamped.tokens["cache_read"] == 0 and stamped.tokens["cache_write_5m"] > 0
    assert uncached.tokens["cache_read"] == uncached.tokens["cache_write_5m"] == 0
    text = console.export_text()
    assert "The bill (simulated)" in text
    assert "Cache hit ratio" in text


def test_demo_command_runs():
    result = CliRunner().invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    assert "(simulated)" in result.output
