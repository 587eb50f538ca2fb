"""Anytime-valid sequential non-inferiority tests: betting e-processes over bounded per-prompt scores.

Why this and not a z-test: teams "keep comparing until it clears", and a z-test re-run after every batch
declares a tie a win far more often than its nominal α (reference proof-science §2.2). A betting e-process
(Waudby-Smith & Ramdas, JRSSB 2024) is a nonnegative supermartingale under the null, so by Ville's inequality
P(it ever reaches 1/α) ≤ α however often it is looked at and whenever the looking stops.

The hypotheses of each mode and the settings live in `parity.proof.hypothesis`, the e-process engine in
`parity.proof.eprocess`, and many-path simulations in `parity.proof.simulation`.

Rejecting H0 (efficacy e-process Kₜ ≥ 1/α) means "switch". A mirror e-process for H0': μ ≥ μ0 firing means
"do not switch" (futility). Neither by N_max means "inconclusive": keep the baseline.

Every function here works on arrays shaped (paths, time), so one engine serves a single stream, a streaming
test fed one observation at a time, and 10,000-path simulations alike.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Unpack

import numpy as np
from numpy.typing import ArrayLike

from parity.errors import InputError, ParityError
from parity.proof.eprocess import Block, Engine, block_len, end_reason, first_stop
from parity.proof.hypothesis import (
    DEFAULT_C,
    GRID_SIZE,
    METHODS,
    MODES,
    Hypothesis,
    Method,
    Mode,
    SequentialParams,
    Settings,
    bonferroni,
    hypothesis,
    make_params,
)

Verdict = Literal["switch", "do_not_switch", "inconclusive"]
StoppedBy = Literal["efficacy", "futility", "n_max", "data_exhausted"]


# --------------------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------------------


def _exp(log_value: float) -> float:
    return math.exp(log_value) if log_value < 709.0 else math.inf


class _EValues:
    """The e-values themselves, from the logs a record stores (inf once a side settled outright)."""

    log_e_value: float
    log_futility_e_value: float

    @property
    def e_value(self) -> float:
        return _exp(self.log_e_value)

    @property
    def futility_e_value(self) -> float:
        return _exp(self.log_futility_e_value)


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
class SequentialResult(_EValues):
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
class State(_EValues):
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


# --------------------------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------------------------


class SequentialTest:
    """A test fed one observation at a time (prompts judged as they arrive): `update(x) -> State`.

    Observations are on the mode's scale: scores in [0, 1], D in {−1, 0, 1} for paired-gold, 0/1 agreement.
    It gives exactly the decisions `run_sequential` gives on the same stream.
    """

    def __init__(self, **settings: Unpack[Settings]):
        self.params = make_params(**settings)
        self._engine = Engine(self.params, 1)
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
        hit, _, kind = first_stop(block, p)
        n = self._engine.t
        row = (float(block.mean[0, 0]), float(block.lower[0, 0]), float(block.log_e[0, 0]), float(block.log_f[0, 0]))
        self._rows.append(row)
        verdict = stopped = None
        if hit[0]:
            verdict, stopped = ("switch", "efficacy") if kind[0] == 1 else ("do_not_switch", "futility")
        elif end_reason(p, n):
            verdict, stopped = "inconclusive", end_reason(p, n)
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


def run_sequential(xs: ArrayLike, **settings: Unpack[Settings]) -> SequentialResult:
    """Run the test over a stream in its given order and stop at the first decision, N_max or the end.

    xs are on the mode's scale (see `SequentialTest`); the settings are `make_params`'s. `candidates` > 1 applies
    Bonferroni (alpha/candidates); `pool_size` applies the without-replacement correction for a fixed pool
    sampled in random order.
    """
    params = make_params(**settings)
    unit = params.hypothesis.to_unit(np.asarray(xs, dtype=float).ravel())
    if unit.size == 0:
        raise InputError("no observations: a verdict needs at least one", field=params.mode)
    horizon = unit.size if params.n_max is None else min(params.n_max, unit.size)
    engine = Engine(params, 1)
    parts: list[Block] = []
    verdict, stopped_by = "inconclusive", end_reason(params, horizon) or "data_exhausted"
    step = block_len(1, params)
    start = 0
    while start < horizon:
        block = engine.advance(unit[None, start : min(start + step, horizon)])
        hit, col, kind = first_stop(block, params)
        if hit[0]:
            end = int(col[0]) + 1
            block = Block(*(getattr(block, f)[:, :end] for f in ("mean", "lower", "log_e", "log_f")))
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


__all__ = [
    "DEFAULT_C",
    "GRID_SIZE",
    "METHODS",
    "MODES",
    "Hypothesis",
    "Method",
    "Mode",
    "SequentialParams",
    "SequentialResult",
    "SequentialTest",
    "Settings",
    "State",
    "Trajectory",
    "bonferroni",
    "hypothesis",
    "make_params",
    "run_candidates",
    "run_sequential",
]
