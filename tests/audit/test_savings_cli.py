"""`parity savings` (issue 12 item 4): the realised saving per lever and family from the gateway's ledger, next
to the audit's estimate, with the cache hit ratio before and after, and a flag on a fix that did not deliver."""

from __future__ import annotations

import copy
import json
from decimal import Decimal

from typer.testing import CliRunner

from parity.audit.plan import build_plan
from parity.audit import audit_exchanges
from parity.emulator.service import Emulator
from parity.exchange import write_jsonl
from parity.fingerprint import fingerprint
from parity.gateway.local import LocalGateway
from parity.policy import CachePlan
from tests.gateway.test_plan_apply import FAMILIES, _log, family_request


def test_savings_shows_realised_next_to_estimate_and_flags_a_breakpoint_that_reads_nothing(tmp_path):
    day1 = _log(Emulator(), n=6)
    log = tmp_path / "day1.jsonl"
    with log.open("w") as fh:
        write_jsonl(day1, fh)
    plan = build_plan(audit_exchanges(day1).to_json())
    stamp = fingerprint(family_request("stamp", 0))
    # a fix that cannot deliver: a breakpoint after a timestamp that changes on every request
    plan.tasks[stamp].cache_plan = CachePlan(fixes=["breakpoint"], why="test: forced")
    ledger = tmp_path / "ledger.db"
    with LocalGateway(Emulator(), policy=plan, ledger_url=str(ledger)) as gw:
        client = gw.client(max_retries=0)
        for i in range(4):
            for family in FAMILIES:
                client.messages.create(**copy.deepcopy(family_request(family, 200 + i)))
    out_json, out_html = tmp_path / "savings.json", tmp_path / "savings.html"
    from parity.cli import app

    result = CliRunner().invoke(app, ["savings", "--ledger", str(ledger), "--before", str(log),
                                      "--json", str(out_json), "--html", str(out_html)])
    assert result.exit_code == 0, result.output
    data = json.loads(out_json.read_text())
    rows = {(r["family"], r["lever"]): r for r in data["rows"]}
    for family in ("keys", "order", "nobp"):
        row = rows[(fingerprint(family_request(family, 0)), "cache")]
        assert row["hit_ratio_before"] == 0.0 and row["hit_ratio_after"] > 0.5, row
        assert Decimal(row["realised_usd"]) > 0 and Decimal(row["estimate_usd"]) > 0
        assert row["flag"] is None, row
        assert row["requests_before"] == 6 and row["requests_after"] == 4
    flagged = rows[(stamp, "cache")]
    assert flagged["hit_ratio_after"] == 0.0 and flagged["flag"].startswith("did not deliver")
    assert Decimal(flagged["realised_usd"]) < 0  # the writes it forced cost money
    assert Decimal(data["totals"]["cache"]["realised_usd"]) > 0
    assert "did not deliver" in result.output and "estimate" in result.output
    page = out_html.read_text()
    assert "<svg" in page and "hit ratio before" in page


def test_batch_and_rightsize_realised_from_the_ledgers_usage():
    from datetime import datetime, timezone

    from parity.audit.cost import Pricer
    from parity.audit.realised import period, realised
    from parity.exchange import Exchange

    usage = {"input_tokens": 1000, "output_tokens": 100}
    at = datetime(2026, 11, 30, tzinfo=timezone.utc)

    def ex(model: str, **kw) -> Exchange:
        return Exchange(request={"model": model, "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]},
                        response={"model": model, "usage": usage, "content": []}, started_at=at,
                        tags={"task": kw.pop("task")}, **kw)

    pricer = Pricer()
    after = period([ex("claude-opus-4-8", task="nightly", batch=True, route="deferred"),
                    ex("claude-haiku-4-5", task="triage", route="routed")], pricer)
    view = realised(after, pricer, baselines={"triage": "claude-opus-4-8"})
    rows = {(r.family, r.lever): r for r in view.rows}
    # batch: half of Opus's 1000 in + 100 out ($0.0075), realised as the 50 % discount
    assert rows[("nightly", "batch")].realised == Decimal("0.00375")
    # rightsize: the same tokens on the baseline (Opus: $0.0075) minus Haiku's bill ($0.0015)
    assert rows[("triage", "rightsize")].realised == Decimal("0.006")
