"""What one sequential test tests and how: the null boundary of each mode, and the validated settings.

The hypotheses, on a per-prompt score X in [0, 1] with mean μ (reference proof-science §2.1):

- ``score``: X is the candidate's judged score against the baseline (ties ½). H0: μ ≤ ½ − δ.
- ``paired-gold``: D = candidate_correct − baseline_correct ∈ {−1, 0, 1} and X = (D + 1)/2.
  The margin is on the accuracy scale: H0: E[D] ≤ −δ, i.e. μ ≤ ½ − δ/2.
- ``agreement``: X = 1{candidate output matches the baseline's} (or a field-F1). H0: p ≤ p0 = 1 − δ.

`make_params` is the one place the settings are checked; every entry point (`run_sequential`, `SequentialTest`,
`run_sequential_paths`) takes the same `Settings` and hands them to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Required, TypedDict

import numpy as np
from numpy.typing import ArrayLike

from parity.errors import InputError, ParityError

Mode = Literal["score", "paired-gold", "agreement"]
Method = Literal["agrapa", "grid"]

MODES: tuple[str, ...] = ("score", "paired-gold", "agreement")
METHODS: tuple[str, ...] = ("agrapa", "grid")

DEFAULT_C = 0.5
"""Bets are capped at c/μ0 (efficacy) and c/(1 − μ0) (futility); the reference recommends c ∈ [0.5, 0.75]."""
GRID_SIZE = 12


class Settings(TypedDict, total=False):
    """The keyword settings every entry point takes (see `make_params` for what each means)."""

    mode: Mode
    margin: Required[float]
    alpha: float
    n_max: int | None
    method: Method
    futility: bool
    pool_size: int | None
    candidates: int
    futility_alpha: float | None
    c: float
    grid_size: int


@dataclass(frozen=True)
class Hypothesis:
    """The null boundary of one mode, on the unit scale of X and on the mode's own reporting scale."""

    mode: str
    margin: float
    mu0: float
    """H0: E[X] ≤ mu0, on the unit scale the e-process bets on."""
    threshold: float
    """The same boundary on the reporting scale: ½ − δ (score), −δ as mean D (paired-gold), 1 − δ (agreement)."""

    @property
    def statement(self) -> str:
        """H0 in words for summaries and certificates."""
        if self.mode == "paired-gold":
            return f"H0: mean(candidate_correct - baseline_correct) <= {self.threshold:g}"
        if self.mode == "agreement":
            return f"H0: agreement rate <= {self.threshold:g}"
        return f"H0: mean score <= {self.threshold:g}"

    def to_unit(self, values: ArrayLike) -> np.ndarray:
        """Map observations on the mode's scale to X in [0, 1]; out-of-range values are an InputError."""
        arr = np.asarray(values, dtype=float)
        lo = -1.0 if self.mode == "paired-gold" else 0.0
        bad = ~np.isfinite(arr) | (arr < lo) | (arr > 1.0)
        if bad.any():
            where = int(np.flatnonzero(bad.ravel())[0])
            raise InputError(
                f"observation {where + 1} is {arr.ravel()[where]!r}; {self.mode} mode needs values in [{lo:g}, 1]",
                field=self.mode,
            )
        return (arr + 1.0) / 2.0 if self.mode == "paired-gold" else arr

    def to_scale(self, unit: Any) -> Any:
        """Map a mean or bound of X back to the mode's reporting scale (mean D for paired-gold)."""
        return 2.0 * np.asarray(unit) - 1.0 if self.mode == "paired-gold" else np.asarray(unit)


def hypothesis(mode: str, margin: float) -> Hypothesis:
    """Build the null boundary for a mode and a margin δ, rejecting margins that leave nothing to test."""
    if mode not in MODES:
        raise InputError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}", field="mode")
    margin = float(margin)
    if mode == "score":
        if not 0.0 <= margin < 0.5:
            raise InputError(f"score-mode margin must be in [0, 0.5), got {margin:g}", field="margin")
        return Hypothesis(mode, margin, 0.5 - margin, 0.5 - margin)
    if mode == "paired-gold":
        if not 0.0 <= margin < 1.0:
            raise InputError(f"paired-gold margin (accuracy points) must be in [0, 1), got {margin:g}", field="margin")
        return Hypothesis(mode, margin, 0.5 - margin / 2.0, -margin)
    if not 0.0 < margin < 1.0:
        raise InputError(f"agreement margin must be in (0, 1) (p0 = 1 - margin), got {margin:g}", field="margin")
    return Hypothesis(mode, margin, 1.0 - margin, 1.0 - margin)


def bonferroni(alpha: float, k: int) -> float:
    """Per-candidate level when k candidates are tested at once: the family-wise error stays ≤ alpha."""
    if k < 1:
        raise ParityError(f"Bonferroni needs at least one candidate, got {k}")
    return alpha / k


@dataclass(frozen=True)
class SequentialParams:
    """Everything that defines one test; stored with every result so a verdict can be re-checked."""

    mode: str
    margin: float
    alpha: float
    futility_alpha: float
    n_max: int | None
    method: str
    futility: bool
    pool_size: int | None
    candidates: int
    c: float
    grid_size: int
    mu0: float
    threshold: float

    @property
    def efficacy_alpha(self) -> float:
        """The level the switch decision and the confidence sequence use: alpha split over the candidates."""
        return bonferroni(self.alpha, self.candidates)

    @property
    def hypothesis(self) -> Hypothesis:
        return Hypothesis(self.mode, self.margin, self.mu0, self.threshold)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "margin": self.margin,
            "alpha": self.alpha,
            "efficacy_alpha": self.efficacy_alpha,
            "futility_alpha": self.futility_alpha,
            "n_max": self.n_max,
            "method": self.method,
            "futility": self.futility,
            "pool_size": self.pool_size,
            "candidates": self.candidates,
            "c": self.c,
            "grid_size": self.grid_size,
            "mu0": self.mu0,
            "threshold": self.threshold,
            "null_hypothesis": self.hypothesis.statement,
        }


def make_params(
    *,
    mode: Mode = "score",
    margin: float,
    alpha: float = 0.05,
    n_max: int | None = None,
    method: Method = "agrapa",
    futility: bool = True,
    pool_size: int | None = None,
    candidates: int = 1,
    futility_alpha: float | None = None,
    c: float = DEFAULT_C,
    grid_size: int = GRID_SIZE,
) -> SequentialParams:
    """Validate a test's settings once, with messages that say which setting is wrong and what would work."""
    hyp = hypothesis(mode, margin)
    if not 0.0 < alpha < 1.0:
        raise InputError(f"alpha must be in (0, 1), got {alpha:g}", field="alpha")
    f_alpha = alpha if futility_alpha is None else float(futility_alpha)
    if not 0.0 < f_alpha < 1.0:
        raise InputError(f"futility alpha must be in (0, 1), got {f_alpha:g}", field="futility_alpha")
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; use one of {', '.join(METHODS)}", field="method")
    if not 0.0 < c < 1.0:
        raise InputError(f"bet cap c must be in (0, 1), got {c:g}", field="c")
    if grid_size < 1:
        raise InputError(f"grid size must be at least 1, got {grid_size}", field="grid_size")
    if candidates < 1:
        raise InputError(f"candidates must be at least 1, got {candidates}", field="candidates")
    if n_max is not None and n_max < 1:
        raise InputError(f"n_max must be at least 1, got {n_max}", field="n_max")
    if pool_size is not None:
        if pool_size < 1:
            raise InputError(f"pool_size must be at least 1, got {pool_size}", field="pool_size")
        if n_max is not None and n_max > pool_size:
            raise InputError(
                f"n_max {n_max} exceeds pool_size {pool_size}: a fixed pool cannot be sampled more often "
                "than it has items without replacement",
                field="n_max",
            )
    return SequentialParams(
        mode=mode,
        margin=hyp.margin,
        alpha=float(alpha),
        futility_alpha=f_alpha,
        n_max=n_max,
        method=method,
        futility=bool(futility),
        pool_size=pool_size,
        candidates=int(candidates),
        c=float(c),
        grid_size=int(grid_size),
        mu0=hyp.mu0,
        threshold=hyp.threshold,
    )


__all__ = ["DEFAULT_C", "GRID_SIZE", "METHODS", "MODES", "Hypothesis", "Method", "Mode", "SequentialParams",
           "Settings", "bonferroni", "hypothesis", "make_params"]
