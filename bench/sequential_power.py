"""Type-I error, power and sample size of the sequential test, by simulation, next to reference §2.7.

    .venv/bin/python bench/sequential_power.py [--paths 10000] [--seed 0] [--margins 0.1 0.05] [--methods agrapa grid]

Set-up as in the reference: judge-like scores in {0, ½, 1} with 30% ties, α = 0.05, the test checked after every
prompt, N_max = 1,500 for δ = 0.1 and 4,000 for δ = 0.05. Each cell simulates two sets of paths and reads
several tests off each (common random numbers, so a difference between two columns is the tests' difference,
not Monte Carlo noise between two draws):

- at μ = ½ − δ (the null boundary): type I without futility, type I with futility on (the product default) and
  the mean sample size there; the naive repeated z-test (looks every 10 prompts, the invalid practice of §2.2)
  runs on the very same paths, with N ≤ 1,000 and N ≤ 3,000 (the null paths are simulated at least 3,000 long;
  the e-process reads only their first N_max);
- at μ = ½ (true parity): the n for 50/80/90% power without futility, and the mean sample size with futility on.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Iterator

import numpy as np

from parity.proof.hypothesis import hypothesis
from parity.proof.simulation import PathsResult, naive_peeking_z_test, run_sequential_paths, three_point_scores

N_MAX = {0.1: 1500, 0.05: 4000}
NAIVE_N = (1000, 3000)
NAIVE_EVERY = 10
TIE_RATE = 0.3
CHUNK = 2000  # paths generated at once: 2,000 × 4,000 floats is 64 MB
# Reference proof-science §2.7: (type I, n50, n80, n90) per method and margin.
REFERENCE = {
    ("agrapa", 0.1): (0.033, 125, 229, 295),
    ("grid", 0.1): (0.024, 126, 220, 289),
    ("agrapa", 0.05): (0.030, 545, 997, 1286),
    ("grid", 0.05): (0.033, 532, 917, 1158),
}


def _fmt_n(value: float) -> str:
    return "never" if math.isinf(value) else f"{value:.0f}"


def _chunks(mu: float, *, paths: int, length: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """The simulated paths of one set, in chunks: each chunk is read by every test of the set."""
    for start in range(0, paths, CHUNK):
        yield three_point_scores(mu, tie_rate=TIE_RATE, size=(min(CHUNK, paths - start), length), rng=rng)


def simulate_null(delta: float, *, paths: int, method: str, alpha: float, rng: np.random.Generator,
                  naive: bool) -> dict[str, PathsResult]:
    """At μ = ½ − δ: the e-process without and with futility, and (if `naive`) the naive z-test, on one set of paths."""
    n_max = N_MAX.get(delta, 2000)
    mu0 = hypothesis("score", delta).mu0
    length = max(n_max, *NAIVE_N) if naive else n_max
    parts: dict[str, list[PathsResult]] = {"off": [], "on": [], **{f"naive{n}": [] for n in (NAIVE_N if naive else ())}}
    for xs in _chunks(mu0, paths=paths, length=length, rng=rng):
        common = dict(mode="score", margin=delta, alpha=alpha, n_max=n_max, method=method)
        parts["off"].append(run_sequential_paths(xs, futility=False, **common))
        parts["on"].append(run_sequential_paths(xs, futility=True, **common))
        for n in NAIVE_N if naive else ():
            parts[f"naive{n}"].append(naive_peeking_z_test(xs, mu0=mu0, alpha=alpha, every=NAIVE_EVERY, n_max=n))
    return {k: PathsResult.concat(v) for k, v in parts.items()}


def simulate_parity(delta: float, *, paths: int, method: str, alpha: float,
                    rng: np.random.Generator) -> dict[str, PathsResult]:
    """At μ = ½: the e-process without futility (power) and with it (sample size), on one set of paths."""
    n_max = N_MAX.get(delta, 2000)
    parts: dict[str, list[PathsResult]] = {"off": [], "on": []}
    for xs in _chunks(0.5, paths=paths, length=n_max, rng=rng):
        common = dict(mode="score", margin=delta, alpha=alpha, n_max=n_max, method=method)
        parts["off"].append(run_sequential_paths(xs, futility=False, **common))
        parts["on"].append(run_sequential_paths(xs, futility=True, **common))
    return {k: PathsResult.concat(v) for k, v in parts.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paths", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--margins", type=float, nargs="+", default=[0.1, 0.05])
    parser.add_argument("--methods", nargs="+", default=["agrapa", "grid"])
    args = parser.parse_args(argv)
    seeds = np.random.SeedSequence(args.seed)
    se = math.sqrt(args.alpha * (1 - args.alpha) / args.paths)
    rows = []
    naive_rows: dict[float, dict[str, PathsResult]] = {}
    cells = [(m, d) for d in args.margins for m in args.methods]
    started = time.perf_counter()

    def progress(step: str) -> None:
        print(f"  [{time.perf_counter() - started:6.1f}s] {step}", file=sys.stderr, flush=True)

    for k, ((method, delta), cell_seed) in enumerate(zip(cells, seeds.spawn(len(cells))), start=1):
        n_max = N_MAX.get(delta, 2000)
        null_rng, parity_rng = (np.random.default_rng(s) for s in cell_seed.spawn(2))
        print(f"[{k}/{len(cells)}] {method}, delta = {delta:g}, N_max = {n_max}", file=sys.stderr, flush=True)
        naive = delta not in naive_rows  # the naive z-test does not depend on the method: once per margin
        null = simulate_null(delta, paths=args.paths, method=method, alpha=args.alpha, rng=null_rng, naive=naive)
        if naive:
            naive_rows[delta] = {n: null[f"naive{n}"] for n in NAIVE_N}
        progress(f"type I: no futility {null['off'].rate('switch'):.4f}, futility on {null['on'].rate('switch'):.4f}"
                 + (f", naive z {[round(naive_rows[delta][n].rate('switch'), 3) for n in NAIVE_N]}" if naive else ""))
        par = simulate_parity(delta, paths=args.paths, method=method, alpha=args.alpha, rng=parity_rng)
        progress(f"n for 50/80/90% power {[_fmt_n(par['off'].n_for(q)) for q in (0.5, 0.8, 0.9)]}, "
                 f"mean N at parity {par['on'].n_used.mean():.0f}")
        rows.append((method, delta, null["off"], null["on"], par["off"], par["on"]))

    print()
    print(f"{args.paths:,} paths per cell, alpha = {args.alpha:g}, 30% ties; type-I Monte Carlo SE at alpha = {se:.4f}")
    print("common random numbers: each column pair (no futility / futility on) reads the same paths")
    header = (
        f"{'method':<8} {'delta':>5} {'typeI':>7} {'typeI+fut':>9} {'n50':>6} {'n80':>6} {'n90':>6} "
        f"{'E[N] mu=.5':>10} {'E[N] mu0':>9} {'fut@mu0':>8} | {'ref typeI':>9} {'ref n50/n80/n90':>16}"
    )
    print(header)
    print("-" * len(header))
    for method, delta, null, null_f, power, parity_f in rows:
        ref = REFERENCE.get((method, delta))
        ref_text = f"{ref[0]:>9.3f} {ref[1]:>5}/{ref[2]}/{ref[3]}" if ref else f"{'-':>9} {'-':>16}"
        print(
            f"{method:<8} {delta:>5g} {null.rate('switch'):>7.4f} {null_f.rate('switch'):>9.4f} "
            f"{_fmt_n(power.n_for(0.5)):>6} {_fmt_n(power.n_for(0.8)):>6} {_fmt_n(power.n_for(0.9)):>6} "
            f"{parity_f.n_used.mean():>10.0f} {null_f.n_used.mean():>9.0f} {null_f.rate('do_not_switch'):>8.3f} | "
            f"{ref_text}"
        )

    print()
    print(f"Contrast: naive one-sided z-test re-run every {NAIVE_EVERY} prompts, stopping at the first rejection "
          "(invalid), on the same null paths as the e-process above (the first cell of each margin).")
    for delta, by_n in naive_rows.items():
        for n, naive in by_n.items():
            print(f"  delta = {delta:g}, N <= {n}: type I {naive.rate('switch'):.3f}"
                  f"   (reference §2.2: 0.32 for N <= 1,000, 0.38 for N <= 3,000)")
    print(f"\ndone in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
