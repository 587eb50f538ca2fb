"""Levers stack on the slice where they overlap: computed on token vectors, never by adding percentages."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from parity.audit.cost import CostAcc, PriceKey, Pricer
from parity.audit.savings import Slice, stack

DAY = date(2026, 11, 24)
SONNET = PriceKey("claude-sonnet-4-6", DAY, False, None, None, 0)  # $3 in, $0.30 read, $15 out per MTok


def _acc(n: int, inp: int, w5: int, w1: int, read: int, out: int) -> CostAcc:
    acc = CostAcc()
    acc.add(SONNET, n, inp, w5, w1, read, out)
    return acc


def test_hand_computed_stack() -> None:
    # A nightly job: 1M prompt tokens of which 800k are a prefix sent uncached, 100k output tokens.
    job = Slice(_acc(1, 1_000_000, 0, 0, 0, 100_000), cache_delta=_acc(0, -800_000, 0, 0, 800_000, 0),
                batchable=True, candidate="claude-haiku-4-5")
    # An interactive request the right-size lever also applies to, nothing else.
    live = Slice(_acc(1, 1_000_000, 0, 0, 0, 0), candidate="claude-haiku-4-5")
    savings = stack(Pricer(), [job, live])

    # today: job 1M x $3 + 100k x $15 = $4.50; live $3.00
    assert savings.before == Decimal("7.50")
    # cache: job becomes 200k x $3 + 800k x $0.30 + $1.50 = $2.34 (saves $2.16)
    # batch: 50 % of what caching left on the job: $1.17, not 50 % of $4.50
    # right-size (Haiku 4.5: $1 in, $0.10 read, $5 out): job 200k x 1 + 800k x 0.1 + 100k x 5 = $0.78, batched $0.39;
    #            live $1.00
    assert savings.steps == [
        ("cache", Decimal("2.16"), Decimal("5.34")),
        ("batch", Decimal("1.17"), Decimal("4.17")),
        ("rightsize", Decimal("2.78"), Decimal("1.39")),
    ]
    # each lever alone, on today's bill: these overlap, so they do not add up
    assert savings.standalone == {"cache": Decimal("2.16"), "batch": Decimal("2.25"), "rightsize": Decimal("5.00")}
    assert sum(savings.standalone.values()) > savings.before  # adding them would claim more than the whole bill

    out = savings.to_dict()
    stacked = out["stacked"]
    assert stacked["cost_after_usd"] == "4.17" and stacked["saving_usd"] == "3.33"
    assert stacked["blended_saving_pct"] == 44.4  # (7.50 - 4.17) / 7.50
    assert stacked["with_hypotheses"] == {"cost_after_usd": "1.39", "saving_usd": "6.11", "blended_saving_pct": 81.47}
    assert [lv["hypothesis"] for lv in out["levers"]] == [False, False, True]
    assert any("never by adding percentages" in a for a in out["assumptions"])


def test_no_levers_no_savings() -> None:
    savings = stack(Pricer(), [Slice(_acc(3, 1000, 0, 0, 0, 10))])
    assert all(saving == 0 for _, saving, _ in savings.steps)
    assert savings.to_dict()["stacked"]["blended_saving_pct"] == 0.0
