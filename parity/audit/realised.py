"""The realised saving: what the plan's fixes delivered on the bill, read from the usage fields, next to the audit's
estimate (`parity savings`).

Why: an estimate is a promise; the seed's rule is "verify it in usage, not in your head". For each family and
lever this module compares a period before the plan (an audited log) with the period after (the gateway's
ledger), from the same exact prices:

* **cache**: a period's cache benefit is what its requests would cost with every prompt token billed as plain
  input, minus what they cost. The realised saving is the after period's benefit minus the before period's benefit
  per request times the after requests (caching that already happened is not the plan's). The hit ratio is
  cache reads over prompt tokens (input + writes + reads), from `usage`;
* **batch**: deferred requests (billed at batch rates) against the same usage at standard rates;
* **rightsize**: what the routed task's answers would have cost on the baseline, minus everything routing paid
  for them (routed answers, fallbacks, rejected candidate answers and the drift sample). The baseline's cost per
  request is the one its certificate measured on the test prompts, when the policy's certificate can be read;
  otherwise the routed tokens billed on the baseline model (`rightsize.as_billed`), which counts the tuned
  prompt's demonstrations as if the baseline had been sent them too, so it overstates.

The estimate is the before audit's saving for the family and lever, per request, times the after period's
requests. A fix that did not deliver is flagged: a breakpoint the gateway added whose requests still read
nothing, or a lever that delivered under half its estimate.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Context, Decimal, localcontext
from typing import Any

from parity.audit.cost import EXACT, CostAcc, Pricer, usage_counts, usd
from parity.audit.rightsize import as_billed
from parity.exchange import Exchange
from parity.fingerprint import fingerprint
from parity.policy import CACHE_FIX_TAG
from parity.task import named_task

__all__ = ["FamilyPeriod", "LeverRow", "SavingsView", "estimates_from_report", "family_of", "period", "realised",
           "scaled_estimate"]

LEVERS = ("cache", "batch", "rightsize")
ROUTING = ("routed", "fallback", "shadow")
"""The routes whose calls a routed task pays for (a rejected candidate answer is recorded under "routed")."""
_SCALE = Context(prec=40)


@dataclass
class FamilyPeriod:
    """One family's billed traffic in one period."""

    requests: int = 0
    cost: CostAcc = field(default_factory=CostAcc)
    uncached: CostAcc = field(default_factory=CostAcc)  # the same tokens, every prompt token as plain input
    batched: CostAcc = field(default_factory=CostAcc)  # the deferred requests, as billed
    routed: CostAcc = field(default_factory=CostAcc)  # the routed requests, as billed
    routing_paid: CostAcc = field(default_factory=CostAcc)  # every call routing made: answers, rejects, shadows
    routing_answers: int = 0  # requests a routed task answered (by the candidate, or the baseline on fallback)
    fixes: dict[str, int] = field(default_factory=dict)  # cache fix applied -> requests
    read_after_fix: int = 0  # requests with a gateway-added breakpoint that read the cache

    def hit_ratio(self) -> float:
        t = self.cost.tokens()
        prompt = t["input"] + t["cache_write_5m"] + t["cache_write_1h"] + t["cache_read"]
        return round(t["cache_read"] / prompt, 4) if prompt else 0.0


def family_of(exchange: Exchange) -> str:
    """The family the audit and the gateway give a request: its task name, else its template fingerprint."""
    named = named_task(exchange.request, tags=exchange.tags)
    return named.name if named is not None else fingerprint(exchange.request)


def period(exchanges: Iterable[Exchange], pricer: Pricer, *, routes: Mapping[int, str | None] | None = None
           ) -> dict[str, FamilyPeriod]:
    """Per family: the billed traffic of `exchanges` (answered, priced requests; the calls nobody was answered by,
    a rejected candidate answer or a drift-sample call, count only in what routing paid)."""
    out: dict[str, FamilyPeriod] = {}
    for exchange in exchanges:
        response = exchange.response
        if response is None or not isinstance(response.get("usage"), Mapping):
            continue
        model = response.get("model") or exchange.request.get("model")
        try:
            counts = usage_counts(response["usage"])
            key = pricer.key(str(model), response["usage"], counts, batch=exchange.batch, at=exchange.started_at)
        except Exception:  # noqa: BLE001 - an unpriceable row is the audit's to report, not ours
            continue
        fam = out.setdefault(family_of(exchange), FamilyPeriod())
        inp, w5, w1, read, output = counts
        if exchange.route in ROUTING:
            fam.routing_paid.add(key, 1, *counts)
        if exchange.tags.get("outcome") == "rejected" or exchange.route == "shadow":
            continue  # paid for, answered nobody
        if exchange.route in ("routed", "fallback"):
            fam.routing_answers += 1
        fam.requests += 1
        fam.cost.add(key, 1, *counts)
        fam.uncached.add(key, 1, inp + w5 + w1 + read, 0, 0, 0, output)
        if exchange.batch:
            fam.batched.add(key, 1, *counts)
        if exchange.route == "routed":
            fam.routed.add(key, 1, *counts)
        applied = exchange.tags.get(CACHE_FIX_TAG)
        if applied:
            for name in applied.split(","):
                fam.fixes[name] = fam.fixes.get(name, 0) + 1
            if "breakpoint" in applied and read:
                fam.read_after_fix += 1
    return out


@dataclass
class LeverRow:
    """One family and lever: estimate, realised saving, hit ratios, and a flag when the fix did not deliver."""

    family: str
    lever: str
    estimate: Decimal | None
    realised: Decimal
    requests_before: int
    requests_after: int
    hit_before: float | None
    hit_after: float
    fixes: dict[str, int]
    flag: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, "lever": self.lever,
                "estimate_usd": usd(self.estimate) if self.estimate is not None else None,
                "realised_usd": usd(self.realised), "requests_before": self.requests_before,
                "requests_after": self.requests_after, "hit_ratio_before": self.hit_before,
                "hit_ratio_after": self.hit_after, "fixes_applied": dict(self.fixes), "flag": self.flag}


@dataclass
class SavingsView:
    rows: list[LeverRow]
    before_label: str | None

    def totals(self) -> dict[str, dict[str, str | None]]:
        out: dict[str, dict[str, str | None]] = {}
        for lever in LEVERS:
            mine = [r for r in self.rows if r.lever == lever]
            est = [r.estimate for r in mine if r.estimate is not None]
            out[lever] = {"estimate_usd": usd(sum(est, Decimal(0))) if est else None,
                          "realised_usd": usd(sum((r.realised for r in mine), Decimal(0)))}
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"before": self.before_label, "totals": self.totals(), "rows": [r.to_dict() for r in self.rows],
                "method": __doc__.split("\n\n", 1)[1].strip() if __doc__ else ""}


def realised(after: Mapping[str, FamilyPeriod], pricer: Pricer, *, before: Mapping[str, FamilyPeriod] | None = None,
             estimates: Mapping[tuple[str, str], tuple[Decimal, int]] | None = None,
             baselines: Mapping[str, str] | None = None, before_label: str | None = None,
             baseline_costs: Mapping[str, Decimal] | None = None) -> SavingsView:
    """Realised saving per family and lever (see the module docstring). `estimates` maps (family, lever) to the
    before audit's (saving, requests it was estimated on); `baselines` maps a routed task to its baseline model,
    `baseline_costs` to the baseline's cost per request its certificate measured."""
    before = before or {}
    estimates = estimates or {}
    baselines = baselines or {}
    baseline_costs = baseline_costs or {}
    rows: list[LeverRow] = []
    with localcontext(EXACT):
        for fid in sorted(set(after) | {f for f, _ in estimates}):
            now = after.get(fid, FamilyPeriod())
            was = before.get(fid)
            for lever in LEVERS:
                value = _lever(lever, fid, now, was, pricer, baselines, baseline_costs)
                est = scaled_estimate(estimates.get((fid, lever)), now.requests)
                if value is None and est is None:
                    continue
                row = LeverRow(fid, lever, est, value or Decimal(0), was.requests if was else 0, now.requests,
                               was.hit_ratio() if was else None, now.hit_ratio(),
                               dict(now.fixes) if lever == "cache" else {})
                row.flag = _flag(row, now)
                rows.append(row)
    return SavingsView(rows, before_label)


def _lever(lever: str, fid: str, now: FamilyPeriod, was: FamilyPeriod | None, pricer: Pricer,
           baselines: Mapping[str, str], baseline_costs: Mapping[str, Decimal]) -> Decimal | None:
    if not now.requests:
        return None
    if lever == "cache":
        benefit = pricer.total(now.uncached) - pricer.total(now.cost)
        if was is not None and was.requests:
            benefit -= _per(pricer.total(was.uncached) - pricer.total(was.cost), was.requests, now.requests)
        return benefit if (now.fixes or benefit) else None
    if lever == "batch":
        if not now.batched:
            return None
        return pricer.total(now.batched.mapped(lambda k: k._replace(batch=False))) - pricer.total(now.batched)
    per_request = baseline_costs.get(fid)
    if per_request is not None and now.routing_answers:
        return per_request * now.routing_answers - pricer.total(now.routing_paid)
    baseline = baselines.get(fid)
    if not now.routed or baseline is None:
        return None
    return pricer.total(as_billed(now.routed, baseline)) - pricer.total(now.routed)


def scaled_estimate(estimate: tuple[Decimal, int] | None, requests: int) -> Decimal | None:
    """A (saving, requests it was estimated on) pair scaled to `requests` (None stays None)."""
    if estimate is None:
        return None
    saving, n = estimate
    return _per(saving, n, requests) if n else saving


def _per(amount: Decimal, n: int, times: int) -> Decimal:
    """amount / n * times, to a billionth of a dollar: scaling a period to another's volume is an estimate, so
    it is the one place money is rounded (exact sums stay exact)."""
    return _SCALE.quantize(_SCALE.divide(amount * times, n), Decimal("1e-9"))


def _flag(row: LeverRow, now: FamilyPeriod) -> str | None:
    bp = now.fixes.get("breakpoint", 0) + now.fixes.get("breakpoint_1h", 0)
    if row.lever == "cache" and bp >= 2 and now.read_after_fix == 0:
        return (f"did not deliver: the gateway added a breakpoint to {bp} requests and none read the cache (a prefix "
                "under the model's minimum, requests further apart than the TTL, or something before the "
                "breakpoint still changes per request: see `parity cache-diff`)")
    if row.lever == "cache" and not now.fixes and row.estimate:
        return ("not applied: the gateway changed none of these requests (the plan proposes a prompt change here, "
                "such as moving a timestamp out of the prefix, or does not name the family); the estimate waits on it")
    if row.lever == "rightsize" and not now.routing_answers and not now.routed and row.estimate:
        return ("not routed: the plan lists this as a `parity prove` command, and no certificate routes the family "
                "yet; the estimate waits on a proof")
    if row.estimate is not None and row.estimate > 0 and row.realised * 2 < row.estimate:
        return f"under-delivered: ${usd(row.realised)} of the estimated ${usd(row.estimate)}"
    return None


def estimates_from_report(report: Mapping[str, Any]) -> dict[tuple[str, str], tuple[Decimal, int]]:
    """(family, lever) -> (the audit's saving, the family's requests it was estimated on)."""
    requests = {row["family"]: row["requests"] for row in report.get("by_family", [])}
    out: dict[tuple[str, str], tuple[Decimal, int]] = {}
    for f in report.get("findings", []):
        if f["lever"] not in LEVERS:
            continue
        key = (f["family"], f["lever"])
        saving, n = out.get(key, (Decimal(0), requests.get(f["family"], 0)))
        out[key] = (saving + Decimal(f["saving_usd"]), n)
    return out
