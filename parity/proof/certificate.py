"""The certificate: the evidence for a proof, as JSON a program re-checks offline and HTML a person reads.

The JSON holds everything needed to recompute the verdict without calling a model: every per-prompt score in
the order the test saw it, the judge's replies for both orders, the scorers' inputs, the test's parameters, the
seeds, the splits, the prompt hashes and the upstream request id of every answer used. `verify(path)`
recomputes each per-prompt score from the stored judge replies or scorer inputs, the streamed order from the
seed, and the verdict from the scores, and checks the certificate id (a hash of the evidence), so an edited
certificate does not verify. A signature (`parity.proof.signing`) adds who issued it: without one, someone who
rewrites the evidence consistently and re-hashes the id is not caught.

The claim is about a population, never only the sample (DESIGN): the hypothesis names "prompts of this task drawn
like the test split". A finite-pool run (the test's `pool_size` set) proves something about those N prompts
only, and `can_route` refuses it.

The cost block counts what routing really costs: the candidate's answers, the baseline again for the answers
that break the output contract (the gateway falls back), and the drift watch's shadow sample.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from parity.canonical import canonical_hash
from parity.errors import InputError, ParityError
from parity.files import write_atomic
from parity.policy import Contract
from parity.pricing import PriceTable, format_usd
from parity.proof.calls import Spend, request_key
from parity.proof.data import ProofItem, Splits, TaskData
from parity.proof.judge import Judgment, order_score, same_answer
from parity.proof.records import CandidateOutcome, ProveConfig
from parity.proof.routing_cost import (
    PLACES,
    RoutingCost,
    contract_failures,
    default_shadow_rate,
    judge_call_cost,
    routing_cost,
    routing_cost_of,
)
from parity.proof.scoring import Scoring
from parity.proof.sequential import hypothesis, run_sequential
from parity.proof.signing import SigningKey, check_signature, load_signing_key, sign
from parity.proof.upstream import upstream_ids, upstream_summary, with_upstream

FORMAT = "parity-certificate"
VERSION = 2
SUPPORTED_VERSIONS = (1, 2)
"""Version 2 added the population, upstream ids, routing cost and signature; version 1 files still verify."""
VOLATILE = ("id", "created_at", "run_dir", "signature", "upstream")
"""Left out of the id: the same evidence gathered at another time or place, or signed by another key, is the same
certificate. The upstream ids (top-level `upstream`, each observation's `upstream_ids`) say where the calls were
made, not what they showed, so they are provenance: a resumed run and an uninterrupted one issue the same id. The
signature covers them."""
PROVENANCE = "upstream_ids"
POPULATION = "prompts of this task drawn like the test split"
SIMULATED_NOTE = ("SIMULATED: every model answer and judgment in this certificate came from the Parity emulator, "
                  "not from a real Claude model. It shows the method; it proves nothing about real models. The "
                  "simulated judge is biased like real ones (position, length, confidently wrong on hard items); its "
                  "instruction repair writes only the fixed rule sentences of its task families for the mistakes it is "
                  "shown, so a real proposer may find more or less.")
SigningKeyArg = SigningKey | None | Literal["env"]


def _dec(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _prompt_dict(prompt: Any) -> dict[str, Any]:
    return {"system": prompt.system, "demos": [{"input": d.input, "output": d.output} for d in prompt.demos]}


def certificate_id(cert: Mapping[str, Any]) -> str:
    """"cert_" + 20 hex digits of SHA-256 over the evidence (everything but the volatile fields)."""
    body = {k: v for k, v in cert.items() if k not in VOLATILE}
    body["candidates"] = [{**c, "observations": [{k: v for k, v in o.items() if k != PROVENANCE}
                                                 for o in c.get("observations") or []]}
                          for c in body.get("candidates") or []]
    return "cert_" + canonical_hash(body, 20)


def proof_share(proof_cost: Decimal, monthly_saving: Decimal | None) -> Decimal | None:
    """What the proof cost as a share of one month's projected saving (1 = the first month's saving pays for it);
    None when routing saves nothing."""
    if monthly_saving is None or monthly_saving <= 0:
        return None
    return (proof_cost / monthly_saving).quantize(Decimal("0.0001"))


def demonstrations_cost(optimization: Mapping[str, Any] | None) -> Decimal | None:
    """What the tuned prompt adds to each routed request over the team's bare prompt, as measured while tuning
    (the demonstrations and longer instructions are sent every time); None when not measured."""
    if not optimization:
        return None
    tuned, bare = optimization.get("cost_per_request"), optimization.get("base_prompt_cost_per_request")
    if tuned is None or bare is None:
        return None
    return (Decimal(str(tuned)) - Decimal(str(bare))).quantize(Decimal("1e-9"))


def _overall(outcomes: Sequence[CandidateOutcome], chosen: CandidateOutcome | None) -> str:
    if chosen is not None:
        return "switch"
    if outcomes and all(o.verdict == "do_not_switch" for o in outcomes):
        return "do_not_switch"
    return "inconclusive"


def _where(pool_size: int | None) -> str:
    """The population a verdict speaks about, as the end of a sentence."""
    if pool_size is not None:
        return (f"the {pool_size} prompts of the test split only (a finite-pool test: it proves nothing about other "
                "prompts, so it cannot back a route)")
    return POPULATION


def _summary(verdict: str, chosen: CandidateOutcome | None, baseline: str, margin: float,
             pool_size: int | None = None) -> str:
    if verdict == "switch" and chosen is not None:
        return (f"Switch: {chosen.model} with the tuned prompt is at least as good as {baseline} within a margin of "
                f"{margin:g} on {_where(pool_size)} (n = {chosen.n_used} held-out prompts).")
    if verdict == "do_not_switch":
        return f"Do not switch: every candidate is worse than {baseline} by more than the margin of {margin:g}."
    return f"Inconclusive: keep {baseline}. Neither non-inferiority nor inferiority was shown within the limits."


def hypothesis_block(mode: str, margin: float, pool_size: int | None) -> dict[str, Any]:
    """H0 in words with the population it is about: future prompts of the task, or (finite pool) the N tested."""
    statement = hypothesis(mode, margin).statement
    return {"population": POPULATION if pool_size is None else f"the {pool_size} prompts of the test split",
            "finite_pool": pool_size,
            "statement": f"{statement}, the mean taken over {_where(pool_size)}"}


def _pool_size(results: Sequence[Mapping[str, Any] | None]) -> int | None:
    """The finite pool a test was run on, if any (None: the claim is about the population)."""
    return next((r["pool_size"] for r in results if r and r.get("pool_size") is not None), None)


# --------------------------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------------------------


def build(
    *,
    config: ProveConfig,
    manifest: Mapping[str, Any],
    data: TaskData,
    splits: Splits,
    items: Sequence[ProofItem],
    scoring: Scoring,
    judge_model: str | None,
    outcomes: Sequence[CandidateOutcome],
    chosen: CandidateOutcome | None,
    spend: Spend,
    baseline_cost: Decimal | None,
    monthly_requests: int | None,
    contract: Contract,
    proof_at_standard_prices: Decimal | None = None,
    simulated: bool = False,
    calls: Mapping[str, Any] | None = None,
    table: PriceTable | None = None,
    shadow_rate: float | Decimal | None = None,
    signing_key: SigningKeyArg = "env",
) -> dict[str, Any]:
    """The certificate as a JSON-ready dict, its id included, signed when a key is given.

    `simulated`: the calls went to the emulator (a certificate is simulated when this is true or the prompts
    were generated). `calls`: the run's call results by request key (`CallResult`s): where the upstream ids,
    stop reasons and judge costs are read from. `shadow_rate`: the drift watch's share (default: the policy's).
    `signing_key`: "env" loads one with `load_signing_key()` (unsigned when none is set), None never signs.
    """
    calls = calls or {}
    by_id = {i.id: i for i in items}
    sim = bool(data.simulated or simulated)
    verdict = _overall(outcomes, chosen)
    pool = _pool_size([o.result for o in outcomes])
    rate = default_shadow_rate() if shadow_rate is None else Decimal(str(shadow_rate))
    cost, fallbacks, judge_how = routing_cost_of(
        chosen.observations if chosen is not None else [], candidate_cost=chosen.cost_per_request if chosen else None,
        baseline_cost=baseline_cost, baseline_model=config.baseline_model, judge_model=judge_model,
        monthly_requests=monthly_requests, contract=contract, calls=calls, items=by_id, table=table,
        shadow_rate=rate)
    gross = baseline_cost - chosen.cost_per_request if (
        baseline_cost is not None and chosen is not None and chosen.cost_per_request is not None) else None
    summary = _summary(verdict, chosen, config.baseline_model, config.margin, pool)
    warnings = [w for o in outcomes for w in (f"{o.model}: {x}" for x in o.diagnostics.warnings)]
    if sim:
        warnings.insert(0, "simulated: " + SIMULATED_NOTE.split(": ", 1)[1])
    if pool is not None:
        warnings.append(f"finite pool: this test proves the candidate only on the {pool} prompts it tested, not on "
                        "the task's future traffic; it cannot back a route")
    if chosen is not None and cost.saving_per_request is not None and cost.saving_per_request <= 0:
        note = (f"routing would not save money: with fallbacks and the drift watch the candidate costs "
                f"{format_usd(cost.net_candidate_per_request)} per request against the baseline's "
                f"{format_usd(baseline_cost)}")
        warnings.append(note)
        summary += f" But {note}."
    candidates = []
    for o in outcomes:
        diagnostics = o.diagnostics.to_dict()
        candidates.append({
            "model": o.model, "verdict": o.verdict, "stopped_by": o.stopped_by, "n_used": o.n_used,
            "result": o.result, "prompt": _prompt_dict(o.prompt), "prompt_hash": o.prompt_hash,
            "optimization": o.optimization, "diagnostics": diagnostics,
            "judge_failures": diagnostics.get("judge_failures", 0),
            "contract_failures": fallbacks if o is chosen else contract_failures(o.observations, contract, calls),
            "order": o.order,
            "observations": [with_upstream(obs, calls, by_id.get(obs["id"]), config.baseline_model)
                             for obs in o.observations],
            "cost_per_request": _dec(o.cost_per_request), "notes": list(o.notes),
        })
    cert: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "id": "",
        "created_at": manifest.get("created_at"),
        "task": config.task,
        "simulated": sim,
        "baseline_model": config.baseline_model,
        "judge_model": judge_model,
        "hypothesis": hypothesis_block(scoring.test_mode, config.margin, pool),
        "scoring": {"mode": scoring.mode, "test_mode": scoring.test_mode, "kind": scoring.kind,
                    "labels": list(scoring.labels), "reference_guided": config.reference_guided},
        "parameters": {
            "margin": config.margin, "alpha": config.alpha, "n_max": config.n_max, "method": config.method,
            "candidates": len(outcomes), "per_candidate_alpha": config.alpha / max(1, len(outcomes)),
            "split_by": config.split_by, "fractions": list(config.fractions),
            "max_prompt_candidates": config.max_prompt_candidates, "minibatch": config.minibatch,
            "optimize": config.optimize, "budget_usd": _dec(config.budget_usd), "batch": not config.sync,
            "pool_size": pool,
        },
        "seeds": {"split": config.seed, "order": config.seed, "optimizer": config.seed},
        "data": {"source": data.source, "n_items": len(items), "rejected_rows": len(data.rejected),
                 "selection": getattr(data, "selection", None),
                 "prompt_hashes": {i.id: request_key(i.request) for i in items}},
        "splits": splits.to_dict(),
        "candidates": candidates,
        "upstream": upstream_summary(candidates),
        "decision": {"verdict": verdict, "candidate": chosen.model if chosen else None, "summary": summary},
        "contract": asdict(contract),
        "cost": {
            "proof": spend.to_dict(),
            "proof_at_standard_prices": _dec(proof_at_standard_prices),
            "baseline_per_request": _dec(baseline_cost),
            "candidate_per_request": _dec(cost.candidate_per_request),
            "gross_saving_per_request": _dec(gross),
            "fallback_rate": _dec(cost.fallback_rate),
            "fallback_cost_per_request": _dec(cost.fallback_cost_per_request),
            "shadow_rate": _dec(cost.shadow_rate),
            "drift_cost_per_request": _dec(cost.drift_cost_per_request),
            "drift_judge_call": judge_how,
            "net_candidate_per_request": _dec(cost.net_candidate_per_request),
            "saving_per_request": _dec(cost.saving_per_request),
            "monthly_requests": monthly_requests,
            "projected_monthly_saving": _dec(cost.projected_monthly_saving),
            "proof_share_of_monthly_saving": _dec(proof_share(spend.total, cost.projected_monthly_saving)),
            "demonstrations_per_request": _dec(demonstrations_cost(chosen.optimization if chosen else None)),
            "note": ("per-request costs are at standard (non-batch) prices, measured on the test prompts; the net "
                     "cost adds the baseline again for answers that break the output contract (the gateway falls "
                     "back) and the drift watch's shadow sample (a baseline answer and two judge calls, at batch "
                     "prices)"),
        },
        "warnings": warnings,
    }
    cert = _jsonable(cert)
    cert["id"] = certificate_id(cert)
    key = load_signing_key() if signing_key == "env" else signing_key
    return sign(cert, key) if isinstance(key, SigningKey) else cert


def _jsonable(value: Any) -> Any:
    """Plain JSON types only (NaN and infinities become null), so the file is strict JSON and round-trips."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Decimal):
        return str(value)
    return value


def dumps(cert: Mapping[str, Any]) -> str:
    return json.dumps(cert, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"


def write_json(cert: Mapping[str, Any], path: str | Path) -> Path:
    """Write atomically (temp file, then rename); `build` already signed the certificate when a key was set."""
    return write_atomic(path, dumps(cert))


def load(path: str | Path) -> dict[str, Any]:
    """Read a certificate file; an InputError when it is not one."""
    name = str(path)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("no such certificate file; `parity prove` writes certificate.json in its run directory",
                         file=name) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc.msg}", file=name, line=exc.lineno) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f"not a Parity certificate (expected \"format\": \"{FORMAT}\")", file=name, field="format")
    if data.get("version") not in SUPPORTED_VERSIONS:
        raise InputError(f"certificate version {data.get('version')!r} is not supported (this Parity reads "
                         f"{', '.join(map(str, SUPPORTED_VERSIONS))}); upgrade Parity", file=name, field="version")
    return data


# --------------------------------------------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CandidateCheck:
    model: str
    stored_verdict: str
    recomputed_verdict: str
    stored_n: int
    recomputed_n: int
    estimate: float | None
    lower_bound: float | None


@dataclass(frozen=True)
class VerifyResult:
    """ok when every check passed; `problems` says what did not, in words.

    `signature`: "unsigned", "verified" (checked against the key given), "intact" (an Ed25519 signature checked
    against the public key it carries: unchanged since signed, signer not checked), "unchecked" (HMAC without
    its secret) or "invalid". `route_problem`: why this certificate cannot back a route (None when it can)."""

    ok: bool
    certificate_id: str
    verdict: str
    recomputed_verdict: str
    candidates: tuple[CandidateCheck, ...] = ()
    problems: tuple[str, ...] = field(default_factory=tuple)
    signature: str = "unsigned"
    signed_by: str | None = None
    simulated: bool = False
    finite_pool: int | None = None
    hypothesis: str | None = None
    upstream_ids: int = 0
    """How many of the answers used as evidence carry an upstream id."""
    route_problem: str | None = None


def _recompute_x(obs: Mapping[str, Any], scoring: Any) -> float:
    """The per-prompt score from its evidence: the judge's two replies, or the scorer's inputs."""
    if scoring.mode == "judge":
        judgment = Judgment.from_dict(obs["judgment"])
        if any(o.identical for o in judgment.orders):
            # a tie without a judge call is allowed only where the two answers really are the same text
            same = same_answer(obs["baseline_output"] or "", obs["candidate_output"])
            return 0.5 if same and all(o.identical for o in judgment.orders) else math.nan
        return sum(order_score(o) for o in judgment.orders) / 2.0  # a judge failure scores 0, as the judge does
    if scoring.mode == "paired-gold":
        s_c = scoring.score(obs["candidate_output"], obs["gold"])
        s_b = scoring.score(obs["baseline_output"] or "", obs["gold"])
        return s_c - s_b
    return scoring.score(obs["candidate_output"], obs["baseline_output"] or "")


def _signature_state(cert: Mapping[str, Any], key: SigningKey | None, problem: str | None) -> str:
    signature = cert.get("signature")
    if signature is None:
        return "unsigned"
    if problem is not None:
        return "invalid"
    if key is not None:
        return "verified"
    alg = signature.get("alg") if isinstance(signature, Mapping) else None
    return "intact" if alg == "ed25519" else "unchecked"


def _route_problem(problems: Sequence[str], verdict: str, pool: int | None) -> str | None:
    if problems:
        return f"it does not verify ({problems[0]})"
    if verdict != "switch":
        return f"its verdict is {verdict.replace('_', ' ')!r}: only a switch can back a route"
    if pool is not None:
        return (f"it is a finite-pool certificate: it proves the candidate only on the {pool} prompts it tested, not "
                "on the task's future traffic; prove again without a finite pool")
    return None


def verify(source: str | Path | Mapping[str, Any], key: SigningKey | None = None, *,
           required: bool = False) -> VerifyResult:
    """Recompute a certificate's verdict from its stored evidence and check it matches what it claims, and check
    its signature (`key`: the issuer's key; `required`: an unsigned certificate fails).

    `source` is a certificate file or an already loaded certificate. Version 1 certificates (no signature, no
    population or upstream ids) verify as before."""
    cert = dict(source) if isinstance(source, Mapping) else load(source)
    problems: list[str] = []
    signature_problem = check_signature(cert, key, required=required)
    if signature_problem is not None:
        problems.append(signature_problem)
    if certificate_id(cert) != cert.get("id"):
        problems.append("the certificate id does not match its contents: the evidence was changed after it was issued")
    sc = cert["scoring"]
    scoring = Scoring(sc["mode"], sc["kind"], tuple(sc.get("labels") or ()))
    splits = cert["splits"]
    parts = [set(splits["train"]), set(splits["validation"]), set(splits["test"])]
    if parts[0] & parts[2] or parts[1] & parts[2] or parts[0] & parts[1]:
        problems.append("the splits overlap: a prompt used for tuning is also in another split")
    checks = []
    recomputed_verdicts = []
    for cand in cert["candidates"]:
        model = cand["model"]
        observations = cand["observations"]
        if cand["order"]:
            expected = list(splits["test"])
            random.Random(f"parity-order/{cert['seeds']['order']}").shuffle(expected)
            if cand["order"] != expected:
                problems.append(f"{model}: the test order is not the one the seed gives")
        ids = [o["id"] for o in observations]
        if ids != cand["order"][: len(ids)]:
            problems.append(f"{model}: the observations are not the test prompts in the streamed order")
        if set(ids) - parts[2]:
            problems.append(f"{model}: observations include prompts outside the test split")
        for o in observations:
            x = _recompute_x(o, scoring)
            if not math.isclose(x, o["x"], abs_tol=1e-12):
                problems.append(f"{model}: prompt {o['id']} stores score {o['x']} but its evidence gives {x}")
        stored = cand["verdict"]
        if not observations:
            recomputed, n, est, low = "inconclusive", 0, None, None
        else:
            params = cand["result"]
            result = run_sequential(
                [o["x"] for o in observations], mode=params["mode"], margin=params["margin"], alpha=params["alpha"],
                n_max=params["n_max"], method=params["method"], futility=params["futility"],
                pool_size=params.get("pool_size"), candidates=params["candidates"],
                futility_alpha=params["futility_alpha"], c=params["c"], grid_size=params["grid_size"],
            )
            recomputed, n, est, low = result.verdict, result.n_used, result.estimate, result.lower_bound
            if cand["stopped_by"] == "budget":
                if recomputed != "inconclusive":
                    problems.append(f"{model}: stopped by the budget, yet its scores reach {recomputed}")
            elif result.stopped_by != cand["stopped_by"]:
                problems.append(f"{model}: stored stop reason {cand['stopped_by']!r}, recomputed {result.stopped_by!r}")
            if not math.isclose(est, params["estimate"], rel_tol=1e-9, abs_tol=1e-12):
                problems.append(f"{model}: stored estimate {params['estimate']} but the scores give {est}")
        if recomputed != stored:
            problems.append(f"{model}: the certificate says {stored!r} but its scores give {recomputed!r}")
        if n != cand["n_used"]:
            problems.append(f"{model}: the certificate used {cand['n_used']} prompts but the test stops at {n}")
        recomputed_verdicts.append((model, recomputed))
        checks.append(CandidateCheck(model, stored, recomputed, cand["n_used"], n, est, low))
    switched = [m for m, v in recomputed_verdicts if v == "switch"]
    if switched:
        overall = "switch"
    elif recomputed_verdicts and all(v == "do_not_switch" for _, v in recomputed_verdicts):
        overall = "do_not_switch"
    else:
        overall = "inconclusive"
    stored_overall = cert["decision"]["verdict"]
    if overall != stored_overall:
        problems.append(f"the decision says {stored_overall!r} but the candidates' scores give {overall!r}")
    chosen = cert["decision"].get("candidate")
    if chosen is not None and chosen not in switched:
        problems.append(f"the chosen candidate {chosen!r} did not pass its test")
    pool = _pool_size([c.get("result") for c in cert["candidates"]])
    claimed = cert.get("hypothesis")
    if isinstance(claimed, Mapping) and claimed.get("finite_pool") != pool:
        problems.append(f"the hypothesis is stated about {claimed.get('population')!r}, but the test was run "
                        + (f"on a finite pool of {pool} prompts" if pool is not None else "without a finite pool"))
    signature = cert.get("signature")
    return VerifyResult(
        not problems, cert.get("id", ""), stored_overall, overall, tuple(checks), tuple(problems),
        signature=_signature_state(cert, key, signature_problem),
        signed_by=signature.get("key_id") if isinstance(signature, Mapping) else None,
        simulated=bool(cert.get("simulated")), finite_pool=pool, hypothesis=_hypothesis_text(cert, pool),
        upstream_ids=_identified(cert.get("upstream")),
        route_problem=_route_problem(problems, stored_overall, pool),
    )


def _identified(upstream: Any) -> int:
    """How many answers used as evidence carry an upstream id."""
    return int(upstream["answers"]) - int(upstream["without_id"]) if isinstance(upstream, Mapping) else 0


def _hypothesis_text(cert: Mapping[str, Any], pool: int | None) -> str | None:
    """The certificate's H0 sentence; for a version 1 file, rebuilt from its mode and margin."""
    stored = cert.get("hypothesis")
    if isinstance(stored, Mapping) and stored.get("statement"):
        return str(stored["statement"])
    try:
        return hypothesis_block(cert["scoring"]["test_mode"], cert["parameters"]["margin"], pool)["statement"]
    except (KeyError, TypeError, ParityError):
        return None


def can_route(cert: Mapping[str, Any] | str | Path, *, key: SigningKey | None = None) -> str | None:
    """Why this certificate cannot back a route, in words; None when it can: it verifies (signature included,
    against `key` when given), its verdict is switch, and it is about the task's traffic, not a finite pool."""
    return verify(cert, key).route_problem


def finite_pool(cert: Mapping[str, Any]) -> int | None:
    """The finite pool the certificate's test was run on (None: its claim is about the task's population)."""
    return _pool_size([c.get("result") for c in cert["candidates"]])


def hypothesis_text(cert: Mapping[str, Any]) -> str | None:
    """The certificate's null hypothesis in words, with the population it is about (rebuilt for version 1 files)."""
    return _hypothesis_text(cert, finite_pool(cert))


__all__ = ["PLACES", "POPULATION", "SIMULATED_NOTE", "CandidateCheck", "RoutingCost", "VerifyResult", "build",
           "can_route", "certificate_id", "contract_failures", "default_shadow_rate", "demonstrations_cost", "dumps",
           "finite_pool", "proof_share",
           "hypothesis_block", "hypothesis_text", "judge_call_cost", "load", "routing_cost", "upstream_ids",
           "upstream_summary", "verify", "write_json"]
