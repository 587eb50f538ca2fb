"""Cost control of a proof: Message Batches by default (half price) with the judge's fixed prefixes cached,
`sync` for interactive runs, a budget that is never exceeded, and a run directory that resumes a run killed
mid-way to the identical certificate without paying for any call twice."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from parity.emulator.brains.simulated import SimulatedBrain
from parity.emulator.service import Emulator
from parity.errors import InputError
from parity.policy import TaskPolicy, apply_prompt
from parity.pricing import cost
from parity.proof import certificate as certs
from parity.proof.calls import BudgetExhausted, Call, Caller, estimate_cost
from parity.emulator.workloads import load_emulator_family
from parity.proof.judge import PairToJudge
from parity.proof.judging import Judge
from parity.proof.runner import ProveConfig, fill_baseline_outputs, prove

BASELINE, CANDIDATE = "claude-opus-4-8", "claude-haiku-4-5"


class CountingBrain:
    """The simulated brain, counting what the emulator answered: the calls a real API would bill."""

    name = "counting"

    def __init__(self):
        self.inner = SimulatedBrain(seed=0)
        self.answered = 0

    def reply(self, request):
        self.answered += 1
        return self.inner.reply(request)


def _emulator() -> tuple[Emulator, CountingBrain]:
    brain = CountingBrain()
    emulator = Emulator(brain=brain, seed=0)
    emulator.batches.processing_s = "instant"
    return emulator, brain


def _triage(n: int = 160):
    return load_emulator_family("ticket_triage", n, seed=5, baseline_model=BASELINE)


def _config(**kw) -> ProveConfig:
    base = dict(task="triage", baseline_model=BASELINE, candidate_models=(CANDIDATE,), n_max=60, margin=0.1,
                max_prompt_candidates=8)
    return ProveConfig(**{**base, **kw})


def _calls(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "calls.jsonl").read_text().splitlines()]


# --------------------------------------------------------------------------------------------------------------
# Batches by default, sync on request
# --------------------------------------------------------------------------------------------------------------


def test_batches_by_default_at_half_the_price_of_sync(tmp_path):
    data = _triage(120)
    batch = prove(_config(max_prompt_candidates=4), data, _emulator()[0].client(), run_dir=tmp_path / "batch")
    sync = prove(_config(max_prompt_candidates=4, sync=True), data, _emulator()[0].client(), run_dir=tmp_path / "sync")
    assert all(c["batch"] and c["usage"]["service_tier"] == "batch" for c in _calls(tmp_path / "batch"))
    assert not any(c["batch"] for c in _calls(tmp_path / "sync"))
    assert all(c["usage"]["service_tier"] == "standard" for c in _calls(tmp_path / "sync"))
    # the same calls, answered the same way: the batch run's bill is exactly half
    assert batch.candidates[0].verdict == sync.candidates[0].verdict
    assert batch.spent * 2 == sync.spent > 0
    proof_cost = batch.certificate["cost"]["proof"]
    assert Decimal(proof_cost["spent"]) == batch.spent and batch.certificate["parameters"]["batch"] is True
    assert sync.certificate["parameters"]["batch"] is False
    # the per-request costs before and after are production (standard) prices either way
    assert batch.certificate["cost"]["candidate_per_request"] == sync.certificate["cost"]["candidate_per_request"]


def test_judge_calls_read_their_fixed_prefix_from_the_cache(tmp_path):
    data = load_emulator_family("thread_summary", 120, seed=5, baseline_model=BASELINE)
    out = prove(_config(task="summary", max_prompt_candidates=4, minibatch=8), data, _emulator()[0].client(),
                run_dir=tmp_path / "run")
    judge = [c for c in _calls(tmp_path / "run") if c["purpose"] == "judge"]
    assert out.certificate["scoring"]["mode"] == "judge" and len(judge) > 100
    assert all(c["usage"]["service_tier"] == "batch" for c in judge)
    reads = [c["usage"]["cache_read_input_tokens"] for c in judge]
    assert sum(r > 0 for r in reads) >= len(judge) - 1  # every judge call but the very first
    # what the cache saved is real: the same calls without it would have cost more
    cached = sum(Decimal(c["cost"]) for c in judge)
    uncached = Decimal(0)
    for c in judge:
        usage = dict(c["usage"])
        usage["input_tokens"] += usage.pop("cache_read_input_tokens") + usage.pop("cache_creation_input_tokens")
        usage.pop("cache_creation", None)
        uncached += cost(c["model"], usage, batch=True).total
    assert cached < Decimal("0.5") * uncached


# --------------------------------------------------------------------------------------------------------------
# The budget
# --------------------------------------------------------------------------------------------------------------


def test_estimates_are_upper_bounds_on_what_calls_cost(tmp_path):
    emulator, _ = _emulator()
    client = emulator.client()
    caller = Caller(client, tmp_path, sync=True)
    for family in ("ticket_triage", "thread_summary", "invoice_extraction", "math_reasoning"):
        for item in load_emulator_family(family, 6, seed=1, baseline_model=BASELINE).items:
            for model in (BASELINE, CANDIDATE):
                params = {**item.request, "model": model}
                result = caller.one(Call("candidate", params))
                assert result.cost <= estimate_cost(params, batch=False)
                assert estimate_cost(params, batch=True) * 2 == estimate_cost(params, batch=False)
    # a judge call estimated before the candidate's answer exists covers the call made once it does
    item = load_emulator_family("thread_summary", 1, seed=2, baseline_model=BASELINE).items[0]
    answer = caller.one(Call("candidate", {**item.request, "model": CANDIDATE})).text
    base = caller.one(Call("baseline", item.request)).text
    judge = Judge(caller, BASELINE)
    worst = judge.worst_case([PairToJudge(item.id, item.request, base, "")], answer_tokens=item.request["max_tokens"])
    before = caller.spend.total
    judge.judge([PairToJudge(item.id, item.request, base, answer)])
    assert Decimal(0) < caller.spend.total - before <= worst


def _logged_triage(tmp_path, n: int = 160):
    """Triage prompts with the baseline's answers already logged, so a budget is spent on the proof alone."""
    data = _triage(n)
    return data.with_items(fill_baseline_outputs(Caller(_emulator()[0].client(), tmp_path / "log"), BASELINE,
                                                 data.items))


def test_the_budget_is_never_exceeded_and_stops_inconclusive(tmp_path):
    data = _logged_triage(tmp_path)
    full = prove(_config(optimize=False), data, _emulator()[0].client(), run_dir=tmp_path / "full")
    assert full.candidates[0].stopped_by != "budget" and full.candidates[0].n_used > 20
    budget = (full.spent / 2).quantize(Decimal("0.000001"))
    emulator, brain = _emulator()
    out = prove(_config(optimize=False, budget_usd=budget), data, emulator.client(), run_dir=tmp_path / "budget")
    cand = out.candidates[0]
    assert out.spent <= budget and Decimal(out.certificate["cost"]["proof"]["spent"]) == out.spent
    assert cand.verdict == "inconclusive" and cand.stopped_by == "budget" and 0 < cand.n_used
    assert out.certificate["decision"]["verdict"] == "inconclusive" and out.policy_entry is None
    # it stopped at the limit, not early: one more test prompt's worst case would not have fitted
    nxt = next(i for i in data.items if i.id == cand.order[cand.n_used])
    policy = TaskPolicy("triage", "route", BASELINE, CANDIDATE, prompt=cand.prompt)
    assert budget - out.spent < estimate_cost(apply_prompt(nxt.request, policy), batch=True)
    assert certs.verify(out.certificate_path).ok  # a budget stop is part of the evidence, and checks out


def test_budgets_anywhere_in_a_run_are_respected(tmp_path):
    data = _triage()
    # the baseline's answers alone could cost up to this much: a smaller budget sends nothing at all
    floor = sum((estimate_cost(i.request, batch=True) for i in data.items), Decimal(0))
    emulator, brain = _emulator()
    out = prove(_config(budget_usd=floor - Decimal("0.001")), data, emulator.client(), run_dir=tmp_path / "none")
    assert out.network_calls == 0 and brain.answered == 0 and out.spent == 0
    assert out.candidates[0].verdict == "inconclusive" and "budget reached before the test" in out.candidates[0].notes[0]
    # budgets that run out while the prompt is being tuned: the search stops with the best prompt so far, says
    # so in the certificate, and the test runs on what is left (or stops inconclusive when nothing is)
    logged = _logged_triage(tmp_path)
    for budget in (Decimal("0.05"), Decimal("0.08")):
        out = prove(_config(budget_usd=budget), logged, _emulator()[0].client(), run_dir=tmp_path / str(budget))
        cand = out.candidates[0]
        assert out.spent <= budget
        assert cand.optimization["stopped"].startswith("stopped: budget")
        assert any(note.startswith("optimisation stopped: budget") for note in cand.notes)
        assert cand.verdict == "inconclusive" if cand.stopped_by in ("budget", "n_max") else cand.stopped_by != "budget"


def test_a_wave_that_could_pass_the_budget_is_not_sent(tmp_path):
    emulator, brain = _emulator()
    items = load_emulator_family("ticket_triage", 8, seed=1, baseline_model=BASELINE).items
    calls = [Call("baseline", i.request) for i in items]
    worst = sum((estimate_cost(c.params, batch=True) for c in calls), Decimal(0))
    caller = Caller(emulator.client(), tmp_path, budget_usd=worst - Decimal("0.000001"))
    with pytest.raises(BudgetExhausted, match="budget"):
        caller.run(calls)
    assert brain.answered == 0 and caller.spend.total == 0
    results = caller.run(calls[:4])  # a smaller wave fits
    assert brain.answered == 4 and caller.spend.total == sum((r.cost for r in results), Decimal(0)) <= caller.spend.limit


# --------------------------------------------------------------------------------------------------------------
# Resuming from the run directory
# --------------------------------------------------------------------------------------------------------------


class Interrupt:
    """Ctrl-C at the n-th use of one client method (before it does anything), once."""

    def __init__(self, client, path: str, at: int):
        owner = client.messages
        for part in path.split(".")[:-1]:
            owner = getattr(owner, part)
        self.owner, self.name, self.at, self.seen = owner, path.split(".")[-1], at, 0
        self.original = getattr(owner, self.name)
        setattr(owner, self.name, self)

    def __call__(self, *args, **kwargs):
        self.seen += 1
        if self.seen == self.at:
            setattr(self.owner, self.name, self.original)  # the process "restarts" with a normal client
            raise KeyboardInterrupt
        return self.original(*args, **kwargs)


def _evidence(cert: dict) -> dict:
    """A certificate without its provenance (creation time, upstream ids), which two runs of one proof differ in."""
    body = {k: v for k, v in cert.items() if k not in ("created_at", "upstream")}
    body["candidates"] = [{**c, "observations": [{k: v for k, v in o.items() if k != "upstream_ids"}
                                                 for o in c["observations"]]} for c in cert["candidates"]]
    return body


@pytest.mark.parametrize("sync, where, at", [
    (False, "batches.create", 4),    # killed between two batches
    (False, "batches.retrieve", 6),  # killed while a submitted batch was being polled: it is collected, not resent
    (True, "create", 130),           # killed between two synchronous calls
])
def test_a_killed_run_resumes_to_the_identical_certificate(tmp_path, sync, where, at):
    data = _triage(120)
    config = _config(sync=sync, max_prompt_candidates=4)
    emulator, brain = _emulator()
    whole = prove(config, data, emulator.client(), run_dir=tmp_path / "whole")
    paid = brain.answered

    emulator, brain = _emulator()
    client = emulator.client()
    hook = Interrupt(client, where, at)
    with pytest.raises(KeyboardInterrupt):
        prove(config, data, client, run_dir=tmp_path / "killed")
    assert hook.seen == at and 0 < brain.answered < paid
    assert not (tmp_path / "killed" / "certificate.json").exists()
    if where == "batches.retrieve":
        assert list((tmp_path / "killed" / "batches").glob("*.json"))  # the batch in flight was written down
    resumed = prove(config, data, client, run_dir=tmp_path / "killed")
    assert brain.answered == paid  # every call was paid for exactly once across the two processes
    assert resumed.certificate["id"] == whole.certificate["id"]
    # the same evidence, the same id; where each call was made (its upstream ids) differs between the two runs
    assert _evidence(resumed.certificate) == _evidence(whole.certificate)
    assert resumed.certificate["upstream"]["answers"] == whole.certificate["upstream"]["answers"] > 0
    assert resumed.spent == whole.spent
    # and once finished, running it again sends nothing and issues the same certificate
    again = prove(config, data, client, run_dir=tmp_path / "killed")
    assert again.network_calls == 0 and brain.answered == paid
    assert again.certificate == resumed.certificate


def test_a_budget_stop_resumes_with_a_larger_budget_without_paying_twice(tmp_path):
    data = _logged_triage(tmp_path)
    emulator, brain = _emulator()
    whole = prove(_config(optimize=False), data, emulator.client(), run_dir=tmp_path / "whole")
    paid = brain.answered
    emulator, brain = _emulator()
    client = emulator.client()
    first = prove(_config(optimize=False, budget_usd=whole.spent / 2), data, client, run_dir=tmp_path / "run")
    assert first.candidates[0].stopped_by == "budget" and 0 < brain.answered < paid
    # the budget is not part of the run's identity: the same run directory goes on with more money
    more = prove(_config(optimize=False, budget_usd=Decimal("5")), data, client, run_dir=tmp_path / "run")
    assert brain.answered == paid and more.candidates[0].verdict == whole.candidates[0].verdict
    assert _evidence(more.certificate)["candidates"] == _evidence(whole.certificate)["candidates"]


def test_a_run_directory_is_never_mixed_with_other_settings(tmp_path):
    data = _triage(120)
    prove(_config(n_max=20), data, _emulator()[0].client(), run_dir=tmp_path / "run")
    with pytest.raises(InputError, match="other settings"):
        prove(_config(n_max=30), data, _emulator()[0].client(), run_dir=tmp_path / "run")
