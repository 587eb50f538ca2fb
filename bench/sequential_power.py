"""Type-I error, power and sample size of the sequential test, by simulation, next to reference §2.7.

    .venv/bin/python bench/sequential_power.py [--paths 10000] [--seed 0] [--margins 0.1 0.05] [--methods agrapa grid]

Set-up as in the reference: judge-like scores in {0, ½, 1} with 30% ties, α = 0.05, the test checked after every
prompt, N_max = 1,500 for δ = 0.1 and 4,000 for δ = 0.05. Each cell runs four simulations:
type I at μ = ½ − δ without and with futility, power at μ = ½ without futility (n for 50/80/90% power), and the
mean sample size at μ = ½ and μ = ½ − δ with futility on (the product default). The naive repeated z-test
(looks every 10 prompts) is run on the same data model as the contrast.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np

from parity.proof.sequential import simulate_paths

N_MAX = {0.1: 1500, 0.05: 4000}
# Reference proof-science §2.7: (type I, n50, n80, n90) per method and margin.
REFERENCE = {
    ("agrapa", 0.1): (0.033, 125, 229, 295),
    ("grid", 0.1): (0.024, 126, 220, 289),
    ("agrapa", 0.05): (0.030, 545, 997, 1286),
    ("grid", 0.05): (0.033, 532, 917, 1158),
}


def _fmt_n(value: float) -> str:
    return "never" if math.isinf(value) else f"{value:.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paths", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--margins", type=float, nargs="+", default=[0.1, 0.05])
    parser.add_argument("--methods", nargs="+", default=["agrapa", "grid"])
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    se = math.sqrt(args.alpha * (1 - args.alpha) / args.paths)
    rows = []
    cells = [(m, d) for d in args.margins for m in args.methods]
    started = time.perf_counter()

    def progress(step: str) -> None:
        print(f"  [{time.perf_counter() - started:6.1f}s] {step}", file=sys.stderr, flush=True)

    for k, (method, delta) in enumerate(cells, start=1):
        n_max = N_MAX.get(delta, 2000)
        mu0 = 0.5 - delta
        common = dict(paths=args.paths, n_max=n_max, rng=rng, margin=delta, alpha=args.alpha, method=method)
        print(f"[{k}/{len(cells)}] {method}, delta = {delta:g}, N_max = {n_max}", file=sys.stderr, flush=True)
        null = simulate_paths(mu0, futility=False, **common)
        progress(f"type I (no futility) {null.rate('switch'):.4f}")
        null_f = simulate_paths(mu0, futility=True, **common)
        progress(f"type I (futility on) {null_f.rate('switch'):.4f}")
        power = simulate_paths(0.5, futility=False, **common)
        progress(f"n for 50/80/90% power {[_fmt_n(power.n_for(q)) for q in (0.5, 0.8, 0.9)]}")
        parity_f = simulate_paths(0.5, futility=True, **common)
        progress(f"mean N at parity {parity_f.n_used.mean():.0f}")
        rows.append((method, delta, null, null_f, power, parity_f))

    print()
    print(f"{args.paths:,} paths per cell, alpha = {args.alpha:g}, 30% ties; type-I Monte Carlo SE at alpha = {se:.4f}")
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
    print("Contrast: naive one-sided z-test re-run every 10 prompts, stopping at the first rejection (invalid).")
    for delta in args.margins:
        for n_max in (1000, 3000):
            naive = simulate_paths(0.5 - delta, paths=min(args.paths, 4000), n_max=n_max, rng=rng, margin=delta,
                                   alpha=args.alpha, naive_every=10)
            print(f"  delta = {delta:g}, N <= {n_max}: type I {naive.rate('switch'):.3f}"
                  f"   (reference §2.2: 0.32 for N <= 1,000, 0.38 for N <= 3,000)")
    print(f"\ndone in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
