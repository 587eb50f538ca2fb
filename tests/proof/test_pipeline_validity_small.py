"""The whole pipeline, small: fresh simulated tasks through `prove` with the optimiser ON (split → tune on train
and validation → frozen prompt → sequential test on the sealed test split), on the in-process emulator.

The candidate's simulated profile puts its best achievable prompt at the null boundary (its ceiling is the
baseline's accuracy minus δ and SAFETY, and two demonstrations or a clear instruction reach it), so every switch
is a wrong one. bench/pipeline_validity.py is the full version (hundreds of tasks per size, both scorings, the tuned
prompts' population means measured); this is its smoke test: 30 tasks of 150 prompts, paired gold.

Why 150 prompts and not fewer: the test split is half of them, and at δ = 0.1 a test of 25 prompts cannot switch
even a candidate that is never wrong, so a false-switch count there could not fail. With about 75 test prompts a
clearly better candidate does switch (the positive control below), so a leak that lifted the tuned candidate
above the boundary (the optimiser's validation scores reused as evidence, test prompts used as demonstrations)
would show up as switches.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from parity.emulator.brains.base import BrainRequest
from parity.emulator.service import Emulator
from parity.emulator.workloads import load_emulator_family
from parity.errors import ParityError
from parity.policy import TunedPrompt
from parity.proof import optimize as opt
from parity.proof.runner import ProveConfig, prove

pytestmark = pytest.mark.slow

BASELINE, CANDIDATE = "claude-opus-4-8", "claude-haiku-4-5"
FAMILY = "ticket_triage"
ALPHA, DELTA = 0.05, 0.1
TASKS, SIZE = 30, 150
SAFETY = 0.01
"""Hard items fall further than easy ones (accuracy ** difficulty), so a prompt-level gap of δ is a little less
than δ on the population; 0.01 more keeps the population gap at or beyond δ."""


def _emulator(seed: int) -> Emulator:
    emulator = Emulator(seed=seed)
    emulator.batches.processing_s = "instant"
    return emulator


def _baseline_accuracy() -> float:
    """The baseline's accuracy on the team's prompt, as the simulated brain computes it."""
    request = load_emulator_family(FAMILY, 1, seed=0, baseline_model=BASELINE).items[0].request
    messages = [{"role": m["role"], "content": [{"type": "text", "text": m["content"]}]
                 if isinstance(m["content"], str) else m["content"]} for m in request["messages"]]
    system = request.get("system")
    if not isinstance(system, str):
        system = "\n\n".join(b.get("text", "") for b in system or [])
    probe = BrainRequest(model=BASELINE, system=system, messages=messages, max_tokens=64)
    return float(_emulator(0).brain.explain(probe).accuracy)  # type: ignore[attr-defined]


def _profile(ceiling: float) -> dict[str, Any]:
    """The candidate's skill: `ceiling` is the best any prompt reaches; two good demos or a clear instruction
    get within 0.3% of it, the team's plain prompt sits 0.05 below it."""
    return {"skills": {FAMILY: {"base": ceiling - 0.05, "ceiling": ceiling, "demo_gain": 3.0,
                                "instruction_gain": 3.0}}}


@pytest.fixture(scope="module")
def null_profile() -> dict[str, Any]:
    return _profile(_baseline_accuracy() - DELTA - SAFETY)


def _config(seed: int) -> ProveConfig:
    return ProveConfig(task=FAMILY, baseline_model=BASELINE, candidate_models=(CANDIDATE,), margin=DELTA,
                       alpha=ALPHA, n_max=SIZE, seed=seed, scoring="paired-gold", optimize=True,
                       max_prompt_candidates=4)


def _spying_optimizer(scored: set[str], given: set[str]):
    """opt.optimize, recording every prompt id it is given and every one it asks to have scored."""

    def run(**kwargs: Any) -> opt.OptimizeResult:
        given.update(e.id for e in (*kwargs["train"], *kwargs["validation"]))
        evaluate, many = kwargs["evaluate"], kwargs["evaluate_many"]

        def spy(prompt: TunedPrompt, examples: Sequence[opt.Example]) -> list[float]:
            scored.update(e.id for e in examples)
            return evaluate(prompt, examples)

        def spy_many(work: Sequence[tuple[TunedPrompt, Sequence[opt.Example]]]) -> list[list[float]]:
            for _, examples in work:
                scored.update(e.id for e in examples)
            return many(work)

        return opt.optimize(**{**kwargs, "evaluate": spy, "evaluate_many": spy_many})

    return run


def _run(tmp_path: Path, seed: int, profile: dict[str, Any]) -> dict[str, Any]:
    emulator = _emulator(seed)
    emulator.brain.set_profile(CANDIDATE, profile)  # type: ignore[attr-defined]
    data = load_emulator_family(FAMILY, SIZE, seed=seed, baseline_model=BASELINE)
    scored: set[str] = set()
    given: set[str] = set()
    outcome = prove(_config(seed), data, emulator.client(), run_dir=tmp_path / f"run{seed}",
                    optimizer=_spying_optimizer(scored, given), sleep=lambda _s: None)
    cert = outcome.certificate
    cand = cert["candidates"][0]
    test_ids = set(cert["splits"]["test"])
    by_id = {i.id: i for i in data.items}
    test_inputs = {by_id[i].input_text for i in test_ids}
    return {
        "verdict": cand["verdict"],
        "tried": len((cand.get("optimization") or {}).get("history", [])),
        "scored_test": scored & test_ids,
        "given_test": given & test_ids,
        "demo_from_test": [d["input"] for d in cand["prompt"]["demos"] if d["input"] in test_inputs],
        "observed_outside_test": {o["id"] for o in cand["observations"]} - test_ids,
        "scored_any": bool(scored),
    }


def test_a_tuned_candidate_at_the_null_boundary_rarely_switches_and_never_sees_the_test_split(tmp_path,
                                                                                              null_profile):
    runs = [_run(tmp_path, 9100 + k, null_profile) for k in range(TASKS)]
    for run in runs:
        assert run["scored_any"] and run["tried"] >= 2, "the optimiser did not run"
        assert not run["scored_test"], f"the optimiser scored test prompts {sorted(run['scored_test'])[:3]}"
        assert not run["given_test"], "test prompts were handed to the optimiser"
        assert not run["demo_from_test"], "a demonstration in the tuned prompt is a test prompt"
        assert not run["observed_outside_test"], "the test observed prompts outside the test split"
    switches = sum(r["verdict"] == "switch" for r in runs)
    assert switches <= 3, f"{switches} of {TASKS} null tasks switched"


def test_the_same_pipeline_switches_a_clearly_better_candidate(tmp_path):
    """The positive control: the false-switch count above could fail, because this size can switch."""
    runs = [_run(tmp_path, 9200 + k, _profile(1.0)) for k in range(10)]
    switches = sum(r["verdict"] == "switch" for r in runs)
    assert switches >= 6, f"only {switches} of 10 clearly better candidates switched"


def test_an_optimiser_that_asks_for_a_test_prompt_is_refused(tmp_path, null_profile):
    """The seal is enforced by the runner, not by the optimiser's good manners."""
    seed = 9000
    data = load_emulator_family(FAMILY, SIZE, seed=seed, baseline_model=BASELINE)

    def peeking(**kwargs: Any) -> opt.OptimizeResult:
        seen = {e.id for e in (*kwargs["train"], *kwargs["validation"])}
        unseen = next(i for i in data.items if i.id not in seen)  # a test prompt
        kwargs["evaluate"](kwargs["base_prompt"], [opt.Example(unseen.id, unseen.input_text, "", unseen.gold)])
        raise AssertionError("the runner scored a test prompt for the optimiser")

    emulator = _emulator(seed)
    emulator.brain.set_profile(CANDIDATE, null_profile)  # type: ignore[attr-defined]
    with pytest.raises(ParityError, match="sealed"):
        prove(_config(seed), data, emulator.client(), run_dir=tmp_path / "run", optimizer=peeking,
              sleep=lambda _s: None)
