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


def _mock(pages: list[Any], seen: list[Any]) -> Any:
    import httpx2

    def answer(request: Any) -> Any:
        seen.append(request)
        status, body = pages[min(len(seen), len(pages)) - 1]
        return httpx2.Response(status, json=body)

    return httpx2.MockTransport(answer)


def test_fetch_follows_every_page_with_the_admin_key(monkeypatch: Any) -> None:
    from datetime import datetime, timezone

    from parity.readers.anthropic_admin import COST_FORMAT, fetch_report

    monkeypatch.setenv("ANTHROPIC_ADMIN_KEY", "sk-ant-admin01-k")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "https://bill.example")
    pages = [(200, {"data": [], "has_more": True, "next_page": f"page_{n}"}) for n in range(2)]
    pages.append((200, {"data": [], "has_more": False, "next_page": None}))
    seen: list[Any] = []
    got = fetch_report(COST_FORMAT, datetime(2026, 11, 2, tzinfo=timezone.utc),
                       datetime(2026, 11, 4, tzinfo=timezone.utc), transport=_mock(pages, seen))
    assert len(got) == 3 and [r.url.params.get("page") for r in seen] == [None, "page_0", "page_1"]
    first = seen[0]
    assert str(first.url).startswith("https://bill.example/v1/organizations/cost_report?")
    assert first.headers["x-api-key"] == "sk-ant-admin01-k" and first.headers["anthropic-version"] == "2023-06-01"
    assert first.url.params.get_list("group_by[]") == ["description"]
    assert first.url.params["starting_at"] == "2026-11-02T00:00:00Z" and first.url.params["bucket_width"] == "1d"


def test_fetch_errors_say_what_went_wrong(monkeypatch: Any) -> None:
    from datetime import datetime, timezone

    import pytest

    from parity.errors import InputError
    from parity.readers.anthropic_admin import USAGE_FORMAT, fetch_report

    day = datetime(2026, 11, 2, tzinfo=timezone.utc)
    monkeypatch.delenv("ANTHROPIC_ADMIN_KEY", raising=False)
    with pytest.raises(InputError, match="set ANTHROPIC_ADMIN_KEY"):
        fetch_report(USAGE_FORMAT, day, day, transport=_mock([], []))
    stuck = [(200, {"data": [], "has_more": True, "next_page": "page_a"})]
    with pytest.raises(InputError, match="no new next_page"):
        fetch_report(USAGE_FORMAT, day, day, key="sk-ant-admin01-k", transport=_mock(stuck, []))
    broken = [(500, {"type": "error", "error": {"type": "api_error", "message": "Internal server error"}})]
    with pytest.raises(InputError, match="500 api_error: Internal server error"):
        fetch_report(USAGE_FORMAT, day, day, key="sk-ant-admin01-k", transport=_mock(broken, []))
