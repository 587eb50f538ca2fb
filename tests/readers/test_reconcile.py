"""`parity reconcile`: logged traffic at Parity's prices against an Admin API cost report."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from parity.cli import app
from parity.reconcile import reconcile
from readers.fixtures import generate

PLANTED = {
    ("2026-11-03", "claude-opus-4-6", "cache_creation.ephemeral_1h_input_tokens", "standard"): Decimal("0.42"),
    ("2026-11-04", "claude-haiku-4-5", "output_tokens", "standard"): Decimal("-0.05"),
}


def test_clean_report_ties_out(fixtures: dict[str, Any]) -> None:
    for name in ("litellm.csv", "otlp.jsonl", "usage_report.jsonl", "helicone.jsonl"):
        data = reconcile([str(fixtures[name][0])], fixtures["cost_report.json"][0])
        assert data["flagged"] == 0, (name, [r for r in data["rows"] if r["flagged"]])
        assert Decimal(data["totals"]["difference_usd"]) == 0


def test_two_planted_differences_flag_exactly_those_cells(fixtures: dict[str, Any], calls: list[generate.Call],
                                                          tmp_path: Path) -> None:
    bill = tmp_path / "cost_report.json"
    generate.write_cost_report(bill, calls, PLANTED)
    out, page = tmp_path / "reconcile.json", tmp_path / "reconcile.html"
    result = CliRunner().invoke(app, ["reconcile", str(fixtures["litellm.json"][0]), "--cost-report", str(bill),
                                      "--json", str(out), "--html", str(page)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    flagged = [r for r in data["rows"] if r["flagged"]]
    assert [(r["date"], r["model"], r["cost_type"]) for r in flagged] == [
        ("2026-11-03", "claude-opus-4-6", "cache_write_1h"), ("2026-11-04", "claude-haiku-4-5", "output")]
    assert [Decimal(r["difference_usd"]) for r in flagged] == [Decimal("0.42"), Decimal("-0.05")]
    assert all(r["cause"] for r in flagged)
    for row in data["rows"]:
        assert set(row) >= {"date", "model", "cost_type", "logged_usd", "billed_usd", "difference_usd", "flagged"}
        assert Decimal(row["billed_usd"]) - Decimal(row["logged_usd"]) == Decimal(row["difference_usd"])
    assert {r["cost_type"] for r in data["rows"]} == {"input", "cache_write_5m", "cache_write_1h", "cache_read",
                                                       "output", "batch"}
    assert "2 cell(s) flagged" in result.output
    html = page.read_text()
    assert "cache_write_1h" in html and "<script" not in html and "http" not in html.split("<footer>")[0]
    assert [u["line"] for u in data["unpriced"]] == fixtures["litellm.json"][1]


def test_1h_writes_logged_as_5m_are_named(calls: list[generate.Call], tmp_path: Path) -> None:
    """A log that lost the TTL split (Helicone without bodies) against the true bill: the pair of cells is named."""
    rows = []
    for c in calls:
        rows.append({"request_id": c.ident, "request_created_at": c.started.isoformat(), "model": c.model,
                     "prompt_tokens": c.prompt, "completion_tokens": c.output, "prompt_cache_read_tokens": c.read,
                     "prompt_cache_write_tokens": c.w5 + c.w1,
                     "request_path": "/v1/messages/batches" if c.batch else "/v1/messages"})
    log = tmp_path / "helicone.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    bill = tmp_path / "cost.json"
    generate.write_cost_report(bill, calls)
    data = reconcile([str(log)], bill)
    flagged = [r for r in data["rows"] if r["flagged"]]
    assert flagged and {r["cost_type"] for r in flagged} <= {"cache_write_5m", "cache_write_1h", "batch"}
    assert any("1-hour cache writes logged as 5-minute" in r["cause"] for r in flagged)
