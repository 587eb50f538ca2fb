"""The engine of the sequential test: betting e-processes and the confidence sequence, vectorised over
(paths, time), so one engine serves a single stream, a streaming test fed one observation at a time, and
10,000-path simulations alike.

A betting e-process (Waudby-Smith & Ramdas, JRSSB 2024) is a nonnegative supermartingale under the null, so by
Ville's inequality P(it ever reaches 1/α) ≤ α however often it is looked at and whenever the looking stops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from parity.errors import InputError
from parity.proof.hypothesis import SequentialParams

GRID_MIN = 0.02

VERDICTS = np.array(["inconclusive", "switch", "do_not_switch"])
"""Verdict names by the codes `first_stop` returns (0 none, 1 efficacy, 2 futility)."""
STOPS = np.array(["n_max", "efficacy", "futility", "data_exhausted"])
"""Stop reasons by code (0 n_max, 1 efficacy, 2 futility, 3 data exhausted)."""
BLOCK_ELEMENTS = 2_000_000  # floats per (paths × steps × grid) working array; keeps memory in the tens of MB


@dataclass(frozen=True)
class Block:
    mean: np.ndarray  # running mean of X
    lower: np.ndarray  # running max of the empirical-Bernstein lower CS on X
    log_e: np.ndarray  # log efficacy e-process
    log_f: np.ndarray  # log futility e-process


def _geometric_grid(top: float, size: int) -> np.ndarray:
    if size == 1:
        return np.array([top])
    return np.geomspace(min(GRID_MIN, top), top, size)


class Engine:
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

    def advance(self, x: np.ndarray) -> Block:
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
        return Block(mean=s_i / i, lower=lower, log_e=log_e, log_f=log_f)

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


def first_stop(block: Block, params: SequentialParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


def end_reason(params: SequentialParams, n: int) -> str | None:
    """Why a stream that reached n without a decision ends there: the whole pool seen, or N_max."""
    if params.pool_size is not None and n >= params.pool_size:
        return "data_exhausted"
    if params.n_max is not None and n >= params.n_max:
        return "n_max"
    return None


def block_len(paths: int, params: SequentialParams) -> int:
    width = params.grid_size if params.method == "grid" else 1
    return max(16, BLOCK_ELEMENTS // max(1, paths * width))



__all__ = ["BLOCK_ELEMENTS", "Block", "Engine", "STOPS", "VERDICTS", "block_len", "end_reason", "first_stop"]
