"""Right-size priced as billed (issue 12 item 3): a candidate's cost is re-simulated under its own cache rules.

A 2,300-token prefix cached on Opus 4.8 (minimum 1,024) is not cacheable on Haiku 4.5 (minimum 4,096): every read
becomes full-price input there, so Haiku costs more than Opus; the audit says so and proposes the next model up
that does save."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from parity.audit import AuditOptions, audit_exchanges
from parity.audit.cost import CostAcc, Pricer
from parity.audit.rightsize import as_billed
from parity.exchange import Exchange

OPUS, HAIKU = "claude-opus-4-8", "claude-haiku-4-5"
T0 = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)


def _log(n: int = 30, prefix: int = 2300, suffix: int = 50, out: int = 4) -> list[Exchange]:
    items = []
    for i in range(n):
        first = i == 0
        usage = {"input_tokens": suffix, "output_tokens": out,
                 "cache_read_input_tokens": 0 if first else prefix,
                 "cache_creation_input_tokens": prefix if first else 0}
        request = {"model": OPUS, "max_tokens": 8, "system": [
            {"type": "text", "text": "Label the ticket as bug, feature or question. " * 200,
             "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": f"Ticket {i}: the app crashes on save"}]}
        response = {"id": f"msg_{i}", "type": "message", "role": "assistant", "model": OPUS,
                    "content": [{"type": "text", "text": ("bug", "feature", "question")[i % 3]}],
                    "stop_reason": "end_turn", "usage": usage}
        items.append(Exchange(request=request, response=response, started_at=T0 + timedelta(seconds=30 * i),
                              duration_ms=400, tags={"task": "triage"}))
    return items


def test_haiku_below_its_minimum_costs_more_than_opus_and_the_next_model_up_is_proposed():
    report = audit_exchanges(_log(), options=AuditOptions(candidate_model=HAIKU)).to_json()
    (row,) = report["rightsize"]["candidates"]
    assert row["rejected_model"] == HAIKU
    assert Decimal(row["rejected_cost_usd"]) > Decimal(row["cost_usd"])  # Haiku costs more than Opus, as billed
    assert "4,096" in row["note"] and "2,3" in row["note"]
    assert row["candidate_model"] not in (HAIKU, OPUS)
    assert Decimal(row["saving_if_proven_usd"]) > 0
    finding = next(f for f in report["findings"] if f["lever"] == "rightsize")
    assert finding["detail"]["rejected_model"] == HAIKU and finding["detail"]["candidate_model"] == row["candidate_model"]


def test_billed_estimate_for_a_below_minimum_prefix_is_at_least_the_uncached_price_of_its_prompt():
    """The done-when test: never cheaper than paying for every prompt token as plain input on the cheaper model."""
    pricer = Pricer()
    acc = CostAcc()
    for ex in _log():
        u = ex.response["usage"]
        counts = (u["input_tokens"], u["cache_creation_input_tokens"], 0, u["cache_read_input_tokens"],
                  u["output_tokens"])
        acc.add(pricer.key(OPUS, u, counts, batch=False, at=ex.started_at), 1, *counts)
    billed = pricer.total(as_billed(acc, HAIKU))
    tokens = acc.tokens()
    prompt = tokens["input"] + tokens["cache_write_5m"] + tokens["cache_write_1h"] + tokens["cache_read"]
    key = next(iter(acc.v))._replace(model=HAIKU)
    uncached = CostAcc()
    uncached.add(key, acc.requests, prompt, 0, 0, 0, 0)
    assert billed >= pricer.total(uncached)
    assert billed > pricer.total(acc)  # and above what Opus bills today
    # the old estimate (logged reads repriced at Haiku's read price) was below it: the bug this fixes
    assert pricer.total(acc.mapped(lambda k: k._replace(model=HAIKU))) < pricer.total(uncached)


def test_a_prefix_above_the_minimum_keeps_its_cache_reads():
    pricer = Pricer()
    acc = CostAcc()
    usage = {"input_tokens": 10, "cache_read_input_tokens": 5000, "output_tokens": 4}
    key = pricer.key(OPUS, usage, (10, 0, 0, 5000, 4), batch=False, at=T0)
    acc.add(key, 1, 10, 0, 0, 5000, 4)
    moved = as_billed(acc, HAIKU)
    assert list(moved.v.values()) == [[1, 10, 0, 0, 5000, 4]]
    assert next(iter(moved.v)).model == HAIKU
