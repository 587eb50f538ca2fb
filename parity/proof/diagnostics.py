"""What every proof reports next to its verdict (reference proof-science §1.2, §1.5): wins, ties and losses,
swap inconsistency, ties and judge failures, the length ratio and a length-controlled estimate (the minimal
AlpacaEval GLM: a logistic regression of the preference on tanh(Δlength / sd)), and a per-stratum breakdown;
warnings when the length-controlled and raw estimates differ by more than 5 points or the candidate is more than
20% longer."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from parity.proof.judge import Judgment

LC_WARN_POINTS = 0.05
LENGTH_WARN_RATIO = 1.2


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
    """Share of judged prompts whose two orders disagree (prompts with identical answers or a judge failure left
    out: a failure is not a position effect)."""
    tie_rate: float | None = None
    """Share of the judge's single-order verdicts that were ties (prompts with identical answers or a judge
    failure left out)."""
    malformed: int = 0
    """Orders where the judge replied without a verdict, even when asked again (part of `judge_failures`)."""
    identical: int = 0
    """Prompts where both answers were the same text: ties without a judge call."""
    strata: tuple[StratumRow, ...] = ()
    warnings: tuple[str, ...] = ()
    judge_failures: int = 0
    """Orders with no verdict even when asked again, or whose judge call failed: each scored 0 (a loss)."""

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
    clean = [j for j in judged if not any(o.failed for o in j.orders)]
    verdicts = [o.verdict for j in clean for o in j.orders]
    failures = sum(o.failed for j in judgments for o in j.orders)
    warnings = _length_warning(ratio)
    if math.isfinite(lc) and abs(lc - raw) > LC_WARN_POINTS:
        warnings.append(f"the length-controlled estimate {lc:.3f} differs from the raw {raw:.3f} by more than "
                        f"{LC_WARN_POINTS * 100:.0f} points: answer length is swaying the judge")
    if failures:
        warnings.append(f"{failures} judge verdicts were missing (no verdict even when asked again, or the call "
                        "failed); each was counted as a loss for the candidate")
    return Diagnostics(
        n=len(judgments), raw=raw, wins=_wtl(scores)[0], ties=_wtl(scores)[1], losses=_wtl(scores)[2],
        length_ratio=ratio, length_controlled=lc,
        swap_inconsistency=sum(j.inconsistent for j in clean) / len(clean) if clean else None,
        tie_rate=verdicts.count("tie") / len(verdicts) if verdicts else None,
        malformed=sum(o.malformed for j in judgments for o in j.orders), identical=len(judgments) - len(judged),
        strata=_strata([(j.stratum, j.score) for j in judgments]), warnings=tuple(warnings), judge_failures=failures,
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


__all__ = ["Diagnostics", "StratumRow", "diagnose", "diagnose_scores", "length_controlled"]
