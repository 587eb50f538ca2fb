"""How many shadowed requests the drift watch needs to roll a task back after its candidate gets worse mid-run.

Set-up (all simulated, in-process): the emulator with a seeded SimulatedBrain; a routed task (ticket triage,
baseline claude-opus-4-8, candidate claude-haiku-4-5 with a clear instruction and 4 demonstrations); a
`parity.gateway.drift.DriftMonitor` driven the way the gateway drives it: every routed request is answered by
the candidate and passed to `observe(request, candidate_message)`; the monitor samples, the baseline answers and
THE pairwise judge (claude-opus-4-8, both orders) scores; the e-process decides.

After `--pre` shadowed requests the candidate is degraded (`SimulatedBrain.set_degradation`). Reported per seed:
the shadowed requests from the degradation to the rollback (the number the issue asks for), and the same run
without degradation over the same horizon (a rollback there is a false alarm).

Sampling is an independent coin per request, so the count in shadowed requests does not depend on `--rate`;
routed requests ≈ shadowed / rate. With `--rate 1` (the default) every routed request is shadowed, which keeps
the run short; pass `--rate 0.02` to drive it at a production share (50x more candidate calls).

    .venv/bin/python bench/drift_rollback.py --seeds 5 --degradation 0.3 0.6
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from typing import Any

from parity.emulator import workloads
from parity.emulator.brains import scenarios
from parity.emulator.brains.simulated import SimulatedBrain
from parity.emulator.service import Emulator
from parity.gateway.drift import DriftMonitor
from parity.policy import Demo, TaskPolicy, TunedPrompt, apply_prompt

BASELINE = "claude-opus-4-8"
CANDIDATE = "claude-haiku-4-5"


def task_policy(family: str, seed: int, *, margin: float, alpha: float, rate: float) -> TaskPolicy:
    """A routed task as `parity prove` would write it: tuned instruction and demonstrations for the candidate."""
    turns = workloads.demo_turns(family, 4, seed)
    demos = [Demo(turns[i]["content"], turns[i + 1]["content"]) for i in range(0, len(turns), 2)]
    system = scenarios.get(family).system_prompt(clear=True)
    return TaskPolicy(task=family, mode="route", baseline_model=BASELINE, candidate_model=CANDIDATE,
                      prompt=TunedPrompt(system=system, demos=demos), margin=margin, alpha=alpha, shadow_rate=rate)


async def run_once(*, seed: int, family: str, pre: int, horizon: int, degradation: float | None, rate: float,
                   margin: float, alpha: float, via: str, segment_size: int) -> dict[str, Any]:
    """One run: `pre` shadowed requests as proven, then degraded (or not) for up to `horizon` more."""
    brain = SimulatedBrain(seed=seed)
    emulator = Emulator(brain=brain, seed=seed)
    emulator.batches.processing_s = "instant"
    client = emulator.async_client()
    policy = task_policy(family, seed, margin=margin, alpha=alpha, rate=rate)
    rollbacks: list[dict[str, Any]] = []
    monitor = DriftMonitor(policy, client, sampler_seed=seed, via=via, batch_size=1 if via == "sync" else 10,
                           segment_size=segment_size, on_rollback=lambda t, r, e: rollbacks.append(e))
    requests = [item.request for item in workloads.dataset(family, 400, seed=seed + 1000)]
    degraded_at_shadow = degraded_at_routed = None
    routed = 0
    while monitor.shadowed < pre + horizon and not monitor.rolled_back(policy.task):
        if degraded_at_shadow is None and degradation is not None and monitor.shadowed >= pre:
            brain.set_degradation(CANDIDATE, degradation)
            degraded_at_shadow, degraded_at_routed = monitor.shadowed, routed
        request = requests[routed % len(requests)]
        routed += 1
        candidate = emulator.create_message(apply_prompt(request, policy))  # what the gateway returned to the client
        if monitor.observe(request, candidate) and (via == "sync" or len(monitor._pending) >= 10):
            await monitor.drain()
    await monitor.drain()
    await monitor.aclose()
    out: dict[str, Any] = {"seed": seed, "degradation": degradation, "shadowed": monitor.shadowed,
                           "routed": routed, "rolled_back": monitor.rolled_back(), "reaffirmed": monitor.reaffirmed,
                           "segments": monitor.status()["segments"], "spend_usd": str(monitor.spend)}
    if rollbacks:
        ev = rollbacks[0]
        out["rollback_item"] = ev["item_seq"]
        out["mean_score_at_rollback"] = ev["segment"]["mean_score"]
        if degraded_at_shadow is not None:
            out["shadowed_to_rollback"] = ev["item_seq"] - degraded_at_shadow
            out["routed_to_rollback"] = routed - degraded_at_routed
    return out


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    delays = [r["shadowed_to_rollback"] for r in rows if "shadowed_to_rollback" in r]
    return {
        "runs": len(rows),
        "rolled_back": sum(r["rolled_back"] for r in rows),
        "shadowed_to_rollback": delays,
        "median": statistics.median(delays) if delays else None,
        "max": max(delays) if delays else None,
    }


async def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--family", default="ticket_triage")
    ap.add_argument("--pre", type=int, default=100, help="shadowed requests before the degradation")
    ap.add_argument("--horizon", type=int, default=300, help="shadowed requests watched after it")
    ap.add_argument("--degradation", type=float, nargs="+", default=[0.3, 0.6])
    ap.add_argument("--rate", type=float, default=1.0)
    ap.add_argument("--margin", type=float, default=0.05)
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--segment-size", type=int, default=400)
    ap.add_argument("--via", choices=("sync", "batch"), default="sync")
    ap.add_argument("--json", action="store_true", help="print every run as JSON")
    args = ap.parse_args(argv)
    common = dict(family=args.family, pre=args.pre, horizon=args.horizon, rate=args.rate, margin=args.margin,
                  alpha=args.alpha, via=args.via, segment_size=args.segment_size)
    t0 = time.perf_counter()
    report: dict[str, Any] = {"settings": {**common, "seeds": args.seeds}, "degraded": {}, "control": None}
    for level in args.degradation:
        rows = [await run_once(seed=s, degradation=level, **common) for s in range(args.seeds)]
        report["degraded"][str(level)] = {"summary": summarise(rows), **({"runs": rows} if args.json else {})}
        s = report["degraded"][str(level)]["summary"]
        print(f"degradation {level}: rolled back {s['rolled_back']}/{s['runs']}; shadowed requests from degradation "
              f"to rollback {s['shadowed_to_rollback']} (median {s['median']}, max {s['max']})", flush=True)
    control = [await run_once(seed=s, degradation=None, **common) for s in range(args.seeds)]
    report["control"] = {"runs": len(control), "false_rollbacks": sum(r["rolled_back"] for r in control),
                         "shadowed_each": [r["shadowed"] for r in control],
                         "reaffirmed_each": [r["reaffirmed"] for r in control]}
    print(f"no degradation: {report['control']['false_rollbacks']}/{len(control)} rolled back over "
          f"{args.pre + args.horizon} shadowed requests each; segments re-proved {report['control']['reaffirmed_each']}")
    report["seconds"] = round(time.perf_counter() - t0, 1)
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
