"""The certificate as a page a person reads: the verdict, the hypothesis and its population, the confidence
sequence, win/tie/loss, per-stratum and judge diagnostics, the tuned prompt, what routing costs and who signed it.

It renders the certificate's JSON as it is, asking `parity.proof.certificate` only for the facts older files do
not store (the null hypothesis in words, the finite pool). Verifying a certificate never loads this module (nor
the plotting library behind it), so the gateway that checks certificates does not pay for it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from parity.files import write_atomic
from parity.pricing import format_usd
from parity.proof import certificate
from parity.report import plots
from parity.report.html import Page, badge



def pct(value: Any) -> str:
    """A share as a percentage with one decimal; "n/a" when unknown."""
    return "n/a" if value is None else f"{float(value) * 100:.1f}%"


def num(value: Any, places: int = 3) -> str:
    """A statistic to `places` decimals; "n/a" when unknown."""
    return "n/a" if value is None else f"{float(value):.{places}f}"


def render_html(cert: Mapping[str, Any]) -> str:
    """The certificate as a self-contained page: verdict, the hypothesis and its population, margin, α, the
    confidence sequence, win/tie/loss, per-stratum table, length and judge diagnostics, the tuned prompt, what
    routing costs (candidate, fallbacks, drift watch) and who signed it. A simulated certificate says so at the top."""
    decision = cert["decision"]
    verdict = decision["verdict"]
    kind = {"switch": "good", "do_not_switch": "bad"}.get(verdict, "")
    params = cert["parameters"]
    simulated = bool(cert.get("simulated"))
    page = Page(f"Parity certificate: {cert['task']}", subtitle=f"{cert['id']} · issued {cert.get('created_at')}",
                simulated=simulated, simulated_note=certificate.SIMULATED_NOTE)
    page.heading("Decision", badges=[badge(verdict.replace("_", " "), kind)]
                 + ([badge("simulated", "simulated")] if simulated else []))
    page.paragraph(decision["summary"])
    statement = certificate.hypothesis_text(cert)
    if statement:
        page.paragraph(f"Null hypothesis: {statement}.", muted=certificate.finite_pool(cert) is None)
    cost = cert["cost"]
    after = cost.get("net_candidate_per_request") or cost["candidate_per_request"]
    page.cards({
        "baseline": cert["baseline_model"],
        "margin δ": f"{params['margin']:g}",
        "α (per candidate)": f"{params['alpha']:g} ({params['per_candidate_alpha']:.3g})",
        "cost / request before": format_usd(cost["baseline_per_request"]),
        "cost / request after": format_usd(after),
        "projected monthly saving": format_usd(cost["projected_monthly_saving"]),
    })
    sc = cert["scoring"]
    page.paragraph(f"Scoring: {sc['mode']} ({sc['kind']} answers)"
                   + (f"; judge {cert['judge_model']}" if cert.get("judge_model") else "")
                   + f". Test split: {len(cert['splits']['test'])} prompts, split by {cert['splits']['by']}, "
                   f"streamed in a random order (seed {cert['seeds']['order']}).", muted=True)
    for warning in cert.get("warnings", []):
        page.notice(warning)
    if "net_candidate_per_request" in cost:
        _routing_cost_section(page, cost)
    for cand in cert["candidates"]:
        _candidate_section(page, cand)
    page.heading("Cost of this proof")
    proof = cost["proof"]
    rows = [(purpose, format_usd(amount)) for purpose, amount in proof["by_purpose"].items()]
    rows.append(("total", format_usd(proof["spent"])))
    page.table(["calls for", "cost"], rows, numeric=[1])
    standard = cost.get("proof_at_standard_prices")
    page.paragraph(proof_payback(cost))
    page.paragraph(f"Budget: {format_usd(proof['limit']) if proof['limit'] else 'none set'}; "
                   f"{'Message Batches (50% off)' if params['batch'] else 'synchronous calls'}"
                   + (f"; the same calls at standard prices: {format_usd(standard)}" if standard else "")
                   + f". {cost['note']}.", muted=True)
    _provenance_section(page, cert)
    return page.render()


def proof_payback(cost: Mapping[str, Any]) -> str:
    """One sentence: the proof's cost against a month's projected saving, and what the tuned prompt adds per
    request (the terminal, the page and the demo say it the same way)."""
    share = cost.get("proof_share_of_monthly_saving")
    monthly = cost.get("projected_monthly_saving")
    if share is None:
        text = f"This proof cost {format_usd(cost['proof']['spent'])}; routing projects no monthly saving to set it against."
    else:
        text = (f"This proof cost {format_usd(cost['proof']['spent'])}, {float(share):.1%} of one month's projected "
                f"saving ({format_usd(monthly)} at {cost.get('monthly_requests') or 0:,} requests a month).")
    demos = cost.get("demonstrations_per_request")
    if demos is not None and Decimal(demos) > 0:
        text += (f" The tuned prompt's demonstrations and instructions add {format_usd(demos)} to each routed request "
                 "(measured while tuning); the optimiser chose the prompt with the largest saving weighed by its "
                 "chance to pass the test.")
    return text


def _routing_cost_section(page: Page, cost: Mapping[str, Any]) -> None:
    page.heading("What routing costs per request", 3)
    rate = cost.get("fallback_rate")
    page.table(["part", "cost / request"], [
        ("candidate's answer", format_usd(cost["candidate_per_request"])),
        (f"fallback to the baseline ({pct(rate)} of test answers broke the output contract)",
         format_usd(cost.get("fallback_cost_per_request"))),
        (f"drift watch ({pct(cost.get('shadow_rate'))} shadowed: a baseline answer and two judge calls)",
         format_usd(cost.get("drift_cost_per_request"))),
        ("net cost of routing", format_usd(cost.get("net_candidate_per_request"))),
        ("baseline today", format_usd(cost["baseline_per_request"])),
        ("saving per request", format_usd(cost.get("saving_per_request"))),
    ], numeric=[1])
    if cost.get("drift_judge_call"):
        page.paragraph(f"Judge call cost: {cost['drift_judge_call']}.", muted=True)


def _provenance_section(page: Page, cert: Mapping[str, Any]) -> None:
    page.heading("Provenance", 3)
    upstream = cert.get("upstream")
    if upstream:
        page.paragraph(f"Upstream ids recorded for {upstream['answers'] - upstream['without_id']} of the "
                       f"{upstream['answers']} answers used as evidence ({len(upstream['request_ids'])} request or "
                       f"batch ids, {len(upstream.get('message_ids', []))} message ids; the rest are logged answers "
                       "or calls whose id was not kept): the provider can confirm these calls were made.", muted=True)
    signature = cert.get("signature")
    if isinstance(signature, Mapping):
        page.paragraph(f"Signed with {signature.get('alg')} key {signature.get('key_id')}: check it with "
                       f"parity verify certificate.json --key KEYFILE (id {cert['id']}).")
    else:
        page.paragraph(f"Unsigned. Re-check the verdict offline: parity verify certificate.json (id {cert['id']}); "
                       "without a signature that shows the verdict follows from the stored evidence, not that "
                       "the evidence came from real calls.", muted=True)


def _candidate_section(page: Page, cand: Mapping[str, Any]) -> None:
    verdict = cand["verdict"]
    kind = {"switch": "good", "do_not_switch": "bad"}.get(verdict, "")
    page.heading(f"Candidate {cand['model']}", badges=[badge(verdict.replace("_", " "), kind)])
    result = cand.get("result")
    diag = cand["diagnostics"]
    if result:
        page.cards({
            "prompts used": cand["n_used"],
            "estimate": num(result["estimate"]),
            "lower bound": num(result["lower_bound"]),
            "threshold": num(result["threshold"]),
            "stopped by": cand["stopped_by"].replace("_", " "),
            "e-value": num(result.get("e_value"), 2) if result.get("e_value") is not None else "∞",
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
                   [(s["stratum"], s["n"], num(s["mean"]), s["wins"], s["ties"], s["losses"]) for s in diag["strata"]],
                   numeric=[1, 2, 3, 4, 5])
    page.heading("Diagnostics", 3)
    rows = [("length ratio (candidate / baseline characters)", num(diag.get("length_ratio"), 2)),
            ("raw mean score", num(diag.get("raw")))]
    if diag.get("length_controlled") is not None:
        rows += [("length-controlled estimate", num(diag["length_controlled"])),
                 ("swap inconsistency", pct(diag.get("swap_inconsistency"))),
                 ("tie rate (single orders)", pct(diag.get("tie_rate"))),
                 ("verdicts malformed twice (counted as ties)", diag.get("malformed", 0)),
                 ("identical answers (ties; the judge was not asked)", diag.get("identical", 0))]
    failures = cand.get("judge_failures", diag.get("judge_failures"))
    if failures or diag.get("length_controlled") is not None:
        rows.append(("judge calls that failed", failures or 0))
    if cand.get("contract_failures") is not None:
        rows.append(("answers that broke the output contract (the gateway would fall back)",
                     f"{cand['contract_failures']} of {len(cand['observations'])}"))
    rows.append(("cost per request with the tuned prompt", format_usd(cand.get("cost_per_request"))))
    page.table(["measure", "value"], rows, numeric=[1])
    page.heading("Tuned prompt", 3)
    prompt = cand["prompt"]
    page.paragraph(f"System: {prompt['system'] or '(the request’s own)'}")
    page.paragraph(f"{len(prompt['demos'])} demonstrations from the baseline's own answers; hash {cand['prompt_hash']}.",
                   muted=True)
    for note in cand.get("notes", []):
        page.paragraph(note, muted=True)


def write_html(cert: Mapping[str, Any], path: str | Path) -> Path:
    """Render and write atomically (a browser never sees half a page)."""
    return write_atomic(path, render_html(cert))


__all__ = ["num", "pct", "render_html", "write_html"]
