"""`parity prove`, orchestrated: data → baseline outputs → splits → tune each candidate's prompt on train and
validation → sequential test on the sealed test split, streamed in a seeded random order → certificate → policy.

Why this order (reference proof-science §3.7): the prompt is frozen before the test split is opened, so the
data that chose the prompt never serves as evidence for it (the winner's curse on validation is about as large
as the margin itself). Several candidates are tested at once at α/M each (Bonferroni), so the chance that any
wrong switch is declared stays ≤ α.

How each prompt is scored (paired gold, agreement or the judge) is parity/proof/scoring.py's. The test has no
finite-pool correction: a route serves future traffic, so the claim is about the population the test prompts are
a random sample of, never only about those prompts.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from parity import catalog, pricing
from parity.errors import InputError, ParityError
from parity.fingerprint import fingerprint, system_text
from parity.policy import CertificateRef, Contract, Match, TaskPolicy, TunedPrompt, apply_prompt, upsert_task
from parity.proof import certificate as certs
from parity.proof import optimize as opt
from parity.proof.calls import BudgetExhausted, Call, Caller, CallResult, request_key
from parity.proof.data import (
    ProofItem,
    Splits,
    TaskData,
    gold_text,
    infer_schema,
    all_for_test,
    split,
)
from parity.proof.diagnostics import diagnose, diagnose_scores
from parity.proof.judge import Judgment, PairToJudge, check_judge_model
from parity.proof.hypothesis import hypothesis
from parity.proof.judging import Judge
from parity.proof.records import CandidateOutcome, ProveConfig
from parity.proof.routing_cost import mean_cost, usage_cost
from parity.proof.scoring import SCORINGS, Scoring, choose_scoring
from parity.proof.sequential import SequentialTest
from parity.proof.signing import load_signing_key
from parity.report.certificate_html import write_html
from parity.tokens import TokenCounter

FIRST_CHUNK = 10
PROPOSE_MAX_TOKENS = 2048


@dataclass(frozen=True)
class Event:
    """Progress for the CLI: a stage, a message, and (done, total) when the stage counts something."""

    stage: str
    message: str
    done: int | None = None
    total: int | None = None


ProgressFn = Callable[[Event], None]
Optimizer = Callable[..., opt.OptimizeResult]

@dataclass
class ProveOutcome:
    certificate: dict[str, Any]
    certificate_path: Path
    html_path: Path | None
    candidates: list[CandidateOutcome]
    chosen: CandidateOutcome | None
    policy_entry: TaskPolicy | None
    network_calls: int
    spent: Decimal


# --------------------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------------------


def _common_system(items: Sequence[ProofItem]) -> str | None:
    texts = Counter(system_text(i.request) for i in items)
    text, count = texts.most_common(1)[0]
    return text if count == len(items) and text else None


def _monthly_requests(config: ProveConfig, items: Sequence[ProofItem]) -> int | None:
    if config.monthly_requests is not None:
        return config.monthly_requests
    stamps = sorted(i.started_at for i in items if i.started_at is not None)
    if len(stamps) < 2:
        return None
    days = (stamps[-1] - stamps[0]).total_seconds() / 86400
    if days < 1:
        return None
    return round(len(stamps) / days * 30)


class _Run:
    def __init__(self, config: ProveConfig, data: TaskData, caller: Caller, progress: ProgressFn | None,
                 optimizer: Optimizer, table: pricing.PriceTable | None):
        self.config = config
        self.data = data
        self.caller = caller
        self.progress = progress
        self.optimizer = optimizer
        self.table = table
        self.judge: Judge | None = None

    def tell(self, stage: str, message: str, done: int | None = None, total: int | None = None) -> None:
        if self.progress is not None:
            self.progress(Event(stage, message, done, total))

    # ---- baseline outputs ---------------------------------------------------------------------------------------

    def baseline_outputs(self, items: Sequence[ProofItem]) -> list[ProofItem]:
        missing = sum(i.baseline_output is None for i in items)
        if missing:
            self.tell("baseline", f"calling the baseline {self.config.baseline_model} for {missing} prompts")
        return fill_baseline_outputs(self.caller, self.config.baseline_model, items)

    # ---- candidate calls and scoring ----------------------------------------------------------------------------

    def candidate_request(self, model: str, prompt: TunedPrompt, item: ProofItem) -> dict[str, Any]:
        policy = TaskPolicy(self.config.task, "route", self.config.baseline_model, model, prompt=prompt)
        return apply_prompt(item.request, policy)

    def score_items(self, model: str, prompt: TunedPrompt, items: Sequence[ProofItem], scoring: Scoring,
                    ) -> list[tuple[float, dict[str, Any], CallResult, Judgment | None]]:
        """Candidate outputs for `items` under `prompt`, scored: (X on the test scale, details, result, judgment)."""
        return self._score_flat(model, [(0, prompt, i) for i in items], scoring)

    # ---- stage 1 and 2: the optimiser -----------------------------------------------------------------------------

    def tune(self, model: str, base: TunedPrompt, splits: Splits, scoring: Scoring) -> tuple[TunedPrompt, dict[str, Any] | None, list[str]]:
        notes: list[str] = []
        if not self.config.optimize:
            return base, None, ["prompt optimisation was turned off: the candidate runs the team's own prompt"]
        allowed = {i.id: i for i in (*splits.train, *splits.validation)}  # the test split cannot be scored here
        outputs: dict[tuple[str, str], tuple[str, str]] = {}
        paid: dict[str, dict[str, Decimal]] = {}  # prompt hash -> item id -> the candidate call's standard price

        def evaluate_many(work: Sequence[tuple[TunedPrompt, Sequence[opt.Example]]]) -> list[list[float]]:
            flat: list[tuple[int, TunedPrompt, ProofItem]] = []
            for n, (prompt, examples) in enumerate(work):
                for example in examples:
                    if example.id not in allowed:
                        raise ParityError(f"the optimiser asked to score {example.id!r}, which is not a train or "
                                          "validation prompt; the test split is sealed")
                    flat.append((n, prompt, allowed[example.id]))
            try:
                scored = self._score_flat(model, flat, scoring)
            except BudgetExhausted as exc:
                raise opt.StopOptimizing(f"budget: {exc}") from exc
            out: list[list[float]] = [[] for _ in work]
            for (n, prompt, item), (x, _details, result, judgment) in zip(flat, scored):
                out[n].append(scoring.unit(x))
                h = opt.prompt_hash(prompt)
                outputs[(h, item.id)] = (result.text, judgment.reasons if judgment else "")
                price = usage_cost(model, result.usage, table=self.table)
                if price is not None:
                    paid.setdefault(h, {})[item.id] = price
            done = sum(len(e) for _, e in work)
            self.tell("optimise", f"{model}: scored {len(work)} prompt(s) on {done} items")
            return out

        def evaluate(prompt: TunedPrompt, examples: Sequence[opt.Example]) -> list[float]:
            return evaluate_many([(prompt, examples)])[0]

        def propose(instruction: str, failures: list[opt.Failure]) -> list[str]:
            enriched = []
            for failure in failures:
                text, reason = outputs.get((failure.prompt_hash, failure.example.id), (None, ""))
                enriched.append(opt.Failure(failure.example, failure.score, failure.prompt_hash, text, reason or None))
            system, messages = opt.propose_prompt_for_baseline(instruction, enriched)
            params = {"model": self.config.baseline_model, "max_tokens": PROPOSE_MAX_TOKENS, "system": system,
                      "messages": messages}
            try:
                result = self.caller.one(Call("propose", params))
            except BudgetExhausted as exc:
                raise opt.StopOptimizing(f"budget: {exc}") from exc
            return opt.parse_proposals(result.text)

        def cost(prompt: TunedPrompt) -> float | None:
            mean = mean_cost(list(paid.get(opt.prompt_hash(prompt), {}).values()))
            return None if mean is None else float(mean)

        baseline = mean_cost([p for p in (usage_cost(self.config.baseline_model, i.baseline_usage, table=self.table)
                                          for i in (*splits.train, *splits.validation)) if p is not None])
        ceiling = None if baseline is None else float(baseline)

        def on_progress(event: opt.ProgressEvent) -> None:
            self.tell("optimise", f"{model}: {event.message}", event.candidates, event.max_candidates)

        examples = {name: [opt.Example(i.id, i.input_text, i.baseline_output or "", i.gold) for i in part]
                    for name, part in (("train", splits.train), ("validation", splits.validation))}
        try:
            result = self.optimizer(
                base_prompt=base, train=examples["train"], validation=examples["validation"],
                evaluate=evaluate, propose=propose, seed=self.config.seed,
                max_candidates=self.config.max_prompt_candidates, minibatch=self.config.minibatch,
                progress=on_progress, evaluate_many=evaluate_many, cost=cost, ceiling=ceiling,
                boundary=hypothesis(scoring.test_mode, self.config.margin).mu0,
                test_size=min(self.config.n_max, len(splits.test)),
            )
        except opt.StopOptimizing as exc:
            raise BudgetExhausted(str(exc)) from exc
        if result.stopped.startswith("stopped"):
            notes.append(f"optimisation {result.stopped}")
        notes.append(result.winners_curse.note)
        return result.best, result.to_dict(), notes

    def _score_flat(self, model: str, flat: Sequence[tuple[int, TunedPrompt, ProofItem]], scoring: Scoring):
        calls = [Call("candidate", self.candidate_request(model, p, i)) for _, p, i in flat]
        if scoring.mode == "judge" and self.caller.spend.limit is not None:
            # estimate the judging too before paying for answers that the budget could not then judge
            assert self.judge is not None
            answer_tokens = max(int(c.params.get("max_tokens") or 0) for c in calls)
            placeholders = [PairToJudge(i.id, i.request, i.baseline_output or "", "", gold_reference(i), i.stratum)
                            for _, _, i in flat]
            self.caller.reserve(calls, self.judge.worst_case(placeholders, answer_tokens),
                                what=f"{len(calls)} candidate answers and their judging")
        results = self.caller.run(calls)
        if scoring.mode != "judge":
            return [(*scoring.observe(i, r.text), r, None) for (_, _, i), r in zip(flat, results)]
        assert self.judge is not None
        pairs = [PairToJudge(i.id, i.request, i.baseline_output or "", r.text, gold_reference(i), i.stratum)
                 for (_, _, i), r in zip(flat, results)]
        return [(j.score, {}, r, j) for r, j in zip(results, self.judge.judge(pairs))]

    # ---- the sequential test -----------------------------------------------------------------------------------------

    def test(self, model: str, prompt: TunedPrompt, splits: Splits, scoring: Scoring, n_candidates: int,
             ) -> tuple[SequentialTest, list[dict[str, Any]], list[str], bool, list[Judgment]]:
        items = list(splits.test.unseal())  # the prompt is frozen: the seal may break now
        random.Random(f"parity-order/{self.config.seed}").shuffle(items)
        order = [i.id for i in items]
        n_max = min(self.config.n_max, len(items))
        seq = SequentialTest(mode=scoring.test_mode, margin=self.config.margin, alpha=self.config.alpha,  # type: ignore[arg-type]
                             n_max=n_max, method=self.config.method, candidates=n_candidates)  # type: ignore[arg-type]
        # no finite-pool correction: a route serves future traffic, of which the test split is a sample, so the
        # test is about the mean of the distribution the prompts come from, not about these prompts alone
        observations: list[dict[str, Any]] = []
        judgments: list[Judgment] = []
        start, size, budget_stop = 0, FIRST_CHUNK, False
        while start < n_max and not seq.done:
            chunk = items[start : min(n_max, start + size)]
            try:
                scored = self.score_items(model, prompt, chunk, scoring)
            except BudgetExhausted as exc:
                if len(chunk) > 1:  # a smaller wave may still fit: use the budget to the last prompt it can pay for
                    size = max(1, len(chunk) // 2)
                    continue
                self.tell("test", f"{model}: {exc}")
                budget_stop = True
                break
            for item, (x, details, result, judgment) in zip(chunk, scored):
                state = seq.update(x)
                obs = {
                    "id": item.id, "stratum": item.stratum, "x": x, "unit": scoring.unit(x),
                    "candidate_output": result.text, "baseline_output": item.baseline_output,
                    "candidate_request_key": result.key, "prompt_key": request_key(item.request),
                    "candidate_cost": str(usage_cost(model, result.usage, table=self.table) or ""),
                    "baseline_cost": str(usage_cost(self.config.baseline_model, item.baseline_usage, table=self.table) or ""),
                    **details,
                }
                if judgment is not None:
                    obs["judgment"] = judgment.to_dict()
                    judgments.append(judgment)
                observations.append(obs)
                if state.done:
                    break
            self.tell("test", f"{model}: n={seq.state.n}, estimate {seq.state.estimate:.3f}, lower bound "
                              f"{seq.state.lower_bound:.3f}", seq.state.n, n_max)
            start += len(chunk)
            size *= 2
        return seq, observations, order, budget_stop, judgments


def asdict_shallow(item: ProofItem) -> dict[str, Any]:
    return {f: getattr(item, f) for f in item.__dataclass_fields__}


def fill_baseline_outputs(caller: Caller, baseline_model: str, items: Sequence[ProofItem]) -> list[ProofItem]:
    """Items with the baseline's output: the logged one where the logs have it, otherwise the baseline is called
    with the request exactly as the team sends it (one paid call per missing prompt, cached in the run dir)."""
    missing = [i for i in items if i.baseline_output is None]
    if not missing:
        return list(items)
    results = caller.run([Call("baseline", {**i.request, "model": baseline_model}) for i in missing])
    filled = {i.id: (r.text, r.usage) for i, r in zip(missing, results)}
    out = []
    for item in items:
        if item.id in filled:
            text, usage = filled[item.id]
            item = ProofItem(**{**asdict_shallow(item), "baseline_output": text, "baseline_usage": usage})
        out.append(item)
    return out


def _run_dir_manifest(run_dir: Path, config: ProveConfig, data: TaskData) -> dict[str, Any]:
    """The run's identity: created once, checked on resume so a run directory is never mixed with other settings."""
    path = run_dir / "run.json"
    identity = {"config": config.identity(), "data_source": data.source,
                "data_digest": hashlib.sha256("\n".join(request_key(i.request) for i in data.items).encode()).hexdigest()}
    if path.exists():
        stored = json.loads(path.read_text(encoding="utf-8"))
        stored_identity = {**{k: stored.get(k) for k in identity},
                           "config": {k: v for k, v in (stored.get("config") or {}).items() if k != "budget_usd"}}
        if stored_identity != identity:
            raise InputError("this run directory holds a run with other settings or other data; resume it with the "
                             "same command, or pass a new --run-dir", file=str(path))
        return {**stored, "config": config.to_dict()}  # the budget may change between runs
    run_dir.mkdir(parents=True, exist_ok=True)
    manifest = {**identity, "config": config.to_dict(),
                "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
    return manifest


def prove(
    config: ProveConfig,
    data: TaskData,
    client: Any,
    *,
    run_dir: str | Path,
    progress: ProgressFn | None = None,
    optimizer: Optimizer = opt.optimize,
    policy_path: str | Path | None = None,
    html_path: str | Path | None = None,
    sleep: Callable[[float], None] | None = None,
    table: pricing.PriceTable | None = None,
    exact_token_counts: bool = False,
    simulated: bool = False,
) -> ProveOutcome:
    """Run a whole proof for one task and write its certificate (and policy entry when a candidate switches).

    `client` is an `anthropic.Anthropic` (the emulator's `client()` in tests). Re-running with the same
    `run_dir` resumes: every call already paid for is read back, nothing is sent twice. With
    `exact_token_counts` the budget's estimates count input tokens with the API's own counter (count_tokens,
    cached in the run directory) instead of the offline approximation. `simulated` says the calls go to the
    emulator: the certificate is then labelled simulated (as it is whenever the prompts were generated). A
    signing key (PARITY_SIGNING_KEY_FILE or PARITY_SIGNING_KEY) is read before anything is spent, and signs the
    certificate.
    """
    signing_key = load_signing_key()
    if not config.candidate_models:
        raise InputError("name at least one --candidate model", field="candidate")
    for model in (config.baseline_model, *config.candidate_models):
        catalog.resolve(model)
    if config.baseline_model in config.candidate_models:
        raise InputError("the baseline is also listed as a candidate; a candidate must be another model",
                         field="candidate")
    _check_logged_model(config.baseline_model, data)
    run_dir = Path(run_dir)
    manifest = _run_dir_manifest(run_dir, config, data)
    caller_kwargs: dict[str, Any] = {"sync": config.sync, "budget_usd": config.budget_usd, "table": table}
    if exact_token_counts:
        caller_kwargs["counter"] = TokenCounter(client, cache_path=run_dir / "token-counts.sqlite")
    if sleep is not None:
        caller_kwargs["sleep"] = sleep
    if progress is not None:
        caller_kwargs["progress"] = lambda message, done, total: progress(Event("calls", message, done, total))
    caller = Caller(client, run_dir, **caller_kwargs)
    run = _Run(config, data, caller, progress, optimizer, table)

    scoring = choose_scoring(config.scoring, data.items)
    judge_model = None
    if scoring.mode == "judge":
        judge_model = check_judge_model(config.judge_model or config.baseline_model, config.baseline_model,
                                        config.candidate_models)
        run.judge = Judge(caller, judge_model, reference_guided=config.reference_guided)
    elif config.judge_model:
        check_judge_model(config.judge_model, config.baseline_model, config.candidate_models)
    run.tell("data", f"{len(data.items)} prompts from {data.source}; scoring: {scoring.mode} ({scoring.kind})")

    outcomes: list[CandidateOutcome] = []
    budget_note = None
    try:
        items = run.baseline_outputs(data.items)
    except BudgetExhausted as exc:
        items, budget_note = list(data.items), str(exc)
    if config.optimize:
        splits = split(items, by=config.split_by, fractions=config.fractions, seed=config.seed)  # type: ignore[arg-type]
    else:
        splits = all_for_test(items, seed=config.seed)
    run.tell("data", f"splits by {splits.by}: train {len(splits.train)}, validation {len(splits.validation)}, "
                     f"test {len(splits.test)} (sealed)")
    base_prompt = TunedPrompt(system=_common_system(items))
    m = len(config.candidate_models)
    for model in config.candidate_models:
        outcomes.append(_prove_candidate(run, model, base_prompt, splits, scoring, m, budget_note))

    switched = [o for o in outcomes if o.verdict == "switch"]
    chosen = min(switched, key=lambda o: (o.cost_per_request or Decimal("Infinity"), o.model)) if switched else None
    baseline_costs = [c for c in (usage_cost(config.baseline_model, i.baseline_usage, table=table)
                                  for i in splits.test.unseal()) if c is not None]
    cert = certs.build(
        config=config, manifest=manifest, data=data, splits=splits, items=items, scoring=scoring,
        judge_model=judge_model, outcomes=outcomes, chosen=chosen, spend=caller.spend,
        baseline_cost=mean_cost(baseline_costs), monthly_requests=_monthly_requests(config, items),
        contract=_contract(scoring, items), proof_at_standard_prices=standard_price_of_calls(run_dir, table),
        simulated=simulated, calls=caller.results, table=table, signing_key=signing_key,
    )
    cert_path = certs.write_json(cert, run_dir / "certificate.json")
    out_html = None
    if html_path is not None:
        out_html = write_html(cert, html_path)
    entry = None
    if chosen is not None:
        entry = _policy_entry(config, chosen, cert, cert_path, scoring, items, policy_path)
        if policy_path is not None:
            upsert_task(policy_path, entry)
            run.tell("policy", f"routed {config.task} to {chosen.model} in {policy_path}")
    return ProveOutcome(cert, cert_path, out_html, outcomes, chosen, entry, caller.network_calls, caller.spend.total)


def _check_logged_model(baseline: str, data: TaskData) -> None:
    """Logged answers stand in for the baseline's only if the baseline wrote them."""
    want = catalog.resolve(baseline)
    other = Counter(str(i.request.get("model")) for i in data.items
                    if i.baseline_output is not None and _resolve_or_self(str(i.request.get("model"))) != want)
    if other:
        model = other.most_common(1)[0][0]
        raise InputError(f"{sum(other.values())} of the logged answers came from {model!r}"
                         f"{f' and {len(other) - 1} other models' if len(other) > 1 else ''}, not the baseline "
                         f"{baseline!r}, so they cannot stand for its answers; pass --baseline {model} or keep "
                         "only the baseline's rows", file=data.source, field="baseline")


def _resolve_or_self(model: str) -> str:
    try:
        return catalog.resolve(model)
    except ParityError:
        return model


def _prove_candidate(run: _Run, model: str, base: TunedPrompt, splits: Splits, scoring: Scoring, m: int,
                     budget_note: str | None) -> CandidateOutcome:
    notes: list[str] = []
    empty = diagnose_scores([], [], [], [])
    if budget_note is not None:
        return CandidateOutcome(model, "inconclusive", "budget", 0, None, [], [], base, opt.prompt_hash(base), None,
                                empty, None, [f"budget reached before the test: {budget_note}"])
    try:
        prompt, optimization, tune_notes = run.tune(model, base, splits, scoring)
        notes += tune_notes
    except BudgetExhausted as exc:
        return CandidateOutcome(model, "inconclusive", "budget", 0, None, [], [], base, opt.prompt_hash(base), None,
                                empty, None, [f"budget reached while tuning the prompt: {exc}"])
    run.tell("test", f"{model}: prompt frozen ({opt.prompt_hash(prompt)}); opening the test split")
    seq, observations, order, budget_stop, judgments = run.test(model, prompt, splits, scoring, m)
    if not observations:
        return CandidateOutcome(model, "inconclusive", "budget", 0, None, [], order, prompt, opt.prompt_hash(prompt),
                                optimization, empty, None, notes + ["budget reached before the first test prompt"])
    result = seq.result()
    stopped_by = "budget" if budget_stop and not seq.done else result.stopped_by
    if scoring.mode == "judge":
        diagnostics = diagnose(judgments)
    else:
        diagnostics = diagnose_scores([o["unit"] for o in observations], [o["stratum"] for o in observations],
                                      [len(o["baseline_output"] or "") for o in observations],
                                      [len(o["candidate_output"]) for o in observations])
    costs = [Decimal(o["candidate_cost"]) for o in observations if o["candidate_cost"]]
    return CandidateOutcome(model, result.verdict, stopped_by, result.n_used, result.to_dict(trajectory=True),
                            observations, order, prompt, opt.prompt_hash(prompt), optimization, diagnostics,
                            mean_cost(costs), notes)


def _contract(scoring: Scoring, items: Sequence[ProofItem]) -> Contract:
    if scoring.kind == "label":
        return Contract(labels=list(scoring.labels))
    if scoring.kind == "json":
        schema = infer_schema(items)
        return Contract(json_schema=schema, required_fields=list((schema or {}).get("required", [])))
    return Contract()


def _policy_entry(config: ProveConfig, chosen: CandidateOutcome, cert: dict[str, Any], cert_path: Path,
                  scoring: Scoring, items: Sequence[ProofItem], policy_path: str | Path | None) -> TaskPolicy:
    """The route entry; its certificate path is relative to the policy file's folder (where the gateway reads it
    from), so the policy and its certificates can move together."""
    where = Path(cert_path).resolve()
    if policy_path is not None:
        where = Path(os.path.relpath(where, Path(policy_path).resolve().parent))
    prints = Counter(fingerprint(i.request) for i in items)
    return TaskPolicy(
        task=config.task, mode="route", baseline_model=config.baseline_model, candidate_model=chosen.model,
        prompt=chosen.prompt, contract=_contract(scoring, items),
        match=Match(header=config.task, metadata_key="task", fingerprint=prints.most_common(1)[0][0]),
        margin=config.margin, alpha=config.alpha,
        certificate=CertificateRef(id=cert["id"], path=str(where), verdict="switch"),
    )


def gold_reference(item: ProofItem) -> str | None:
    """The gold answer as a reference answer for reference-guided judging."""
    return item.reference or gold_text(item)


def standard_price_of_calls(run_dir: str | Path, table: pricing.PriceTable | None = None) -> Decimal:
    """What the calls of a run cost at standard (non-batch) prices: the price of `--sync` for the same work."""
    total = Decimal(0)
    log = Path(run_dir) / "calls.jsonl"
    seen: set[str] = set()
    for line in log.read_text(encoding="utf-8").splitlines() if log.exists() else []:
        try:
            result = CallResult.from_dict(json.loads(line))
        except (json.JSONDecodeError, KeyError):
            continue
        if result.key in seen:
            continue
        seen.add(result.key)
        total += usage_cost(result.model, result.usage, table=table) or Decimal(0)
    return total



__all__ = ["CandidateOutcome", "Event", "ProveConfig", "ProveOutcome", "SCORINGS", "Scoring", "choose_scoring",
           "fill_baseline_outputs", "prove", "standard_price_of_calls"]
