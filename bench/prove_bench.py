"""`parity prove` end to end on the emulator, per task family and seed: what it decides, on how many test prompts,
what the proof itself costs (Message Batches, and the same calls at standard prices), the cost per request before
and after, and the wall time.

    .venv/bin/python bench/prove_bench.py [--seeds 0 1 2] [--families ticket_triage invoice_extraction math_reasoning]

Expected (DESIGN, issue 4 "Done when"): ticket_triage switches (δ = 0.10); invoice_extraction switches only with
the tuned prompt (few-shot demonstrations) and is refused on the team's own prompt (δ = 0.05, the same test
split); math_reasoning is refused by futility (δ = 0.05). Every number comes from the simulated emulator.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from parity.emulator.service import Emulator
from parity.proof.data import load_emulator_family
from parity.proof.runner import ProveConfig, prove

BASELINE, CANDIDATE = "claude-opus-4-8", "claude-haiku-4-5"
PLAN = {  # family: (prompts generated, margin δ, expected verdict with tuning, expected without)
    "ticket_triage": (400, 0.10, "switch", None),
    "invoice_extraction": (360, 0.05, "switch", "do_not_switch"),
    "math_reasoning": (240, 0.05, "do_not_switch", None),
}


def _usd(value: object, places: int = 4) -> str:
    return "n/a" if value in (None, "") else f"${Decimal(str(value)):.{places}f}"


def _num(value: object) -> str:
    return "n/a" if value is None else f"{float(value):+.3f}"  # type: ignore[arg-type]


def run_one(family: str, seed: int, optimize: bool, root: Path) -> dict[str, object]:
    n, margin, _, _ = PLAN[family]
    emulator = Emulator(seed=0)
    emulator.batches.processing_s = "instant"
    data = load_emulator_family(family, n, seed=seed, baseline_model=BASELINE)
    config = ProveConfig(task=family, baseline_model=BASELINE, candidate_models=(CANDIDATE,), margin=margin,
                         alpha=0.05, n_max=400, seed=seed, optimize=optimize)
    start = time.perf_counter()
    out = prove(config, data, emulator.client(), run_dir=root / f"{family}-{seed}-{int(optimize)}")
    wall = time.perf_counter() - start
    cand = out.candidates[0]
    result = cand.result or {}
    cost = out.certificate["cost"]
    return {
        "family": family, "seed": seed, "prompt": "tuned" if optimize else "as is", "verdict": cand.verdict,
        "stopped_by": cand.stopped_by, "n_used": cand.n_used, "estimate": result.get("estimate"),
        "lower_bound": result.get("lower_bound"), "threshold": result.get("threshold"),
        "proof_batch": cost["proof"]["spent"], "proof_sync": cost["proof_at_standard_prices"],
        "before": cost["baseline_per_request"], "after": cand.cost_per_request, "calls": out.network_calls,
        "wall_s": wall,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--families", nargs="+", default=list(PLAN), choices=list(PLAN))
    args = parser.parse_args(argv)
    header = (f"{'family':<19} {'seed':>4} {'prompt':<6} {'verdict':<13} {'stopped by':<10} {'n':>4} {'estimate':>8} "
              f"{'lower':>7} {'thresh':>7} {'proof batch':>11} {'at sync':>9} {'$/req before':>12} "
              f"{'$/req after':>11} {'calls':>6} {'wall s':>6}")
    print("parity prove on the emulator (simulated models; all numbers are from the simulation)")
    print(header)
    print("-" * len(header))
    unexpected = 0
    with tempfile.TemporaryDirectory() as tmp:
        for family in args.families:
            _, _, tuned_expect, plain_expect = PLAN[family]
            modes = [(True, tuned_expect)] + ([(False, plain_expect)] if plain_expect else [])
            for seed in args.seeds:
                for optimize, expect in modes:
                    row = run_one(family, seed, optimize, Path(tmp))
                    flag = "" if row["verdict"] == expect else f"   (expected {expect})"
                    unexpected += bool(flag)
                    print(f"{row['family']:<19} {row['seed']:>4} {row['prompt']:<6} {row['verdict']:<13} "
                          f"{row['stopped_by']:<10} {row['n_used']:>4} {_num(row['estimate']):>8} "
                          f"{_num(row['lower_bound']):>7} {_num(row['threshold']):>7} {_usd(row['proof_batch']):>11} "
                          f"{_usd(row['proof_sync']):>9} {_usd(row['before'], 6):>12} {_usd(row['after'], 6):>11} "
                          f"{row['calls']:>6} {row['wall_s']:>6.1f}{flag}", flush=True)
    print(f"\n{unexpected} run(s) with an unexpected verdict")
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
