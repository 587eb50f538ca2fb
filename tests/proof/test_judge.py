"""The pairwise judge runner: both orders, the ¼-step score, one re-ask for a malformed verdict, who may judge,
and the diagnostics (swap inconsistency, ties, length ratio, the length-controlled estimate, strata, warnings)."""

from __future__ import annotations

import numpy as np
import pytest

from parity.emulator.brains.base import BrainReply, BrainRequest
from parity.emulator.brains.simulated import SimulatedBrain
from parity.emulator.service import Emulator
from parity.errors import InputError
from parity.proof.calls import Caller
from parity.emulator.workloads import load_emulator_family
from parity.proof.diagnostics import diagnose, length_controlled
from parity.proof.judge import Judgment, OrderVerdict, PairToJudge, candidate_score, check_judge_model
from parity.proof.judging import Judge
from parity.proof.judge_prompt import A_START, B_END, JUDGE_SYSTEM, parse_pairwise, question_text, render_pairwise

BASELINE, CANDIDATE = "claude-opus-4-8", "claude-haiku-4-5"


def _emulator(brain=None) -> Emulator:
    emulator = Emulator(brain=brain, seed=0)
    emulator.batches.processing_s = "instant"
    return emulator


def _pairs(n: int = 12, family: str = "thread_summary") -> list[PairToJudge]:
    emulator = _emulator()
    client = emulator.client()
    pairs = []
    for item in load_emulator_family(family, n, seed=3, baseline_model=BASELINE).items:
        base = client.messages.create(**item.request).content[0].text
        cand = client.messages.create(**{**item.request, "model": CANDIDATE}).content[0].text
        pairs.append(PairToJudge(item.id, item.request, base, cand, item.reference, item.stratum))
    return pairs


def test_both_orders_on_every_prompt_and_quarter_step_scores(tmp_path):
    pairs = _pairs()  # free-text summaries: the two models' answers always differ
    assert all(p.baseline_output != p.candidate_output for p in pairs)
    caller = Caller(_emulator().client(), tmp_path, sync=True)
    judgments = Judge(caller, BASELINE).judge(pairs)
    assert len(judgments) == len(pairs)
    assert caller.network_calls == 2 * len(pairs)  # two distinct requests per prompt, each sent once
    assert len({o.request_key for j in judgments for o in j.orders}) == 2 * len(pairs)
    for pair, j in zip(pairs, judgments):
        assert [o.candidate_position for o in j.orders] == ["B", "A"]
        assert j.score in (0.0, 0.25, 0.5, 0.75, 1.0)
        assert j.score == (candidate_score(j.orders[0].verdict, "B") + candidate_score(j.orders[1].verdict, "A")) / 2
        assert j.baseline_chars == len(pair.baseline_output) and j.candidate_chars == len(pair.candidate_output)
        assert not any(o.identical or o.malformed for o in j.orders)
    # identical answers (surrounding whitespace aside) are a tie without asking the judge: both orders would be
    # the same request, so a judge could only add noise and cost
    same = [PairToJudge(p.item_id, p.request, p.baseline_output, p.baseline_output + "\n") for p in pairs[:4]]
    tied = Judge(caller, BASELINE).judge(same)
    assert caller.network_calls == 2 * len(pairs)
    assert [j.score for j in tied] == [0.5] * 4 and all(o.identical and o.verdict == "tie" for j in tied for o in j.orders)
    assert Judge(caller, BASELINE).calls(same) == []
    diag = diagnose([*judgments, *tied])
    assert diag.identical == 4 and diag.n == len(pairs) + 4
    assert diag.swap_inconsistency == pytest.approx(sum(j.inconsistent for j in judgments) / len(judgments))


def test_judge_request_hides_models_and_caches_the_fixed_instructions(tmp_path):
    pair = _pairs(1)[0]
    call = Judge(Caller(_emulator().client(), tmp_path), BASELINE).calls([pair])[0]
    params = call.params
    assert params["model"] == BASELINE and "temperature" not in params
    assert params["system"] == [{"type": "text", "text": JUDGE_SYSTEM, "cache_control": {"type": "ephemeral"}}]
    blocks = params["messages"][0]["content"]
    user = "".join(b["text"] for b in blocks)
    # the user turn is THE rendered judge prompt, cut where the cacheable prefixes end: the task's own system
    # prompt (shared by every prompt of the task), then the question (shared by both orders), then the answers
    _, rendered = render_pairwise(question_text(pair.request), pair.baseline_output, pair.candidate_output)
    assert user == rendered[0]["content"][0]["text"]
    assert [("cache_control" in b) for b in blocks] == [True, True, False]
    assert blocks[0]["text"].endswith(pair.request["system"][0]["text"] + "\n\n")
    assert blocks[2]["text"].startswith(A_START) and blocks[2]["text"].endswith(B_END)
    assert CANDIDATE not in user and BASELINE not in user and "haiku" not in user.lower()
    parsed = parse_pairwise("", user)
    assert parsed.answer_a == pair.baseline_output and parsed.answer_b == pair.candidate_output
    ref_call = Judge(Caller(_emulator().client(), tmp_path), BASELINE, reference_guided=True).calls([pair])[0]
    ref_user = "".join(b["text"] for b in ref_call.params["messages"][0]["content"])
    assert parse_pairwise("", ref_user).reference == pair.reference


def test_repeated_judge_prefixes_are_read_from_the_cache(tmp_path):
    # thread summaries carry a long policy manual in their system prompt: in one batch, every judge call after
    # the first reads the judge instructions and the manual from the cache, and the second order of each prompt
    # reads the whole question too
    pairs = _pairs(4)
    caller = Caller(_emulator().client(), tmp_path)
    Judge(caller, BASELINE).judge(pairs)
    results = list(caller._results.values())
    assert len(results) == 8 and all(r.batch and r.usage["service_tier"] == "batch" for r in results)
    assert results[0].usage["cache_read_input_tokens"] == 0 < results[0].usage["cache_creation_input_tokens"]
    assert all(r.usage["cache_read_input_tokens"] > 0 for r in results[1:])
    for first, second in zip(results[::2], results[1::2]):  # the two orders of one prompt
        assert second.usage["cache_read_input_tokens"] > first.usage["cache_read_input_tokens"]
        assert second.usage["cache_creation_input_tokens"] == 0


class NoVerdictBrain:
    """Judge replies without a verdict token; optionally only until asked again."""

    name = "no-verdict"

    def __init__(self, fix_on_retry: bool):
        self.inner = SimulatedBrain(seed=0)
        self.fix_on_retry = fix_on_retry

    def reply(self, request: BrainRequest) -> BrainReply:
        asked_again = len(request.messages) > 1
        first_turn = "".join(b.get("text", "") for b in request.messages[0]["content"])
        if A_START in first_turn and not (asked_again and self.fix_on_retry):
            return BrainReply([{"type": "text", "text": "Both answers have merits; it is hard to say."}])
        if asked_again:
            return BrainReply([{"type": "text", "text": "On reflection, Assistant B is better.\n\n[[B]]"}])
        return self.inner.reply(request)


@pytest.mark.parametrize("fix_on_retry", [True, False])
def test_malformed_verdict_is_asked_once_more_then_a_loss(tmp_path, fix_on_retry):
    pairs = _pairs(3)  # answers differ, so both orders are asked
    caller = Caller(_emulator(NoVerdictBrain(fix_on_retry)).client(), tmp_path, sync=True)
    judgments = Judge(caller, BASELINE).judge(pairs)
    assert caller.network_calls == 4 * len(pairs)  # two orders, each asked once more, never a third time
    for j in judgments:
        assert all(o.retried for o in j.orders)
        if fix_on_retry:
            assert [o.verdict for o in j.orders] == ["B", "B"] and j.score == 0.5
            assert not any(o.malformed or o.failed for o in j.orders)
        else:
            # changed from "counted as a tie" (issue 10): a tie is evidence FOR switching under H0: μ ≤ ½ − δ,
            # so an order the judge never gave a verdict for is a judge failure and a loss for the candidate
            assert all(o.malformed and o.failed and o.verdict == "none" and o.score == 0.0 for o in j.orders)
            assert j.score == 0.0
    diag = diagnose(judgments)
    assert diag.malformed == diag.judge_failures == (0 if fix_on_retry else 2 * len(pairs))
    assert any("no verdict" in w and "loss" in w for w in diag.warnings) is (not fix_on_retry)


def test_who_may_judge():
    assert check_judge_model(BASELINE, BASELINE, [CANDIDATE]) == BASELINE
    assert check_judge_model("claude-opus-4-8", "claude-sonnet-4-6", [CANDIDATE]) == "claude-opus-4-8"
    with pytest.raises(InputError, match="candidate's model"):
        check_judge_model(CANDIDATE, BASELINE, [CANDIDATE])
    with pytest.raises(InputError, match="candidate's model"):
        check_judge_model("claude-haiku-4-5-20251001", "claude-sonnet-4-6", [CANDIDATE])  # an alias is the same model
    with pytest.raises(InputError, match="weaker"):
        check_judge_model("claude-sonnet-4-6", BASELINE, [CANDIDATE])


def _judgment(i: int, s1: float, s2: float, base_len: int, cand_len: int, stratum: str = "all") -> Judgment:
    letter = {0.0: "A", 0.5: "tie", 1.0: "B"}
    o1 = OrderVerdict("B", letter[s1], s1, "", f"k{i}a")
    o2 = OrderVerdict("A", {0.0: "B", 0.5: "tie", 1.0: "A"}[s2], s2, "", f"k{i}b")
    return Judgment(f"p{i}", (o1, o2), base_len, cand_len, stratum)


def test_diagnostics_swap_ties_length_and_strata():
    js = [_judgment(0, 1.0, 1.0, 100, 100, "easy"), _judgment(1, 1.0, 0.0, 100, 100, "easy"),
          _judgment(2, 0.5, 0.5, 100, 100, "hard"), _judgment(3, 0.0, 0.5, 100, 100, "hard")]
    d = diagnose(js)
    assert d.n == 4 and d.raw == pytest.approx((1 + 0.5 + 0.5 + 0.25) / 4)
    assert d.swap_inconsistency == pytest.approx(2 / 4)
    assert d.tie_rate == pytest.approx(3 / 8)
    assert (d.wins, d.ties, d.losses) == (1, 2, 1)
    assert d.length_ratio == pytest.approx(1.0) and not d.warnings
    assert [(s.stratum, s.n, s.mean) for s in d.strata] == [("easy", 2, 0.75), ("hard", 2, 0.375)]


def _length_biased_judge(rng, base, cand, strength: float) -> list[float]:
    """Per-prompt scores from a judge that only looks at length: each order a tie 20% of the time, else it
    prefers the candidate with probability σ(strength·tanh((len_c − len_b)/80)), which is ½ at equal length."""
    scores = []
    for b, c in zip(base, cand):
        prefer = 1.0 / (1.0 + np.exp(-strength * np.tanh((c - b) / 80.0)))
        orders = [0.5 if rng.random() < 0.2 else float(rng.random() < prefer) for _ in range(2)]
        scores.append(sum(orders) / 2)
    return scores


def test_length_controlled_estimate_removes_a_pure_length_preference():
    # the candidate is usually longer and the judge rewards length alone: raw is well above ½, LC is ½
    rng = np.random.default_rng(0)
    base = rng.integers(200, 400, 400)
    cand = np.round(base * np.exp(rng.normal(0.25, 0.3, 400))).astype(int)
    scores = _length_biased_judge(rng, base, cand, strength=2.5)
    raw = float(np.mean(scores))
    lc = length_controlled(scores, base, cand)
    assert raw > 0.62
    assert abs(lc - 0.5) < 0.04
    # with no length preference at all, length control leaves a real quality edge in place
    fair = _length_biased_judge(rng, base, cand, strength=0.0)
    better = [min(1.0, s + 0.25) if i % 2 else s for i, s in enumerate(fair)]
    assert abs(length_controlled(better, base, cand) - float(np.mean(better))) < 0.04
    # a candidate that is always longer and always preferred: the warnings fire
    js = [_judgment(i, 1.0, 1.0 if i % 3 else 0.5, 100, 150 + (i % 7) * 20) for i in range(60)]
    js += [_judgment(100 + i, 0.5, 0.5, 100, 90) for i in range(20)]
    d = diagnose(js)
    assert d.length_ratio > 1.2
    assert any("as long as the baseline" in w for w in d.warnings)
    assert abs(d.length_controlled - d.raw) > 0.05
    assert any("length-controlled" in w for w in d.warnings)
