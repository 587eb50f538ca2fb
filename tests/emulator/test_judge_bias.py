"""The simulated judge is as biased as real ones (reference proof-science §1), measured the way Parity measures a
real judge: the emulator through the anthropic SDK, the judge request from parity.proof.judge.judge_params, the
verdict from parse_verdict, both orders of every prompt.

The pairs are realistic: a Haiku candidate's and an Opus baseline's own answers to the same prompts of the four
simulated scenarios, judged by Opus without a reference (the default judge). Each bias is a knob of the judge
model's profile (profiles.JudgeBias); setting it to 0 removes its effect and leaves the others in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from parity.emulator import workloads as wl
from parity.emulator.brains import scenarios
from parity.emulator.brains.profiles import JudgeBias, default_profile
from parity.emulator.brains.simulated import SimulatedBrain
from parity.emulator.service import Emulator
from parity.proof.judge import candidate_score, judge_params
from parity.proof.judge_prompt import parse_verdict, question_text, system_text

BASELINE, CANDIDATE = "claude-opus-4-8", "claude-haiku-4-5"
JUDGE = BASELINE
PER_SCENARIO = 150
SEED = 3

Verdicts = tuple[str | None, str | None]  # (first answer shown as A, first answer shown as B)


@dataclass(frozen=True)
class Pair:
    """One prompt with two different answers (the baseline's first), each with its true quality."""

    scenario: str
    request: dict[str, Any]
    answers: tuple[str, str]
    scores: tuple[float, float]
    correct: tuple[bool, bool]
    hard: bool


def _text(client, params: dict[str, Any]) -> str:
    message = client.messages.create(**params)
    return "".join(block.text for block in message.content if block.type == "text")


def judge_both_orders(bias: JudgeBias | None, pairs: list[Pair], *, seed: int = 0) -> list[Verdicts]:
    """Both orders' verdicts per pair from a judge with `bias` (None: the profile's default)."""
    brain = SimulatedBrain(seed=seed, profiles={JUDGE: {"judge": bias}} if bias is not None else None)
    client = Emulator(brain=brain, seed=seed).client()
    out = []
    for p in pairs:
        question, task_system = question_text(p.request), system_text(p.request)
        first, second = p.answers
        one = _text(client, judge_params(JUDGE, question, first, second, task_system=task_system))
        two = _text(client, judge_params(JUDGE, question, second, first, task_system=task_system))
        out.append((parse_verdict(one), parse_verdict(two)))
    return out


@pytest.fixture(scope="module")
def pairs() -> list[Pair]:
    """Every prompt on which the candidate's answer differs from the baseline's (identical answers are never
    judged: the judge runner calls them a tie without asking)."""
    client = Emulator(seed=0).client()
    out = []
    for scenario in scenarios.SCENARIOS:
        source = scenarios.get(scenario)
        for item in wl.dataset(scenario, PER_SCENARIO, SEED, model=BASELINE):
            base = _text(client, item.request)
            cand = _text(client, {**item.request, "model": CANDIDATE})
            if base.strip() == cand.strip():
                continue
            scores = (source.score(base, item.gold), source.score(cand, item.gold))
            correct = (source.correct(base, item.gold), source.correct(cand, item.gold))
            out.append(Pair(scenario, item.request, (base, cand), scores, correct, item.difficulty > 1.0))
    return out


@pytest.fixture(scope="module")
def judged(pairs) -> list[Verdicts]:
    """The default judge's verdicts on every pair, in order."""
    return judge_both_orders(None, pairs)


def score(v: Verdicts, which: int) -> float:
    """Answer `which`'s per-prompt score: the mean over its two orders, as parity.proof.judge scores a candidate."""
    if which == 0:
        return (candidate_score(v[0], "A") + candidate_score(v[1], "B")) / 2
    return (candidate_score(v[0], "B") + candidate_score(v[1], "A")) / 2


def inconsistent(v: Verdicts) -> bool:
    """The two orders disagree (the runner's Judgment.inconsistent)."""
    return candidate_score(v[0], "A") != candidate_score(v[1], "B")


def clear_verdicts_for(v: Verdicts, which: int) -> int:
    """How many of the two orders name answer `which` as better (not a tie)."""
    mine, other = ("A", "B") if which == 0 else ("B", "A")
    return (v[0] == mine) + (v[1] == other)


def equally_good_of_different_length(pairs: list[Pair]) -> list[tuple[int, int]]:
    """(pair index, index of the longer answer) where both answers are right and score the same, and one is more
    than a tenth longer."""
    out = []
    for n, p in enumerate(pairs):
        lengths = [len(a) for a in p.answers]
        if all(p.correct) and p.scores[0] == p.scores[1] and abs(lengths[0] - lengths[1]) > 0.1 * max(lengths):
            out.append((n, 0 if lengths[0] > lengths[1] else 1))
    return out


def right_against_wrong(pairs: list[Pair], *, hard: bool) -> list[tuple[int, int]]:
    """(pair index, index of the wrong answer) where exactly one answer is right, on hard or on easy items."""
    return [(n, p.correct.index(False)) for n, p in enumerate(pairs) if p.correct[0] != p.correct[1] and p.hard == hard]


def confidently_wrong(vs: list[Verdicts], wrong: list[int]) -> float:
    """Share of single-order verdicts that name the wrong answer as better: a clear verdict, not a tie."""
    return sum(clear_verdicts_for(v, w) for v, w in zip(vs, wrong)) / (2 * len(vs))


def test_the_defaults_are_the_references_and_each_model_can_have_its_own():
    bias = default_profile(JUDGE).judge
    assert (bias.position, bias.verbosity, bias.wrong_on_hard) == (0.35, 0.3, 0.3)
    assert default_profile(CANDIDATE).judge == bias
    assert SimulatedBrain(profiles={"opus": {"judge": {"position": 0.1}}}).profile(JUDGE).judge.position == 0.1
    with pytest.raises(ValueError, match="position"):
        JudgeBias(position=1.5)


def test_swap_inconsistency_is_in_the_range_real_judges_show(pairs, judged):
    assert len(pairs) >= 300
    share = sum(map(inconsistent, judged)) / len(judged)
    by_scenario = {f: [inconsistent(v) for p, v in zip(pairs, judged) if p.scenario == f] for f in scenarios.SCENARIOS}
    detail = {f: (len(x), round(sum(x) / len(x), 3)) for f, x in by_scenario.items()}
    assert 0.15 <= share <= 0.35, (share, detail)  # §1.2: 15–35% of prompts are swayed by the order (0.21 here)
    # without position bias the two orders always agree: nothing else in the judge depends on the order
    sample = pairs[::2]
    assert not any(map(inconsistent, judge_both_orders(JudgeBias(position=0.0), sample)))


def test_the_longer_of_two_equally_good_answers_wins_more_often(pairs, judged):
    even = equally_good_of_different_length(pairs)
    assert len(even) >= 80
    longer = sum(score(judged[n], which) for n, which in even) / len(even)
    assert 0.57 <= longer <= 0.73, (longer, len(even))  # ½ + 0.3/2 = 0.65 (0.62 here); §1.3: judges 0.61–0.75
    blind = judge_both_orders(JudgeBias(verbosity=0.0), [pairs[n] for n, _ in even])
    fair = sum(score(v, which) for v, (_, which) in zip(blind, even)) / len(even)
    assert abs(fair - 0.5) <= 0.04, fair  # position bias alone favours neither answer: it cancels over two orders


def test_hard_items_get_some_confidently_wrong_verdicts(pairs, judged):
    hard, easy = right_against_wrong(pairs, hard=True), right_against_wrong(pairs, hard=False)
    assert len(hard) >= 60 and len(easy) >= 60
    on_hard = [judged[n] for n, _ in hard]
    wrong_hard = confidently_wrong(on_hard, [w for _, w in hard])
    wrong_easy = confidently_wrong([judged[n] for n, _ in easy], [w for _, w in easy])
    assert 0.2 <= wrong_hard <= 0.45, (wrong_hard, len(hard))  # wrong_on_hard 0.3: MT-Bench math, 6 of 20 (§1.1)
    assert wrong_easy <= 0.05, wrong_easy
    # confidently wrong is the same wrong verdict in both orders, not a coin the order flips
    both = sum(clear_verdicts_for(v, w) == 2 for v, (_, w) in zip(on_hard, hard))
    assert both >= 0.8 * sum(clear_verdicts_for(v, w) for v, (_, w) in zip(on_hard, hard)) / 2
    # and the judge is still mostly right: over all clear differences the right answer scores well above ½
    clear = hard + easy
    assert sum(1 - score(judged[n], w) for n, w in clear) / len(clear) >= 0.75  # 0.81 at this seed
    never = judge_both_orders(JudgeBias(wrong_on_hard=0.0), [pairs[n] for n, _ in hard])
    assert confidently_wrong(never, [w for _, w in hard]) <= 0.05


def test_a_judge_with_no_bias_is_consistent_length_blind_and_never_fooled(pairs):
    even = equally_good_of_different_length(pairs)[:60]
    clear = (right_against_wrong(pairs, hard=True) + right_against_wrong(pairs, hard=False))[:100]
    none = JudgeBias.none()
    on_even = judge_both_orders(none, [pairs[n] for n, _ in even])
    on_clear = judge_both_orders(none, [pairs[n] for n, _ in clear])
    assert not any(map(inconsistent, on_even + on_clear))
    assert all(v == ("tie", "tie") for v in on_even)  # same quality, and length does not count
    assert confidently_wrong(on_clear, [w for _, w in clear]) <= 0.03  # only items the judge could not solve


def test_the_bias_is_a_function_of_model_prompt_and_seed(pairs, judged):
    sample = pairs[:60]
    assert judge_both_orders(None, sample) == judged[:60]
    assert judge_both_orders(None, sample, seed=1) != judged[:60]
