"""`Judge`: the judge loop (`parity.proof.judge.JudgeRound`) driven through a proof's Caller: batched, cached in
the run directory, budgeted. The drift watch drives the same loop through the gateway's own upstream; keeping
this driver apart keeps the SDK out of the gateway's imports."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import anthropic

from parity.errors import InputError, ParityError
from parity.proof.calls import BudgetExhausted, Call, Caller, estimate_cost
from parity.proof.judge import (
    JUDGE_MAX_TOKENS,
    Judgment,
    JudgeRound,
    PairToJudge,
    Reply,
    judge_requests,
)


CALL_ERRORS = (ParityError, anthropic.APIError)
"""What a judge call that got no reply raises once the Caller's own retries are spent (budget and input errors
are not among them: they stop the run)."""


class Judge:
    """Runs pairwise judgments through a Caller (batched, cached, budgeted), both orders per prompt."""

    def __init__(self, caller: Caller, model: str, *, reference_guided: bool = False,
                 max_tokens: int = JUDGE_MAX_TOKENS):
        self.caller = caller
        self.model = model
        self.reference_guided = reference_guided
        self.max_tokens = max_tokens

    def round(self, pairs: Sequence[PairToJudge]) -> JudgeRound:
        """The judge loop for `pairs` with this judge's model and settings."""
        return JudgeRound(pairs, self.model, reference_guided=self.reference_guided, max_tokens=self.max_tokens)

    def worst_case(self, pairs: Sequence[PairToJudge], answer_tokens: int) -> Decimal:
        """Most that judging `pairs` can cost before the candidate's answers exist (`candidate_output` may be
        empty): both orders, each with `answer_tokens` more input for the answer and the full max_tokens out."""
        return sum((estimate_cost(p, batch=not self.caller.sync, table=self.caller.table,
                                  extra_input_tokens=answer_tokens)
                    for pair in pairs
                    for p in judge_requests(pair, self.model, reference_guided=self.reference_guided,
                                            max_tokens=self.max_tokens)), Decimal(0))

    def calls(self, pairs: Sequence[PairToJudge]) -> list[Call]:
        """The first-round judge calls for `pairs` (for budget estimates); identical answers need none."""
        return [Call("judge", p) for p in self.round(pairs).pending]

    def judge(self, pairs: Sequence[PairToJudge]) -> list[Judgment]:
        """Judge every pair in both orders; replies without a verdict are asked once more (one extra wave)."""
        judging = self.round(pairs)
        while judging.pending:
            judging.take(self._send(judging.pending))
        return judging.judgments()

    def _send(self, params: Sequence[dict[str, Any]]) -> list[Reply]:
        """Reply texts for one wave; None for a call that failed after the Caller's own retries."""
        calls = [Call("judge", p) for p in params]
        try:
            return [result.text for result in self.caller.run(calls)]
        except (BudgetExhausted, InputError):
            raise
        except CALL_ERRORS:
            if len(calls) == 1:
                return [None]
        # one failed call must not fail the wave: each alone (those already answered come from the run's cache)
        return [self._send([p])[0] for p in params]


__all__ = ["CALL_ERRORS", "Judge"]
