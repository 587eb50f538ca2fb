"""Labelled tasks with a known accuracy gap, written as the files a user has: a log of the baseline's answers and
a replay file of the candidate's answers.

Why: a statistical guarantee is checked the way a user meets it, black box. Each prompt's answers are right
independently with the stated probabilities, so the population's mean difference is known exactly
(candidate − baseline accuracy) while every finite task is a fresh sample of it. A proof that switches on a
task drawn at the boundary more than α of the time is wrong about the population, whatever its arithmetic.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parity.files import write_atomic

USAGE = {"input_tokens": 60, "output_tokens": 4, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}


@dataclass(frozen=True)
class LabelledTask:
    """Where a generated task's files are, and what was drawn (for checks)."""

    task: str
    log: Path
    """Exchange JSONL: the baseline's logged answers, each tagged with the task, an id, a group and the gold."""
    replay: Path
    """Exchange JSONL: the candidate's answer to every prompt, for the replay brain."""
    baseline_right: int
    candidate_right: int
    n: int


def _exchange(model: str, prompt: str, answer: str, tags: dict[str, str] | None, n: int) -> dict[str, Any]:
    row: dict[str, Any] = {
        "request": {"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": prompt}]},
        "response": {"id": f"msg_labelled_{n:06d}", "type": "message", "role": "assistant", "model": model,
                     "content": [{"type": "text", "text": answer}], "stop_reason": "end_turn",
                     "stop_sequence": None, "usage": dict(USAGE)},
        "started_at": f"2026-11-{1 + n % 28:02d}T{n % 24:02d}:00:00Z",
        "duration_ms": 400,
    }
    if tags:
        row["tags"] = tags
    return row


def write_labelled_task(folder: str | Path, *, task: str, n: int, baseline_accuracy: float,
                        candidate_accuracy: float, seed: int, baseline_model: str = "claude-opus-4-8",
                        candidate_model: str = "claude-haiku-4-5", groups: int = 20) -> LabelledTask:
    """Write a fresh task of `n` arithmetic prompts whose answers are right with the given probabilities."""
    rng = random.Random(f"parity-labelled/{task}/{seed}")
    folder = Path(folder)
    log_rows, replay_rows = [], []
    right = [0, 0]
    for k in range(n):
        a, b = rng.randint(100, 999), rng.randint(100, 999)
        gold = a + b
        prompt = f"[{task} #{k} seed {seed}] What is {a} + {b}? Answer with the number only."
        answers = []
        for slot, accuracy in enumerate((baseline_accuracy, candidate_accuracy)):
            ok = rng.random() < accuracy
            right[slot] += ok
            answers.append(str(gold if ok else gold + rng.choice((-10, -1, 1, 10))))
        tags = {"task": task, "id": f"{task}-{k}", "customer": f"c{k % groups}", "gold": json.dumps(gold)}
        log_rows.append(_exchange(baseline_model, prompt, answers[0], tags, k))
        replay_rows.append(_exchange(candidate_model, prompt, answers[1], None, k))
    log = write_atomic(folder / f"{task}.jsonl", "".join(json.dumps(r) + "\n" for r in log_rows))
    replay = write_atomic(folder / f"{task}-candidate.jsonl", "".join(json.dumps(r) + "\n" for r in replay_rows))
    return LabelledTask(task, Path(log), Path(replay), right[0], right[1], n)


__all__ = ["LabelledTask", "write_labelled_task"]
