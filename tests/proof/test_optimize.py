"""The prompt optimiser: demos where demos help, instruction repair kept only above one SE, the 32-candidate cap,
determinism under a seed, and the train/validation-only contract."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from statistics import NormalDist

import pytest

from parity.errors import InputError, ParityError
from parity.policy import Demo, TunedPrompt
from parity.proof.optimize import (
    Example,
    Failure,
    StopOptimizing,
    expected_max_normal,
    optimize,
    parse_proposals,
    pass_chance,
    prompt_hash,
    propose_prompt_for_baseline,
)


def _uniform(*parts: str) -> float:
    """A deterministic pseudo-random number in [0, 1) per key: the synthetic 'difficulty' of an item."""
    digest = hashlib.sha256("|".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _examples(prefix: str, n: int) -> list[Example]:
    return [Example(id=f"{prefix}{i}", input=f"input {prefix}{i}", output=f"baseline answer {prefix}{i}") for i in range(n)]


def _threshold_evaluate(p_of, calls: list | None = None):
    """Score 1 when the item's fixed difficulty is below p(prompt): common random numbers across prompts, so a
    prompt with a higher p is better on every item and an equal p scores identically."""

    def evaluate(prompt: TunedPrompt, examples: Sequence[Example]) -> list[float]:
        if calls is not None:
            calls.append((prompt, [e.id for e in examples]))
        p = p_of(prompt)
        return [1.0 if _uniform(e.id) < p else 0.0 for e in examples]

    return evaluate


TRAIN = _examples("t", 30)
VALIDATION = _examples("v", 60)


def test_demos_are_picked_where_demos_help():
    calls: list = []
    evaluate = _threshold_evaluate(lambda p: 0.3 + 0.08 * len(p.demos), calls)
    result = optimize(base_prompt=TunedPrompt(system="Answer."), train=TRAIN, validation=VALIDATION,
                      evaluate=evaluate, propose=None, seed=7)
    assert result.best.demos, "demos help here, so the chosen prompt must carry some"
    assert result.best.system == "Answer."
    assert result.validation_mean > result.baseline_mean + 0.2
    assert result.history[0].stage == "baseline" and result.history[0].prompt.demos == []
    kept = [r for r in result.history if r.kept and r.stage == "demos"]
    assert len(kept) == 1 and kept[0].prompt_hash == result.best_hash
    assert kept[0].gain is not None and kept[0].gain > kept[0].gain_se
    # demos come from the baseline's own train pairs; sizes are drawn from {2, 4, 8}
    train_pairs = {(e.input, e.output) for e in TRAIN}
    for record in result.history[1:]:
        assert {len(record.prompt.demos)} <= {2, 4, 8}
        assert all((d.input, d.output) in train_pairs for d in record.prompt.demos)
        assert set(record.demo_ids) <= {e.id for e in TRAIN}
    # evaluate only ever sees validation items, never train (and it cannot be given test items at all)
    seen = {i for _, ids in calls for i in ids}
    assert seen <= {e.id for e in VALIDATION}
    # screening: every candidate on the minibatch; only finalists on the rest of validation
    assert len(result.minibatch_ids) == 16
    full = [r for r in result.history if r.full_score is not None]
    assert 2 <= len(full) <= 1 + 3
    assert result.calls.items_scored == sum(len(ids) for _, ids in calls)


def test_demos_that_do_not_help_are_not_adopted():
    evaluate = _threshold_evaluate(lambda p: 0.5)
    result = optimize(base_prompt=TunedPrompt(system="Answer."), train=TRAIN, validation=VALIDATION,
                      evaluate=evaluate, propose=None, seed=1)
    assert not result.improved and result.best.demos == []
    assert result.validation_mean == result.baseline_mean


def test_instruction_fix_is_kept_when_it_helps():
    fix = "Reply with the label only, in lower case."
    evaluate = _threshold_evaluate(lambda p: 0.4 + (0.35 if p.system == fix else 0.0))
    seen_failures: list[list[Failure]] = []

    def propose(instruction: str, failures: list[Failure]) -> list[str]:
        seen_failures.append(failures)
        return ["Be helpful.", fix, "Think carefully."]

    result = optimize(base_prompt=TunedPrompt(system="Classify the ticket."), train=TRAIN, validation=VALIDATION,
                      evaluate=evaluate, propose=propose, seed=3)
    assert result.best.system == fix
    record = next(r for r in result.history if r.prompt.system == fix)
    assert record.stage == "instruction" and record.kept and record.round == 1
    assert record.gain > record.gain_se
    # the proposer saw lost validation items of the incumbent, lowest scores first, at most 8
    first = seen_failures[0]
    assert 0 < len(first) <= 8 and all(f.score < 1.0 for f in first)
    assert [f.score for f in first] == sorted(f.score for f in first)
    assert {f.example.id for f in first} <= {e.id for e in VALIDATION}
    assert result.calls.propose_calls == len(seen_failures)


def _flip_evaluate():
    """Baseline scores: 1 on even items, 0 on odd. A system prompt 'up:1,3;down:0' flips those items."""

    def evaluate(prompt: TunedPrompt, examples: Sequence[Example]) -> list[float]:
        text = prompt.system or ""
        up = {int(x) for x in re.findall(r"up:([\d,]+)", text)[0].split(",")} if "up:" in text else set()
        down = {int(x) for x in re.findall(r"down:([\d,]+)", text)[0].split(",")} if "down:" in text else set()
        scores = []
        for e in examples:
            i = int(e.id[1:])
            base = 1.0 if i % 2 == 0 else 0.0
            scores.append(1.0 if i in up else 0.0 if i in down else base)
        return scores

    return evaluate


@pytest.mark.parametrize(
    ("proposal", "kept"),
    [
        ("up:1,3", True),  # gain 2/60 = 0.033 > SE 0.023
        ("up:1", False),  # gain 1/60 = SE 1/60: not above one SE
        ("up:1,3;down:0", False),  # gain 1/60 < SE 0.029
    ],
)
def test_stage_two_keeps_a_change_only_when_gain_exceeds_one_se(proposal: str, kept: bool):
    result = optimize(base_prompt=TunedPrompt(system="base"), train=[], validation=VALIDATION,
                      evaluate=_flip_evaluate(), propose=lambda instruction, failures: [proposal], seed=0,
                      minibatch=len(VALIDATION))
    record = next(r for r in result.history if r.prompt.system == proposal)
    assert record.full_score is not None
    assert record.kept is kept
    assert (result.best.system == proposal) is kept
    if kept:
        assert record.gain > record.gain_se
    else:
        assert record.gain <= record.gain_se
        assert result.stopped == "no gain above one SE"


def _levels_propose(per_call: int = 10):
    """Each call proposes `per_call` new instructions, each better than the last ('level N')."""
    state = {"next": 1}

    def propose(instruction: str, failures: list[Failure]) -> list[str]:
        start = state["next"]
        state["next"] += per_call
        return [f"level {n}" for n in range(start, start + per_call)]

    return propose


def _level(prompt: TunedPrompt) -> int:
    match = re.search(r"level (\d+)", prompt.system or "")
    return int(match.group(1)) if match else 0


@pytest.mark.parametrize("max_candidates", [1, 5, 7, 32, 60])
def test_never_more_than_max_candidates_and_never_more_than_32_by_default(max_candidates: int):
    evaluate = _threshold_evaluate(lambda p: min(1.0, 0.1 + 0.02 * len(p.demos) + 0.03 * _level(p)))
    result = optimize(base_prompt=TunedPrompt(system="start"), train=TRAIN, validation=VALIDATION,
                      evaluate=evaluate, propose=_levels_propose(), seed=11, max_candidates=max_candidates)
    assert len(result.history) <= max_candidates
    assert len({r.prompt_hash for r in result.history}) == len(result.history)
    default = optimize(base_prompt=TunedPrompt(system="start"), train=TRAIN, validation=VALIDATION,
                       evaluate=evaluate, propose=_levels_propose(4), seed=11)
    assert len(default.history) == 32 and default.stopped == "max candidates"
    assert _level(default.best) > 0 and default.best.demos


def test_same_seed_same_search_and_another_seed_another():
    def run(seed: int):
        evaluate = _threshold_evaluate(lambda p: min(1.0, 0.2 + 0.05 * len(p.demos) + 0.02 * _level(p)))
        return optimize(base_prompt=TunedPrompt(system="start"), train=TRAIN, validation=VALIDATION,
                        evaluate=evaluate, propose=_levels_propose(4), seed=seed)

    a, b, c = run(5), run(5), run(6)
    assert a.to_dict() == b.to_dict()
    assert a.minibatch_ids != c.minibatch_ids or a.history[1].demo_ids != c.history[1].demo_ids


def test_evaluate_many_runs_the_same_search_in_waves():
    p_of = lambda p: min(1.0, 0.2 + 0.05 * len(p.demos) + 0.02 * _level(p))  # noqa: E731
    single = _threshold_evaluate(p_of)
    waves: list[int] = []

    def evaluate_many(work):
        waves.append(len(work))
        return [single(prompt, examples) for prompt, examples in work]

    def must_not_be_called(prompt, examples):
        raise AssertionError("evaluate is unused when evaluate_many is given")

    one = optimize(base_prompt=TunedPrompt(system="start"), train=TRAIN, validation=VALIDATION, evaluate=single,
                   propose=_levels_propose(4), seed=2)
    many = optimize(base_prompt=TunedPrompt(system="start"), train=TRAIN, validation=VALIDATION,
                    evaluate=must_not_be_called, evaluate_many=evaluate_many, propose=_levels_propose(4), seed=2)
    assert one.to_dict()["history"] == many.to_dict()["history"]
    assert many.calls.items_scored == one.calls.items_scored
    assert max(waves) >= 15, "stage 1 screens all demo sets in one wave"
    assert many.calls.evaluate_calls == len(waves) < one.calls.evaluate_calls


def test_stop_optimizing_returns_the_best_fully_scored_prompt():
    inner = _threshold_evaluate(lambda p: 0.3 + 0.08 * len(p.demos))
    count = {"n": 0}

    def evaluate(prompt, examples):
        count["n"] += 1
        if count["n"] > 5:
            raise StopOptimizing("budget reached")
        return inner(prompt, examples)

    result = optimize(base_prompt=TunedPrompt(system="Answer."), train=TRAIN, validation=VALIDATION,
                      evaluate=evaluate, propose=None, seed=7)
    assert result.stopped == "stopped: budget reached"
    assert result.best_hash == result.history[0].prompt_hash
    assert result.validation_mean == result.baseline_mean


def test_stop_while_scoring_the_baseline_propagates():
    def evaluate(prompt, examples):
        raise StopOptimizing("no budget")

    with pytest.raises(StopOptimizing):
        optimize(base_prompt=TunedPrompt(), train=TRAIN, validation=VALIDATION, evaluate=evaluate, propose=None, seed=0)


def test_winners_curse_is_reported_with_the_reference_table_values():
    assert expected_max_normal(1) == 0.0
    assert expected_max_normal(8) == pytest.approx(1.42, abs=0.01)
    assert expected_max_normal(16) == pytest.approx(1.77, abs=0.01)
    assert expected_max_normal(32) == pytest.approx(2.07, abs=0.01)
    evaluate = _threshold_evaluate(lambda p: 0.3 + 0.08 * len(p.demos))
    result = optimize(base_prompt=TunedPrompt(system="Answer."), train=TRAIN, validation=VALIDATION,
                      evaluate=evaluate, propose=None, seed=7)
    curse = result.winners_curse
    assert curse.candidates_compared == len(result.history) and curse.n == len(VALIDATION)
    assert curse.optimism == pytest.approx(expected_max_normal(curse.candidates_compared) * curse.sd / 60**0.5)
    assert curse.optimism > 0 and "not evidence for switching" in curse.note


def test_progress_reports_every_stage():
    events = []
    evaluate = _threshold_evaluate(lambda p: min(1.0, 0.2 + 0.05 * len(p.demos) + 0.02 * _level(p)))
    optimize(base_prompt=TunedPrompt(system="start"), train=TRAIN, validation=VALIDATION, evaluate=evaluate,
             propose=_levels_propose(4), seed=4, progress=events.append)
    assert {e.stage for e in events} == {"baseline", "demos", "instruction"}
    assert [e.candidates for e in events] == sorted(e.candidates for e in events)
    assert all(e.max_candidates == 32 for e in events)


def test_bad_inputs_and_bad_scores_say_what_is_wrong():
    ok = _threshold_evaluate(lambda p: 0.5)
    with pytest.raises(InputError, match="share examples"):
        optimize(base_prompt=TunedPrompt(), train=TRAIN, validation=TRAIN[:3], evaluate=ok, propose=None, seed=0)
    with pytest.raises(InputError, match="validation split is empty"):
        optimize(base_prompt=TunedPrompt(), train=TRAIN, validation=[], evaluate=ok, propose=None, seed=0)
    with pytest.raises(InputError, match="unique"):
        optimize(base_prompt=TunedPrompt(), train=TRAIN + TRAIN[:1], validation=VALIDATION, evaluate=ok,
                 propose=None, seed=0)
    with pytest.raises(ParityError, match=r"returned 1 scores for 60"):
        optimize(base_prompt=TunedPrompt(), train=TRAIN, validation=VALIDATION, evaluate=lambda p, e: [0.5],
                 propose=None, seed=0)
    with pytest.raises(ParityError, match=r"must lie in \[0, 1\]"):
        optimize(base_prompt=TunedPrompt(), train=TRAIN, validation=VALIDATION,
                 evaluate=lambda p, e: [1.5] * len(e), propose=None, seed=0)


def test_prompt_hash_is_stable_and_sensitive():
    a = TunedPrompt(system="x", demos=[Demo("q", "a")])
    assert prompt_hash(a) == prompt_hash(TunedPrompt(system="x", demos=[Demo("q", "a")]))
    assert prompt_hash(a) != prompt_hash(TunedPrompt(system="x", demos=[Demo("q", "b")]))
    assert prompt_hash(a) != prompt_hash(TunedPrompt(system="y", demos=[Demo("q", "a")]))
    assert len(prompt_hash(a)) == 16


def test_meta_prompt_carries_instruction_failures_reasons_and_length():
    failure = Failure(Example("v1", "Where is my refund?", "billing"), 0.25, "abc",
                      candidate_output="This is about billing and refunds.", reason="Assistant B added prose.")
    system, messages = propose_prompt_for_baseline("Classify the ticket.", [failure], n=5)
    text = messages[0]["content"]
    assert "<instruction></instruction>" in system
    assert messages[0]["role"] == "user"
    for needed in ("<current_instruction>\nClassify the ticket.\n</current_instruction>", "Where is my refund?",
                   "<reference_answer>\nbilling\n</reference_answer>", "Assistant B added prose.",
                   'score="0.25"', "Write 5 revised instructions", "× the length"):
        assert needed in text
    # items without known outputs or reasons still render, without those parts
    _, bare = propose_prompt_for_baseline("", [Failure(Example("v2", "hi", "hello"), 0.0, "abc")])
    assert "<candidate_answer>" not in bare[0]["content"] and "(no instruction" in bare[0]["content"]


def test_parse_proposals():
    reply = ("Here are my proposals.\n<instruction>\nReply with one label.\n</instruction>\n"
             "<instruction>Use lower case.</instruction><instruction>Reply with one label.</instruction>"
             "<instruction>cut off mid")
    assert parse_proposals(reply) == ["Reply with one label.", "Use lower case."]
    assert parse_proposals("1. Be brief.\n2) Answer in JSON\n   with the schema's keys.\n") == [
        "Be brief.", "Answer in JSON\n   with the schema's keys."]
    assert parse_proposals("I cannot help with that.") == []
    assert parse_proposals("<instruction>   </instruction>") == []
    # prose that names the tag before the first block is not part of that block
    assert parse_proposals("Each inside <instruction> tags:\n1. <instruction>Be brief.</instruction>") == ["Be brief."]


# ---- on the emulator's simulated brain ----------------------------------------------------------------------------

BASELINE = "claude-opus-4-8"
CANDIDATE = "claude-haiku-4-5"


class _InvoiceTask:
    """What the runner does, in miniature: baseline outputs by calling the baseline, candidate calls through the
    policy's own request rewrite, field-F1 against the gold record, and the proposer sent to the baseline."""

    def __init__(self):
        from parity.emulator import workloads
        from parity.emulator.brains.simulated import SimulatedBrain
        from parity.emulator.service import Emulator

        self.client = Emulator(SimulatedBrain(seed=0)).client()
        self.requests: dict[str, dict] = {}
        self.outputs: dict[tuple[str, str], str] = {}
        self.proposals: list[list[str]] = []
        items = workloads.dataset("invoice_extraction", 100, seed=3, model=BASELINE)
        self.system = items[0].request["system"][0]["text"]
        examples = []
        for item in items:
            self.requests[item.id] = item.request
            examples.append(Example(item.id, item.request["messages"][-1]["content"], self._text(item.request), item.gold))
        self.train, self.validation, self.test = examples[:30], examples[30:70], examples[70:]

    def _text(self, body: dict) -> str:
        message = self.client.messages.create(**body)
        return "".join(block.text for block in message.content if block.type == "text")

    def evaluate(self, prompt: TunedPrompt, examples: Sequence[Example]) -> list[float]:
        from parity.policy import TaskPolicy, apply_prompt
        from parity.proof.scorers import field_f1

        policy = TaskPolicy("invoices", "route", BASELINE, CANDIDATE, prompt=prompt)
        scores = []
        for example in examples:
            text = self._text(apply_prompt(self.requests[example.id], policy))
            self.outputs[(prompt_hash(prompt), example.id)] = text
            scores.append(field_f1(text, example.gold).score)
        return scores

    def propose(self, instruction: str, failures: list[Failure]) -> list[str]:
        from dataclasses import replace

        failures = [replace(f, candidate_output=self.outputs[(f.prompt_hash, f.example.id)]) for f in failures]
        system, messages = propose_prompt_for_baseline(instruction, failures)
        proposals = parse_proposals(self._text({"model": BASELINE, "max_tokens": 2000, "system": system,
                                                "messages": messages}))
        self.proposals.append(proposals)
        return proposals


@pytest.fixture(scope="module")
def invoice_task() -> _InvoiceTask:
    return _InvoiceTask()


def test_invoice_extraction_improves_with_demos_for_haiku_on_the_emulator(invoice_task: _InvoiceTask):
    task = invoice_task
    base = TunedPrompt(system=task.system)
    result = optimize(base_prompt=base, train=task.train, validation=task.validation, evaluate=task.evaluate,
                      propose=None, seed=1, max_candidates=9)
    assert result.best.demos and result.best.system == task.system
    assert result.validation_mean - result.baseline_mean > 0.15
    kept = next(r for r in result.history if r.kept and r.stage == "demos")
    assert kept.gain > kept.gain_se
    train_ids = {e.id for e in task.train}
    assert set(kept.demo_ids) <= train_ids
    # the untouched test items (never given to the optimiser) confirm it
    on_test_base = sum(task.evaluate(base, task.test)) / len(task.test)
    on_test_tuned = sum(task.evaluate(result.best, task.test)) / len(task.test)
    assert on_test_tuned - on_test_base > 0.1, (on_test_base, on_test_tuned)


def test_the_simulated_baseline_answers_the_proposer_and_its_fix_is_kept(invoice_task: _InvoiceTask):
    task = invoice_task
    result = optimize(base_prompt=TunedPrompt(system=task.system), train=[], validation=task.validation,
                      evaluate=task.evaluate, propose=task.propose, seed=1)
    assert task.proposals and all(len(p) == 4 for p in task.proposals)
    assert result.history[-1].prompt.demos == []
    assert result.best.system != task.system and result.best.system.startswith(task.system.splitlines()[0])
    assert result.validation_mean - result.baseline_mean > 0.1
    assert any(r.kept and r.stage == "instruction" for r in result.history)


# ---- what demonstrations cost ----------------------------------------------------------------------------------


def _demo_cost(base: float = 0.001, per_demo: float = 0.0004):
    """The candidate's cost per request grows with each demonstration it carries (they are sent every time)."""
    return lambda prompt: base + per_demo * len(prompt.demos)


def _noisy_saturating(prompt: TunedPrompt, examples: Sequence[Example]) -> list[float]:
    """Quality saturates at two demos; each prompt draws its own noise, so equal prompts score unequally by chance."""
    p = 0.3 + 0.3 * min(len(prompt.demos), 2) / 2
    return [1.0 if _uniform(e.id, prompt_hash(prompt)) < p else 0.0 for e in examples]


WEIGHED = dict(cost=_demo_cost(), ceiling=0.01, boundary=0.4, test_size=300)


def test_a_demo_set_no_better_than_a_smaller_one_is_not_paid_for():
    free, weighed = [], []
    for seed in range(20):
        args = dict(base_prompt=TunedPrompt(system="Answer."), train=TRAIN, validation=VALIDATION,
                    evaluate=_noisy_saturating, propose=None, seed=seed)
        free.append(optimize(**args))
        weighed.append(optimize(**args, **WEIGHED))
    # Without costs the luckiest set wins, often 8 demos; weighed, every set that clears the boundary is near
    # certain to pass, so the cheapest of them gives the largest expected saving.
    assert sum(len(r.best.demos) > 2 for r in free) >= 8
    assert sum(len(r.best.demos) == 2 for r in weighed) >= 18
    assert sum(r.cost_per_request for r in weighed) < sum(_demo_cost()(r.best) for r in free)
    one = weighed[0]
    assert one.cost_per_request == pytest.approx(0.001 + 0.0004 * len(one.best.demos))
    assert all(r.cost_per_request is not None for r in one.history if r.minibatch_score is not None)
    assert one.to_dict()["base_prompt_cost_per_request"] == pytest.approx(0.001)
    assert [r for r in one.history if r.prompt_hash == one.best_hash][0].pass_chance > 0.5


def test_quality_is_bought_when_the_cheap_prompt_would_likely_fail_the_test():
    # Two demos reach 0.45, eight reach 0.62 against a boundary of 0.42: the cheap prompt's chance to pass is
    # low, so the costlier prompt's expected saving is larger although it saves less per request.
    def evaluate(prompt: TunedPrompt, examples: Sequence[Example]) -> list[float]:
        p = {0: 0.3, 2: 0.45, 4: 0.5, 8: 0.62}[len(prompt.demos)]
        return [1.0 if _uniform(e.id) < p else 0.0 for e in examples]

    def run(boundary: float):  # four prompts in all (bare, 2, 4 and 8 demos), each scored on the full split
        return optimize(base_prompt=TunedPrompt(system="Answer."), train=TRAIN, validation=_examples("v", 200),
                        evaluate=evaluate, propose=None, seed=7, max_candidates=4,
                        cost=_demo_cost(per_demo=0.0002), ceiling=0.01, boundary=boundary, test_size=200)

    near = run(0.42)
    assert len(near.best.demos) == 8
    chances = {len(r.prompt.demos): r.pass_chance for r in near.history}
    assert chances[2] < 0.5 < chances[8]
    # With the boundary far below, every demo set is near certain to pass and the cheapest one is chosen.
    assert len(run(0.2).best.demos) == 2


def test_pass_chance_is_a_one_sided_z_test_on_half_the_test_split():
    assert pass_chance(0.5, 0.5, 0.5, 200) == pytest.approx(0.05)
    assert pass_chance(0.6, 0.5, 0.5, 200) == pytest.approx(NormalDist().cdf(0.1 * 10 / 0.5 - 1.6448536))
    assert pass_chance(0.4, 0.0, 0.5, 200) == 0.0 and pass_chance(0.6, 0.0, 0.5, 200) == 1.0


def test_a_prompt_that_costs_the_baseline_price_is_never_chosen():
    # Demos help a lot, but every demo set costs at least the baseline's price: no saving is possible with them.
    evaluate = _threshold_evaluate(lambda p: 0.3 + 0.08 * len(p.demos))
    result = optimize(base_prompt=TunedPrompt(system="Answer."), train=TRAIN, validation=VALIDATION,
                      evaluate=evaluate, propose=None, seed=7, cost=_demo_cost(per_demo=0.01), ceiling=0.01)
    assert result.best.demos == [] and not result.improved
    assert result.ceiling == 0.01


def test_a_measured_gain_is_still_bought_when_it_is_worth_its_cost():
    evaluate = _threshold_evaluate(lambda p: 0.3 + 0.08 * len(p.demos))
    result = optimize(base_prompt=TunedPrompt(system="Answer."), train=TRAIN, validation=VALIDATION,
                      evaluate=evaluate, propose=None, seed=7, **{**WEIGHED, "boundary": 0.5})
    assert result.best.demos and result.validation_mean > result.baseline_mean + 0.2
