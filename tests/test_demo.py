"""The demo is the README's first command: it must run, bill exactly, label simulated numbers, and show the
whole product: the audit's levers, one switch and one refusal to switch, and the gateway's bill before and after."""

import json
from decimal import Decimal

from rich.console import Console
from typer.testing import CliRunner

from parity.audit import validate_report
from parity.cli import app
from parity.demo import DemoSize, bill, run_demo
from parity.policy import load_policy
from parity.pricing import cost

SMALL = DemoSize(triage=8, refunds=4, summaries=4, stamped=3, overnight=6, backlog=5)


def test_demo_bills_exactly_what_the_usage_fields_say(tmp_path):
    console = Console(record=True, width=120)
    ctx = run_demo(console, size=SMALL, out=tmp_path)
    exchanges = ctx.recorded.exchanges
    assert len(exchanges) == 8 + 4 + 4 + 4 + 3 + 6 + 5
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
    # The log's timestamps are the simulated day's: the backlog job ran at 02:00 UTC.
    assert all(e.started_at.hour == 2 for e in ctx.recorded.tagged(task="backlog_reclassify"))
    text = console.export_text()
    assert "The bill (simulated)" in text
    assert "Cache hit ratio" in text


def test_demo_command_shows_audit_switch_refusal_and_gateway(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path)], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    out = result.output
    assert "(simulated)" in out
    # The audit ran on the day's log and found the cache, batch and right-size levers.
    report = json.loads((tmp_path / "audit.json").read_text())
    validate_report(report)
    levers = {(f["lever"], f["family"], f["cause"]) for f in report["findings"]}
    assert ("cache", "thread_summary", "no_breakpoint") in levers
    assert ("batch", "backlog_reclassify", "job_tag") in levers
    assert ("rightsize", "ticket_triage", "short_outputs") in levers
    # One task proven and routed, one refused; the certificates re-check offline.
    policy = load_policy(tmp_path / "policy.json")
    assert set(policy.tasks) == {"ticket_triage"}
    assert policy.tasks["ticket_triage"].candidate_model == "claude-haiku-4-5"
    refund = json.loads((tmp_path / "runs" / "refund_calc" / "certificate.json").read_text())
    assert refund["decision"]["verdict"] == "do_not_switch"
    verify = CliRunner().invoke(app, ["verify", str(tmp_path / "runs" / "ticket_triage" / "certificate.json")])
    assert verify.exit_code == 0, verify.output
    # The gateway replay: cheaper after, every routed request in the ledger.
    assert "before (direct)" in out and "after (gateway)" in out and "Fallbacks to the baseline" in out
    assert (tmp_path / "ledger.db").exists()
    from parity.ledger.reader import read_rows

    rows = list(read_rows(str(tmp_path / "ledger.db")))
    fallbacks = [r for r in rows if r.route == "fallback"]
    # Each fallback follows a candidate answer that broke the label contract, recorded with the same reason.
    assert fallbacks and all(r.reason_code == "contract_label" for r in fallbacks)
    rejected = [r for r in rows if not r.answered_client and r.route != "shadow"]
    assert sorted(r.reason for r in rejected) == sorted(r.reason for r in fallbacks)
    assert all(r.exchange.model_served.startswith("claude-haiku-4-5") for r in rejected)
    answered = [r for r in rows if r.answered_client]
    triage = [r for r in answered if r.exchange.task == "ticket_triage"]
    assert len(triage) == 300 and {r.route for r in triage} == {"routed", "fallback"}
    assert all(r.exchange.model_served.startswith("claude-haiku-4-5") for r in triage if r.route == "routed")
    assert all(r.exchange.model_served.startswith("claude-opus-4-8") for r in fallbacks)
    others = [r for r in answered if r.route == "passthrough"]
    assert len(others) == 150 + 30 and not any(r.exchange.model_served.startswith("claude-haiku") for r in others)
    assert f"Fallbacks to the baseline, the client getting the baseline's answer: {len(fallbacks)}" in out
    # A sample of the routed answers was shadowed by the baseline and judged, recorded as route "shadow".
    shadow = [r for r in rows if r.route == "shadow"]
    assert shadow and {r.exchange.tags.get("drift") for r in shadow} >= {"baseline", "judge"}
    assert "Drift watch on ticket_triage" in out and "watching" in out
