"""What routing a task to the candidate really costs per request, and the saving it leaves.

Not only the candidate's answers: the baseline again for the answers that break the output contract (the
gateway falls back), and the drift watch's shadow sample (a baseline answer and two judge calls, at the batch
prices the drift watch pays). Amounts are exact Decimal USD; means and shares are rounded to PLACES.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any

from parity import pricing
from parity.contract import check
from parity.errors import ParityError
from parity.policy import Contract, TaskPolicy
from parity.pricing import PriceTable
from parity.proof.calls import result_field
from parity.proof.data import ProofItem
from parity.proof.judge import judge_params, same_answer
from parity.proof.judge_prompt import question_text
from parity.prompt import count_request

DRIFT_BATCH = True
"""The drift watch sends its baseline and judge calls through Message Batches by default (DriftMonitor via="batch")."""
DRIFT_JUDGE_CALLS = 2
"""Each shadowed request is judged in both orders."""
JUDGE_REPLY_TOKENS = 200
"""A judge reply's length when the proof made no judge calls to measure it: the judge prompt asks for a short
explanation and a verdict. Judge-scored proofs use their own calls' usage instead."""
PLACES = Decimal("1e-12")
"""Means and shares of exact amounts are rounded to a millionth of a micro-dollar, as the runner's means are."""


@dataclass(frozen=True)
class RoutingCost:
    """Per-request cost of routing a task to the candidate, and the saving it leaves (Decimal USD, exact up to
    PLACES where a share or mean is taken). None where a part is unknown."""

    baseline_per_request: Decimal | None
    candidate_per_request: Decimal | None
    fallback_rate: Decimal | None
    """Share of the candidate's test answers that broke the output contract: the gateway pays the baseline again."""
    fallback_cost_per_request: Decimal | None
    shadow_rate: Decimal
    drift_cost_per_request: Decimal | None
    """shadow_rate × (a baseline answer + two judge calls), at the drift watch's (batch) prices."""
    net_candidate_per_request: Decimal | None
    saving_per_request: Decimal | None
    projected_monthly_saving: Decimal | None


def _q(value: Decimal) -> Decimal:
    """Rounded to PLACES; zero stays a plain 0 rather than 0E-12."""
    rounded = value.quantize(PLACES)
    return rounded if rounded else Decimal(0)


def routing_cost(*, baseline: Decimal | None, candidate: Decimal | None, fallbacks: int, answers: int,
                 shadow_rate: Decimal, shadow_baseline: Decimal | None, judge_call: Decimal | None,
                 monthly_requests: int | None, differing: int | None = None) -> RoutingCost:
    """net = candidate + baseline × fallbacks/answers
             + shadow_rate × (shadow_baseline + 2 × judge_call × differing/answers);
    saving = baseline − net; monthly = saving × monthly_requests.

    `differing` counts the test answers that are not the baseline's text: the judge loop scores identical answers
    as a tie without a call, so only those cost the drift watch its two judge calls (all of them when unknown)."""
    rate = _q(Decimal(fallbacks) / Decimal(answers)) if answers else None
    fallback = _q(baseline * fallbacks / answers) if baseline is not None and answers else None
    drift = None
    if shadow_baseline is not None and judge_call is not None:
        judged = Decimal(differing) / Decimal(answers) if differing is not None and answers else Decimal(1)
        drift = _q(shadow_rate * (shadow_baseline + DRIFT_JUDGE_CALLS * judge_call * judged))
    net = candidate + fallback + drift if None not in (candidate, fallback, drift) else None  # type: ignore[operator]
    saving = baseline - net if baseline is not None and net is not None else None
    monthly = saving * monthly_requests if saving is not None and monthly_requests is not None else None
    return RoutingCost(baseline, candidate, rate, fallback, shadow_rate, drift, net, saving, monthly)


def default_shadow_rate() -> Decimal:
    """The share of routed requests a policy shadows unless it says otherwise (TaskPolicy.shadow_rate's default)."""
    rate = next(f.default for f in fields(TaskPolicy) if f.name == "shadow_rate")
    return Decimal(str(rate))


def contract_failures(observations: Sequence[Mapping[str, Any]], contract: Contract,
                      calls: Mapping[str, Any] | None = None) -> int:
    """How many stored candidate answers the gateway's output-contract check would reject (and fall back on).

    The stop reason comes from the call's result where the run kept it (a truncated answer is a fallback)."""
    failed = 0
    for obs in observations:
        result = (calls or {}).get(obs.get("candidate_request_key") or "")
        stop = obs.get("candidate_stop_reason") or result_field(result, "stop_reason") or "end_turn"
        message = {"content": [{"type": "text", "text": obs.get("candidate_output") or ""}], "stop_reason": stop}
        failed += check(message, contract) is not None
    return failed


def usage_cost(model: str, usage: Mapping[str, Any] | None, *, batch: bool = False,
               table: PriceTable | None = None) -> Decimal | None:
    """What one call with `usage` costs on `model`: at batch or standard rates as `batch` says (the usage's own
    `service_tier` is set aside), fast mode kept at standard rates and dropped at batch rates, where it does not
    exist. None when there is no usage; a model the price table does not know raises `PriceError`."""
    if not usage:
        return None
    drop = ("service_tier", "speed") if batch else ("service_tier",)
    plain = {k: v for k, v in usage.items() if k not in drop}
    return pricing.cost(model, plain, batch=batch, table=table).total


def mean_cost(values: Sequence[Decimal]) -> Decimal | None:
    """Mean cost per call, to PLACES (a mean of exact amounts is not itself exact); None for no values."""
    return _q(sum(values, Decimal(0)) / len(values)) if values else None


def judge_call_cost(observations: Sequence[Mapping[str, Any]], judge_model: str, *,
                    calls: Mapping[str, Any] | None = None, items: Mapping[str, ProofItem] | None = None,
                    table: PriceTable | None = None) -> tuple[Decimal | None, str]:
    """(mean cost of one drift-watch judge call at batch prices, how it was found).

    From the proof's own judge calls where the run kept their usage; otherwise from the token count of the judge
    request the drift watch would send for each prompt, with a reply of JUDGE_REPLY_TOKENS."""
    costs = []
    for obs in observations:
        for order in (obs.get("judgment") or {}).get("orders", []):
            result = (calls or {}).get(order.get("request_key") or "")
            if result is not None:
                value = usage_cost(str(result_field(result, "model")), result_field(result, "usage"), batch=DRIFT_BATCH, table=table)
                if value is not None:
                    costs.append(value)
    if costs:
        return mean_cost(costs), f"the mean of this proof's {len(costs)} judge calls, at batch prices"
    for obs in observations:
        item = (items or {}).get(obs["id"])
        if item is None:
            continue
        params = judge_params(judge_model, question_text(item.request), obs.get("baseline_output") or "",
                              obs.get("candidate_output") or "")
        value = usage_cost(judge_model, {"input_tokens": count_request(params), "output_tokens": JUDGE_REPLY_TOKENS},
                       batch=DRIFT_BATCH, table=table)
        if value is not None:
            costs.append(value)
    if not costs:
        return None, "no judge cost could be estimated"
    return mean_cost(costs), (f"estimated from the token counts of {len(costs)} judge requests and a reply of "
                          f"{JUDGE_REPLY_TOKENS} tokens (this proof made no judge calls to measure), at batch prices")


def routing_cost_of(observations: Sequence[Mapping[str, Any]], *, candidate_cost: Decimal | None,
                    baseline_cost: Decimal | None, baseline_model: str, judge_model: str | None,
                    monthly_requests: int | None, contract: Contract, calls: Mapping[str, Any],
                    items: Mapping[str, ProofItem], table: PriceTable | None,
                    shadow_rate: Decimal) -> tuple[RoutingCost, int, str]:
    """The routing cost of a candidate from its test answers (`observations`, empty when none was chosen):
    (the cost, how many answers broke the contract, how the judge call's cost was found)."""
    fallbacks = contract_failures(observations, contract, calls)
    shadow_baseline = mean_cost([c for c in (usage_cost(baseline_model, items[o["id"]].baseline_usage, batch=DRIFT_BATCH,
                                                table=table) for o in observations if o["id"] in items)
                             if c is not None])
    judge, how = (judge_call_cost(observations, judge_model or baseline_model, calls=calls, items=items, table=table)
                  if observations else (None, "no test answers"))
    differing = sum(not same_answer(o.get("baseline_output") or "", o.get("candidate_output") or "")
                    for o in observations)
    cost = routing_cost(baseline=baseline_cost, candidate=candidate_cost, fallbacks=fallbacks,
                        answers=len(observations), shadow_rate=shadow_rate, shadow_baseline=shadow_baseline,
                        judge_call=judge, monthly_requests=monthly_requests, differing=differing)
    return cost, fallbacks, how

__all__ = ["DRIFT_BATCH", "DRIFT_JUDGE_CALLS", "JUDGE_REPLY_TOKENS", "PLACES", "RoutingCost", "contract_failures",
           "default_shadow_rate", "judge_call_cost", "routing_cost", "routing_cost_of"]
