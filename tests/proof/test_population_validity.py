"""The proof's guarantee is about the population the prompts come from, checked black box as a user meets it.

Each task is fresh: 80 logged prompts whose baseline answers are right with probability 0.9, and a candidate
(replayed by the emulator) right with probability 0.8, so on the population the candidate is worse by exactly
the margin (δ = 0.1 accuracy points). A proof that switches on such tasks more than α of the time certifies the
sample it read, not tomorrow's traffic (a finite-pool correction did exactly that: 12 switches in 40 tasks).
"""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from parity.cli import app
from parity.emulator.brains.replay import ReplayBrain
from parity.emulator.labelled import write_labelled_task
from parity.emulator.service import Emulator
from parity.proof.data import load_jsonl
from parity.proof.runner import ProveConfig, prove

BASELINE, CANDIDATE = "claude-opus-4-8", "claude-haiku-4-5"
ALPHA = 0.05


def _prove(tmp_path: Path, seed: int, n: int, baseline_accuracy: float, candidate_accuracy: float) -> str:
    task = write_labelled_task(tmp_path / f"t{seed}", task=f"labelled{seed}", n=n, seed=seed,
                               baseline_accuracy=baseline_accuracy, candidate_accuracy=candidate_accuracy)
    config = ProveConfig(task=task.task, baseline_model=BASELINE, candidate_models=(CANDIDATE,), margin=0.1,
                         alpha=ALPHA, n_max=n, sync=True, scoring="paired-gold", optimize=False, seed=seed)
    emulator = Emulator(brain=ReplayBrain(task.replay), seed=seed)
    outcome = prove(config, load_jsonl(task.log, task=task.task), emulator.client(), run_dir=tmp_path / f"run{seed}")
    assert outcome.candidates[0].n_used <= n
    return outcome.certificate["decision"]["verdict"]


def test_a_candidate_worse_by_the_margin_switches_at_most_alpha_of_the_time(tmp_path):
    tasks = 40
    switches = sum(_prove(tmp_path, seed, 80, 0.9, 0.8) == "switch" for seed in range(tasks))
    assert switches <= ALPHA * tasks, f"{switches} of {tasks} boundary tasks switched"


def test_a_candidate_as_good_on_400_prompts_switches_nearly_always(tmp_path):
    tasks = 10
    switches = sum(_prove(tmp_path, 1000 + seed, 400, 0.9, 0.9) == "switch" for seed in range(tasks))
    assert switches >= 8, f"only {switches} of {tasks} equal tasks switched"


def test_the_black_box_case_through_the_cli(tmp_path):
    """The command a user types: the log, the candidate's recorded answers, no optimisation, paired gold."""
    task = write_labelled_task(tmp_path, task="sums", n=80, seed=7, baseline_accuracy=0.9, candidate_accuracy=0.8)
    result = CliRunner().invoke(app, [
        "prove", "--task", "sums", "--data", str(task.log), "--brain", f"replay:{task.replay}",
        "--baseline", BASELINE, "--candidate", CANDIDATE, "--margin", "0.1", "--alpha", "0.05",
        "--scoring", "paired-gold", "--no-optimize", "--sync", "--run-dir", str(tmp_path / "run"),
    ], env={"COLUMNS": "200"})
    assert result.exit_code == 1, result.output
    assert "80 rows taken" in result.output
    assert "policy entry" not in result.output
    assert "inconclusive" in result.output or "do_not_switch" in result.output
