"""The certificate: the evidence for a proof, as JSON a program re-checks offline and HTML a person reads.

The JSON holds everything needed to recompute the verdict without calling a model: every per-prompt score in
the order the test saw it, the judge's replies for both orders, the scorers' inputs, the test's parameters, the
seeds, the splits and the prompt hashes. `verify(path)` recomputes each per-prompt score from the stored
judge replies or scorer inputs, the streamed order from the seed, and the verdict from the scores, and checks
the certificate id (a hash of the evidence), so an edited certificate does not verify.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parity.files import write_atomic
from parity.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from parity.policy import Contract
    from parity.proof.calls import Spend
    from parity.proof.data import ProofItem, Splits, TaskData
    from parity.proof.runner import CandidateOutcome, ProveConfig, Scoring

FORMAT = "parity-certificate"
VERSION = 1
VOLATILE = ("id", "created_at", "run_dir")
"""Left out of the id: the same evidence gathered at another time or place is the same certificate."""


def _dec(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _prompt_dict(prompt: Any) -> dict[str, Any]:
    return {"system": prompt.system, "demos": [{"input": d.input, "output": d.output} for d in prompt.demos]}


def certificate_id(cert: Mapping[str, Any]) -> str:
    """"cert_" + 20 hex digits of SHA-256 over the evidence (everything but the volatile fields)."""
    body = {k: v for k, v in cert.items() if k not in VOLATILE}
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return "cert_" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:20]


def _overall(outcomes: Sequence[CandidateOutcome], chosen: CandidateOutcome | None) -> str:
    if chosen is not None:
        return "switch"
    if outcomes and all(o.verdict == "do_not_switch" for o in outcomes):
        return "do_not_switch"
    return "inconclusive"


def _summary(verdict: str, chosen: CandidateOutcome | None, baseline: str, margin: float) -> str:
    if verdict == "switch" and chosen is not None:
        return (f"Switch: {chosen.model} with the tuned prompt is at least as good as {baseline} within a margin of "
                f"{margin:g} on this task's held-out prompts (n = {chosen.n_used}).")
    if verdict == "do_not_switch":
        return f"Do not switch: every candidate is worse than {baseline} by more than the margin of {margin:g}."
    return f"Inconclusive: keep {baseline}. Neither non-inferiority nor inferiority was shown within the limits."


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
) -> dict[str, Any]:
    """The certificate as a JSON-ready dict, its id included."""
    from parity.proof.calls import request_key

    verdict = _overall(outcomes, chosen)
    after = chosen.cost_per_request if chosen is not None else None
    saving = baseline_cost - after if baseline_cost is not None and after is not None else None
    monthly = saving * monthly_requests if saving is not None and monthly_requests is not None else None
    warnings = [w for o in outcomes for w in (f"{o.model}: {x}" for x in o.diagnostics.warnings)]
    if data.simulated:
        warnings.insert(0, "simulated: every model answer and judgment here came from the emulator, not a real model")
    cert: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "id": "",
        "created_at": manifest.get("created_at"),
        "task": config.task,
        "simulated": data.simulated,
        "baseline_model": config.baseline_model,
        "judge_model": judge_model,
        "scoring": {"mode": scoring.mode, "test_mode": scoring.test_mode, "kind": scoring.kind,
                    "labels": list(scoring.labels), "reference_guided": config.reference_guided},
        "parameters": {
            "margin": config.margin, "alpha": config.alpha, "n_max": config.n_max, "method": config.method,
            "candidates": len(outcomes), "per_candidate_alpha": config.alpha / max(1, len(outcomes)),
            "split_by": config.split_by, "fractions": list(config.fractions),
            "max_prompt_candidates": config.max_prompt_candidates, "minibatch": config.minibatch,
            "optimize": config.optimize, "budget_usd": _dec(config.budget_usd), "batch": not config.sync,
        },
        "seeds": {"split": config.seed, "order": config.seed, "optimizer": config.seed},
        "data": {"source": data.source, "n_items": len(items), "rejected_rows": len(data.rejected),
                 "prompt_hashes": {i.id: request_key(i.request) for i in items}},
        "splits": splits.to_dict(),
        "candidates": [
            {
                "model": o.model, "verdict": o.verdict, "stopped_by": o.stopped_by, "n_used": o.n_used,
                "result": o.result, "prompt": _prompt_dict(o.prompt), "prompt_hash": o.prompt_hash,
                "optimization": o.optimization, "diagnostics": o.diagnostics.to_dict(),
                "order": o.order, "observations": o.observations,
                "cost_per_request": _dec(o.cost_per_request), "notes": list(o.notes),
            }
            for o in outcomes
        ],
        "decision": {"verdict": verdict, "candidate": chosen.model if chosen else None,
                     "summary": _summary(verdict, chosen, config.baseline_model, config.margin)},
        "contract": asdict(contract),
        "cost": {
            "proof": spend.to_dict(),
            "proof_at_standard_prices": _dec(proof_at_standard_prices),
            "baseline_per_request": _dec(baseline_cost),
            "candidate_per_request": _dec(after),
            "saving_per_request": _dec(saving),
            "monthly_requests": monthly_requests,
            "projected_monthly_saving": _dec(monthly),
            "note": "per-request costs are at standard (non-batch) prices, measured on the test prompts",
        },
        "warnings": warnings,
    }
    cert["id"] = certificate_id(cert)
    return _jsonable(cert)


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
    """Write atomically (temp file, then rename)."""
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
    if data.get("version") != VERSION:
        raise InputError(f"certificate version {data.get('version')!r} is not supported (expected {VERSION})",
                         file=name, field="version")
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
    """ok when every check passed; `problems` says what did not, in words."""

    ok: bool
    certificate_id: str
    verdict: str
    recomputed_verdict: str
    candidates: tuple[CandidateCheck, ...] = ()
    problems: tuple[str, ...] = field(default_factory=tuple)


def _recompute_x(obs: Mapping[str, Any], scoring: Any) -> float:
    """The per-prompt score from its evidence: the judge's two replies, or the scorer's inputs."""
    from parity.proof.judge import Judgment, candidate_score, same_answer
    from parity.proof.judge_prompt import parse_verdict

    if scoring.mode == "judge":
        judgment = Judgment.from_dict(obs["judgment"])
        if any(o.identical for o in judgment.orders):
            # a tie without a judge call is allowed only where the two answers really are the same text
            same = same_answer(obs["baseline_output"] or "", obs["candidate_output"])
            return 0.5 if same and all(o.identical for o in judgment.orders) else math.nan
        scores = [candidate_score(parse_verdict(o.text) or "tie", o.candidate_position) for o in judgment.orders]
        return sum(scores) / 2.0
    if scoring.mode == "paired-gold":
        s_c = scoring.score(obs["candidate_output"], obs["gold"])
        s_b = scoring.score(obs["baseline_output"] or "", obs["gold"])
        return s_c - s_b
    return scoring.score(obs["candidate_output"], obs["baseline_output"] or "")


def verify(path: str | Path) -> VerifyResult:
    """Recompute a certificate's verdict from its stored evidence and check it matches what it claims."""
    from parity.proof.runner import Scoring
    from parity.proof.sequential import run_sequential

    cert = load(path)
    problems: list[str] = []
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
                pool_size=params["pool_size"], candidates=params["candidates"],
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
    return VerifyResult(not problems, cert.get("id", ""), stored_overall, overall, tuple(checks), tuple(problems))


# --------------------------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------------------------


def _money(value: str | None) -> str:
    if value in (None, ""):
        return "n/a"
    from parity.pricing import format_usd

    return format_usd(Decimal(value))


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{float(value) * 100:.1f}%"


def _num(value: Any, places: int = 3) -> str:
    return "n/a" if value is None else f"{float(value):.{places}f}"


def render_html(cert: Mapping[str, Any]) -> str:
    """The certificate as a self-contained page: verdict, margin, α, the confidence sequence, win/tie/loss,
    per-stratum table, length and judge diagnostics, the tuned prompt, and cost before and after."""
    from parity.report import plots
    from parity.report.html import Page, badge

    decision = cert["decision"]
    verdict = decision["verdict"]
    kind = {"switch": "good", "do_not_switch": "bad"}.get(verdict, "")
    params = cert["parameters"]
    page = Page(f"Parity certificate: {cert['task']}", subtitle=f"{cert['id']} · issued {cert.get('created_at')}",
                simulated=bool(cert.get("simulated")))
    page.heading("Decision", badges=[badge(verdict.replace("_", " "), kind)])
    page.paragraph(decision["summary"])
    cost = cert["cost"]
    page.cards({
        "baseline": cert["baseline_model"],
        "margin δ": f"{params['margin']:g}",
        "α (per candidate)": f"{params['alpha']:g} ({params['per_candidate_alpha']:.3g})",
        "cost / request before": _money(cost["baseline_per_request"]),
        "cost / request after": _money(cost["candidate_per_request"]),
        "projected monthly saving": _money(cost["projected_monthly_saving"]),
    })
    sc = cert["scoring"]
    page.paragraph(f"Scoring: {sc['mode']} ({sc['kind']} answers)"
                   + (f"; judge {cert['judge_model']}" if cert.get("judge_model") else "")
                   + f". Test split: {len(cert['splits']['test'])} prompts, split by {cert['splits']['by']}, "
                   f"streamed in a random order (seed {cert['seeds']['order']}).", muted=True)
    for warning in cert.get("warnings", []):
        page.notice(warning)
    for cand in cert["candidates"]:
        _candidate_section(page, cand, cert, plots)
    page.heading("Cost of this proof")
    proof = cost["proof"]
    rows = [(purpose, _money(amount)) for purpose, amount in proof["by_purpose"].items()]
    rows.append(("total", _money(proof["spent"])))
    page.table(["calls for", "cost"], rows, numeric=[1])
    standard = cost.get("proof_at_standard_prices")
    page.paragraph(f"Budget: {_money(proof['limit']) if proof['limit'] else 'none set'}; "
                   f"{'Message Batches (50% off)' if params['batch'] else 'synchronous calls'}"
                   + (f"; the same calls at standard prices: {_money(standard)}" if standard else "")
                   + f". {cost['note']}.", muted=True)
    page.paragraph(f"Re-check this verdict offline: parity verify certificate.json (id {cert['id']}).", muted=True)
    return page.render()


def _candidate_section(page: Any, cand: Mapping[str, Any], cert: Mapping[str, Any], plots: Any) -> None:
    from parity.report.html import badge

    verdict = cand["verdict"]
    kind = {"switch": "good", "do_not_switch": "bad"}.get(verdict, "")
    page.heading(f"Candidate {cand['model']}", badges=[badge(verdict.replace("_", " "), kind)])
    result = cand.get("result")
    diag = cand["diagnostics"]
    if result:
        page.cards({
            "prompts used": cand["n_used"],
            "estimate": _num(result["estimate"]),
            "lower bound": _num(result["lower_bound"]),
            "threshold": _num(result["threshold"]),
            "stopped by": cand["stopped_by"].replace("_", " "),
            "e-value": _num(result.get("e_value"), 2) if result.get("e_value") is not None else "∞",
        })
        traj = result["trajectory"]
        ylabel = {"paired-gold": "accuracy difference", "agreement": "agreement rate"}.get(result["mode"],
                                                                                           "judged score (½ = tie)")
        page.figure(plots.confidence_sequence_svg(traj["n"], traj["estimate"],
                                                  [v if v is not None else math.nan for v in traj["lower_bound"]],
                                                  result["threshold"], ylabel=ylabel,
                                                  margin_label="non-inferiority threshold"),
                    f"{result['null_hypothesis']}; the lower confidence sequence (level "
                    f"{result['confidence_level']:.3g}) is valid at every n.")
        page.figure(plots.win_tie_loss_svg(diag["wins"], diag["ties"], diag["losses"], labels=[cand["model"]]),
                    "Per prompt: candidate better, tied, or worse than the baseline.")
    else:
        page.paragraph("No test prompt was scored.", muted=True)
    if diag.get("strata"):
        page.heading("Per stratum", 3)
        page.table(["stratum", "n", "mean score (½ = as good)", "wins", "ties", "losses"],
                   [(s["stratum"], s["n"], _num(s["mean"]), s["wins"], s["ties"], s["losses"]) for s in diag["strata"]],
                   numeric=[1, 2, 3, 4, 5])
    page.heading("Diagnostics", 3)
    rows = [("length ratio (candidate / baseline characters)", _num(diag.get("length_ratio"), 2)),
            ("raw mean score", _num(diag.get("raw")))]
    if diag.get("length_controlled") is not None:
        rows += [("length-controlled estimate", _num(diag["length_controlled"])),
                 ("swap inconsistency", _pct(diag.get("swap_inconsistency"))),
                 ("tie rate (single orders)", _pct(diag.get("tie_rate"))),
                 ("verdicts malformed twice (counted as ties)", diag.get("malformed", 0)),
                 ("identical answers (ties; the judge was not asked)", diag.get("identical", 0))]
    rows.append(("cost per request with the tuned prompt", _money(cand.get("cost_per_request"))))
    page.table(["measure", "value"], rows, numeric=[1])
    page.heading("Tuned prompt", 3)
    prompt = cand["prompt"]
    page.paragraph(f"System: {prompt['system'] or '(the request’s own)'}")
    page.paragraph(f"{len(prompt['demos'])} demonstrations from the baseline's own answers; hash {cand['prompt_hash']}.",
                   muted=True)
    for note in cand.get("notes", []):
        page.paragraph(note, muted=True)


def write_html(cert: Mapping[str, Any], path: str | Path) -> Path:
    return write_atomic(path, render_html(cert))


__all__ = ["CandidateCheck", "VerifyResult", "build", "certificate_id", "dumps", "load", "render_html", "verify",
           "write_html", "write_json"]
