"""Cost totals equal the sum of per-request exact costs; malformed and unpriced lines are reported, never priced."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from parity.audit import audit_paths, validate_report
from parity.audit.cost import CostAcc, Pricer
from parity.exchange import Exchange, read_jsonl
from parity.pricing import cost

from . import POLICY, LogBuilder, system_block, user


def _exchange(model: str, usage: dict, *, day: int = 24, batch: bool = False, hour: int = 10, **request: object) -> str:
    return Exchange(
        request={"model": model, "max_tokens": 100, "messages": user("hi"), **request},
        response={"id": "msg_1", "type": "message", "role": "assistant", "model": model,
                  "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn", "usage": usage},
        started_at=datetime(2026, 11, day, hour, tzinfo=timezone.utc), duration_ms=500, batch=batch,
    ).to_json()


def _sum_of_exact_costs(path: Path) -> Decimal:
    total = Decimal(0)
    for _, item in read_jsonl(path):
        if isinstance(item, Exchange) and item.response is not None:
            try:
                total += cost(item.response["model"], item.response["usage"], batch=item.batch,
                              at=item.started_at).total
            except Exception:
                continue
    return total


def test_totals_equal_sum_of_per_request_costs(tmp_path: Path) -> None:
    b = LogBuilder()
    for i in range(20):
        b.send({"model": "claude-sonnet-4-6", "max_tokens": 100, "system": system_block("Agent A. " + POLICY),
                "messages": user(f"q{i}")}, gap=45)
        b.send({"model": "claude-opus-4-8", "max_tokens": 100, "system": system_block("Agent B. " + POLICY, ttl="1h"),
                "messages": user(f"q{i}")}, gap=700, batch=i % 3 == 0)
        b.send({"model": "claude-haiku-4-5", "max_tokens": 50, "messages": user(f"short {i}")}, gap=3600 * 5)
    lines = b.lines + [
        _exchange("claude-haiku-5-5", {"input_tokens": 150_000, "output_tokens": 900}),  # long-prompt band
        _exchange("claude-haiku-5-5", {"input_tokens": 90_000, "output_tokens": 900}),
        _exchange("claude-opus-4-8", {"input_tokens": 1234, "output_tokens": 77, "inference_geo": "us"}),
        _exchange("claude-opus-4-8", {"input_tokens": 1234, "output_tokens": 77, "speed": "fast"}),
        _exchange("claude-sonnet-4-5-20250929", {"input_tokens": 10, "cache_read_input_tokens": 7, "output_tokens": 3,
                                                 "service_tier": "batch"}),
    ]
    path = tmp_path / "log.jsonl"
    path.write_text("\n".join(lines) + "\n")
    report = audit_paths([str(path)]).to_json()
    validate_report(report)
    expected = _sum_of_exact_costs(path)
    assert Decimal(report["totals"]["cost_usd"]) == expected  # exact, not merely to the micro-dollar
    assert report["totals"]["requests"] == 65
    assert sum(Decimal(m["cost_usd"]) for m in report["by_model"]) == expected
    assert sum(Decimal(d["cost_usd"]) for d in report["by_day"]) == expected
    assert sum(Decimal(f["cost_usd"]) for f in report["by_family"]) == expected
    assert Decimal(report["totals"]["input_cost_usd"]) + Decimal(report["totals"]["output_cost_usd"]) == expected
    assert Decimal(report["totals"]["breakdown"]["batch_discount"]) < 0
    models = {m["model"] for m in report["by_model"]}
    assert "claude-sonnet-4-5" in models  # the dated alias is priced as its canonical model


def test_malformed_lines_are_reported_and_the_rest_audited(tmp_path: Path) -> None:
    good = _exchange("claude-sonnet-4-6", {"input_tokens": 1000, "output_tokens": 100})
    lines = [
        good,
        "{this is not json",
        json.dumps({"request": {"model": "claude-sonnet-4-6", "messages": []}, "started_at": "2026-11-24T10:00:00Z"}),
        json.dumps({"response": {"usage": {}}, "started_at": "2026-11-24T10:00:00Z"}),
        _exchange("claude-imaginary-9", {"input_tokens": 1000, "output_tokens": 100}),
        _exchange("claude-sonnet-4-6", {"input_tokens": -5, "output_tokens": 100}),
        "",
        good,
        json.dumps({"request": {"model": "claude-sonnet-4-6"}, "response": {"model": "claude-sonnet-4-6"},
                    "started_at": "2026-11-24T10:00:00Z"}),
        json.dumps({"request": {"model": "claude-sonnet-4-6"}, "error": {"type": "error", "error": {
            "type": "overloaded_error", "message": "Overloaded"}}, "started_at": "2026-11-24T10:00:00Z"}),
    ]
    path = tmp_path / "log.jsonl"
    path.write_text("\n".join(lines) + "\n")
    report = audit_paths([str(path)]).to_json()
    validate_report(report)
    bad = {m["line"]: m["reason"] for m in report["malformed"]}
    assert sorted(bad) == [2, 3, 4, 5, 6, 9]
    assert all(m["file"] == str(path) for m in report["malformed"])
    assert "not valid JSON" in bad[2]
    assert "response" in bad[3] and "error" in bad[3]
    assert "request" in bad[4]
    assert "claude-imaginary-9" in bad[5] and "--prices" in bad[5]
    assert "input_tokens" in bad[6] and "-5" in bad[6]
    assert "usage" in bad[9]
    assert report["totals"]["malformed"] == 6
    assert report["totals"]["errors"] == 1
    assert report["totals"]["requests"] == 2  # the unpriced model is left out, never priced at zero
    assert Decimal(report["totals"]["cost_usd"]) == 2 * cost("claude-sonnet-4-6", {"input_tokens": 1000,
                                                                                    "output_tokens": 100}).total


def test_malformed_list_is_bounded_but_all_are_counted(tmp_path: Path) -> None:
    from parity.audit import AuditOptions

    path = tmp_path / "log.jsonl"
    path.write_text("{bad\n" * 50)
    report = audit_paths([str(path)], options=AuditOptions(max_malformed=10)).to_json()
    assert report["totals"]["malformed"] == 50 and len(report["malformed"]) == 10
    assert [m["line"] for m in report["malformed"]] == list(range(1, 11))


_USAGE = st.fixed_dictionaries(
    {"input_tokens": st.integers(0, 300_000), "output_tokens": st.integers(0, 50_000),
     "cache_read_input_tokens": st.integers(0, 200_000)},
    optional={"cache_creation": st.fixed_dictionaries({"ephemeral_5m_input_tokens": st.integers(0, 90_000),
                                                       "ephemeral_1h_input_tokens": st.integers(0, 90_000)}),
              "inference_geo": st.sampled_from(["us", "global"]), "service_tier": st.sampled_from(["batch", "standard"])},
)


@settings(max_examples=200, deadline=None)
@given(model=st.sampled_from(["claude-haiku-5-5", "claude-sonnet-4-5", "claude-opus-4-8", "claude-sonnet-5-5",
                              "claude-haiku-4-5-20251001", "claude-fable-5-1"]),
       usage=_USAGE, batch=st.booleans(), day=st.dates(date(2026, 9, 1), date(2026, 12, 31)))
def test_accumulated_pricing_matches_pricing_cost(model: str, usage: dict, batch: bool, day: date) -> None:
    """The audit's token-vector accumulator prices exactly like pricing.cost, request by request and summed."""
    split = usage.get("cache_creation")
    if split is not None:
        usage = {**usage, "cache_creation_input_tokens": sum(split.values())}
    pricer = Pricer()
    from parity.audit.cost import usage_counts

    counts = usage_counts(usage)
    key = pricer.key(model, usage, counts, batch=batch, at=day)
    acc = CostAcc()
    acc.add(key, 1, *counts)
    acc.add(key, 1, *counts)
    expected = cost(model, usage, batch=batch, at=day)
    assert pricer.breakdown(acc).total == expected.total * 2


def test_odd_request_shapes_never_stop_the_audit(tmp_path: Path) -> None:
    usage = {"input_tokens": 10, "output_tokens": 2}
    odd = [
        _exchange("claude-sonnet-4-6", usage, tools={"not": "a list"}, system=7),
        _exchange("claude-sonnet-4-6", usage, system=[1, {"type": "text"}, {"text": None}], tools=[3, None]),
        _exchange("claude-sonnet-4-6", usage, messages="hello"),
        _exchange("claude-sonnet-4-6", usage, messages=[{"role": "user", "content": [7, {"type": "image"}]}]),
        json.dumps({"request": {"model": "claude-sonnet-4-6", "messages": [], "metadata": {"n": 10**30}},
                    "response": {"model": "claude-sonnet-4-6", "content": 5, "usage": usage},
                    "started_at": "2026-11-24T10:00:00Z"}),
    ]
    path = tmp_path / "log.jsonl"
    path.write_text("\n".join(odd) + "\n")
    report = audit_paths([str(path)]).to_json()
    validate_report(report)
    priced = report["totals"]["requests"] + report["totals"]["malformed"]
    assert priced == 5
    assert Decimal(report["totals"]["cost_usd"]) == _sum_of_exact_costs(path)
