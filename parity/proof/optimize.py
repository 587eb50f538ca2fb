"""Tune the cheaper model's prompt: few-shot demonstrations from the baseline's own outputs, then instruction repair.

The optimiser is separate from the program it optimises (as DSPy's teleprompters are): it knows prompts, examples
and two callables, never models, judges or money. The runner supplies `evaluate` (candidate calls + scorer or judge)
and `propose` (the baseline model reading lost items, through `propose_prompt_for_baseline` / `parse_proposals`).

Why this shape (reference proof-science §3.5–3.7):

- Stage 1, demonstrations: random search over subsets of the baseline's own (input, output) train pairs with
  k ∈ {2, 4, 8} (DSPy `BootstrapFewShotWithRandomSearch` with the baseline as teacher). It transfers format,
  length and conventions, and is the biggest, cheapest gain.
- Stage 2, instruction repair: the baseline model proposes revised instructions from the validation items the
  candidate lost; a change is kept only if its paired gain on the full validation split exceeds one standard error.
- Every candidate is screened on one seeded validation minibatch (common items, so comparisons are paired);
  only the best survivors are scored on the full validation split. At most `max_candidates` prompts in all.
- Cost: a tuned prompt's demonstrations are paid on every routed request, and can eat most of the saving. When
  the runner passes `cost` (the candidate's measured cost per request under a prompt) and `ceiling` (the
  baseline's), a prompt costing at least the ceiling is never chosen (it cannot save) and equal minibatch scores
  rank the cheaper prompt first. With the test's null boundary `boundary` (unit scale) and `test_size` too, the
  search ends by choosing, among the prompts scored on the full validation split whose planning chance to pass
  the test (`pass_chance`) is at least PASS_FLOOR (or the likeliest prompt, when none is), the one with the
  largest expected saving, (ceiling − cost) × pass_chance. Extra demonstrations are then bought only while the
  quality they add raises that chance enough to pay for them, and a likely pass is never traded for a saving.
  This choice only picks what is tested; the guarantee rests on the sealed test alone.
- Winner's curse: the chosen prompt's validation score is optimistic (best of K on n items); the result says by
  about how much, and it is never switching evidence. The function receives only train and validation: the test
  split cannot reach it.

Scores are cached per (prompt hash, example id), so no item is scored twice for one prompt; with deterministic
callables the whole search is a pure function of its inputs and `seed` (which is what makes a run resumable from
the runner's call cache).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any, Literal

import numpy as np

from parity.canonical import canonical_hash
from parity.errors import InputError, ParityError
from parity.policy import Demo, TunedPrompt

Stage = Literal["baseline", "demos", "instruction"]

DEMO_SIZES: tuple[int, ...] = (2, 4, 8)
MAX_DEMO_CANDIDATES = 16
"""Random search over 8–16 demo subsets is enough (reference §3.5)."""
STAGE1_FINALISTS = 3
STAGE2_FINALISTS = 2
MAX_ROUNDS = 5
PROPOSALS_PER_ROUND = 4
FAILURES_PER_ROUND = 8
"""The baseline reads 5–10 lost items per round (reference §3.5)."""
META_PROMPT_CHARS = 2000
"""Each input / answer / reason shown to the proposer is cut to this many characters, to bound its cost."""


# --------------------------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    """One prompt of the task: the user text, the baseline's output for it, and a gold answer where one is known."""

    id: str
    input: str
    output: str
    gold: Any = None


@dataclass(frozen=True)
class Failure:
    """A validation item the current prompt lost (lowest scores first), handed to `propose`.

    The optimiser fills `example`, `score` and `prompt_hash`; the runner, which holds the candidate's outputs and
    the judge's reasons for that prompt hash, fills `candidate_output` and `reason` (dataclasses.replace) before
    rendering the meta-prompt.
    """

    example: Example
    score: float
    prompt_hash: str
    candidate_output: str | None = None
    reason: str | None = None


@dataclass
class CandidateRecord:
    """One prompt the search tried: where it came from and what it scored."""

    prompt_hash: str
    stage: Stage
    prompt: TunedPrompt
    parent: str | None = None
    round: int = 0
    demo_ids: tuple[str, ...] = ()
    minibatch_score: float | None = None
    full_score: float | None = None
    full_se: float | None = None
    gain: float | None = None
    """Paired mean gain over the prompt it challenged, on the full validation split (None if not fully scored)."""
    gain_se: float | None = None
    kept: bool = False
    """True when this prompt became the incumbent (the baseline prompt starts as the incumbent)."""
    cost_per_request: float | None = None
    """The candidate's measured cost per request (USD) under this prompt, where the runner measures it."""
    pass_chance: float | None = None
    """The planning estimate of this prompt's chance to pass the test (`pass_chance`), where it was weighed."""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["demo_ids"] = list(self.demo_ids)
        return data


@dataclass(frozen=True)
class Calls:
    """What the search spent, for the runner to turn into API calls and dollars."""

    evaluate_calls: int = 0
    items_scored: int = 0
    """(prompt, example) pairs scored; with a judge that is one candidate call and two judge calls each."""
    propose_calls: int = 0


@dataclass(frozen=True)
class WinnersCurse:
    """How optimistic the chosen prompt's validation score is: E[max of K standard normals] · sd / √n."""

    candidates_compared: int
    n: int
    sd: float
    optimism: float
    note: str


@dataclass(frozen=True)
class ProgressEvent:
    stage: Stage
    candidates: int
    max_candidates: int
    best_score: float
    message: str


@dataclass(frozen=True)
class OptimizeResult:
    best: TunedPrompt
    best_hash: str
    validation_mean: float
    validation_se: float
    baseline_mean: float
    baseline_se: float
    history: tuple[CandidateRecord, ...]
    calls: Calls
    winners_curse: WinnersCurse
    stopped: str
    """Why the search ended: "completed", "no gain above one SE", "no new proposals", "max candidates", or
    "stopped: <reason>" when the runner raised StopOptimizing (budget, interrupt)."""
    seed: int
    minibatch_ids: tuple[str, ...] = ()
    ceiling: float | None = None
    """The baseline's cost per request (USD): a prompt costing this much or more cannot save, so is never chosen."""

    @property
    def improved(self) -> bool:
        return self.best_hash != self.history[0].prompt_hash

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record for the certificate."""
        return {
            "best": _prompt_dict(self.best),
            "best_hash": self.best_hash,
            "validation_mean": self.validation_mean,
            "validation_se": self.validation_se,
            "baseline_mean": self.baseline_mean,
            "baseline_se": self.baseline_se,
            "history": [r.to_dict() for r in self.history],
            "calls": asdict(self.calls),
            "winners_curse": asdict(self.winners_curse),
            "stopped": self.stopped,
            "seed": self.seed,
            "minibatch_ids": list(self.minibatch_ids),
            "ceiling": self.ceiling,
            "cost_per_request": self.cost_per_request,
            "base_prompt_cost_per_request": self.history[0].cost_per_request,
        }

    @property
    def cost_per_request(self) -> float | None:
        """The chosen prompt's measured cost per request (None when the runner measured none)."""
        return next((r.cost_per_request for r in self.history if r.prompt_hash == self.best_hash), None)


class StopOptimizing(Exception):
    """Raise from `evaluate`, `evaluate_many` or `propose` to end the search now (budget spent, interrupted).

    The optimiser returns the best prompt fully scored so far. Raised while the baseline prompt itself is being
    scored it propagates, since there is nothing to return.
    """


Evaluate = Callable[[TunedPrompt, Sequence[Example]], Sequence[float]]
EvaluateMany = Callable[[Sequence[tuple[TunedPrompt, Sequence[Example]]]], Sequence[Sequence[float]]]
Propose = Callable[[str, list[Failure]], list[str]]
Progress = Callable[[ProgressEvent], None]
PromptCost = Callable[[TunedPrompt], "float | None"]


def prompt_hash(prompt: TunedPrompt) -> str:
    """Stable short hash of a tuned prompt (system + demos), used in history, caches and certificates."""
    return canonical_hash(_prompt_dict(prompt), 16)


PASS_FLOOR = 0.5
"""A prompt less likely than this to pass the test is not chosen for its price while a likelier one exists."""
SEQUENTIAL_N_FACTOR = 0.5
"""An anytime-valid test pays for looking after every prompt with power: the planning estimate counts half the
test split as a fixed-n test's sample (a conservative planning choice, used only to rank prompts)."""


def pass_chance(mean: float, sd: float, boundary: float, test_size: int, alpha: float = 0.05) -> float:
    """A planning estimate of the chance a prompt passes the test: a one-sided z-test at `alpha` on
    SEQUENTIAL_N_FACTOR × `test_size` prompts, with the prompt's mean and sd on the unit scale. It ranks prompts;
    it is not the test."""
    if sd <= 0:
        return 1.0 if mean > boundary else 0.0
    n = max(1.0, SEQUENTIAL_N_FACTOR * test_size)
    z = (mean - boundary) * math.sqrt(n) / sd - NormalDist().inv_cdf(1.0 - alpha)
    return NormalDist().cdf(z)


def expected_max_normal(k: int) -> float:
    """E[max of k independent standard normals] (0 for k = 1), by quadrature: 1.42 for 8, 1.77 for 16, 2.07 for 32."""
    if k <= 1:
        return 0.0
    x = np.linspace(-12.0, 12.0, 24001)
    pdf = np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2)))
    density = k * pdf * cdf ** (k - 1)
    return float(np.sum(x * density) * (x[1] - x[0]))


# --------------------------------------------------------------------------------------------------------------
# The search
# --------------------------------------------------------------------------------------------------------------


def optimize(
    *,
    base_prompt: TunedPrompt,
    train: Sequence[Example],
    validation: Sequence[Example],
    evaluate: Evaluate,
    propose: Propose | None,
    seed: int,
    max_candidates: int = 32,
    minibatch: int = 16,
    progress: Progress | None = None,
    evaluate_many: EvaluateMany | None = None,
    cost: PromptCost | None = None,
    ceiling: float | None = None,
    boundary: float | None = None,
    test_size: int | None = None,
) -> OptimizeResult:
    """Search demos then instructions for the candidate model; return the best prompt and the full history.

    `evaluate(prompt, examples)` returns one score in [0, 1] per example, in order (higher is better).
    `evaluate_many([(prompt, examples), ...])` is optional: when given, each wave of independent candidates is
    sent in one call (so the runner can put them in one Message Batch) and `evaluate` is not used.
    `propose(instruction, failures)` returns revised instructions; None skips stage 2.
    Stage-1 candidates replace `base_prompt.demos` with demos drawn from `train`; stage-2 candidates keep the
    incumbent's demos and replace its system text.
    `cost(prompt)` is the candidate's measured cost per request under a prompt already scored (None if unknown);
    `ceiling` is the baseline's; `boundary` is H0's mean on the unit scale and `test_size` the most test prompts:
    with all four the search weighs what a prompt's demonstrations cost against the saving (module docstring).
    """
    _check_inputs(train, validation, max_candidates, minibatch)
    search = _Search(base_prompt, train, validation, evaluate, evaluate_many, propose, seed, max_candidates,
                     minibatch, progress, cost, ceiling, boundary, test_size)
    return search.run()


def _check_inputs(train: Sequence[Example], validation: Sequence[Example], max_candidates: int, minibatch: int) -> None:
    if not validation:
        raise InputError("the validation split is empty; the optimiser needs validation examples to select prompts",
                         field="validation")
    if max_candidates < 1:
        raise InputError(f"must be at least 1, got {max_candidates}", field="max_candidates")
    if minibatch < 1:
        raise InputError(f"must be at least 1, got {minibatch}", field="minibatch")
    for name, split in (("train", train), ("validation", validation)):
        ids = [e.id for e in split]
        if len(set(ids)) != len(ids):
            dup = sorted({i for i in ids if ids.count(i) > 1})[:3]
            raise InputError(f"example ids must be unique; repeated: {dup}", field=name)
    overlap = {e.id for e in train} & {e.id for e in validation}
    if overlap:
        raise InputError(f"train and validation share examples {sorted(overlap)[:3]}; split them disjointly "
                         "(by group) before optimising", field="validation")


class _Search:
    def __init__(self, base_prompt: TunedPrompt, train: Sequence[Example], validation: Sequence[Example],
                 evaluate: Evaluate, evaluate_many: EvaluateMany | None, propose: Propose | None, seed: int,
                 max_candidates: int, minibatch: int, progress: Progress | None, cost: PromptCost | None = None,
                 ceiling: float | None = None, boundary: float | None = None, test_size: int | None = None):
        self.base_prompt = base_prompt
        self.cost = cost
        self.ceiling = ceiling
        self.boundary = boundary
        self.test_size = test_size
        self.train = list(train)
        self.validation = list(validation)
        self.propose = propose
        self.seed = seed
        self.max_candidates = max_candidates
        self.progress = progress
        self.rng = random.Random(seed)
        self.scorer = _Scorer(evaluate, evaluate_many)
        self.records: list[CandidateRecord] = []
        self.by_hash: dict[str, CandidateRecord] = {}
        self.tried_systems: set[str] = set()
        picked = sorted(self.rng.sample(range(len(self.validation)), min(minibatch, len(self.validation))))
        self.minibatch = [self.validation[i] for i in picked]
        self.incumbent: CandidateRecord | None = None

    # ---- driver ------------------------------------------------------------------------------------------------

    def run(self) -> OptimizeResult:
        base = self._register(self.base_prompt, "baseline")
        assert base is not None
        self._score([base], self.validation)  # StopOptimizing here propagates: nothing to return yet
        base.minibatch_score = self._mean(base, self.minibatch)
        base.full_score, base.full_se = self._mean_se(base)
        base.kept = True
        self.incumbent = base
        self._tell("baseline", f"baseline prompt scores {base.full_score:.3f} ± {base.full_se:.3f} on validation")
        stopped = "completed"
        try:
            self._stage_demos()
            stopped = self._stage_instructions()
        except StopOptimizing as exc:
            stopped = f"stopped: {exc}" if str(exc) else "stopped"
        self._settle_on_value()
        return self._result(base, stopped)

    def _stage_demos(self) -> None:
        pool = [e for e in self.train if e.output.strip()]
        remaining = self.max_candidates - len(self.records)
        reserve = min(MAX_DEMO_CANDIDATES, remaining // 2) if self.propose is not None else 0
        budget = min(MAX_DEMO_CANDIDATES, remaining - reserve)
        if not pool or budget <= 0:
            return
        sizes = [k for k in DEMO_SIZES if k <= len(pool)] or [len(pool)]
        seen: set[frozenset[str]] = set()
        candidates: list[CandidateRecord] = []
        for i in range(budget):
            k = sizes[i % len(sizes)]
            for _ in range(20):
                chosen = self.rng.sample(pool, k)
                key = frozenset(e.id for e in chosen)
                if key not in seen:
                    break
            else:
                continue
            seen.add(key)
            prompt = TunedPrompt(system=self.base_prompt.system, demos=[Demo(e.input, e.output) for e in chosen])
            record = self._register(prompt, "demos", demo_ids=tuple(e.id for e in chosen))
            if record is not None:
                candidates.append(record)
        self._tell("demos", f"screening {len(candidates)} demo sets on {len(self.minibatch)} validation items")
        self._challenge(candidates, STAGE1_FINALISTS, "demos")

    def _stage_instructions(self) -> str:
        if self.propose is None:
            return "completed"
        self.tried_systems.add((self.base_prompt.system or "").strip())
        for round_no in range(1, MAX_ROUNDS + 1):
            remaining = self.max_candidates - len(self.records)
            if remaining <= 0:
                return "max candidates"
            incumbent = self.incumbent
            assert incumbent is not None
            failures = self._failures(incumbent)
            if not failures:
                return "completed"
            self._tell("instruction", f"round {round_no}: asking for revised instructions from {len(failures)} lost items")
            proposals = self.propose(incumbent.prompt.system or "", failures)
            self.scorer.propose_calls += 1
            fresh: list[str] = []
            for text in proposals:
                text = text.strip()
                if text and text not in self.tried_systems:
                    self.tried_systems.add(text)
                    fresh.append(text)
            candidates = []
            for text in fresh[: min(PROPOSALS_PER_ROUND, remaining)]:
                record = self._register(TunedPrompt(system=text, demos=list(incumbent.prompt.demos)), "instruction",
                                        parent=incumbent.prompt_hash, round=round_no, demo_ids=incumbent.demo_ids)
                if record is not None:
                    candidates.append(record)
            if not candidates:
                return "no new proposals"
            if not self._challenge(candidates, STAGE2_FINALISTS, "instruction"):
                return "no gain above one SE"
        return "completed"

    def _challenge(self, candidates: list[CandidateRecord], finalists: int, stage: Stage) -> bool:
        """Screen on the minibatch, score the best few on full validation, adopt the winner if gain > 1 SE."""
        incumbent = self.incumbent
        assert incumbent is not None and incumbent.minibatch_score is not None
        if not candidates:
            return False
        self._score(candidates, self.minibatch)
        for record in candidates:
            record.minibatch_score = self._mean(record, self.minibatch)
        affordable = [r for r in candidates if not self._priced_out(r)]
        if len(affordable) < len(candidates):
            self._tell(stage, f"{len(candidates) - len(affordable)} prompt(s) cost at least the baseline per request "
                              f"(${self.ceiling:.6f}); they cannot save and are dropped")
        # Best minibatch score first; among equal scores the cheaper prompt, then creation order (sorted is stable).
        ranked = sorted(affordable, key=lambda r: (-(r.minibatch_score or 0.0), _cost_key(r)))
        survivors = [r for r in ranked if (r.minibatch_score or 0.0) >= incumbent.minibatch_score][:finalists]
        if not survivors:
            self._tell(stage, "no candidate matched the incumbent on the minibatch")
            return False
        self._score(survivors, self.validation)
        base_scores = self._scores(incumbent, self.validation)
        for record in survivors:
            record.full_score, record.full_se = self._mean_se(record)
            diff = self._scores(record, self.validation) - base_scores
            record.gain = float(diff.mean())
            record.gain_se = _se(diff)
        winner = max(survivors, key=lambda r: r.full_score or 0.0)
        if winner.gain is not None and winner.gain_se is not None and winner.gain > winner.gain_se:
            winner.kept = True
            self.incumbent = winner
            self._tell(stage, f"kept {winner.prompt_hash}: {winner.full_score:.3f} (gain {winner.gain:+.3f} "
                              f"> SE {winner.gain_se:.3f})")
            return True
        self._tell(stage, f"best challenger {winner.prompt_hash} gains {winner.gain:+.3f}, not above one SE "
                          f"({winner.gain_se:.3f}); keeping {incumbent.prompt_hash}")
        return False

    # ---- cost -------------------------------------------------------------------------------------------------

    def _priced_out(self, record: CandidateRecord) -> bool:
        return (self.ceiling is not None and record.cost_per_request is not None
                and record.cost_per_request >= self.ceiling)

    def _settle_on_value(self) -> None:
        """The end of the search: of the prompts scored on the full validation split and likely to pass (module
        docstring), the one with the largest expected saving, (ceiling − cost) × pass_chance, so no demonstration
        is paid for on every routed request unless the quality it adds is worth it. Without the four inputs the
        best-scoring prompt stays."""
        if self.cost is None or self.ceiling is None or self.boundary is None or not self.test_size:
            return
        # full_score is set only once a prompt is scored on the whole validation split
        scored = [r for r in self.records if r.full_score is not None and r.cost_per_request is not None
                  and not self._priced_out(r)]
        if not scored:
            return
        optimism = self._optimism()
        for r in scored:
            r.pass_chance = pass_chance(r.full_score - optimism, self._sd(r), self.boundary, self.test_size)  # type: ignore[operator]
        incumbent = self.incumbent
        likely = [r for r in scored if (r.pass_chance or 0.0) >= PASS_FLOOR]
        if not likely:
            likely = [max(scored, key=lambda r: (r.pass_chance or 0.0, r is incumbent))]
        choice = max(likely, key=lambda r: ((self.ceiling - r.cost_per_request) * (r.pass_chance or 0.0),  # type: ignore[operator]
                                            r is incumbent))
        if incumbent is None or choice is incumbent:
            return
        choice.kept = True
        self.incumbent = choice
        self._tell(choice.stage, f"chose {choice.prompt_hash} for its expected saving: "
                                 f"${choice.cost_per_request:.6f} a request with a {choice.pass_chance:.0%} planning "
                                 f"chance to pass, against {incumbent.prompt_hash}'s ${incumbent.cost_per_request or 0:.6f} "
                                 f"and {incumbent.pass_chance or 0:.0%}")

    def _optimism(self) -> float:
        """The winner's-curse allowance of the search so far: E[max of K normals] · sd / √n, sd of the incumbent."""
        if self.incumbent is None or len(self.validation) < 2:
            return 0.0
        return expected_max_normal(len(self.records)) * self._sd(self.incumbent) / math.sqrt(len(self.validation))

    def _sd(self, record: CandidateRecord) -> float:
        """The standard deviation of a prompt's validation scores (0 on fewer than two items)."""
        if len(self.validation) < 2:
            return 0.0
        return float(np.std(self._scores(record, self.validation), ddof=1))

    # ---- helpers -----------------------------------------------------------------------------------------------

    def _register(self, prompt: TunedPrompt, stage: Stage, *, parent: str | None = None, round: int = 0,
                  demo_ids: tuple[str, ...] = ()) -> CandidateRecord | None:
        if len(self.records) >= self.max_candidates:
            return None
        h = prompt_hash(prompt)
        if h in self.by_hash:
            return None
        record = CandidateRecord(h, stage, prompt, parent=parent, round=round, demo_ids=demo_ids)
        self.records.append(record)
        self.by_hash[h] = record
        return record

    def _score(self, records: list[CandidateRecord], examples: list[Example]) -> None:
        self.scorer.score([(r.prompt_hash, r.prompt) for r in records], examples)
        if self.cost is not None:
            for record in records:
                record.cost_per_request = self.cost(record.prompt)

    def _scores(self, record: CandidateRecord, examples: list[Example]) -> np.ndarray:
        return np.array([self.scorer.cache[(record.prompt_hash, e.id)] for e in examples])

    def _mean(self, record: CandidateRecord, examples: list[Example]) -> float:
        return float(self._scores(record, examples).mean())

    def _mean_se(self, record: CandidateRecord) -> tuple[float, float]:
        scores = self._scores(record, self.validation)
        return float(scores.mean()), _se(scores)

    def _failures(self, record: CandidateRecord) -> list[Failure]:
        scored = [(self.scorer.cache[(record.prompt_hash, e.id)], self.rng.random(), e) for e in self.validation]
        lost = sorted((s, tie, e) for s, tie, e in scored if s < 1.0)
        return [Failure(e, s, record.prompt_hash) for s, _, e in lost[:FAILURES_PER_ROUND]]

    def _tell(self, stage: Stage, message: str) -> None:
        if self.progress is not None:
            best = self.incumbent.full_score if self.incumbent and self.incumbent.full_score is not None else 0.0
            self.progress(ProgressEvent(stage, len(self.records), self.max_candidates, best, message))

    def _result(self, base: CandidateRecord, stopped: str) -> OptimizeResult:
        best = self.incumbent
        assert best is not None and best.full_score is not None and best.full_se is not None
        assert base.full_score is not None and base.full_se is not None
        n = len(self.validation)
        sd = self._sd(best)
        k = len(self.records)
        optimism = self._optimism()
        note = (f"chosen as the best of {k} prompts on {n} validation items: its validation mean {best.full_score:.3f} "
                f"is optimistic by up to about {optimism:.3f} (winner's curse). It is not evidence for switching; "
                "only the sequential test on the untouched test split is.")
        return OptimizeResult(
            best=best.prompt, best_hash=best.prompt_hash,
            validation_mean=best.full_score, validation_se=best.full_se,
            baseline_mean=base.full_score, baseline_se=base.full_se,
            history=tuple(self.records),
            calls=Calls(self.scorer.evaluate_calls, self.scorer.items_scored, self.scorer.propose_calls),
            winners_curse=WinnersCurse(k, n, sd, optimism, note),
            stopped=stopped, seed=self.seed, minibatch_ids=tuple(e.id for e in self.minibatch), ceiling=self.ceiling,
        )


class _Scorer:
    """Calls evaluate (or evaluate_many) for items not yet scored, checks what comes back, caches by prompt hash."""

    def __init__(self, evaluate: Evaluate, evaluate_many: EvaluateMany | None):
        self.evaluate = evaluate
        self.evaluate_many = evaluate_many
        self.cache: dict[tuple[str, str], float] = {}
        self.evaluate_calls = 0
        self.items_scored = 0
        self.propose_calls = 0

    def score(self, prompts: list[tuple[str, TunedPrompt]], examples: list[Example]) -> None:
        work = [(h, p, [e for e in examples if (h, e.id) not in self.cache]) for h, p in prompts]
        work = [(h, p, todo) for h, p, todo in work if todo]
        if not work:
            return
        if self.evaluate_many is not None:
            self.evaluate_calls += 1
            results = list(self.evaluate_many([(p, todo) for _, p, todo in work]))
            if len(results) != len(work):
                raise ParityError(f"evaluate_many returned {len(results)} score lists for {len(work)} prompts; "
                                  "it must return one list per (prompt, examples) pair, in order")
        else:
            results = []
            for _, p, todo in work:
                self.evaluate_calls += 1
                results.append(self.evaluate(p, todo))
        for (h, _, todo), scores in zip(work, results):
            self._store(h, todo, scores)

    def _store(self, h: str, todo: list[Example], scores: Sequence[float]) -> None:
        scores = list(scores)
        if len(scores) != len(todo):
            raise ParityError(f"evaluate returned {len(scores)} scores for {len(todo)} examples (prompt {h}); "
                              "it must return one score in [0, 1] per example, in order")
        for example, value in zip(todo, scores):
            value = float(value)
            if not (0.0 <= value <= 1.0):
                raise ParityError(f"evaluate returned score {value!r} for example {example.id!r} (prompt {h}); "
                                  "scores must lie in [0, 1], higher is better")
            self.cache[(h, example.id)] = value
        self.items_scored += len(todo)


def _cost_key(record: CandidateRecord) -> float:
    """A record's cost per request for ordering; unmeasured sorts last."""
    return math.inf if record.cost_per_request is None else record.cost_per_request


def _se(values: np.ndarray) -> float:
    """Standard error of the mean; infinite with fewer than two items, so nothing is 'significant' on one item."""
    if len(values) < 2:
        return math.inf
    return float(np.std(values, ddof=1) / math.sqrt(len(values)))


def _prompt_dict(prompt: TunedPrompt) -> dict[str, Any]:
    return {"system": prompt.system, "demos": [{"input": d.input, "output": d.output} for d in prompt.demos]}


# --------------------------------------------------------------------------------------------------------------
# The meta-prompt the baseline model answers in stage 2
# --------------------------------------------------------------------------------------------------------------

PROPOSER_SYSTEM = (
    "You write instructions (system prompts) for a smaller, cheaper language model so that its answers match a "
    "reference model's answers on the same task. You are shown the current instruction and items where the smaller "
    "model's answer scored below the reference answer, with the judge's reasons where known. Propose revised "
    "instructions that fix those failures in general, not only for these items: state the output format, length, "
    "tone and task conventions that the reference answers follow. Never copy an item's input or answer into an "
    "instruction. Each instruction must be complete and self-contained. Reply with the revised instructions only, "
    "each inside <instruction></instruction> tags."
)
"""The proposer's fixed instructions; the simulated brain recognises the request by this text and by the
<current_instruction> block of the user turn."""


def propose_prompt_for_baseline(instruction: str, failures: Sequence[Failure], *,
                                n: int = PROPOSALS_PER_ROUND) -> tuple[str, list[dict[str, Any]]]:
    """THE meta-prompt sent to the baseline model in stage 2: (system, messages) for a Messages request."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    parts = ["<current_instruction>", instruction.strip() or "(no instruction: the model sees only the user's text)",
             "</current_instruction>", "",
             f"The smaller model scored below the reference answer on these {len(failures)} items "
             "(score from 0 to 1; higher is better):", ""]
    for i, failure in enumerate(failures, start=1):
        parts.append(f'<item index="{i}" score="{failure.score:.2f}">')
        parts.append(f"<input>\n{_cut(failure.example.input)}\n</input>")
        parts.append(f"<reference_answer>\n{_cut(failure.example.output)}\n</reference_answer>")
        if failure.candidate_output is not None:
            parts.append(f"<candidate_answer>\n{_cut(failure.candidate_output)}\n</candidate_answer>")
        if failure.reason:
            parts.append(f"<judge_reasons>\n{_cut(failure.reason)}\n</judge_reasons>")
        parts.append("</item>")
    stats = _length_note(failures)
    if stats:
        parts += ["", stats]
    parts += ["", f"Write {n} revised instruction{'s' if n > 1 else ''}, each different from the current one and "
                  f"from each other, each inside <instruction></instruction> tags."]
    return PROPOSER_SYSTEM, [{"role": "user", "content": "\n".join(parts)}]


_TAGGED = re.compile(r"<instruction>((?:(?!<instruction>).)*?)</instruction>", re.DOTALL | re.IGNORECASE)
"""The innermost block: prose that mentions the tag before the first real block is not part of it."""
_NUMBERED = re.compile(r"^\s*\d+[.)]\s+", re.MULTILINE)


def parse_proposals(text: str) -> list[str]:
    """Instructions from the proposer's reply: <instruction> blocks; failing those, a numbered list.

    An unclosed final block (a reply cut by max_tokens) is dropped rather than used half-written; prose without
    either shape yields no proposals, never the prose itself as an instruction.
    """
    found = [m.strip() for m in _TAGGED.findall(text)]
    if not found and "<instruction>" not in text.lower():
        starts = [m.start() for m in _NUMBERED.finditer(text)]
        if len(starts) >= 2:
            pieces = [text[a:b] for a, b in zip(starts, starts[1:] + [len(text)])]
            found = [_NUMBERED.sub("", p, count=1).strip() for p in pieces]
    unique: list[str] = []
    for item in found:
        if item and item not in unique:
            unique.append(item)
    return unique


def _cut(text: str) -> str:
    text = text.strip()
    return text if len(text) <= META_PROMPT_CHARS else text[:META_PROMPT_CHARS] + " […]"


def _length_note(failures: Sequence[Failure]) -> str:
    pairs = [(len(f.candidate_output), len(f.example.output)) for f in failures
             if f.candidate_output is not None and f.example.output]
    if not pairs:
        return ""
    ratio = sum(c for c, _ in pairs) / max(1, sum(r for _, r in pairs))
    return f"On these items the smaller model's answers were {ratio:.2f}× the length of the reference answers."
