"""Is `parity prove` valid end to end? The false-switch rate of the WHOLE pipeline, for the population of prompts.

    .venv/bin/python bench/pipeline_validity.py [--tasks 200] [--power-tasks 40] [--sizes 50 100 400]
        [--scorings gold judge] [--workers 2] [--out out/pipeline_validity.json]

The sequential test alone is checked by bench/sequential_power.py on synthetic scores. This bench checks what a
user gets: many simulated tasks, each a fresh set of prompts (a fresh workload seed), run through the real
pipeline (`parity.proof.runner.prove`: baseline answers → group split → optimiser on train and validation, a
small budget → the prompt frozen → anytime-valid test on the sealed test split, n_max = the test split's size) on
the in-process emulator. Two scorings: `gold` (paired gold on ticket_triage) and `judge` (thread_summary, free
text, judged in both orders by the simulated judge with its default biases). α = 0.05, δ = 0.1 for both.

The null case is built so that H0 holds for the population and sits exactly at its boundary: the candidate's
simulated profile gets a ceiling (the best accuracy any prompt can reach, profiles.py) and demo/instruction gains
high enough that the optimiser reaches it. The ceiling is calibrated once per scoring, before any task runs, on a
large fresh sample scored exactly as the test scores it (gold: mean D = −δ; judge: mean judged score ½ − δ, with
the biased judge): with the accuracy pinned at the ceiling, several prompt styles (the team's instruction with 4
correct demonstrations, the family's clear instruction, and both) are scored, and the ceiling is the highest at
which the BEST style is still at or below the boundary. Every tuned candidate is then at or
below the boundary, and a switch is a wrong switch. The tuned prompts' population means are then MEASURED (the
frozen prompt from the certificate, scored on a fresh sample) for a subset of tasks, to show they sit at the
boundary and not far below it. The power case gives the candidate the baseline's own accuracy as its ceiling.

Every task also checks the seal: the optimiser scored only train and validation prompts, no demonstration is
a test prompt, and the test observed only test prompts.

Reported per size and scoring: the false-switch rate with its exact (Clopper–Pearson) 95% upper bound, which
must be ≤ α; next to it the sequential test's own false-switch rate at the boundary (`eprocess_alone`: scores
drawn from the calibration's per-prompt distribution, tilted to mean μ0, the test split's length), so a pipeline
rate above the test's own points at a leak outside the test; the fresh-sample mean of every switched task's tuned
prompt; the power-case switch rate and the prompts used (median, 90th percentile). Every number comes from the
simulated emulator and is labelled so. With 2 workers the default run takes about 37 minutes (about an hour of
CPU; the judged tasks of 400 prompts are most of it); `--sizes`, `--scorings` and `--tasks` cut it down, and
`--first-task` with `--calibration` adds tasks to an earlier run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import multiprocessing
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from parity.emulator.brains import scenarios
from parity.emulator.service import Emulator
from parity.emulator.workloads import load_emulator_family
from parity.policy import Demo, TunedPrompt
from parity.proof import optimize as opt
from parity.proof import runner
from parity.proof.calls import Caller
from parity.proof.data import ProofItem
from parity.proof.hypothesis import hypothesis
from parity.proof.judging import Judge
from parity.proof.runner import ProveConfig, prove
from parity.proof.simulation import run_sequential_paths

BASELINE, CANDIDATE = "claude-opus-4-8", "claude-haiku-4-5"
ALPHA, DELTA = 0.05, 0.10
MAX_PROMPT_CANDIDATES = 4
MINIBATCH = 16
DEMO_GAIN, INSTRUCTION_GAIN = 3.0, 3.0
"""Two correct demonstrations, or a fully clear instruction, lift the candidate to within 0.3% of its ceiling."""
BASE_GAP = 0.15
"""The candidate's plain-prompt accuracy sits this far below its ceiling: a gain the optimiser can see on a
validation split of a hundred prompts (a smaller gap hides in its one-standard-error rule and leaves the
candidate at the plain prompt, below the boundary by the whole gap)."""
STYLE_DEMOS = 4
CAL_TOLERANCE = {"gold": 0.0015, "judge": 0.002}
"""Calibration stops when the best style is this close below the boundary (unit scale)."""
SEED_ROOT = "parity-pipeline-validity/v1"


@dataclass(frozen=True)
class Spec:
    """One scoring of the bench: the family it runs on and the runner's scoring mode."""

    name: str
    family: str
    mode: str
    cal_n: int
    eval_n: int
    eval_tasks: int

    @property
    def mu0(self) -> float:
        """The null boundary on the unit scale the e-process bets on."""
        return hypothesis("paired-gold" if self.mode == "paired-gold" else "score", DELTA).mu0

    def to_scale(self, unit: float) -> float:
        """Unit-scale mean to the reporting scale (mean D for paired gold)."""
        return 2.0 * unit - 1.0 if self.mode == "paired-gold" else unit


SPECS = {
    "gold": Spec("gold", "ticket_triage", "paired-gold", cal_n=3000, eval_n=800, eval_tasks=20),
    "judge": Spec("judge", "thread_summary", "judge", cal_n=1600, eval_n=300, eval_tasks=10),
}


def code_digest() -> str:
    """SHA-256 over the parity package's sources: the simulated brains and the proof code the numbers came from."""
    import parity

    digest = hashlib.sha256()
    for path in sorted(Path(parity.__file__).parent.rglob("*.py")):
        digest.update(path.as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _no_sleep(_seconds: float) -> None:
    return None


def seed_of(*parts: Any) -> int:
    """A fresh, reproducible seed per task (workload, emulator, split, order and optimiser all use it)."""
    digest = hashlib.sha256("/".join(map(str, (SEED_ROOT, *parts))).encode()).digest()
    return int.from_bytes(digest[:4], "big") % (2**31 - 1)


def candidate_profile(family: str, ceiling: float, *, pinned: bool = False) -> dict[str, Any]:
    """Profile overrides for the candidate: its ceiling on `family`, high gains, and a plain-prompt accuracy
    BASE_GAP below the ceiling (or at it, `pinned`, for calibration: every prompt then has the ceiling's accuracy)."""
    base = ceiling if pinned else max(0.0, ceiling - BASE_GAP)
    return {"skills": {family: {"base": base, "ceiling": ceiling, "demo_gain": DEMO_GAIN,
                                "instruction_gain": INSTRUCTION_GAIN}}}


def make_emulator(seed: int, profile: dict[str, Any] | None) -> Emulator:
    """An in-process emulator (batches finish at once) whose candidate model has `profile`'s overrides."""
    emulator = Emulator(seed=seed)
    emulator.batches.processing_s = "instant"
    if profile is not None:
        emulator.brain.set_profile(CANDIDATE, profile)  # type: ignore[attr-defined]
    return emulator


def prompt_from_certificate(cand: dict[str, Any]) -> TunedPrompt:
    """The frozen tuned prompt as the certificate records it; checked against the certificate's hash."""
    data = cand["prompt"]
    prompt = TunedPrompt(system=data["system"], demos=[Demo(d["input"], d["output"]) for d in data["demos"]])
    if opt.prompt_hash(prompt) != cand["prompt_hash"]:
        raise AssertionError("the certificate's prompt does not hash to its prompt_hash")
    return prompt


# --------------------------------------------------------------------------------------------------------------
# Scoring prompts on a fixed fresh sample, exactly as the pipeline scores them
# --------------------------------------------------------------------------------------------------------------


class SampleScorer:
    """Candidate prompts scored on one fixed sample of fresh prompts with the runner's own per-prompt scoring
    (`runner._Run.score_items`: the same candidate request, scorer or judge, and unit scale as the test).

    The baseline answers are made once. `set_profile` changes the candidate's simulated profile and starts a new
    cache for the candidate's calls (the cache is keyed by request, so another profile's answers must not be read
    back); the judge's cache is kept, since a judge request holds both answers: an unchanged answer is judged
    the same, a changed one is a new request.
    """

    def __init__(self, spec: Spec, n: int, seed: int, profile: dict[str, Any], root: Path):
        self.spec, self.seed, self.root = spec, seed, root
        self.emulator = make_emulator(seed, profile)
        self.data = load_emulator_family(spec.family, n, seed=seed, baseline_model=BASELINE)
        self.config = ProveConfig(task=spec.family, baseline_model=BASELINE, candidate_models=(CANDIDATE,),
                                  margin=DELTA, alpha=ALPHA, scoring=spec.mode, seed=seed)
        self.shared = Caller(self.emulator.client(), root / "shared", sleep=_no_sleep, table=self.emulator.table)
        self.items: list[ProofItem] = runner.fill_baseline_outputs(self.shared, BASELINE, self.data.items)
        self.scoring = runner.choose_scoring(spec.mode, self.items)
        self._generation = 0
        self._new_caller()

    def _new_caller(self) -> None:
        if self._generation:
            shutil.rmtree(self.root / f"candidate-{self._generation}", ignore_errors=True)
        self._generation += 1
        caller = Caller(self.emulator.client(), self.root / f"candidate-{self._generation}", sleep=_no_sleep,
                        table=self.emulator.table)
        self.run = runner._Run(self.config, self.data, caller, None, opt.optimize, self.emulator.table)
        if self.spec.mode == "judge":
            self.run.judge = Judge(self.shared, BASELINE)

    def set_profile(self, profile: dict[str, Any]) -> None:
        self.emulator.brain.set_profile(CANDIDATE, profile)  # type: ignore[attr-defined]
        self._new_caller()

    def scores(self, prompt: TunedPrompt) -> list[float]:
        scored = self.run.score_items(CANDIDATE, prompt, self.items, self.scoring)
        return [self.scoring.unit(x) for x, *_ in scored]

    def mean(self, prompt: TunedPrompt) -> tuple[float, float]:
        """(mean, standard error) of the unit-scale score over the sample."""
        xs = self.scores(prompt)
        return statistics.fmean(xs), statistics.stdev(xs) / math.sqrt(len(xs))


def style_prompts(spec: Spec, seed: int) -> dict[str, TunedPrompt]:
    """Prompt styles a tuned candidate may end up with, all at the ceiling when the accuracy is pinned: the team's
    instruction with STYLE_DEMOS correct demonstrations (the baseline's own right answers), the family's clear
    instruction (every rule of its checklist stated: it changes which mistakes a wrong answer makes, and its
    length), and both. The team's prompt as is is left out: tuned, it has the plain accuracy, far below."""
    family = scenarios.get(spec.family)
    pool = load_emulator_family(spec.family, 60, seed=seed, baseline_model=BASELINE)
    emulator = make_emulator(seed, None)
    with tempfile.TemporaryDirectory() as tmp:
        caller = Caller(emulator.client(), tmp, sleep=_no_sleep, table=emulator.table)
        items = runner.fill_baseline_outputs(caller, BASELINE, pool.items)
    good = [i for i in items if i.baseline_output and family.score(i.baseline_output, i.gold) >= 1.0]
    demos = [Demo(i.input_text, i.baseline_output or "") for i in good[:STYLE_DEMOS]]
    clear = family.system_prompt(clear=True)
    return {
        "team+demos": TunedPrompt(demos=demos),
        "clear": TunedPrompt(system=clear),
        "clear+demos": TunedPrompt(system=clear, demos=demos),
    }


def baseline_accuracy(spec: Spec) -> float:
    """The baseline's prompt-level accuracy on the team's prompt (the simulated brain's own number)."""
    from parity.emulator.brains.base import BrainRequest

    item = load_emulator_family(spec.family, 1, seed=seed_of("probe", spec.name), baseline_model=BASELINE).items[0]
    brain = make_emulator(0, None).brain
    req = item.request
    messages = [{"role": m["role"], "content": [{"type": "text", "text": m["content"]}]
                 if isinstance(m["content"], str) else m["content"]} for m in req["messages"]]
    probe = BrainRequest(model=BASELINE, system=_system_text(req.get("system")), messages=messages,
                         max_tokens=int(req.get("max_tokens") or 1024), seed=0)
    return float(brain.explain(probe).accuracy)  # type: ignore[attr-defined]


def _system_text(system: Any) -> str:
    if isinstance(system, str):
        return system
    return "\n\n".join(b.get("text", "") for b in system or [] if isinstance(b, dict))


# --------------------------------------------------------------------------------------------------------------
# Calibration of the null ceiling
# --------------------------------------------------------------------------------------------------------------


def calibrate(spec_name: str, n: int | None = None, max_evals: int = 8) -> dict[str, Any]:
    """The candidate ceiling whose best prompt style scores exactly the null boundary on a large fresh sample.

    With the accuracy pinned at the ceiling c (every prompt gets c), μ(c) rises with c. The search (regula falsi
    with the Illinois step, on one sample for every c: common random numbers) keeps the highest c whose BEST style
    is at or below μ0, so the null is never crossed on the calibration sample.
    """
    spec = SPECS[spec_name]
    n = n or spec.cal_n
    started = time.perf_counter()
    target = spec.mu0
    tol = CAL_TOLERANCE[spec.name]
    seed = seed_of("calibration", spec.name)
    styles = style_prompts(spec, seed_of("style-demos", spec.name))
    a_base = baseline_accuracy(spec)
    evals: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        scorer = SampleScorer(spec, n, seed, candidate_profile(spec.family, a_base, pinned=True), Path(tmp))

        def f(c: float) -> float:
            t = time.perf_counter()
            scorer.set_profile(candidate_profile(spec.family, c, pinned=True))
            scores = {name: scorer.scores(p) for name, p in styles.items()}
            by_style = {name: (statistics.fmean(xs), statistics.stdev(xs) / math.sqrt(len(xs)))
                        for name, xs in scores.items()}
            best_style = max(by_style, key=lambda k: by_style[k][0])
            best = by_style[best_style][0]
            evals.append({"ceiling": c, "best": best, "best_style": best_style, "best_scores": scores[best_style],
                          "styles": {k: {"mean": m, "se": se} for k, (m, se) in by_style.items()}})
            print(f"  calibrate {spec.name}: ceiling {c:.4f} -> best style {best:.4f} (target {target:.4f}, "
                  f"{time.perf_counter() - t:.0f}s)", file=sys.stderr, flush=True)
            return best - target

        lo, hi = max(0.05, a_base - 0.25), min(1.0, a_base + 0.03)
        f_lo, f_hi = f(lo), f(hi)
        while f_lo > 0 and lo > 0.05:
            lo, hi, f_hi = max(0.05, lo - 0.2), lo, f_lo
            f_lo = f(lo)
        while f_hi < 0 and hi < 1.0:
            lo, f_lo, hi = hi, f_hi, 1.0
            f_hi = f(hi)
        if f_lo > 0 or f_hi < 0:
            raise RuntimeError(f"calibration for {spec.name}: no ceiling in (0, 1] puts the best style at the "
                               f"boundary {target:.3f}")
        side = 0
        w_lo, w_hi = f_lo, f_hi  # the secant's weights: the Illinois step halves the one kept twice in a row
        while len(evals) < max_evals and f_lo < -tol:
            c = (lo * w_hi - hi * w_lo) / (w_hi - w_lo)
            c = min(max(c, lo + 1e-4), hi - 1e-4)
            fc = f(c)
            if fc > 0:
                hi, f_hi, w_hi = c, fc, fc
                if side == 1:
                    w_lo /= 2
                side = 1
            else:
                lo, f_lo, w_lo = c, fc, fc
                if side == -1:
                    w_hi /= 2
                side = -1
    chosen = max((e for e in evals if e["best"] <= target), key=lambda e: e["ceiling"])
    scores = chosen["best_scores"]
    for e in evals:
        del e["best_scores"]
    return {"scoring": spec.name, "family": spec.family, "target_unit": target, "target": spec.to_scale(target),
            "ceiling": chosen["ceiling"], "best_style": chosen["best_style"], "best_style_mean_unit": chosen["best"],
            "styles_at_ceiling": chosen["styles"], "baseline_accuracy": a_base, "calibration_n": n,
            "score_distribution": dict(sorted(Counter(round(x, 4) for x in scores).items())),
            "evaluations": evals, "wall_s": time.perf_counter() - started}


def eprocess_alone(spec: Spec, distribution: dict[Any, int], n_test: int, *, paths: int = 20_000,
                   seed: int = 0) -> float:
    """The sequential test's own false-switch rate at the boundary, without the rest of the pipeline: paths of
    n_test scores drawn from the calibration's per-prompt score distribution (the best style at the null
    ceiling), tilted (exponentially, so the support stays the same) to have mean exactly μ0, fed to the same test
    the runner runs (mode, δ, α, futility on, n_max = n_test). A pipeline rate above this points at a leak
    outside the test; a rate like it is the test's own ≤ α error."""
    values = np.array([float(v) for v in distribution], dtype=float)
    counts = np.array(list(distribution.values()), dtype=float)
    weights = counts / counts.sum()
    lo, hi = -50.0, 50.0
    for _ in range(200):  # the tilt θ with E_θ[X] = μ0 (the tilted mean rises with θ)
        theta = (lo + hi) / 2
        w = weights * np.exp(theta * (values - values.mean()))
        if (w * values).sum() / w.sum() < spec.mu0:
            lo = theta
        else:
            hi = theta
    probs = w / w.sum()
    rng = np.random.default_rng(seed)
    xs = rng.choice(values, size=(paths, n_test), p=probs)
    mode = "paired-gold" if spec.mode == "paired-gold" else "score"
    if mode == "paired-gold":
        xs = 2.0 * xs - 1.0  # the test reads D in {-1, 0, 1}
    result = run_sequential_paths(xs, mode=mode, margin=DELTA, alpha=ALPHA, n_max=n_test, method="agrapa")
    return result.rate("switch")


# --------------------------------------------------------------------------------------------------------------
# One task through the real pipeline
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    scoring: str
    case: str  # null | power
    size: int
    index: int
    ceiling: float
    evaluate: bool  # also measure the tuned prompt's population mean

    @property
    def seed(self) -> int:
        return seed_of("task", self.scoring, self.case, self.size, self.index)

    @property
    def cost(self) -> float:
        return self.size * (3.0 if self.scoring == "judge" else 1.0) + (2000 if self.evaluate else 0)


def _sealed_optimizer(seen: set[str], given: dict[str, set[str]]):
    """opt.optimize, recording every prompt id it is given or asks to score."""

    def run(**kwargs: Any) -> opt.OptimizeResult:
        given["train"] = {e.id for e in kwargs["train"]}
        given["validation"] = {e.id for e in kwargs["validation"]}
        evaluate, many = kwargs["evaluate"], kwargs.get("evaluate_many")

        def spy(prompt: TunedPrompt, examples: Sequence[opt.Example]) -> list[float]:
            seen.update(e.id for e in examples)
            return evaluate(prompt, examples)

        def spy_many(work: Sequence[tuple[TunedPrompt, Sequence[opt.Example]]]) -> list[list[float]]:
            for _, examples in work:
                seen.update(e.id for e in examples)
            return many(work)

        return opt.optimize(**{**kwargs, "evaluate": spy, "evaluate_many": spy_many if many else None})

    return run


def _winner_stage(optimization: dict[str, Any]) -> str | None:
    """Which stage of the optimiser produced the frozen prompt: baseline (no change), demos or instruction."""
    for record in optimization.get("history", []):
        if record.get("prompt_hash") == optimization.get("best_hash"):
            return record.get("stage")
    return None


def run_task(spec: Spec, job: Job, root: Path) -> dict[str, Any]:
    """One fresh task, end to end, and the seal checks."""
    seed = job.seed
    profile = candidate_profile(spec.family, job.ceiling)
    emulator = make_emulator(seed, profile)
    data = load_emulator_family(spec.family, job.size, seed=seed, baseline_model=BASELINE)
    config = ProveConfig(task=spec.family, baseline_model=BASELINE, candidate_models=(CANDIDATE,), margin=DELTA,
                         alpha=ALPHA, n_max=job.size, seed=seed, scoring=spec.mode, optimize=True,
                         max_prompt_candidates=MAX_PROMPT_CANDIDATES, minibatch=MINIBATCH)
    seen: set[str] = set()
    given: dict[str, set[str]] = {}
    run_dir = root / f"task-{seed}"
    started = time.perf_counter()
    out = prove(config, data, emulator.client(), run_dir=run_dir, optimizer=_sealed_optimizer(seen, given),
                sleep=_no_sleep, table=emulator.table)
    wall = time.perf_counter() - started
    cert = out.certificate
    cand = cert["candidates"][0]
    test_ids = set(cert["splits"]["test"])
    by_id = {i.id: i for i in data.items}
    test_inputs = {by_id[i].input_text for i in test_ids}
    prompt = prompt_from_certificate(cand)
    result = cand.get("result") or {}
    optimization = cand.get("optimization") or {}
    row = {
        "scoring": job.scoring, "case": job.case, "size": job.size, "index": job.index, "seed": seed,
        "verdict": cand["verdict"], "stopped_by": cand["stopped_by"], "n_used": cand["n_used"],
        "test_size": len(test_ids), "train_size": len(cert["splits"]["train"]),
        "validation_size": len(cert["splits"]["validation"]),
        "estimate": result.get("estimate"), "estimate_unit": result.get("estimate_unit"),
        "lower_bound": result.get("lower_bound"),
        "validation_mean": optimization.get("validation_mean"),
        "plain_validation_mean": optimization.get("baseline_mean"),
        "demos": len(prompt.demos), "winner_stage": _winner_stage(optimization),
        "prompt_hash": cand["prompt_hash"], "evaluated_by_plan": job.evaluate,
        # the seal: nothing the optimiser saw or was given is a test prompt, no demo is a test prompt, and the
        # test observed only test prompts
        "optimiser_scored_test": len(seen & test_ids),
        "optimiser_given_test": len((given.get("train", set()) | given.get("validation", set())) & test_ids),
        "demo_is_test": sum(d.input in test_inputs for d in prompt.demos),
        "observed_outside_test": sum(o["id"] not in test_ids for o in cand["observations"]),
        "wall_s": wall,
    }
    shutil.rmtree(run_dir, ignore_errors=True)
    if job.evaluate or (job.case == "null" and row["verdict"] == "switch"):  # every wrong switch is looked at
        row["population_mean_unit"], row["population_se_unit"] = population_mean(spec, job, prompt)
    return row


_ROOT: Path | None = None


def population_mean(spec: Spec, job: Job, prompt: TunedPrompt) -> tuple[float, float]:
    """The frozen prompt's mean score on a fresh sample of its own (a seed no task or calibration uses), answered
    by an emulator with the task's candidate profile: an unbiased look at the population the test is about."""
    assert _ROOT is not None
    seed = seed_of("evaluation", job.scoring, job.case, job.size, job.index)
    path = _ROOT / f"eval-{seed}"
    try:
        return SampleScorer(spec, spec.eval_n, seed, candidate_profile(spec.family, job.ceiling), path).mean(prompt)
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _worker_init(root: str) -> None:
    global _ROOT
    _ROOT = Path(root)


def _work(job: Job) -> dict[str, Any]:
    assert _ROOT is not None
    try:
        return run_task(SPECS[job.scoring], job, _ROOT)
    except Exception as exc:  # a crashed task is reported, never silently dropped
        return {**asdict(job), "seed": job.seed, "error": f"{type(exc).__name__}: {exc}"}


# --------------------------------------------------------------------------------------------------------------
# Summaries
# --------------------------------------------------------------------------------------------------------------


def clopper_pearson_upper(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """(two-sided exact 95% interval's upper end, one-sided exact 95% upper bound) for k of n."""
    from scipy.stats import beta, binomtest

    two_sided = binomtest(k, n).proportion_ci(confidence_level=level, method="exact").high if n else 1.0
    one_sided = float(beta.ppf(level, k + 1, n - k)) if k < n else 1.0
    return float(two_sided), one_sided


def _quantile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))])


def summarise(rows: list[dict[str, Any]], spec: Spec, case: str, size: int) -> dict[str, Any]:
    ok = [r for r in rows if "error" not in r]
    errors = [r for r in rows if "error" in r]
    k = sum(r["verdict"] == "switch" for r in ok)
    n = len(ok)
    upper2, upper1 = clopper_pearson_upper(k, n)
    used = [r["n_used"] for r in ok]
    switched_used = [r["n_used"] for r in ok if r["verdict"] == "switch"]
    planned = [r for r in ok if r.get("evaluated_by_plan") and "population_mean_unit" in r]
    pop = [r["population_mean_unit"] for r in planned]
    pop_se = [r["population_se_unit"] for r in planned]
    val = [r["validation_mean"] for r in planned if r.get("validation_mean") is not None]
    switched_pop = [spec.to_scale(r["population_mean_unit"]) for r in ok
                    if r["verdict"] == "switch" and "population_mean_unit" in r]
    return {
        "scoring": spec.name, "family": spec.family, "case": case, "size": size, "tasks": n, "errors": len(errors),
        "error_examples": [r["error"] for r in errors[:3]],
        "switches": k, "switch_rate": k / n if n else None,
        "cp95_upper_two_sided": upper2, "cp95_upper_one_sided": upper1,
        "verdicts": dict(Counter(r["verdict"] for r in ok)),
        "test_size_mean": statistics.fmean(r["test_size"] for r in ok) if ok else None,
        "n_used_median": statistics.median(used) if used else None, "n_used_p90": _quantile(used, 0.9),
        "n_used_median_switched": statistics.median(switched_used) if switched_used else None,
        "n_used_p90_switched": _quantile(switched_used, 0.9),
        "winner_stage": dict(Counter(str(r["winner_stage"]) for r in ok)),
        "population_tasks": len(pop),
        "population_mean_unit": statistics.fmean(pop) if pop else None,
        "population_mean": spec.to_scale(statistics.fmean(pop)) if pop else None,
        "population_min": spec.to_scale(min(pop)) if pop else None,
        "population_max": spec.to_scale(max(pop)) if pop else None,
        "population_se_of_mean": (math.sqrt(sum(s * s for s in pop_se)) / len(pop_se)
                                  * (2.0 if spec.mode == "paired-gold" else 1.0)) if pop_se else None,
        "validation_mean_of_evaluated": spec.to_scale(statistics.fmean(val)) if val else None,
        "switched_population_means": switched_pop,
        "boundary": spec.to_scale(spec.mu0),
        "seal_violations": sum(r["optimiser_scored_test"] + r["optimiser_given_test"] + r["demo_is_test"]
                               + r["observed_outside_test"] for r in ok),
        "wall_s_mean": statistics.fmean(r["wall_s"] for r in ok) if ok else None,
    }


def _fmt(value: Any, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def print_tables(summaries: list[dict[str, Any]], calibrations: dict[str, Any], elapsed: float) -> None:
    print()
    print(f"parity prove end to end on the emulator (SIMULATED models and judge): alpha = {ALPHA}, delta = {DELTA}, "
          f"max_prompt_candidates = {MAX_PROMPT_CANDIDATES}, n_max = test split")
    for name, cal in calibrations.items():
        styles = ", ".join(f"{k} {SPECS[name].to_scale(v['mean']):+.3f}" if SPECS[name].mode == "paired-gold"
                           else f"{k} {v['mean']:.3f}" for k, v in cal["styles_at_ceiling"].items())
        print(f"  null ceiling ({name}, {cal['family']}): {cal['ceiling']:.4f}, calibrated on {cal['calibration_n']} "
              f"fresh prompts to {cal['target']:+.3f}; styles there: {styles}")
        print(f"  power ceiling ({name}): {cal['baseline_accuracy']:.4f} (the baseline's own accuracy)")
    print()
    print("Null case: the tuned candidate is worse than the baseline by delta on the population (H0 holds)")
    head = (f"{'scoring':<7} {'size':>5} {'test':>5} {'tasks':>5} {'switch':>6} {'rate':>6} {'CP95 up':>7} "
            f"{'(1-sided)':>9} {'test alone':>10} {'boundary':>8} {'tuned pop. mean ± SE (min..max, n)':>38} "
            f"{'val. mean':>9} {'seal':>4} {'err':>3}")
    print(head)
    print("-" * len(head))
    for s in (s for s in summaries if s["case"] == "null"):
        pop = (f"{s['population_mean']:+.3f}±{s['population_se_of_mean']:.3f} ({s['population_min']:+.3f}.."
               f"{s['population_max']:+.3f}, {s['population_tasks']})") if s["population_tasks"] else "-"
        flag = "  <-- above alpha" if s["cp95_upper_two_sided"] > ALPHA else ""
        print(f"{s['scoring']:<7} {s['size']:>5} {_fmt(s['test_size_mean'], '.0f'):>5} {s['tasks']:>5} "
              f"{s['switches']:>6} {_fmt(s['switch_rate'], '.3f'):>6} {s['cp95_upper_two_sided']:>7.3f} "
              f"{s['cp95_upper_one_sided']:>9.3f} {_fmt(s.get('eprocess_alone_rate')):>10} "
              f"{s['boundary']:>+8.3f} {pop:>38} "
              f"{_fmt(s['validation_mean_of_evaluated'], '+.3f'):>9} {s['seal_violations']:>4} {s['errors']:>3}{flag}")
    for s in (s for s in summaries if s["case"] == "null" and s["switched_population_means"]):
        means = ", ".join(f"{m:+.3f}" for m in s["switched_population_means"])
        print(f"  {s['scoring']} size {s['size']}: the switched tasks' tuned prompts score {means} on fresh prompts")
    print("(gold scores are mean D = candidate − baseline accuracy, boundary −δ; judge scores are the mean judged "
          "score, boundary ½ − δ; 'test alone' is the sequential test's own false-switch rate on scores drawn at the "
          "boundary, 20,000 paths of the test split's length; 'val. mean' is the optimiser's validation score of "
          "the same tuned prompts)")
    power = [s for s in summaries if s["case"] == "power"]
    if power:
        print()
        print("Power case: the candidate's ceiling is the baseline's own accuracy")
        head = (f"{'scoring':<7} {'size':>5} {'test':>5} {'tasks':>5} {'switch':>6} {'rate':>6} {'n med':>6} "
                f"{'n p90':>6} {'n med|sw':>8} {'tuned pop. mean (n)':>20} {'verdicts':<40}")
        print(head)
        print("-" * len(head))
        for s in power:
            pop = f"{_fmt(s['population_mean'], '+.3f')} ({s['population_tasks']})" if s["population_tasks"] else "-"
            verdicts = ", ".join(f"{k} {v}" for k, v in sorted(s["verdicts"].items()))
            print(f"{s['scoring']:<7} {s['size']:>5} {_fmt(s['test_size_mean'], '.0f'):>5} {s['tasks']:>5} "
                  f"{s['switches']:>6} {_fmt(s['switch_rate'], '.3f'):>6} {_fmt(s['n_used_median'], '.0f'):>6} "
                  f"{_fmt(s['n_used_p90'], '.0f'):>6} {_fmt(s['n_used_median_switched'], '.0f'):>8} {pop:>20} "
                  f"{verdicts:<40}")
    print(f"\ntotal wall time {elapsed / 60:.1f} min")


# --------------------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=200, help="null-case tasks per size and scoring")
    parser.add_argument("--power-tasks", type=int, default=40, help="power-case tasks per size and scoring")
    parser.add_argument("--first-task", type=int, default=0,
                        help="index of the first task (seeds follow the index): extend an earlier run with new tasks")
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 400])
    parser.add_argument("--scorings", nargs="+", default=list(SPECS), choices=list(SPECS))
    parser.add_argument("--eval-tasks", type=int, default=None,
                        help="null tasks per size whose tuned prompt's population mean is measured "
                             "(default: 20 gold, 10 judge)")
    parser.add_argument("--power-eval-tasks", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2, help="processes (at most 2)")
    parser.add_argument("--out", type=Path, default=Path("out/pipeline_validity.json"),
                        help="the JSON of every task and summary (out/ is git-ignored)")
    parser.add_argument("--calibration-n", type=int, default=None,
                        help="fresh prompts for the calibration (default: 3000 gold, 1600 judge)")
    parser.add_argument("--calibration", type=Path, default=None,
                        help="reuse the calibration stored in an earlier --out file (same brains only)")
    args = parser.parse_args(argv)
    if args.out.is_dir():  # a folder: the results go in it (found before the run, not after it)
        args.out = args.out / "pipeline_validity.json"
    workers = max(1, min(2, args.workers))
    started = time.perf_counter()
    digest = code_digest()

    def jobs_for(name: str, cal: dict[str, Any]) -> list[Job]:
        eval_tasks = SPECS[name].eval_tasks if args.eval_tasks is None else args.eval_tasks
        out = []
        for size in args.sizes:
            first = args.first_task
            out += [Job(name, "null", size, i, cal["ceiling"], i - first < eval_tasks)
                    for i in range(first, first + args.tasks)]
            out += [Job(name, "power", size, i, cal["baseline_accuracy"], i - first < args.power_eval_tasks)
                    for i in range(first, first + args.power_tasks)]
        return sorted(out, key=lambda j: -j.cost)  # the longest first, so the workers finish together

    stored = json.loads(args.calibration.read_text())["calibration"] if args.calibration else {}
    calibrations: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    total = len(args.scorings) * len(args.sizes) * (args.tasks + args.power_tasks)
    step = max(1, total // 50)
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="parity-validity-") as tmp, \
            ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init, initargs=(tmp,)) as pool:
        pending: dict[Future, tuple[str, Any]] = {}
        for name in args.scorings:
            if name in stored:
                calibrations[name] = stored[name]
                pending.update({pool.submit(_work, job): ("task", job) for job in jobs_for(name, stored[name])})
            else:
                print(f"calibrating the null ceiling for {name} ...", file=sys.stderr, flush=True)
                pending[pool.submit(calibrate, name, args.calibration_n)] = ("calibration", name)
        t0 = time.perf_counter()
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                kind, what = pending.pop(future)
                if kind == "calibration":
                    calibrations[what] = cal = future.result()
                    print(f"  {what}: null ceiling {cal['ceiling']:.4f} ({cal['wall_s']:.0f}s); submitting its "
                          "tasks", file=sys.stderr, flush=True)
                    pending.update({pool.submit(_work, job): ("task", job) for job in jobs_for(what, cal)})
                    continue
                row = future.result()
                rows.append(row)
                if "error" in row:
                    print(f"  task failed: {row['scoring']} {row['case']} size {row['size']} #{row['index']}: "
                          f"{row['error']}", file=sys.stderr, flush=True)
                if len(rows) % step == 0 or len(rows) == total:
                    spent = time.perf_counter() - t0
                    wrong = sum(r.get("verdict") == "switch" for r in rows if r.get("case") == "null")
                    print(f"  [{spent / 60:5.1f} min] {len(rows)}/{total} tasks, {wrong} null switches so far, "
                          f"ETA {spent / len(rows) * (total - len(rows)) / 60:.1f} min", file=sys.stderr, flush=True)

    summaries = []
    for name in args.scorings:
        for case in ("null", "power"):
            for size in args.sizes:
                subset = [r for r in rows if r["scoring"] == name and r["case"] == case and r["size"] == size]
                if subset:
                    summaries.append(summarise(subset, SPECS[name], case, size))
    for summary in summaries:
        cal = calibrations.get(summary["scoring"], {})
        if summary["case"] == "null" and cal.get("score_distribution") and summary["test_size_mean"]:
            summary["eprocess_alone_rate"] = eprocess_alone(SPECS[summary["scoring"]], cal["score_distribution"],
                                                            round(summary["test_size_mean"]))
    elapsed = time.perf_counter() - started
    report = {
        "simulated": True,
        "code_digest": digest,
        "code_digest_at_end": code_digest(),  # differs when someone edited parity/ during the run
        "settings": {"alpha": ALPHA, "delta": DELTA, "baseline": BASELINE, "candidate": CANDIDATE,
                     "max_prompt_candidates": MAX_PROMPT_CANDIDATES, "minibatch": MINIBATCH,
                     "demo_gain": DEMO_GAIN, "instruction_gain": INSTRUCTION_GAIN, "base_gap": BASE_GAP,
                     "n_max": "test split size", "sizes": args.sizes, "tasks": args.tasks,
                     "power_tasks": args.power_tasks, "first_task": args.first_task, "workers": workers,
                     "scorings": {k: asdict(SPECS[k]) for k in args.scorings}},
        "calibration": calibrations,
        "summary": summaries,
        "tasks": sorted(rows, key=lambda r: (r["scoring"], r["case"], r["size"], r["index"])),
        "wall_s": elapsed,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, default=str))
    print_tables(summaries, calibrations, elapsed)
    if report["code_digest_at_end"] != digest:
        print("WARNING: parity/ changed while the bench ran; rerun for numbers from one version of the code")
    print(f"results: {args.out} (code {digest})")
    bad = [s for s in summaries if s["case"] == "null" and s["cp95_upper_two_sided"] > ALPHA]
    leaks = sum(s["seal_violations"] for s in summaries)
    errors = sum(s["errors"] for s in summaries)
    return 1 if bad or leaks or errors else 0


if __name__ == "__main__":
    sys.exit(main())
