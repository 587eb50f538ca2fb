"""The report's top-level `sources`: each input's records and Parity's cost, beside the source's own cost."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

from parity.audit import audit_exchanges, audit_paths, validate_report
from parity.exchange import Exchange, write_jsonl
from parity.pricing import cost


def _exchanges(n: int, *, source_cost: bool = False) -> list[Exchange]:
    out = []
    start = datetime(2026, 11, 2, 9, tzinfo=timezone.utc)
    for i in range(n):
        usage = {"input_tokens": 10 + i, "cache_read_input_tokens": 3000 if i % 2 else 0,
                 "cache_creation_input_tokens": 1500, "output_tokens": 40,
                 "cache_creation": {"ephemeral_5m_input_tokens": 500, "ephemeral_1h_input_tokens": 1000}}
        tags = {}
        if source_cost:  # a tool that prices 1-hour writes at the 5-minute rate
            flat = {**usage, "cache_creation": {"ephemeral_5m_input_tokens": 1500, "ephemeral_1h_input_tokens": 0}}
            tags["source.cost_usd"] = str(cost("claude-sonnet-4-6", flat, at=start).total)
        out.append(Exchange(request={"model": "claude-sonnet-4-6", "messages": [{"role": "user", "content": f"q{i}"}]},
                            response={"id": f"m{i}", "model": "claude-sonnet-4-6", "content": [], "usage": usage},
                            started_at=start + timedelta(minutes=i), tags=tags))
    return out


def _total(exchanges: list[Exchange]) -> Decimal:
    return sum((cost(e.response["model"], e.response["usage"], at=e.started_at).total for e in exchanges), Decimal(0))


def test_exchange_jsonl_has_no_source_cost(tmp_path: Path) -> None:
    log = tmp_path / "a.jsonl"
    items = _exchanges(30)
    with open(log, "w") as out:
        write_jsonl(items, out)
    data = audit_paths([str(log)], workers=1).data
    validate_report(data)
    (source,) = data["sources"]
    assert Decimal(source["cost_usd"]) == _total(items)
    assert source == {**source, "path": str(log), "format": "jsonl", "records": 30, "source_cost_usd": None,
                      "agrees": None, "bodies": "all", "needs_bodies": []}


def test_parallel_read_keeps_the_per_source_cost(tmp_path: Path) -> None:
    logs = []
    for name, n in (("a.jsonl", 40), ("b.jsonl", 25)):
        with open(tmp_path / name, "w") as out:
            write_jsonl(_exchanges(n), out)
        logs.append(str(tmp_path / name))
    serial = audit_paths(logs, workers=1).data["sources"]
    parallel = audit_paths(logs, workers=2).data["sources"]
    assert [(s["path"], s["records"], s["cost_usd"]) for s in serial] == \
        [(s["path"], s["records"], s["cost_usd"]) for s in parallel]
    assert Decimal(serial[0]["cost_usd"]) + Decimal(serial[1]["cost_usd"]) == \
        Decimal(audit_paths(logs, workers=1).data["totals"]["cost_usd"])


def test_source_cost_difference_is_explained() -> None:
    items = _exchanges(20, source_cost=True)
    data = audit_exchanges(items, source="tool-export").data
    (source,) = data["sources"]
    assert Decimal(source["cost_usd"]) == _total(items)
    assert Decimal(source["difference_usd"]) < 0 and source["agrees"] is False
    assert source["explanation_id"] == "ttl_1h_at_5m" and "5-minute rate" in source["explanation"]
    assert source["models"][0]["model"] == "claude-sonnet-4-6"


def test_html_report_shows_each_source_beside_parity(tmp_path: Path) -> None:
    from parity.audit.report import BUG_PATTERNS
    from parity.report.audit_html import money, render_audit_html, write_audit_html

    plain = tmp_path / "plain<b>.jsonl"  # a path that must be escaped, not rendered
    with open(plain, "w") as out:
        write_jsonl(_exchanges(5), out)
    data = audit_exchanges([("tool-export.csv", n, e) for n, e in enumerate(_exchanges(20, source_cost=True), 1)]
                           + [(str(plain), n, e) for n, e in enumerate(_exchanges(5), 1)]).data
    page = render_audit_html(data)
    section = page.split("Sources: Parity&#x27;s cost beside each tool&#x27;s own")[1].split("<h2")[0]
    tool, other = data["sources"]
    for cell in ("tool-export.csv", ">20<", money(tool["cost_usd"]), money(tool["source_cost_usd"]),
                 money(tool["difference_usd"]), money(other["cost_usd"]),
                 "differs: " + dict(BUG_PATTERNS)["ttl_1h_at_5m"],
                 "no cost in this source", "plain&lt;b&gt;.jsonl", "tool-export.csv by model", "claude-sonnet-4-6"):
        assert cell in section, cell
    assert "plain<b>" not in page
    assert "differs: " in write_audit_html(data, tmp_path / "audit.html").read_text()
    del data["sources"]
    assert "Sources:" not in render_audit_html(data)  # a report without sources (older JSON) still renders
