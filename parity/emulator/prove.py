"""A proof on the emulator in one call: generated prompts of a scenario, answered by a fresh in-process emulator
whose batches finish at once and whose clock is advanced instead of slept on (the demo, notebooks, tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from parity.emulator.service import Emulator
from parity.emulator.workloads import load_emulator_family
from parity.proof.quick import TaskProof, prove_task


def prove_scenario(task: str, scenario: str, *, run_dir: str | Path, n: int = 300, seed: int = 0,
                   baseline: str = "claude-opus-4-8", emulator: Emulator | None = None, **options: Any) -> TaskProof:
    """`prove_task` on `n` generated prompts of `scenario`, on `emulator` or a fresh one seeded with `seed`.

    `options` are `prove_task`'s (candidates, n_max, margin, alpha, progress, policy_path, html_path, ...)."""
    if emulator is None:
        emulator = Emulator(seed=seed)
        emulator.batches.processing_s = "instant"
    data = load_emulator_family(scenario, n, seed=seed, baseline_model=baseline, task=task)
    sleep = emulator.clock.advance if hasattr(emulator.clock, "advance") else (lambda seconds: None)
    return prove_task(task, data=data, client=emulator.client(), run_dir=run_dir, sleep=sleep, table=emulator.table,
                      simulated=True, baseline=baseline, seed=seed, **options)


__all__ = ["prove_scenario"]
