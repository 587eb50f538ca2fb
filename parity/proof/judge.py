"""THE pairwise judge: both orders on every prompt, robust verdict parsing, one loop shared by `parity prove` and
the gateway's drift watch, and the diagnostics every run reports (reference proof-science §1.2, §1.5, §2.8).

- Both orders: position bias leaves 15–35% inconsistent verdicts in one order; averaging the two orders keeps
  the information a "map inconsistent to tie" rule throws away. The per-prompt score is the mean of the two
  orders from the candidate's side, so X ∈ {0, ¼, ½, ¾, 1}, and an identical candidate has E[X] = ½.
- The baseline's output is the anchor and the judge is the baseline model or a stronger one, never the
  candidate's: self-preference toward the baseline only makes switching harder.
- A reply with no verdict token is asked once more. An order that still has no verdict, or whose call failed
  after the caller's own retries (an API error, an errored batch entry), is a judge failure and scores 0 for
  the candidate. Why a loss and not a tie: the test is H0: μ ≤ ½ − δ, so a tie is evidence FOR switching; a
  judge that cannot say which answer is better has shown nothing in the candidate's favour, and a candidate
  whose answers break the judge (too long, unreadable) must not gain from it. Failures are marked (`failed`)
  and counted in the diagnostics.
- Answers that are the same text (surrounding whitespace aside) are a tie without asking the judge (reference
  §5: "an exact hash counts as a tie"): both orders would be the same request, so a judge could only add noise
  and cost. Such orders are marked `identical` and the certificate check confirms the texts really match.
- One loop, no I/O (`JudgeRound`): it lays out the first wave of requests, takes the replies, lays out the
  re-asks for replies without a verdict, takes those, and returns the Judgments. `Judge` drives it through the
  proof's batching `Caller`; the drift watch (parity.gateway.drift) drives it with its async upstream calls,
  so both score the same replies the same way.
- Diagnostics: swap inconsistency, tie rate, length ratio, a length-controlled estimate (the minimal
  AlpacaEval GLM of §1.3: a logistic regression of the preference on tanh(Δlength / sd)), judge failures, and a
  per-stratum breakdown; warnings when LC and raw differ by more than 5 points, the candidate is more than 20%
  longer, or the judge failed on any order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any


from parity import catalog
from parity.errors import InputError
from parity.proof.calls import request_key
from parity.proof.judge_prompt import (
    A_END,
    A_START,
    B_END,
    B_START,
    QUESTION_START,
    parse_verdict,
    question_text,
    render_pairwise,
    system_text,
)

JUDGE_MAX_TOKENS = 512
RETRY_NUDGE = (
    "Your reply did not end with a verdict. Reply again, ending with exactly one of [[A]], [[B]] or [[C]] on "
    "its own line."
)
LINE_RANK = {"haiku": 0, "sonnet": 1, "opus": 2, "fable": 3, "mythos": 3}
IDENTICAL_TEXT = "The two answers are the same text: a tie, without asking the judge."
NO_VERDICT = "none"
"""`OrderVerdict.verdict` of a judge failure: the judge gave no verdict (or no reply) for that order."""
POSITIONS = ("B", "A")
"""Where the candidate sits in the first and the second order of every prompt."""


# --------------------------------------------------------------------------------------------------------------
# Who may judge
# --------------------------------------------------------------------------------------------------------------


def check_judge_model(judge: str, baseline: str, candidates: Sequence[str]) -> str:
    """The judge's canonical id, or an InputError when it is a candidate's model or weaker than the baseline."""
    judge_id, base_id = catalog.resolve(judge), catalog.resolve(baseline)
    for candidate in candidates:
        if catalog.resolve(candidate) == judge_id:
            raise InputError(
                f"the judge {judge!r} is the candidate's model {candidate!r}: a model judging its own answers "
                "favours them, which would make switching too easy. Use the baseline model (the default) or a "
                "stronger one with --judge", field="judge")
    if judge_id == base_id:
        return judge_id
    j, b = catalog.get_model(judge_id), catalog.get_model(base_id)
    stronger = LINE_RANK.get(j.line, 0) > LINE_RANK.get(b.line, 0) or (
        LINE_RANK.get(j.line, 0) == LINE_RANK.get(b.line, 0) and j.created_at >= b.created_at
    )
    if not stronger:
        raise InputError(
            f"the judge {judge!r} ({j.line}) is weaker than the baseline {baseline!r} ({b.line}); the judge must be "
            "the baseline model or a stronger one. Leave --judge off to use the baseline", field="judge")
    return judge_id


# --------------------------------------------------------------------------------------------------------------
# One judged prompt
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderVerdict:
    """One order's judgment: where the candidate sat, what the judge said, and the candidate's score."""

    candidate_position: str  # "A" or "B"
    verdict: str  # "A" | "B" | "tie" | "none" (a judge failure)
    score: float  # 0, ½ or 1 from the candidate's side
    text: str
    """The judge's last reply (the re-ask's when it was asked again); "" when its call failed."""
    request_key: str
    """Key of the request `text` answers."""
    retried: bool = False
    malformed: bool = False
    """The judge replied but gave no verdict, even when asked again."""
    identical: bool = False
    """The two answers are the same text: a tie, and the judge was not asked."""
    failed: bool = False
    """A judge failure: no verdict even when asked again, or the call failed; scored 0 (a loss for the candidate).
    Certificates from before this field existed scored a malformed order as a tie (see `order_score`)."""


@dataclass(frozen=True)
class Judgment:
    """Both orders for one prompt; `score` is their mean, in {0, ¼, ½, ¾, 1}."""

    item_id: str
    orders: tuple[OrderVerdict, OrderVerdict]
    baseline_chars: int
    candidate_chars: int
    stratum: str = "all"

    @property
    def score(self) -> float:
        return (self.orders[0].score + self.orders[1].score) / 2.0

    @property
    def inconsistent(self) -> bool:
        """The two orders disagree on the candidate's result (position swayed the judge)."""
        return self.orders[0].score != self.orders[1].score

    @property
    def reasons(self) -> str:
        return "\n\n".join(f"(candidate as {o.candidate_position}) {o.text}" for o in self.orders)

    def to_dict(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "score": self.score, "stratum": self.stratum,
                "baseline_chars": self.baseline_chars, "candidate_chars": self.candidate_chars,
                "orders": [asdict(o) for o in self.orders]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Judgment:
        orders = tuple(OrderVerdict(**o) for o in data["orders"])
        return cls(data["item_id"], orders, int(data["baseline_chars"]), int(data["candidate_chars"]),  # type: ignore[arg-type]
                   data.get("stratum", "all"))


def candidate_score(verdict: str | None, candidate_position: str) -> float:
    """0, ½ or 1 for the candidate given a verdict letter and where the candidate was shown; no verdict (None or
    "none", a judge failure) is 0."""
    if verdict == "tie":
        return 0.5
    return 1.0 if verdict == candidate_position else 0.0


def order_score(order: OrderVerdict) -> float:
    """One judged order's score recomputed from its evidence (the stored reply), as a certificate check does.

    Orders marked `identical` were never judged: check their texts instead. A malformed order stored before
    judge failures counted as losses (`failed` absent) was scored as a tie, and is recomputed as one.
    """
    verdict = parse_verdict(order.text)
    if verdict is None and order.malformed and not order.failed:
        return 0.5
    return candidate_score(verdict, order.candidate_position)


CACHED = {"type": "ephemeral"}


def judge_params(model: str, question: str, answer_a: str, answer_b: str, *, reference: str | None = None,
                 task_system: str | None = None, max_tokens: int = JUDGE_MAX_TOKENS) -> dict[str, Any]:
    """THE judge request, laid out so that what repeats is read from the prompt cache.

    The text is exactly `render_pairwise`'s; only its user turn is cut into blocks that concatenate back to it:
    1. the judge's fixed instructions (the system prompt): the same on every judge call;
    2. the start of the question up to the end of the task's own system prompt (`task_system`): the same on
       every prompt of the task, often the longest part (a policy manual, a schema);
    3. the rest of the question (and the reference): the same in both orders of one prompt;
    4. the two answers, which change every call.
    Each of 1–3 ends in a cache breakpoint, so the second order of a prompt reads 1–3 and every other prompt of
    the task reads 1–2 at a tenth of the price. A prefix below the model's minimum cacheable length is simply
    not cached (no charge), as on the API.

    No `temperature`: the current API version rejects it (claude-api.md §0), so judging both orders is what
    removes the order effect rather than a temperature setting.
    """
    system, messages = render_pairwise(question, answer_a, answer_b, reference=reference)
    user = messages[0]["content"][0]["text"]
    answers = f"{A_START}\n{answer_a}\n{A_END}\n\n{B_START}\n{answer_b}\n{B_END}"
    cuts: list[int] = []
    if task_system:
        shared = f"{QUESTION_START}\n[System]\n{task_system}\n\n"
        if user.startswith(shared):
            cuts.append(len(shared))
    if user.endswith(answers) and len(user) > len(answers):
        cuts.append(len(user) - len(answers))
    bounds = [0, *cuts, len(user)]
    blocks: list[dict[str, Any]] = []
    for k, (start, end) in enumerate(zip(bounds, bounds[1:])):
        block: dict[str, Any] = {"type": "text", "text": user[start:end]}
        if k < len(cuts):
            block["cache_control"] = dict(CACHED)
        blocks.append(block)
    return {
        "model": model,
        "max_tokens": max_tokens,
        "system": [{"type": "text", "text": system, "cache_control": dict(CACHED)}],
        "messages": [{"role": "user", "content": blocks}],
    }


def same_answer(baseline_output: str, candidate_output: str) -> bool:
    """True when the two answers are the same text once surrounding whitespace is trimmed."""
    return baseline_output.strip() == candidate_output.strip()


def retry_params(params: Mapping[str, Any], reply: str) -> dict[str, Any]:
    """The judge asked once more after `reply`, which had no verdict: the same request, the reply, the nudge."""
    return {**params, "messages": [*params["messages"], {"role": "assistant", "content": reply or "(no reply)"},
                                   {"role": "user", "content": RETRY_NUDGE}]}


@dataclass(frozen=True)
class PairToJudge:
    """A prompt to judge: its request (for the question), the two answers, an optional reference answer."""

    item_id: str
    request: Mapping[str, Any]
    baseline_output: str
    candidate_output: str
    reference: str | None = None
    stratum: str = "all"


def judge_requests(pair: PairToJudge, model: str, *, reference_guided: bool = False,
                   max_tokens: int = JUDGE_MAX_TOKENS) -> tuple[dict[str, Any], dict[str, Any]]:
    """THE two judge requests for one prompt: the candidate as B, then as A (`POSITIONS`)."""
    question = question_text(pair.request)
    ref = pair.reference if reference_guided else None
    task_system = system_text(pair.request)
    first = judge_params(model, question, pair.baseline_output, pair.candidate_output, reference=ref,
                         task_system=task_system, max_tokens=max_tokens)
    second = judge_params(model, question, pair.candidate_output, pair.baseline_output, reference=ref,
                          task_system=task_system, max_tokens=max_tokens)
    return first, second


Reply = str | None
"""A judge call's reply text, or None when the call failed after the caller's own retries."""


class JudgeRound:
    """Judging `pairs`, without I/O: the one loop every judge caller drives.

        judging = JudgeRound(pairs, model)
        while judging.pending:
            judging.take(send(judging.pending))   # replies in order; None for a call that failed
        judgments = judging.judgments()

    `pending` is first both orders of every pair whose answers differ (identical answers are a tie without a
    call), then the re-asks of the replies that had no verdict (at most one each), then empty. Whoever drives it
    decides how requests travel (batch or not, sync or async) and nothing else, so prove and the drift watch
    score the same replies the same way.
    """

    def __init__(self, pairs: Sequence[PairToJudge], model: str, *, reference_guided: bool = False,
                 max_tokens: int = JUDGE_MAX_TOKENS):
        self.pairs = tuple(pairs)
        self._slot: dict[int, int] = {}  # pair index -> index of its first order among the asked requests
        self._asked: list[dict[str, Any]] = []
        for n, pair in enumerate(self.pairs):
            if not same_answer(pair.baseline_output, pair.candidate_output):
                self._slot[n] = len(self._asked)
                self._asked.extend(judge_requests(pair, model, reference_guided=reference_guided,
                                                  max_tokens=max_tokens))
        self._replies: list[Reply] = []
        self._retries: dict[int, dict[str, Any]] = {}  # asked index -> its re-ask
        self._retry_replies: dict[int, Reply] = {}
        self._wave = 0
        self.pending: list[dict[str, Any]] = list(self._asked)
        """The requests to send next, in order (empty: done)."""

    def take(self, replies: Sequence[Reply]) -> None:
        """Hand back the replies to `pending`, in its order; `pending` then holds the next wave."""
        if not self.pending:
            raise RuntimeError("this judge round is finished: nothing is pending")
        if len(replies) != len(self.pending):
            raise ValueError(f"expected {len(self.pending)} judge replies, got {len(replies)}")
        if self._wave == 0:
            self._replies = list(replies)
            self._retries = {i: retry_params(self._asked[i], r) for i, r in enumerate(self._replies)
                             if r is not None and parse_verdict(r) is None}
            self.pending = list(self._retries.values())
        else:
            self._retry_replies = dict(zip(self._retries, replies))
            self.pending = []
        self._wave += 1

    def judgments(self) -> list[Judgment]:
        """One Judgment per pair, in order, once nothing is pending."""
        if self.pending:
            raise RuntimeError(f"{len(self.pending)} judge requests are still pending")
        out = []
        for n, pair in enumerate(self.pairs):
            if n in self._slot:
                first = self._slot[n]
                orders = (self._order(first, POSITIONS[0]), self._order(first + 1, POSITIONS[1]))
            else:
                tie = [OrderVerdict(p, "tie", 0.5, IDENTICAL_TEXT, "", identical=True) for p in POSITIONS]
                orders = (tie[0], tie[1])
            out.append(Judgment(pair.item_id, orders, len(pair.baseline_output), len(pair.candidate_output),
                                pair.stratum))
        return out

    def _order(self, i: int, position: str) -> OrderVerdict:
        params, reply = self._asked[i], self._replies[i]
        retried = i in self._retries
        if retried and self._retry_replies.get(i) is not None:
            params, reply = self._retries[i], self._retry_replies[i]
        verdict = None if reply is None else parse_verdict(reply)
        failed = verdict is None
        return OrderVerdict(position, verdict or NO_VERDICT, candidate_score(verdict, position), reply or "",
                            request_key(params), retried=retried, malformed=failed and self._replies[i] is not None,
                            failed=failed)


__all__ = [
    "JudgeRound",
    "Judgment",
    "OrderVerdict",
    "PairToJudge",
    "Reply",
    "candidate_score",
    "check_judge_model",
    "judge_params",
    "judge_requests",
    "order_score",
    "retry_params",
    "same_answer",
]
