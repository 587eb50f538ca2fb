"""`parity prove` end to end on the emulator, per task family and seed: what it decides, on how many test prompts,
what the proof itself costs (Message Batches, and the same calls at standard prices), the cost per request before
and after, and the wall time.

    .venv/bin/python bench/prove_bench.py [--seeds 0 1 2] [--families ticket_triage invoice_extraction math_reasoning
        thread_summary]

Expected (DESIGN, issue 4 "Done when"): ticket_triage switches (δ = 0.10); invoice_extraction switches only with
the tuned prompt (few-shot demonstrations) and is refused on the team's own prompt (δ = 0.05, the same test
split); math_reasoning is refused by futility (δ = 0.05). thread_summary is the judged path: its gold facts are
dropped, so the task has no gold and `auto` scoring picks the pairwise judge (both orders, with the simulated
judge's position, length and hard-item biases); the default Claude Haiku profile writes shorter summaries that
miss more facts than the baseline's, and the judge never lets it switch (δ = 0.10): futility refuses it, or the test
split (120 prompts) runs out first when the tuned prompt comes close (inconclusive keeps the baseline too).

Each seed is a fresh task: its own prompts, and an emulator with its own seed (the simulated models' right and
wrong answers and the judge's verdicts are drawn afresh), so the seeds are independent runs. Every number comes
from the simulated emulator.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from parity.emulator.service import Emulator
from parity.emulator.workloads import load_emulator_family
from parity.proof.data import TaskData
from parity.proof.runner import ProveConfig, prove

BASELINE, CANDIDATE = "claude-opus-4-8", "claude-haiku-4-5"
KEEP = ("do_not_switch", "inconclusive")  # either keeps the baseline
PLAN = {  # family: (prompts generated, margin δ, gold kept, verdicts expected with tuning, expected without)
    "ticket_triage": (400, 0.10, True, ("switch",), None),
    "invoice_extraction": (360, 0.05, True, ("switch",), ("do_not_switch",)),
    "math_reasoning": (240, 0.05, True, ("do_not_switch",), None),
    "thread_summary": (240, 0.10, False, KEEP, None),
}
EMULATOR_SEED = 1000
"""The emulator of seed s runs with seed EMULATOR_SEED + s: a different stream from the prompts' own seed."""


def _usd(value: object, places: int = 4) -> str:
    return "n/a" if value in (None, "") else f"${Decimal(str(value)):.{places}f}"


def _num(value: object) -> str:
    return "n/a" if value is None else f"{float(value):+.3f}"  # type: ignore[arg-type]


def without_gold(data: TaskData) -> TaskData:
    """The same prompts with no gold answer and no reference: a task known only by the baseline's answers."""
    return data.with_items(dataclasses.replace(i, gold=None, reference=None) for i in data.items)


def run_one(family: str, seed: int, optimize: bool, root: Path) -> dict[str, object]:
    n, margin, gold, _, _ = PLAN[family]
    emulator = Emulator(seed=EMULATOR_SEED + seed)
    emulator.batches.processing_s = "instant"
    data = load_emulator_family(family, n, seed=seed, baseline_model=BASELINE)
    if not gold:
        data = without_gold(data)
    config = ProveConfig(task=family, baseline_model=BASELINE, candidate_models=(CANDIDATE,), margin=margin,
                         alpha=0.05, n_max=400, seed=seed, optimize=optimize)
    start = time.perf_counter()
    out = prove(config, data, emulator.client(), run_dir=root / f"{family}-{seed}-{int(optimize)}",
                sleep=lambda _seconds: None, table=emulator.table)
    wall = time.perf_counter() - start
    cand = out.candidates[0]
    result = cand.result or {}
    cost = out.certificate["cost"]
    return {
        "family": family, "seed": seed, "prompt": "tuned" if optimize else "as is", "verdict": cand.verdict,
        "scoring": out.certificate["scoring"]["mode"],
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
    header = (f"{'family':<19} {'seed':>4} {'scoring':<11} {'prompt':<6} {'verdict':<13} {'stopped by':<10} {'n':>4} "
              f"{'estimate':>8} {'lower':>7} {'thresh':>7} {'proof batch':>11} {'at sync':>9} {'$/req before':>12} "
              f"{'$/req after':>11} {'calls':>6} {'wall s':>6}")
    print("parity prove on the emulator (simulated models; all numbers are from the simulation)")
    print(header)
    print("-" * len(header))
    unexpected = 0
    with tempfile.TemporaryDirectory() as tmp:
        for family in args.families:
            _, _, _, tuned_expect, plain_expect = PLAN[family]
            modes = [(True, tuned_expect)] + ([(False, plain_expect)] if plain_expect else [])
            for seed in args.seeds:
                for optimize, expect in modes:
                    row = run_one(family, seed, optimize, Path(tmp))
                    flag = "" if row["verdict"] in expect else f"   (expected {' or '.join(expect)})"
                    unexpected += bool(flag)
                    print(f"{row['family']:<19} {row['seed']:>4} {row['scoring']:<11} {row['prompt']:<6} "
                          f"{row['verdict']:<13} {row['stopped_by']:<10} {row['n_used']:>4} {_num(row['estimate']):>8} "
                          f"{_num(row['lower_bound']):>7} {_num(row['threshold']):>7} {_usd(row['proof_batch']):>11} "
                          f"{_usd(row['proof_sync']):>9} {_usd(row['before'], 6):>12} {_usd(row['after'], 6):>11} "
                          f"{row['calls']:>6} {row['wall_s']:>6.1f}{flag}", flush=True)
    print(f"\n{unexpected} run(s) with an unexpected verdict")
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
