"""THE judge loop without I/O (`JudgeRound`): which requests go out in which wave, how replies become scores,
judge failures as losses, and a certificate's recomputation of the same scores from the stored orders."""

from __future__ import annotations

import pytest

from parity.proof.calls import request_key
from parity.proof.diagnostics import diagnose
from parity.proof.judge import RETRY_NUDGE, JudgeRound, Judgment, OrderVerdict, PairToJudge, judge_requests, order_score

JUDGE = "claude-opus-4-8"
REQUEST = {"model": JUDGE, "max_tokens": 64, "system": "Answer briefly.",
           "messages": [{"role": "user", "content": "What is the capital of France?"}]}


def _pair(n: int, candidate: str, baseline: str = "Paris.") -> PairToJudge:
    return PairToJudge(f"p{n}", REQUEST, baseline, candidate)


def _run(pairs, first, retries=None) -> tuple[JudgeRound, list[list[dict]]]:
    """Drive a round with scripted replies: `first` for the first wave, `retries` for the re-asks."""
    judging = JudgeRound(pairs, JUDGE)
    waves = []
    for replies in (first, retries):
        if not judging.pending:
            break
        waves.append(list(judging.pending))
        judging.take(replies)
    assert not judging.pending
    return judging, waves


def test_first_wave_is_both_orders_of_every_differing_pair_and_identical_answers_ask_nothing():
    pairs = [_pair(0, "Lyon."), _pair(1, "  Paris.\n"), _pair(2, "Marseille.")]
    judging = JudgeRound(pairs, JUDGE)
    # the same requests `Judge.calls` sends and budgets for: candidate as B, then as A, per judged pair
    expected = [*judge_requests(pairs[0], JUDGE), *judge_requests(pairs[2], JUDGE)]
    assert judging.pending == expected
    with pytest.raises(RuntimeError, match="pending"):
        judging.judgments()
    with pytest.raises(ValueError, match="expected 4"):
        judging.take(["[[A]]"])
    judging.take(["[[A]]", "[[A]]", "[[B]]", "[[A]]"])
    assert judging.pending == []  # every reply had a verdict: no second wave
    js = judging.judgments()
    assert [j.item_id for j in js] == ["p0", "p1", "p2"]
    assert [[o.candidate_position for o in j.orders] for j in js] == [["B", "A"]] * 3
    assert [j.score for j in js] == [0.5, 0.5, 1.0]  # p0: position bias (¬cand, cand); p1: identical; p2: wins
    assert all(o.identical and o.request_key == "" and o.score == 0.5 for o in js[1].orders)
    assert [o.request_key for o in js[0].orders] == [request_key(p) for p in expected[:2]]
    with pytest.raises(RuntimeError, match="finished"):
        judging.take([])


def test_all_identical_answers_need_no_wave_at_all():
    judging = JudgeRound([_pair(0, "Paris."), _pair(1, "Paris. ")], JUDGE)
    assert judging.pending == []
    assert [j.score for j in judging.judgments()] == [0.5, 0.5]


def test_a_reply_without_a_verdict_is_asked_once_more_with_the_nudge():
    pairs = [_pair(0, "Lyon.")]
    judging, waves = _run(pairs, ["Hard to say.", "[[A]]"], ["On reflection [[B]]"])
    assert len(waves) == 2 and len(waves[1]) == 1  # only the order without a verdict is asked again
    again = waves[1][0]
    assert again["messages"][:1] == waves[0][0]["messages"]
    assert again["messages"][1:] == [{"role": "assistant", "content": "Hard to say."},
                                     {"role": "user", "content": RETRY_NUDGE}]
    first, second = judging.judgments()[0].orders
    assert first.retried and first.verdict == "B" and first.score == 1.0 and not first.failed
    assert first.text == "On reflection [[B]]" and first.request_key == request_key(again)
    assert not second.retried and second.verdict == "A" and second.score == 1.0


def test_judge_failures_are_losses_never_ties():
    pairs = [_pair(0, "Lyon."), _pair(1, "Nice."), _pair(2, "Lille.")]
    # p0: no verdict twice in order 1; p1: the call failed (no reply) in order 2; p2: no verdict, then the
    # re-ask's call failed. An errored call is not asked again (its caller already retried it).
    judging, waves = _run(pairs, ["Both fine.", "[[C]]", "[[C]]", None, "Hmm.", "[[A]]"], ["Still unsure.", None])
    assert len(waves[1]) == 2
    p0, p1, p2 = judging.judgments()
    o = p0.orders[0]
    assert (o.verdict, o.score, o.failed, o.malformed, o.retried, o.text) == ("none", 0.0, True, True, True,
                                                                               "Still unsure.")
    assert p0.score == 0.25  # a loss and a tie; under the old rule this was ½, evidence FOR switching
    o = p1.orders[1]
    assert (o.verdict, o.score, o.failed, o.malformed, o.retried, o.text) == ("none", 0.0, True, False, False, "")
    assert o.request_key == request_key(waves[0][3])
    assert p1.score == 0.25
    o = p2.orders[0]  # the re-ask failed: the evidence is the first reply, and the order is still a failure
    assert (o.verdict, o.score, o.failed, o.malformed, o.retried, o.text) == ("none", 0.0, True, True, True, "Hmm.")
    assert o.request_key == request_key(waves[0][4])
    assert p2.score == 0.5
    d = diagnose([p0, p1, p2])
    assert (d.judge_failures, d.malformed) == (3, 2)
    assert d.swap_inconsistency is None and d.tie_rate is None  # every prompt had a failure: no position data
    assert any("3 judge verdicts were missing" in w and "loss" in w for w in d.warnings)


def test_stored_orders_recompute_to_their_scores_and_old_certificates_still_verify():
    pairs = [_pair(0, "Lyon."), _pair(1, "Nice.")]
    judging, _ = _run(pairs, ["Both fine.", "[[B]]", None, "[[C]]"], ["Still unsure."])
    for j in judging.judgments():
        again = Judgment.from_dict(j.to_dict())
        assert again == j
        assert [order_score(o) for o in again.orders] == [o.score for o in j.orders]
    # a certificate written before judge failures counted as losses has no `failed` field and scored a
    # malformed order as a tie: it still loads, and recomputes to what it stored
    legacy = {"candidate_position": "B", "verdict": "tie", "score": 0.5, "text": "Both fine.", "request_key": "k",
              "retried": True, "malformed": True, "identical": False}
    old = Judgment.from_dict({"item_id": "p0", "baseline_chars": 6, "candidate_chars": 5,
                              "orders": [legacy, {**legacy, "candidate_position": "A", "verdict": "A", "score": 1.0,
                                                  "text": "[[A]]", "malformed": False, "retried": False}]})
    assert not old.orders[0].failed and [order_score(o) for o in old.orders] == [0.5, 1.0]
    assert order_score(OrderVerdict("B", "none", 0.0, "Both fine.", "k", retried=True, malformed=True,
                                    failed=True)) == 0.0
