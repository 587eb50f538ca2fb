"""Anytime-valid sequential non-inferiority tests: betting e-processes over bounded per-prompt scores.

Why this and not a z-test: teams "keep comparing until it clears", and a z-test re-run after every batch
declares a tie a win far more often than its nominal α (reference proof-science §2.2). A betting e-process
(Waudby-Smith & Ramdas, JRSSB 2024) is a nonnegative supermartingale under the null, so by Ville's inequality
P(it ever reaches 1/α) ≤ α however often it is looked at and whenever the looking stops.

The hypotheses, on a per-prompt score X in [0, 1] with mean μ (reference §2.1):

- ``score``: X is the candidate's judged score against the baseline (ties ½). H0: μ ≤ ½ − δ.
- ``paired-gold``: D = candidate_correct − baseline_correct ∈ {−1, 0, 1} and X = (D + 1)/2.
  The margin is on the accuracy scale: H0: E[D] ≤ −δ, i.e. μ ≤ ½ − δ/2.
- ``agreement``: X = 1{candidate output matches the baseline's} (or a field-F1). H0: p ≤ p0 = 1 − δ.

Rejecting H0 (efficacy e-process Kₜ ≥ 1/α) means "switch". A mirror e-process for H0': μ ≥ μ0 firing means
"do not switch" (futility). Neither by N_max means "inconclusive": keep the baseline.

Every function here works on arrays shaped (paths, time), so one engine serves a single stream, a streaming
test fed one observation at a time, and 10,000-path simulations alike.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from parity.errors import InputError, ParityError

Mode = Literal["score", "paired-gold", "agreement"]
Method = Literal["agrapa", "grid"]
Verdict = Literal["switch", "do_not_switch", "inconclusive"]
StoppedBy = Literal["efficacy", "futility", "n_max", "data_exhausted"]

MODES: tuple[str, ...] = ("score", "paired-gold", "agreement")
METHODS: tuple[str, ...] = ("agrapa", "grid")

DEFAULT_C = 0.5
"""Bets are capped at c/μ0 (efficacy) and c/(1 − μ0) (futility); the reference recommends c ∈ [0.5, 0.75]."""
GRID_SIZE = 12
GRID_MIN = 0.02

_VERDICTS = np.array(["inconclusive", "switch", "do_not_switch"])
_STOPS = np.array(["n_max", "efficacy", "futility", "data_exhausted"])
_BLOCK_ELEMENTS = 2_000_000  # floats per (paths × steps × grid) working array; keeps memory in the tens of MB


# --------------------------------------------------------------------------------------------------------------
# Hypotheses and parameters
# --------------------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------------------
# The engine: e-processes and the confidence sequence, vectorised over (paths, time)
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Block:
    mean: np.ndarray  # running mean of X
    lower: np.ndarray  # running max of the empirical-Bernstein lower CS on X
    log_e: np.ndarray  # log efficacy e-process
    log_f: np.ndarray  # log futility e-process


def _geometric_grid(top: float, size: int) -> np.ndarray:
    if size == 1:
        return np.array([top])
    return np.geomspace(min(GRID_MIN, top), top, size)


class _Engine:
    """State of P lockstep paths; `advance` consumes a (P, B) block and returns each step's statistics.

    Running estimates carry one pseudo-observation (mean ½, variance ¼), as in the reference and confseq,
    so every bet uses only data seen before it (predictable) and never divides by zero.
    """

    def __init__(self, params: SequentialParams, paths: int, *, track_futility: bool = True):
        self.params = params
        self.track_futility = track_futility  # simulations without futility skip the mirror's cost
        self.t = 0
        self.s = np.zeros(paths)  # Σ X
        self.q = np.zeros(paths)  # Σ (Xᵢ − μ̂ᵢ)², μ̂ᵢ the regularised mean including Xᵢ
        self.cs_num = np.zeros(paths)
        self.cs_den = np.zeros(paths)
        self.lower = np.zeros(paths)
        grid = params.method == "grid"
        shape = (paths, params.grid_size) if grid else (paths,)
        self.log_e = np.zeros(shape)
        self.log_f = np.zeros(shape)
        self.grid_e = _geometric_grid(params.c / params.mu0, params.grid_size)
        self.grid_f = _geometric_grid(params.c / (1.0 - params.mu0), params.grid_size)

    @property
    def paths(self) -> int:
        return self.s.shape[0]

    def keep(self, mask: np.ndarray) -> None:
        """Drop the paths that have stopped so later blocks cost nothing for them."""
        for name in ("s", "q", "cs_num", "cs_den", "lower", "log_e", "log_f"):
            setattr(self, name, getattr(self, name)[mask])

    def advance(self, x: np.ndarray) -> _Block:
        p = self.params
        n_paths, b = x.shape
        i = self.t + np.arange(1, b + 1, dtype=float)
        if p.pool_size is not None and self.t + b > p.pool_size:
            raise InputError(
                f"{self.t + b} observations from a pool of {p.pool_size}: without replacement the stream "
                "cannot be longer than the pool; check pool_size",
                field="pool_size",
            )
        s_i = self.s[:, None] + np.cumsum(x, axis=1)
        s_prev = s_i - x
        mean_prev = (0.5 + s_prev) / i
        dev2 = (x - (0.5 + s_i) / (i + 1.0)) ** 2
        q_i = self.q[:, None] + np.cumsum(dev2, axis=1)
        var_prev = (0.25 + q_i - dev2) / i

        mu0 = p.mu0
        if p.pool_size is not None:
            # Without replacement (reference §2.8, confseq betting.py `N`): the null mean of what is left.
            n_pool = float(p.pool_size)
            remaining = n_pool - i + 1.0
            mu_t = (n_pool * mu0 - s_prev) / remaining
            est_prev = (n_pool * mean_prev - s_prev) / remaining
        else:
            mu_t = np.full_like(x, mu0)
            est_prev = mean_prev
        centred = x - mu_t

        with np.errstate(divide="ignore", invalid="ignore"):
            cap_e = np.where(mu_t > 0.0, p.c / mu_t, np.inf)
            cap_f = np.where(mu_t < 1.0, p.c / (1.0 - mu_t), np.inf)
        # Without replacement, once the unseen items cannot bring the pool mean back to mu0 the question is
        # settled outright (confseq sets the capital to infinity there); both conditions persist once reached.
        log_e, self.log_e = self._martingale(
            self.log_e, centred, est_prev - mu_t, var_prev, cap_e, self.grid_e, mu_t < 0.0
        )
        if self.track_futility:
            log_f, self.log_f = self._martingale(
                self.log_f, -centred, mu_t - est_prev, var_prev, cap_f, self.grid_f, mu_t > 1.0
            )
        else:
            log_f = np.zeros_like(x)

        # Predictable-plug-in empirical-Bernstein lower CS (reference §2.5; confseq predmix.py), for display.
        log_inv_alpha = math.log(1.0 / p.efficacy_alpha)
        lam = np.minimum(np.sqrt(2.0 * log_inv_alpha / (var_prev * i * np.log1p(i))), 0.5)
        psi = -np.log1p(-lam) - lam
        v = (x - mean_prev) ** 2
        if p.pool_size is not None:
            z, w = s_prev / remaining, (i - 1.0) / remaining
        else:
            z, w = 0.0, 0.0
        cs_num = self.cs_num[:, None] + np.cumsum(lam * (x + z) - v * psi, axis=1)
        cs_den = self.cs_den[:, None] + np.cumsum(lam * (1.0 + w), axis=1)
        bound = (cs_num - log_inv_alpha) / cs_den
        if p.pool_size is not None:
            bound = np.maximum(bound, s_i / p.pool_size)  # the unseen items score at least 0
        bound = np.clip(bound, 0.0, 1.0)
        lower = np.maximum.accumulate(np.maximum(bound, self.lower[:, None]), axis=1)

        self.t += b
        self.s, self.q = s_i[:, -1], q_i[:, -1]
        self.cs_num, self.cs_den, self.lower = cs_num[:, -1], cs_den[:, -1], lower[:, -1]
        return _Block(mean=s_i / i, lower=lower, log_e=log_e, log_f=log_f)

    def _martingale(
        self,
        state: np.ndarray,
        centred: np.ndarray,
        gap: np.ndarray,
        var_prev: np.ndarray,
        cap: np.ndarray,
        grid: np.ndarray,
        certain: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """log ∏(1 + λᵢ·centredᵢ) with aGRAPA bets, or the log of the average over a grid of fixed bets.

        Every λ is capped at c/μₜ (c < 1), so each factor is at least 1 − c > 0 and the log never fails.
        """
        if self.params.method == "agrapa":
            lam = np.clip(gap / (var_prev + gap**2), 0.0, cap)
            step = np.where(certain, np.inf, np.log1p(lam * centred))
            path = state[:, None] + np.cumsum(step, axis=1)
            return path, path[:, -1]
        # Grid layout (paths, bets, steps): the running sums and the mixture reduce over contiguous memory.
        if self.params.pool_size is None:
            lam = grid[None, :, None]
        else:
            lam = np.minimum(grid[None, :, None], cap[:, None, :])
        steps = lam * centred[:, None, :]
        np.log1p(steps, out=steps)
        if self.params.pool_size is not None:
            steps[np.broadcast_to(certain[:, None, :], steps.shape)] = np.inf
        np.cumsum(steps, axis=2, out=steps)
        steps += state[:, :, None]
        new_state = steps[:, :, -1].copy()
        top = steps.max(axis=1)
        with np.errstate(invalid="ignore"):
            steps -= top[:, None, :]
            np.exp(steps, out=steps)
            path = np.log(steps.mean(axis=1)) + top
        return np.where(np.isposinf(top), np.inf, path), new_state


def _first_stop(block: _Block, params: SequentialParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per path: did it stop in this block, at which column, and by which side (1 efficacy, 2 futility).

    If both sides cross at the same step the conservative side (futility: keep the baseline) wins.
    """
    fire_e = block.log_e >= math.log(1.0 / params.efficacy_alpha)
    fire_f = block.log_f >= math.log(1.0 / params.futility_alpha) if params.futility else np.zeros_like(fire_e)
    fire = fire_e | fire_f
    hit = fire.any(axis=1)
    col = fire.argmax(axis=1)
    rows = np.arange(fire.shape[0])
    kind = np.where(fire_f[rows, col], 2, 1)
    return hit, col, kind


def _end_reason(params: SequentialParams, n: int) -> str | None:
    """Why a stream that reached n without a decision ends there: the whole pool seen, or N_max."""
    if params.pool_size is not None and n >= params.pool_size:
        return "data_exhausted"
    if params.n_max is not None and n >= params.n_max:
        return "n_max"
    return None


def _block_len(paths: int, params: SequentialParams) -> int:
    width = params.grid_size if params.method == "grid" else 1
    return max(16, _BLOCK_ELEMENTS // max(1, paths * width))


# --------------------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------------------


def _exp(log_value: float) -> float:
    return math.exp(log_value) if log_value < 709.0 else math.inf


@dataclass(frozen=True)
class Trajectory:
    """Per-step statistics up to the stop, on the mode's reporting scale, for plots and certificates."""

    n: np.ndarray
    estimate: np.ndarray
    lower_bound: np.ndarray
    log_e_value: np.ndarray
    log_futility_e_value: np.ndarray

    def to_dict(self) -> dict[str, list[Any]]:
        return {
            "n": self.n.tolist(),
            "estimate": _json_floats(self.estimate),
            "lower_bound": _json_floats(self.lower_bound),
            "log_e_value": _json_floats(self.log_e_value),
            "log_futility_e_value": _json_floats(self.log_futility_e_value),
        }


def _json_floats(values: np.ndarray) -> list[float | None]:
    return [float(v) if math.isfinite(v) else None for v in np.asarray(values, dtype=float)]


@dataclass(frozen=True)
class SequentialResult:
    """The decision and the evidence behind it.

    `estimate`, `lower_bound` and `threshold` are on the mode's reporting scale (mean D for paired-gold);
    `estimate_unit` and `lower_bound_unit` are the same on the X scale the e-process bets on.
    `lower_bound` is the running maximum of the empirical-Bernstein lower confidence sequence at level
    1 − efficacy_alpha: valid at every n, shown for reading; the verdict itself comes from the e-processes.
    """

    verdict: Verdict
    stopped_by: StoppedBy
    n_used: int
    estimate: float
    estimate_unit: float
    lower_bound: float
    lower_bound_unit: float
    threshold: float
    log_e_value: float
    log_futility_e_value: float
    trajectory: Trajectory
    params: SequentialParams

    @property
    def e_value(self) -> float:
        return _exp(self.log_e_value)

    @property
    def futility_e_value(self) -> float:
        return _exp(self.log_futility_e_value)

    def to_dict(self, *, trajectory: bool = True) -> dict[str, Any]:
        """JSON-ready (infinite e-values become null; their logs say which side settled outright)."""
        out: dict[str, Any] = {
            "verdict": self.verdict,
            "stopped_by": self.stopped_by,
            "n_used": self.n_used,
            "estimate": self.estimate,
            "estimate_unit": self.estimate_unit,
            "lower_bound": self.lower_bound,
            "lower_bound_unit": self.lower_bound_unit,
            "confidence_bound": self.lower_bound,
            "confidence_level": 1.0 - self.params.efficacy_alpha,
            "threshold": self.threshold,
            "e_value": _json_floats(np.array([self.e_value]))[0],
            "futility_e_value": _json_floats(np.array([self.futility_e_value]))[0],
            "log_e_value": _json_floats(np.array([self.log_e_value]))[0],
            "log_futility_e_value": _json_floats(np.array([self.log_futility_e_value]))[0],
            **self.params.to_dict(),
        }
        if trajectory:
            out["trajectory"] = self.trajectory.to_dict()
        return out


@dataclass(frozen=True)
class State:
    """Where a streaming test stands after an observation; `verdict` is None until it stops."""

    n: int
    estimate: float
    lower_bound: float
    log_e_value: float
    log_futility_e_value: float
    verdict: Verdict | None = None
    stopped_by: StoppedBy | None = None

    @property
    def done(self) -> bool:
        return self.verdict is not None

    @property
    def e_value(self) -> float:
        return _exp(self.log_e_value)

    @property
    def futility_e_value(self) -> float:
        return _exp(self.log_futility_e_value)


# --------------------------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------------------------


class SequentialTest:
    """A test fed one observation at a time (prompts judged as they arrive): `update(x) -> State`.

    Observations are on the mode's scale: scores in [0, 1], D in {−1, 0, 1} for paired-gold, 0/1 agreement.
    It gives exactly the decisions `run_sequential` gives on the same stream.
    """

    def __init__(
        self,
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
    ):
        self.params = make_params(
            mode=mode, margin=margin, alpha=alpha, n_max=n_max, method=method, futility=futility,
            pool_size=pool_size, candidates=candidates, futility_alpha=futility_alpha, c=c, grid_size=grid_size,
        )
        self._engine = _Engine(self.params, 1)
        self._rows: list[tuple[float, float, float, float]] = []
        hyp = self.params.hypothesis
        self._state = State(0, float("nan"), float(hyp.to_scale(0.0)), 0.0, 0.0)

    @property
    def state(self) -> State:
        return self._state

    @property
    def done(self) -> bool:
        return self._state.done

    def update(self, x: float) -> State:
        """Consume one observation; raises if the test has already stopped (start a new one on new data)."""
        if self.done:
            raise ParityError(
                f"the test already stopped at n={self._state.n} ({self._state.verdict}); start a new SequentialTest "
                "on fresh data (e-values from disjoint data may be multiplied)"
            )
        p = self.params
        hyp = p.hypothesis
        unit = hyp.to_unit(np.array([[x]], dtype=float))
        block = self._engine.advance(unit)
        hit, _, kind = _first_stop(block, p)
        n = self._engine.t
        row = (float(block.mean[0, 0]), float(block.lower[0, 0]), float(block.log_e[0, 0]), float(block.log_f[0, 0]))
        self._rows.append(row)
        verdict = stopped = None
        if hit[0]:
            verdict, stopped = ("switch", "efficacy") if kind[0] == 1 else ("do_not_switch", "futility")
        elif _end_reason(p, n):
            verdict, stopped = "inconclusive", _end_reason(p, n)
        self._state = State(
            n=n,
            estimate=float(hyp.to_scale(row[0])),
            lower_bound=float(hyp.to_scale(row[1])),
            log_e_value=row[2],
            log_futility_e_value=row[3],
            verdict=verdict,
            stopped_by=stopped,
        )
        return self._state

    def extend(self, xs: Iterable[float]) -> State:
        """Feed observations until the test stops or they run out."""
        for x in xs:
            if self.update(x).done:
                break
        return self._state

    def result(self) -> SequentialResult:
        """The result so far; a test that has not stopped is inconclusive with stopped_by 'data_exhausted'."""
        if not self._rows:
            raise InputError("no observations: a verdict needs at least one", field=self.params.mode)
        rows = np.array(self._rows)
        st = self._state
        return _result(
            self.params,
            st.verdict or "inconclusive",
            st.stopped_by or "data_exhausted",
            rows[:, 0],
            rows[:, 1],
            rows[:, 2],
            rows[:, 3],
        )


def _result(
    params: SequentialParams,
    verdict: str,
    stopped_by: str,
    mean: np.ndarray,
    lower: np.ndarray,
    log_e: np.ndarray,
    log_f: np.ndarray,
) -> SequentialResult:
    hyp = params.hypothesis
    n = len(mean)
    traj = Trajectory(
        n=np.arange(1, n + 1),
        estimate=hyp.to_scale(mean),
        lower_bound=hyp.to_scale(lower),
        log_e_value=np.asarray(log_e, dtype=float),
        log_futility_e_value=np.asarray(log_f, dtype=float),
    )
    return SequentialResult(
        verdict=verdict,
        stopped_by=stopped_by,
        n_used=n,
        estimate=float(traj.estimate[-1]),
        estimate_unit=float(mean[-1]),
        lower_bound=float(traj.lower_bound[-1]),
        lower_bound_unit=float(lower[-1]),
        threshold=params.threshold,
        log_e_value=float(log_e[-1]),
        log_futility_e_value=float(log_f[-1]),
        trajectory=traj,
        params=params,
    )


def run_sequential(
    xs: ArrayLike,
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
) -> SequentialResult:
    """Run the test over a stream in its given order and stop at the first decision, N_max or the end.

    xs are on the mode's scale (see `SequentialTest`). `candidates` > 1 applies Bonferroni (alpha/candidates);
    `pool_size` applies the without-replacement correction for a fixed pool sampled in random order.
    """
    params = make_params(
        mode=mode, margin=margin, alpha=alpha, n_max=n_max, method=method, futility=futility,
        pool_size=pool_size, candidates=candidates, futility_alpha=futility_alpha, c=c, grid_size=grid_size,
    )
    unit = params.hypothesis.to_unit(np.asarray(xs, dtype=float).ravel())
    if unit.size == 0:
        raise InputError("no observations: a verdict needs at least one", field=mode)
    horizon = unit.size if n_max is None else min(n_max, unit.size)
    engine = _Engine(params, 1)
    parts: list[_Block] = []
    verdict, stopped_by = "inconclusive", _end_reason(params, horizon) or "data_exhausted"
    step = _block_len(1, params)
    start = 0
    while start < horizon:
        block = engine.advance(unit[None, start : min(start + step, horizon)])
        hit, col, kind = _first_stop(block, params)
        if hit[0]:
            end = int(col[0]) + 1
            block = _Block(*(getattr(block, f)[:, :end] for f in ("mean", "lower", "log_e", "log_f")))
            verdict, stopped_by = ("switch", "efficacy") if kind[0] == 1 else ("do_not_switch", "futility")
            parts.append(block)
            break
        parts.append(block)
        start += block.mean.shape[1]
    cat = {f: np.concatenate([getattr(b, f)[0] for b in parts]) for f in ("mean", "lower", "log_e", "log_f")}
    return _result(params, verdict, stopped_by, cat["mean"], cat["lower"], cat["log_e"], cat["log_f"])


def run_candidates(streams: Mapping[str, ArrayLike], **kwargs: Any) -> dict[str, SequentialResult]:
    """Test several candidates at once, each at alpha/k (Bonferroni), so P(any wrong switch) ≤ alpha."""
    if not streams:
        raise InputError("no candidates to test")
    if "candidates" in kwargs:
        raise ParityError("run_candidates sets `candidates` itself from the number of streams")
    return {name: run_sequential(xs, candidates=len(streams), **kwargs) for name, xs in streams.items()}


# --------------------------------------------------------------------------------------------------------------
# Many paths at once: simulations for validity, power and planning
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PathsResult:
    """Outcomes of many independent streams: one verdict, stop reason and sample size per path."""

    verdict: np.ndarray
    stopped_by: np.ndarray
    n_used: np.ndarray

    @property
    def paths(self) -> int:
        return int(self.verdict.size)

    def rate(self, verdict: str) -> float:
        """Fraction of paths that ended with this verdict."""
        return float(np.mean(self.verdict == verdict))

    def n_for(self, fraction: float, verdict: str = "switch") -> float:
        """Smallest n by which `fraction` of ALL paths had reached `verdict` (the §2.7 'n for 80% power'); inf if never."""
        reached = np.sort(self.n_used[self.verdict == verdict])
        need = math.ceil(fraction * self.paths)
        return float(reached[need - 1]) if 0 < need <= reached.size else math.inf

    @classmethod
    def concat(cls, parts: Iterable[PathsResult]) -> PathsResult:
        """Join results simulated in chunks (to bound memory) into one."""
        parts = list(parts)
        return cls(
            verdict=np.concatenate([p.verdict for p in parts]),
            stopped_by=np.concatenate([p.stopped_by for p in parts]),
            n_used=np.concatenate([p.n_used for p in parts]),
        )

    def median_n(self, verdict: str | None = None) -> float:
        """Median stopping n, over all paths or over those that ended with `verdict`."""
        sel = self.n_used if verdict is None else self.n_used[self.verdict == verdict]
        return float(np.median(sel)) if sel.size else math.nan


def run_sequential_paths(
    xs: ArrayLike,
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
) -> PathsResult:
    """`run_sequential` on each row of a (paths, time) array at once; stopped paths drop out as they stop."""
    params = make_params(
        mode=mode, margin=margin, alpha=alpha, n_max=n_max, method=method, futility=futility,
        pool_size=pool_size, candidates=candidates, futility_alpha=futility_alpha, c=c, grid_size=grid_size,
    )
    unit = params.hypothesis.to_unit(np.atleast_2d(np.asarray(xs, dtype=float)))
    n_paths, length = unit.shape
    if length == 0:
        raise InputError("no observations: a verdict needs at least one", field=mode)
    horizon = length if n_max is None else min(n_max, length)
    verdict = np.zeros(n_paths, dtype=int)
    stopped = np.full(n_paths, 0 if _end_reason(params, horizon) == "n_max" else 3, dtype=int)
    n_used = np.full(n_paths, horizon, dtype=int)
    engine = _Engine(params, n_paths, track_futility=params.futility)
    active = np.arange(n_paths)
    start = 0
    while start < horizon and active.size:
        stop = min(start + _block_len(active.size, params), horizon)
        block = engine.advance(unit[active, start:stop])
        hit, col, kind = _first_stop(block, params)
        done = active[hit]
        verdict[done] = kind[hit]
        stopped[done] = kind[hit]
        n_used[done] = start + col[hit] + 1
        engine.keep(~hit)
        active = active[~hit]
        start = stop
    return PathsResult(verdict=_VERDICTS[verdict], stopped_by=_STOPS[stopped], n_used=n_used)


def three_point_scores(
    mu: float, *, tie_rate: float = 0.3, size: int | tuple[int, ...], rng: np.random.Generator
) -> np.ndarray:
    """Judge-like scores in {0, ½, 1} with mean mu and P(½) = tie_rate: the §2.7 simulation model."""
    p_win = mu - tie_rate / 2.0
    p_loss = 1.0 - tie_rate - p_win
    if min(p_win, p_loss) < -1e-12 or not 0.0 <= tie_rate <= 1.0:
        raise ParityError(f"no 3-point distribution has mean {mu:g} with tie rate {tie_rate:g}")
    u = rng.random(size)
    return np.where(u < p_loss, 0.0, np.where(u < p_loss + tie_rate, 0.5, 1.0))


def simulate_paths(
    mu: float,
    *,
    paths: int,
    n_max: int,
    rng: np.random.Generator,
    tie_rate: float = 0.3,
    chunk: int = 2000,
    naive_every: int | None = None,
    **test_kwargs: Any,
) -> PathsResult:
    """Monte Carlo of the score-mode test on judge-like 3-point scores with mean mu (reference §2.7 set-up),
    generated and run in chunks of paths so 10,000 × 4,000 steps fit in memory.

    With naive_every set, runs the invalid repeated z-test (looks every `naive_every` items) on the same
    kind of data instead, for contrast.
    """
    parts = []
    for start in range(0, paths, chunk):
        xs = three_point_scores(mu, tie_rate=tie_rate, size=(min(chunk, paths - start), n_max), rng=rng)
        if naive_every is None:
            parts.append(run_sequential_paths(xs, mode="score", n_max=n_max, **test_kwargs))
        else:
            mu0 = hypothesis("score", test_kwargs["margin"]).mu0
            parts.append(
                naive_peeking_z_test(xs, mu0=mu0, alpha=test_kwargs.get("alpha", 0.05), every=naive_every)
            )
    return PathsResult.concat(parts)


def naive_peeking_z_test(
    xs: ArrayLike, *, mu0: float, alpha: float = 0.05, every: int = 10, n_max: int | None = None
) -> PathsResult:
    """The INVALID practice the e-process replaces: a one-sided z-test re-run every `every` items, stopping at
    the first rejection. Kept only to measure its inflated type-I error (reference §2.2) next to the real test.
    """
    from scipy.stats import norm

    x = np.atleast_2d(np.asarray(xs, dtype=float))
    horizon = x.shape[1] if n_max is None else min(n_max, x.shape[1])
    looks = np.arange(every, horizon + 1, every)
    s = np.cumsum(x[:, :horizon], axis=1)[:, looks - 1]
    s2 = np.cumsum(x[:, :horizon] ** 2, axis=1)[:, looks - 1]
    mean = s / looks
    var = np.maximum(s2 / looks - mean**2, 1e-12) * looks / np.maximum(looks - 1, 1)
    z = (mean - mu0) / np.sqrt(var / looks)
    fire = z > norm.ppf(1.0 - alpha)
    hit = fire.any(axis=1)
    n_used = np.where(hit, looks[fire.argmax(axis=1)], horizon)
    return PathsResult(
        verdict=np.where(hit, "switch", "inconclusive"),
        stopped_by=np.where(hit, "efficacy", "n_max"),
        n_used=n_used,
    )


__all__ = [
    "DEFAULT_C",
    "GRID_SIZE",
    "METHODS",
    "MODES",
    "Hypothesis",
    "PathsResult",
    "SequentialParams",
    "SequentialResult",
    "SequentialTest",
    "State",
    "Trajectory",
    "bonferroni",
    "hypothesis",
    "make_params",
    "naive_peeking_z_test",
    "run_candidates",
    "run_sequential",
    "run_sequential_paths",
    "simulate_paths",
    "three_point_scores",
]
