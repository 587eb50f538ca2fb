"""Many paths at once: Monte Carlo of the sequential test for validity, power and planning (reference
proof-science §2.7), and the invalid repeated z-test it replaces, kept to measure its inflated error (§2.2).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Unpack

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import norm

from parity.errors import InputError, ParityError
from parity.proof.eprocess import STOPS, VERDICTS, Engine, block_len, end_reason, first_stop
from parity.proof.hypothesis import Settings, hypothesis, make_params


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


def run_sequential_paths(xs: ArrayLike, **settings: Unpack[Settings]) -> PathsResult:
    """`run_sequential` on each row of a (paths, time) array at once; stopped paths drop out as they stop."""
    params = make_params(**settings)
    unit = params.hypothesis.to_unit(np.atleast_2d(np.asarray(xs, dtype=float)))
    n_paths, length = unit.shape
    if length == 0:
        raise InputError("no observations: a verdict needs at least one", field=params.mode)
    horizon = length if params.n_max is None else min(params.n_max, length)
    verdict = np.zeros(n_paths, dtype=int)
    stopped = np.full(n_paths, 0 if end_reason(params, horizon) == "n_max" else 3, dtype=int)
    n_used = np.full(n_paths, horizon, dtype=int)
    engine = Engine(params, n_paths, track_futility=params.futility)
    active = np.arange(n_paths)
    start = 0
    while start < horizon and active.size:
        stop = min(start + block_len(active.size, params), horizon)
        block = engine.advance(unit[active, start:stop])
        hit, col, kind = first_stop(block, params)
        done = active[hit]
        verdict[done] = kind[hit]
        stopped[done] = kind[hit]
        n_used[done] = start + col[hit] + 1
        engine.keep(~hit)
        active = active[~hit]
        start = stop
    return PathsResult(verdict=VERDICTS[verdict], stopped_by=STOPS[stopped], n_used=n_used)


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


__all__ = ["PathsResult", "naive_peeking_z_test", "run_sequential_paths", "simulate_paths", "three_point_scores"]
