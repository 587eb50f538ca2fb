"""The drift watch and `parity prove` judge through one loop (`parity.proof.judge.JudgeRound`): fed the same judge
replies they give the same Judgments, on the synchronous and the batch path. Identical answers never reach the
judge, and a judge failure (no verdict even when asked again, or a call that errors) is a loss for the
candidate in both, never a tie and never a crash of the watch."""

from __future__ import annotations

import pytest

from parity.api.errors import APIError
from parity.emulator.brains.base import BrainReply, BrainRequest
from parity.emulator.service import Emulator
from parity.gateway.drift import DriftMonitor
from parity.policy import TaskPolicy
from parity.proof.calls import Caller
from parity.proof.diagnostics import diagnose
from parity.proof.judge import Judgment, PairToJudge
from parity.proof.judging import Judge
from parity.proof.judge_prompt import parse_pairwise

BASELINE = "claude-opus-4-8"
CANDIDATE = "claude-haiku-4-5"
BASE_TEXT = "The capital of France is Paris."

# the candidate's answer (its first word says how the scripted judge treats it) and the score that must follow
SCRIPT = {
    "wins": 1.0,
    "loses": 0.0,
    "tie": 0.5,
    "first": 0.5,  # the judge always picks A: one win, one loss
    "late": 1.0,  # no verdict at first; the re-ask gets one
    "mute": 0.0,  # no verdict even when asked again, in both orders: two judge failures
    "error": 0.0,  # every judge call errors (after the client's retries): two judge failures
    "retry-error": 0.0,  # no verdict, then the re-ask errors: two judge failures
    "identical": 0.5,  # the candidate's answer is the baseline's: a tie without a judge call
}


class ScriptedJudge:
    """Answers every non-judge request with BASE_TEXT; as a judge, replies as the candidate's answer says."""

    name = "scripted-judge"

    def __init__(self):
        self.judge_calls: list[tuple[str, bool]] = []  # (the candidate's script word, asked again?)

    def reply(self, request: BrainRequest) -> BrainReply:
        first_turn = "".join(b.get("text", "") for b in request.messages[0]["content"] if b.get("type") == "text")
        parsed = parse_pairwise(request.system, first_turn)
        if parsed is None:
            return _text(BASE_TEXT)
        candidate_at = "A" if parsed.answer_a.strip() != BASE_TEXT else "B"
        baseline_at = "B" if candidate_at == "A" else "A"
        kind = (parsed.answer_a if candidate_at == "A" else parsed.answer_b).split(":")[0]
        asked_again = len(request.messages) > 1
        self.judge_calls.append((kind, asked_again))
        if kind == "error" or (kind == "retry-error" and asked_again):
            raise APIError(529, "Overloaded", headers={"x-should-retry": "false"})
        replies = {
            "wins": f"Better. [[{candidate_at}]]", "loses": f"Worse. [[{baseline_at}]]", "tie": "Equal. [[C]]",
            "first": "The first one. [[A]]", "late": f"On reflection [[{candidate_at}]]" if asked_again else "Hmm.",
            "mute": "Both answers have merits.", "retry-error": "Hard to say.",
        }
        return _text(replies[kind])


def _text(text: str) -> BrainReply:
    return BrainReply([{"type": "text", "text": text}])


def _emulator(brain: ScriptedJudge) -> Emulator:
    emulator = Emulator(brain=brain, seed=0)
    emulator.batches.processing_s = "instant"
    return emulator


def _items() -> list[tuple[dict, str]]:
    """(the routed request, the candidate's answer), one per scripted case."""
    out = []
    for n, kind in enumerate(SCRIPT):
        request = {"model": BASELINE, "max_tokens": 64, "system": "Answer in one sentence.",
                   "messages": [{"role": "user", "content": f"Question {n}: what is the capital of France?"}]}
        out.append((request, BASE_TEXT + "\n" if kind == "identical" else f"{kind}: Paris, I think."))
    return out


def _policy() -> TaskPolicy:
    return TaskPolicy(task="qa", mode="route", baseline_model=BASELINE, candidate_model=CANDIDATE, margin=0.05,
                      alpha=0.05, shadow_rate=1.0)


async def _no_sleep(seconds: float) -> None:
    return None


async def _drift_judgments(via: str) -> tuple[list[Judgment], DriftMonitor, ScriptedJudge]:
    """What the drift watch judged for `_items()`, in order (seen where it scores them)."""
    brain = ScriptedJudge()
    monitor = DriftMonitor(_policy(), _emulator(brain).async_client(), sampler_seed=0, via=via,
                           batch_size=len(SCRIPT), segment_size=1000, sleep=_no_sleep)
    seen: list[Judgment] = []
    score = monitor._score
    monitor._score = lambda item, judgment: (seen.append(judgment), score(item, judgment))  # type: ignore[method-assign]
    for request, answer in _items():
        assert monitor.observe(request, {"content": [{"type": "text", "text": answer}]})
    await monitor.drain(timeout=60)
    await monitor.aclose()
    return seen, monitor, brain


def _prove_judgments(via: str, run_dir) -> tuple[list[Judgment], ScriptedJudge]:
    """What `parity prove`'s Judge says about the same pairs (item ids as the drift watch names them)."""
    brain = ScriptedJudge()
    caller = Caller(_emulator(brain).client(), run_dir, sync=via == "sync", sleep=lambda s: None)
    pairs = [PairToJudge(f"qa-{n + 1}", request, BASE_TEXT, answer) for n, (request, answer) in enumerate(_items())]
    return Judge(caller, BASELINE).judge(pairs), brain


@pytest.mark.parametrize("via", ["sync", "batch"])
async def test_drift_and_prove_give_the_same_judgments_for_the_same_replies(tmp_path, via):
    drift, monitor, drift_brain = await _drift_judgments(via)
    prove, prove_brain = _prove_judgments(via, tmp_path / "run")
    assert [j.item_id for j in drift] == [f"qa-{n + 1}" for n in range(len(SCRIPT))]
    assert drift == prove  # every field: verdicts, scores, texts, request keys, retried/malformed/failed flags
    assert {kind: j.score for kind, j in zip(SCRIPT, drift)} == SCRIPT
    by_kind = dict(zip(SCRIPT, drift))
    assert all(o.failed and o.score == 0.0 and o.verdict == "none" for kind in ("mute", "error", "retry-error")
               for o in by_kind[kind].orders)
    assert all(o.malformed and o.retried for o in by_kind["mute"].orders)
    assert not any(o.malformed or o.retried for o in by_kind["error"].orders)  # an error is not asked again
    assert all(o.identical for o in by_kind["identical"].orders)
    # the same requests reached the judge in both (the batch path re-sends an errored entry: count once each)
    assert sorted(set(drift_brain.judge_calls)) == sorted(set(prove_brain.judge_calls))
    assert not any(kind == "identical" for kind, _ in drift_brain.judge_calls + prove_brain.judge_calls)
    assert {(k, again) for k, again in drift_brain.judge_calls if again} == {("late", True), ("mute", True),
                                                                             ("retry-error", True)}
    # the watch counted the failures and kept going
    status = monitor.status()
    assert monitor.judged == len(SCRIPT) and status["failed"] == 0
    assert status["judge_failures"] == 6 and status["malformed_verdicts"] == 4
    assert diagnose(prove).judge_failures == 6


async def test_a_judge_batch_that_cannot_be_sent_is_a_loss_and_the_watch_rolls_back():
    brain = ScriptedJudge()
    rollbacks = []
    monitor = DriftMonitor(_policy(), _emulator(brain).async_client(), sampler_seed=0, via="batch", batch_size=5,
                           sleep=_no_sleep, on_rollback=lambda *args: rollbacks.append(args))
    submit = monitor.calls.submit

    async def judge_batches_fail(requests):
        if requests[0]["custom_id"].startswith("judge-"):
            raise ConnectionError("the batch endpoint is unreachable")
        return await submit(requests)

    monitor.calls.submit = judge_batches_fail  # type: ignore[method-assign]
    request, answer = _items()[0]  # a candidate the judge would prefer, were it reachable
    for _ in range(40):
        if monitor.rolled_back():
            break
        for _ in range(5):
            monitor.observe(request, {"content": [{"type": "text", "text": answer}]})
        await monitor.drain(timeout=60)
    assert monitor.rolled_back("qa"), monitor.status()
    status = monitor.status()
    assert status["failed"] == 0 and status["judge_failures"] == 2 * monitor.judged
    assert "judge batch failed" in status["last_error"] and "unreachable" in status["last_error"]
    (_, reason, evidence), = rollbacks
    assert set(evidence["scores"]) == {0.0} and "futility" in reason
    assert not brain.judge_calls  # no judge call was ever answered
    await monitor.aclose()
