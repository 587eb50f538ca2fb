"""The pairwise judge runner: both orders on every prompt, robust verdict parsing, and the diagnostics every run
reports (reference proof-science §1.2, §1.5).

- Both orders: position bias leaves 15–35% inconsistent verdicts in one order; averaging the two orders keeps
  the information a "map inconsistent to tie" rule throws away. The per-prompt score is the mean of the two
  orders from the candidate's side, so X ∈ {0, ¼, ½, ¾, 1}, and an identical candidate has E[X] = ½.
- The baseline's output is the anchor and the judge is the baseline model or a stronger one, never the
  candidate's: self-preference toward the baseline only makes switching harder.
- A reply with no verdict token is asked once more; a second failure counts as a tie and is reported.
- Answers that are the same text (surrounding whitespace aside) are a tie without asking the judge (reference
  §5: "an exact hash counts as a tie"): both orders would be the same request, so a judge could only add noise
  and cost. Such orders are marked `identical` and the certificate check confirms the texts really match.
- Diagnostics: swap inconsistency, tie rate, length ratio, a length-controlled estimate (the minimal
  AlpacaEval GLM of §1.3: a logistic regression of the preference on tanh(Δlength / sd)), and a per-stratum
  breakdown; warnings when LC and raw differ by more than 5 points or the candidate is more than 20% longer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

import numpy as np

from parity import catalog
from parity.errors import InputError
from parity.proof.calls import Call, Caller, estimate_cost
from parity.proof.judge_prompt import (
    A_END,
    A_START,
    B_END,
    B_START,
    QUESTION_START,
    parse_verdict,
    question_text,
    render_pairwise,
)

JUDGE_MAX_TOKENS = 512
RETRY_NUDGE = (
    "Your reply did not end with a verdict. Reply again, ending with exactly one of [[A]], [[B]] or [[C]] on "
    "its own line."
)
LC_WARN_POINTS = 0.05
LENGTH_WARN_RATIO = 1.2
LINE_RANK = {"haiku": 0, "sonnet": 1, "opus": 2, "fable": 3, "mythos": 3}
IDENTICAL_TEXT = "The two answers are the same text: a tie, without asking the judge."


# --------------------------------------------------------------------------------------------------------------
# Who may judge
# --------------------------------------------------------------------------------------------------------------


def check_judge_model(judge: str, baseline: str, candidates: Sequence[str]) -> str:
    """The judge's canonical id, or an InputError when it is a candidate's model or weaker than the baseline."""
    judge_id, base_id = catalog.resolve(judge), catalog.resolve(baseline)
    for candidate in candidates:
        if catalog.resolve(candidate) == judge_id:
            raise InputError(
                f"the judge {judge!r} is the candidate's model {candidate!r}: a model judging its own answers "
                "favours them, which would make switching too easy. Use the baseline model (the default) or a "
                "stronger one with --judge", field="judge")
    if judge_id == base_id:
        return judge_id
    j, b = catalog.get_model(judge_id), catalog.get_model(base_id)
    stronger = LINE_RANK.get(j.line, 0) > LINE_RANK.get(b.line, 0) or (
        LINE_RANK.get(j.line, 0) == LINE_RANK.get(b.line, 0) and j.created_at >= b.created_at
    )
    if not stronger:
        raise InputError(
            f"the judge {judge!r} ({j.line}) is weaker than the baseline {baseline!r} ({b.line}); the judge must be "
            "the baseline model or a stronger one. Leave --judge off to use the baseline", field="judge")
    return judge_id


# --------------------------------------------------------------------------------------------------------------
# One judged prompt
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderVerdict:
    """One order's judgment: where the candidate sat, what the judge said, and the candidate's score."""

    candidate_position: str  # "A" or "B"
    verdict: str  # "A" | "B" | "tie"
    score: float  # 0, ½ or 1 from the candidate's side
    text: str
    request_key: str
    retried: bool = False
    malformed: bool = False
    """No verdict even after asking again: counted as a tie."""
    identical: bool = False
    """The two answers are the same text: a tie, and the judge was not asked."""


@dataclass(frozen=True)
class Judgment:
    """Both orders for one prompt; `score` is their mean, in {0, ¼, ½, ¾, 1}."""

    item_id: str
    orders: tuple[OrderVerdict, OrderVerdict]
    baseline_chars: int
    candidate_chars: int
    stratum: str = "all"

    @property
    def score(self) -> float:
        return (self.orders[0].score + self.orders[1].score) / 2.0

    @property
    def inconsistent(self) -> bool:
        """The two orders disagree on the candidate's result (position swayed the judge)."""
        return self.orders[0].score != self.orders[1].score

    @property
    def reasons(self) -> str:
        return "\n\n".join(f"(candidate as {o.candidate_position}) {o.text}" for o in self.orders)

    def to_dict(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "score": self.score, "stratum": self.stratum,
                "baseline_chars": self.baseline_chars, "candidate_chars": self.candidate_chars,
                "orders": [asdict(o) for o in self.orders]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Judgment:
        orders = tuple(OrderVerdict(**o) for o in data["orders"])
        return cls(data["item_id"], orders, int(data["baseline_chars"]), int(data["candidate_chars"]),  # type: ignore[arg-type]
                   data.get("stratum", "all"))


def candidate_score(verdict: str, candidate_position: str) -> float:
    """0, ½ or 1 for the candidate given a verdict letter and where the candidate was shown."""
    if verdict == "tie":
        return 0.5
    return 1.0 if verdict == candidate_position else 0.0


CACHED = {"type": "ephemeral"}


def _system_text(request: Mapping[str, Any]) -> str:
    system = request.get("system")
    if isinstance(system, list):
        return "\n\n".join(str(b.get("text", "")) for b in system if isinstance(b, Mapping))
    return str(system or "")


def judge_params(model: str, question: str, answer_a: str, answer_b: str, *, reference: str | None = None,
                 task_system: str | None = None, max_tokens: int = JUDGE_MAX_TOKENS) -> dict[str, Any]:
    """THE judge request, laid out so that what repeats is read from the prompt cache.

    The text is exactly `render_pairwise`'s; only its user turn is cut into blocks that concatenate back to it:
    1. the judge's fixed instructions (the system prompt): the same on every judge call;
    2. the start of the question up to the end of the task's own system prompt (`task_system`): the same on
       every prompt of the task, often the longest part (a policy manual, a schema);
    3. the rest of the question (and the reference): the same in both orders of one prompt;
    4. the two answers, which change every call.
    Each of 1–3 ends in a cache breakpoint, so the second order of a prompt reads 1–3 and every other prompt of
    the task reads 1–2 at a tenth of the price. A prefix below the model's minimum cacheable length is simply
    not cached (no charge), as on the API.

    No `temperature`: the current API version rejects it (claude-api.md §0), so judging both orders is what
    removes the order effect rather than a temperature setting.
    """
    system, messages = render_pairwise(question, answer_a, answer_b, reference=reference)
    user = messages[0]["content"][0]["text"]
    answers = f"{A_START}\n{answer_a}\n{A_END}\n\n{B_START}\n{answer_b}\n{B_END}"
    cuts: list[int] = []
    if task_system:
        shared = f"{QUESTION_START}\n[System]\n{task_system}\n\n"
        if user.startswith(shared):
            cuts.append(len(shared))
    if user.endswith(answers) and len(user) > len(answers):
        cuts.append(len(user) - len(answers))
    bounds = [0, *cuts, len(user)]
    blocks: list[dict[str, Any]] = []
    for k, (start, end) in enumerate(zip(bounds, bounds[1:])):
        block: dict[str, Any] = {"type": "text", "text": user[start:end]}
        if k < len(cuts):
            block["cache_control"] = dict(CACHED)
        blocks.append(block)
    return {
        "model": model,
        "max_tokens": max_tokens,
        "system": [{"type": "text", "text": system, "cache_control": dict(CACHED)}],
        "messages": [{"role": "user", "content": blocks}],
    }


def same_answer(baseline_output: str, candidate_output: str) -> bool:
    """True when the two answers are the same text once surrounding whitespace is trimmed."""
    return baseline_output.strip() == candidate_output.strip()


def _retry_params(params: Mapping[str, Any], reply: str) -> dict[str, Any]:
    return {**params, "messages": [*params["messages"], {"role": "assistant", "content": reply or "(no reply)"},
                                   {"role": "user", "content": RETRY_NUDGE}]}


@dataclass(frozen=True)
class PairToJudge:
    """A prompt to judge: its request (for the question), the two answers, an optional reference answer."""

    item_id: str
    request: Mapping[str, Any]
    baseline_output: str
    candidate_output: str
    reference: str | None = None
    stratum: str = "all"


class Judge:
    """Runs pairwise judgments through a Caller (batched, cached, budgeted), both orders per prompt."""

    def __init__(self, caller: Caller, model: str, *, reference_guided: bool = False,
                 max_tokens: int = JUDGE_MAX_TOKENS):
        self.caller = caller
        self.model = model
        self.reference_guided = reference_guided
        self.max_tokens = max_tokens

    def _params(self, pair: PairToJudge) -> tuple[dict[str, Any], dict[str, Any]]:
        question = question_text(pair.request)
        ref = pair.reference if self.reference_guided else None
        task_system = _system_text(pair.request)
        first = judge_params(self.model, question, pair.baseline_output, pair.candidate_output, reference=ref,
                             task_system=task_system, max_tokens=self.max_tokens)  # candidate as B
        second = judge_params(self.model, question, pair.candidate_output, pair.baseline_output, reference=ref,
                              task_system=task_system, max_tokens=self.max_tokens)  # candidate as A
        return first, second

    def worst_case(self, pairs: Sequence[PairToJudge], answer_tokens: int) -> Decimal:
        """Most that judging `pairs` can cost before the candidate's answers exist (`candidate_output` may be
        empty): both orders, each with `answer_tokens` more input for the answer and the full max_tokens out."""
        return sum((estimate_cost(p, batch=not self.caller.sync, table=self.caller.table,
                                  extra_input_tokens=answer_tokens)
                    for pair in pairs for p in self._params(pair)), Decimal(0))

    def calls(self, pairs: Sequence[PairToJudge]) -> list[Call]:
        """The first-round judge calls for `pairs` (for budget estimates); identical answers need none."""
        return [Call("judge", p) for pair in pairs if not same_answer(pair.baseline_output, pair.candidate_output)
                for p in self._params(pair)]

    def judge(self, pairs: Sequence[PairToJudge]) -> list[Judgment]:
        """Judge every pair in both orders; malformed verdicts are asked once more (one extra wave)."""
        asked = [n for n, pair in enumerate(pairs) if not same_answer(pair.baseline_output, pair.candidate_output)]
        flat = [p for n in asked for p in self._params(pairs[n])]
        results = self.caller.run([Call("judge", p) for p in flat]) if flat else []
        retry_idx = [i for i, r in enumerate(results) if parse_verdict(r.text) is None]
        retried: dict[int, Any] = {}
        if retry_idx:
            again = self.caller.run([Call("judge", _retry_params(flat[i], results[i].text)) for i in retry_idx])
            retried = dict(zip(retry_idx, again))
        slot = {n: k for k, n in enumerate(asked)}
        out = []
        for n, pair in enumerate(pairs):
            if n not in slot:
                tie = [OrderVerdict(position, "tie", 0.5, IDENTICAL_TEXT, "", identical=True) for position in "BA"]
                out.append(Judgment(pair.item_id, (tie[0], tie[1]), len(pair.baseline_output),
                                    len(pair.candidate_output), pair.stratum))
                continue
            orders = []
            for k, position in ((0, "B"), (1, "A")):
                i = 2 * slot[n] + k
                result = retried.get(i, results[i])
                verdict = parse_verdict(result.text)
                malformed = verdict is None
                verdict = verdict or "tie"
                orders.append(OrderVerdict(position, verdict, candidate_score(verdict, position), result.text,
                                           result.key, retried=i in retried, malformed=malformed))
            out.append(Judgment(pair.item_id, (orders[0], orders[1]), len(pair.baseline_output),
                                len(pair.candidate_output), pair.stratum))
        return out


# --------------------------------------------------------------------------------------------------------------
# Diagnostics
# --------------------------------------------------------------------------------------------------------------


def length_controlled(scores: Sequence[float], baseline_chars: Sequence[int], candidate_chars: Sequence[int]) -> float:
    """σ(θ̂) of the minimal LC GLM: logit P(candidate preferred) = θ + φ·tanh(Δ/sd(Δ)), Δ = len_b − len_c,
    fitted on soft targets by Newton's method with a small ridge; the prediction at Δ = 0."""
    p = np.clip(np.asarray(scores, dtype=float), 0.0, 1.0)
    if p.size == 0:
        return math.nan
    delta = np.asarray(baseline_chars, dtype=float) - np.asarray(candidate_chars, dtype=float)
    sd = float(delta.std())
    z = np.tanh(delta / sd) if sd > 0 else np.zeros_like(delta)
    x = np.column_stack([np.ones_like(z), z])
    beta = np.zeros(2)
    ridge = 1e-4 * np.eye(2)
    for _ in range(50):
        mu = 1.0 / (1.0 + np.exp(-(x @ beta)))
        grad = x.T @ (p - mu) - ridge @ beta
        hess = (x.T * (mu * (1.0 - mu))) @ x + ridge
        step = np.linalg.solve(hess, grad)
        beta += step
        if np.max(np.abs(step)) < 1e-10:
            break
    return float(1.0 / (1.0 + math.exp(-beta[0])))


@dataclass(frozen=True)
class StratumRow:
    stratum: str
    n: int
    mean: float
    wins: int
    ties: int
    losses: int


@dataclass(frozen=True)
class Diagnostics:
    """What every run reports next to its verdict (judge fields are None for scorer-based runs)."""

    n: int
    raw: float
    """Mean per-prompt score of the candidate on the unit scale (½ = as good as the baseline)."""
    wins: int
    ties: int
    losses: int
    length_ratio: float
    """Candidate characters / baseline characters, summed over prompts."""
    length_controlled: float | None = None
    swap_inconsistency: float | None = None
    """Share of judged prompts whose two orders disagree (prompts with identical answers left out)."""
    tie_rate: float | None = None
    """Share of the judge's single-order verdicts that were ties (prompts with identical answers left out)."""
    malformed: int = 0
    identical: int = 0
    """Prompts where both answers were the same text: ties without a judge call."""
    strata: tuple[StratumRow, ...] = ()
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["strata"] = [asdict(s) for s in self.strata]
        data["warnings"] = list(self.warnings)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Diagnostics:
        values = dict(data)
        values["strata"] = tuple(StratumRow(**s) for s in data.get("strata", ()))
        values["warnings"] = tuple(data.get("warnings", ()))
        return cls(**values)


def _wtl(scores: Sequence[float]) -> tuple[int, int, int]:
    return (sum(s > 0.5 for s in scores), sum(s == 0.5 for s in scores), sum(s < 0.5 for s in scores))


def _strata(rows: Sequence[tuple[str, float]]) -> tuple[StratumRow, ...]:
    by: dict[str, list[float]] = {}
    for stratum, score in rows:
        by.setdefault(stratum, []).append(score)
    return tuple(StratumRow(name, len(v), float(np.mean(v)), *_wtl(v)) for name, v in sorted(by.items()))


def _length_warning(ratio: float) -> list[str]:
    if ratio > LENGTH_WARN_RATIO:
        return [f"the candidate's answers are {ratio:.2f}× as long as the baseline's (more than "
                f"{LENGTH_WARN_RATIO:.0%}); judges favour longer answers, so read the length-controlled estimate"]
    return []


def diagnose(judgments: Sequence[Judgment]) -> Diagnostics:
    """Judge diagnostics for a run (reference §1.5 E), with warnings."""
    if not judgments:
        return Diagnostics(0, math.nan, 0, 0, 0, math.nan)
    scores = [j.score for j in judgments]
    base = [j.baseline_chars for j in judgments]
    cand = [j.candidate_chars for j in judgments]
    raw = float(np.mean(scores))
    lc = length_controlled(scores, base, cand)
    ratio = sum(cand) / max(1, sum(base))
    judged = [j for j in judgments if not any(o.identical for o in j.orders)]
    verdicts = [o.verdict for j in judged for o in j.orders]
    malformed = sum(o.malformed for j in judgments for o in j.orders)
    warnings = _length_warning(ratio)
    if math.isfinite(lc) and abs(lc - raw) > LC_WARN_POINTS:
        warnings.append(f"the length-controlled estimate {lc:.3f} differs from the raw {raw:.3f} by more than "
                        f"{LC_WARN_POINTS * 100:.0f} points: answer length is swaying the judge")
    if malformed:
        warnings.append(f"{malformed} judge replies had no verdict even when asked again; counted as ties")
    return Diagnostics(
        n=len(judgments), raw=raw, wins=_wtl(scores)[0], ties=_wtl(scores)[1], losses=_wtl(scores)[2],
        length_ratio=ratio, length_controlled=lc,
        swap_inconsistency=sum(j.inconsistent for j in judged) / len(judged) if judged else None,
        tie_rate=verdicts.count("tie") / len(verdicts) if verdicts else None, malformed=malformed,
        identical=len(judgments) - len(judged),
        strata=_strata([(j.stratum, j.score) for j in judgments]), warnings=tuple(warnings),
    )


def diagnose_scores(unit_scores: Sequence[float], strata: Sequence[str], baseline_chars: Sequence[int],
                    candidate_chars: Sequence[int]) -> Diagnostics:
    """The same report for scorer-based runs (paired gold, agreement): no judge, so no swap or LC figures."""
    if not unit_scores:
        return Diagnostics(0, math.nan, 0, 0, 0, math.nan)
    ratio = sum(candidate_chars) / max(1, sum(baseline_chars))
    return Diagnostics(
        n=len(unit_scores), raw=float(np.mean(unit_scores)), wins=_wtl(unit_scores)[0], ties=_wtl(unit_scores)[1],
        losses=_wtl(unit_scores)[2], length_ratio=ratio,
        strata=_strata(list(zip(strata, unit_scores))), warnings=tuple(_length_warning(ratio)),
    )


__all__ = [
    "Diagnostics",
    "Judge",
    "Judgment",
    "OrderVerdict",
    "PairToJudge",
    "StratumRow",
    "candidate_score",
    "check_judge_model",
    "diagnose",
    "diagnose_scores",
    "judge_params",
    "length_controlled",
    "same_answer",
]
