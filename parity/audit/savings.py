"""Stacking the levers honestly: each one acts on what the previous ones left, on the slice it applies to.

Every lever is a transformation of the same exact token vectors (one per price key, per family, per batch
slice), so stacking needs no percentages at all:

1. **cache** adds its token moves (writes and uncached input of the stable prefix become reads);
2. **batch** sets the batch flag on the slices nobody waits on: 50 % of what *remains after caching* on those
   requests, not 50 % of the original bill;
3. **right-size** (a hypothesis until `parity prove` passes) prices what remains at the cheaper model.

The stacked saving is cost(before) − cost(after all three) computed on the vectors, so overlapping levers
multiply on the shared slice and a saving is never counted twice. Each lever's stand-alone saving (on today's
bill) is shown as well, with the note that those do not add up.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Context, Decimal, localcontext
from typing import Any

from parity.audit.cost import EXACT, CostAcc, PriceKey, Pricer, usd
from parity.audit.rightsize import as_billed

__all__ = ["ASSUMPTIONS", "Savings", "Slice", "stack"]

ASSUMPTIONS = [
    "Costs are exact: every request's logged usage priced with the dated price table (pricing.py); savings are "
    "the same token counts re-priced, so only the token moves of the cache lever are estimates.",
    "Cache: the stable prefix of a template family (tools + system, sized from logged usage) becomes byte-stable "
    "and gets a breakpoint at its end; a request reads it when an earlier request of the family wrote it, that "
    "writer's response had begun (its logged duration), and the gap is within the TTL; otherwise it writes it "
    "(1.25x input for 5m, 2x for 1h). Differences that name no known cause (e.g. per-user text in the system "
    "prompt) are left alone.",
    "TTL: 1 hour is recommended for a family only where the re-writes it avoids outweigh its higher write "
    "price, from the family's own gaps between requests.",
    "Batch: only traffic nobody waits on (job tags, job user agents, metadata, night-time bursts of "
    "non-streamed requests; never streamed or fast-mode requests) moves to the Message Batches API at 50 % of "
    "every category; it is applied to what remains after caching on those same requests.",
    "Right-size: a hypothesis until `parity prove` shows the cheaper model is at least as good within the "
    "margin; priced as billed: the same token counts at the cheaper model's price from the same table, under its "
    "own cache rules (a cached prefix below its minimum cacheable length is billed as full-price input; "
    "tokenizer differences between models are not modelled). It is applied last, to what remains.",
    "Stacked savings are computed on token vectors, never by adding percentages; per-lever savings on "
    "today's bill overlap and do not add up.",
]
ORDER = ("cache", "batch", "rightsize")


@dataclass
class Slice:
    """One family's slice of traffic: its cost vectors and what each lever may do to it."""

    cost: CostAcc
    cache_delta: CostAcc = field(default_factory=CostAcc)
    batchable: bool = False
    candidate: str | None = None


@dataclass
class Savings:
    before: Decimal
    standalone: dict[str, Decimal]
    applies_to: dict[str, Decimal]
    steps: list[tuple[str, Decimal, Decimal]]  # (lever, saving, cost after)
    assumptions: list[str]

    @property
    def proven_after(self) -> Decimal:
        return next((after for lever, _, after in reversed(self.steps) if lever != "rightsize"), self.before)

    @property
    def all_after(self) -> Decimal:
        return self.steps[-1][2] if self.steps else self.before

    def to_dict(self) -> dict[str, Any]:
        def pct(amount: Decimal) -> float:
            return round(float(Context(prec=28).divide(amount * 100, self.before)), 2) if self.before else 0.0

        proven_saving = self.before - self.proven_after
        all_saving = self.before - self.all_after
        return {
            "levers": [
                {
                    "lever": lever,
                    "saving_usd": usd(self.standalone[lever]),
                    "applies_to_usd": usd(self.applies_to[lever]),
                    "saving_pct_of_total": pct(self.standalone[lever]),
                    "hypothesis": lever == "rightsize",
                }
                for lever in ORDER
            ],
            "stacked": {
                "order": list(ORDER),
                "cost_before_usd": usd(self.before),
                "steps": [
                    {"lever": lever, "saving_usd": usd(saving), "cost_after_usd": usd(after),
                     "hypothesis": lever == "rightsize"}
                    for lever, saving, after in self.steps
                ],
                "cost_after_usd": usd(self.proven_after),
                "saving_usd": usd(proven_saving),
                "blended_saving_pct": pct(proven_saving),
                "with_hypotheses": {
                    "cost_after_usd": usd(self.all_after),
                    "saving_usd": usd(all_saving),
                    "blended_saving_pct": pct(all_saving),
                },
                "sum_of_standalone_usd": usd(sum(self.standalone.values(), Decimal(0))),
            },
            "assumptions": list(self.assumptions),
        }


def stack(pricer: Pricer, slices: Iterable[Slice]) -> Savings:
    """Stand-alone and stacked savings of the three levers over `slices` (exact on the token vectors)."""
    before = after_cache = after_batch = after_all = Decimal(0)
    standalone = dict.fromkeys(ORDER, Decimal(0))
    applies = dict.fromkeys(ORDER, Decimal(0))
    with _exact():
        for sl in slices:
            now = pricer.total(sl.cost)
            before += now
            cached = CostAcc().merge(sl.cost).merge(sl.cache_delta)
            c1 = pricer.total(cached)
            after_cache += c1
            if sl.cache_delta:
                standalone["cache"] += now - c1
                applies["cache"] += now
            v2 = cached
            if sl.batchable:
                v2 = cached.mapped(_batched)
                standalone["batch"] += now - pricer.total(sl.cost.mapped(_batched))
                applies["batch"] += now
            c2 = pricer.total(v2)
            after_batch += c2
            if sl.candidate:  # priced as billed: the candidate's own cache rules on what remains
                standalone["rightsize"] += now - pricer.total(as_billed(sl.cost, sl.candidate))
                applies["rightsize"] += now
                c3 = pricer.total(as_billed(v2, sl.candidate))
            else:
                c3 = c2
            after_all += c3
    steps = [
        ("cache", before - after_cache, after_cache),
        ("batch", after_cache - after_batch, after_batch),
        ("rightsize", after_batch - after_all, after_all),
    ]
    return Savings(before, standalone, applies, steps, list(ASSUMPTIONS))


def _batched(key: Any) -> Any:
    return key._replace(batch=True) if isinstance(key, PriceKey) else key


def _exact() -> Any:
    return localcontext(EXACT)
