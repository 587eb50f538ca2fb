"""The audit report: from an `Auditor`'s state to the JSON document (schema docs/audit-json.md) and its Findings.

Totals by model, day and family; each lever's rows and findings (cache, batch, right-size, top spend, token
counts); the savings stacked so no dollar is counted twice. Money stays exact (the EXACT decimal context);
shares and percentages alone are rounded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Context, Decimal, localcontext
from pathlib import Path
from typing import Any

import parity.audit.batch as batching
from parity.audit.auditor import Auditor, Family
from parity.audit.cache import ttl_advice
from parity.audit.cost import EXACT, CostAcc, Pricer, usd
from parity.audit.findings import SCHEMA_ID, Finding
from parity.audit.rightsize import BIG_LINES, BilledChoice, billed_choice, candidate_model, model_line, shape_reasons
from parity.audit.rightsize import FIX as RIGHTSIZE_FIX
from parity.audit.savings import Slice, stack
from parity.tokens import ESTIMATE_LABEL, TokenCounter, recount

_RATIO = Context(prec=28)  # for shares and percentages only; money stays exact


@dataclass
class AuditReport:
    """The audit's result: `data` is the JSON document (schema docs/audit-json.md)."""

    data: dict[str, Any]
    findings: list[Finding]

    def to_json(self) -> dict[str, Any]:
        return self.data

    def write_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    @property
    def total_cost(self) -> Decimal:
        return Decimal(self.data["totals"]["cost_usd"])



_TOKENS_ZERO = {"input": 0, "cache_write_5m": 0, "cache_write_1h": 0, "cache_read": 0, "output": 0}
_BATCH_CAUSE = {"tag": "job_tag", "user_agent": "job_user_agent", "metadata": "job_metadata",
                "night_burst": "night_burst", "job": "job_tag"}


def _row(pricer: Pricer, acc: CostAcc) -> dict[str, Any]:
    breakdown = pricer.breakdown(acc)
    data = breakdown.to_dict()
    data.pop("model", None)
    return {"requests": acc.requests, "cost_usd": usd(breakdown.total), "breakdown": data, "tokens": acc.tokens()}


def build_report(auditor: Auditor, *, counter: Any = None) -> AuditReport:
    """The report of everything the auditor has seen; `counter` recounts its sample of requests (tokens lever)."""
    auditor.total = CostAcc.total(f.cost() for f in auditor.families.values())
    with localcontext(EXACT):
        return _build(auditor, counter)


def _build(auditor: Auditor, counter: Any) -> AuditReport:
    pricer, options = auditor.pricer, auditor.options
    total = pricer.breakdown(auditor.total)
    total_cost = total.total
    input_side, output_side = CostAcc(), CostAcc()
    for key, vec in auditor.total.v.items():
        input_side.add(key, vec[0], vec[1], vec[2], vec[3], vec[4], 0)
        output_side.add(key, 0, 0, 0, 0, 0, vec[5])
    input_cost = pricer.total(input_side)
    output_cost = pricer.total(output_side)
    findings: list[Finding] = []

    by_model = []
    for model, (breakdown, n) in sorted(pricer.grouped(auditor.total, lambda k: k.model).items(),
                                        key=lambda kv: -kv[1][0].total):
        acc = auditor.total.filtered(lambda k, m=model: k.model == m)
        by_model.append({"model": model, **_row(pricer, acc)})
    by_day = []
    for day in sorted({k.day for k in auditor.total.v}):
        acc = auditor.total.filtered(lambda k, d=day: k.day == d)
        by_day.append({"day": day.isoformat(), **_row(pricer, acc)})

    families = sorted(auditor.families.values(), key=lambda f: -pricer.total(f.cost()))
    by_family, cache_rows, batch_rows, rightsize_rows = [], [], [], []
    slices_for_stack: list[Slice] = []
    batch_now = batch_after = Decimal(0)
    for fam in families:
        acc = fam.cost()
        row = _row(pricer, acc)
        fam_cost = Decimal(row["cost_usd"])
        models = {}
        for key, vec in acc.v.items():
            models[key.model] = models.get(key.model, 0) + vec[0]
        by_family.append({"family": fam.id, "kind": fam.kind, "label": fam.label, "models": models,
                          "example_line": fam.first_line, "example_file": fam.first_file,
                          "output_share": _share(row["breakdown"]["output"], row["cost_usd"]), **row})

        cache_findings, cache_buckets, cache_row = _cache_family(pricer, fam, acc, fam_cost)
        findings.extend(cache_findings)
        cache_rows.append(cache_row)

        requests_by_slice = {name: a.requests for name, a in fam.slices.items()}
        span_hours = max(0.0, fam.last_ts - fam.first_ts) / 3600
        batchable = batching.batchable_slices(requests_by_slice, options.night, span_hours)
        if batchable:
            b_acc = CostAcc.total(fam.slices[s] for s in batchable)
            now = pricer.total(b_acc)
            after = pricer.total(b_acc.mapped(lambda k: k._replace(batch=True)))
            batch_now += now
            batch_after += after
            reasons = dict(fam.job_reasons)
            night = sum(fam.slices[s].requests for s, r in batchable.items() if r == "night_burst")
            if night:
                reasons["night_burst"] = night
            main = max(reasons, key=lambda r: reasons[r]) if reasons else "job"
            lines = [ln for s in batchable for ln in fam.slice_lines.get(s, [])][:2]
            finding = Finding(
                lever="batch", family=fam.id, label=fam.label, cause=_BATCH_CAUSE.get(main, main),
                fix=batching.FIX, requests=b_acc.requests, cost_usd=now, saving_usd=now - after,
                example_lines=[ln for ln, _ in lines], example_files=[f for _, f in lines],
                detail={"reasons": reasons, "cost_batched_usd": usd(after)},
            )
            findings.append(finding)
            batch_rows.append({"family": fam.id, "label": fam.label, "requests": b_acc.requests,
                               "reasons": reasons, "cost_now_usd": usd(now), "cost_batched_usd": usd(after),
                               "saving_usd": usd(now - after)})

        candidate = None
        main_model = max(models, key=lambda m: models[m]) if models else None
        reasons_rs = shape_reasons(fam.outputs, options.rightsize)
        line = model_line(main_model) if main_model else None
        if reasons_rs and line in BIG_LINES and fam.last_day is not None:
            candidate = candidate_model(pricer, fam.last_day, options.candidate_model)
            choice = billed_choice(pricer, acc, main_model, candidate, fam.last_day) if (
                candidate and candidate != main_model) else None
            candidate = choice.candidate if choice is not None else None
            if choice is not None and candidate is not None and choice.cost is not None:
                at_candidate = choice.cost  # priced as billed: the candidate's own cache rules (rightsize.as_billed)
                saving = fam_cost - at_candidate
                if saving > 0:
                    findings.append(Finding(
                        lever="rightsize", family=fam.id, label=fam.label, cause=_rightsize_cause(reasons_rs),
                        fix=RIGHTSIZE_FIX.format(family=fam.id, candidate=candidate), requests=acc.requests,
                        cost_usd=fam_cost, saving_usd=saving, hypothesis=True,
                        example_lines=[fam.first_line], example_files=[fam.first_file],
                        detail={"model": main_model, "candidate_model": candidate, "reasons": reasons_rs,
                                "cost_if_proven_usd": usd(at_candidate), "outputs": fam.outputs.to_dict(),
                                **_rejected(choice)},
                    ))
                    rightsize_rows.append({"family": fam.id, "label": fam.label, "model": main_model,
                                           "candidate_model": candidate, "reasons": reasons_rs,
                                           "requests": acc.requests, "cost_usd": usd(fam_cost),
                                           "cost_if_proven_usd": usd(at_candidate), "saving_if_proven_usd": usd(saving),
                                           "status": "hypothesis: run parity prove", **_rejected(choice)})
                else:
                    candidate = None
            else:
                candidate = None

        for name, slice_acc in fam.slices.items():
            delta = CostAcc()
            for bucket in cache_buckets:
                part = fam.cache.deltas.get((bucket, name))
                if part is not None:
                    delta.merge(part)
            slices_for_stack.append(Slice(slice_acc, delta, name in batchable, candidate))

    top_templates = [
        {"family": f["family"], "label": f["label"], "requests": f["requests"], "cost_usd": f["cost_usd"],
         "share": _share(f["cost_usd"], usd(total_cost)), "output_share": f["output_share"]}
        for f in by_family[: options.top]
    ]
    for t in top_templates[:5]:
        if Decimal(t["cost_usd"]) <= 0:
            continue
        heavy = t["output_share"] >= 0.5
        findings.append(Finding(
            lever="cost", family=t["family"], label=t["label"], cause="top_spend", requests=t["requests"],
            cost_usd=Decimal(t["cost_usd"]),
            fix=(f"{t['share']:.0%} of all spend; output is {t['output_share']:.0%} of it" + (
                 ": output dominates, so shorter answers (a lower max_tokens, a terser format) or a smaller model "
                 "matter most here" if heavy else
                 ": input dominates, so caching its stable prefix and trimming the prompt matter most here")),
            example_lines=[next(f["example_line"] for f in by_family if f["family"] == t["family"])],
            example_files=[next(f["example_file"] for f in by_family if f["family"] == t["family"])],
            detail={"share": t["share"], "output_share": t["output_share"]},
        ))

    tokens_section = _tokens_section(auditor, counter, findings)
    savings = stack(pricer, slices_for_stack)
    lever_order = {"cost": 0, "cache": 1, "batch": 2, "rightsize": 3, "tokens": 4}
    findings.sort(key=lambda f: (lever_order[f.lever], -f.saving_usd, -f.cost_usd))
    data: dict[str, Any] = {
        "schema": SCHEMA_ID,
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "inputs": [{"file": s, "lines": v[0], "records": v[1]} for s, v in auditor.inputs.items()],
        "period": {"first": _iso(auditor.first), "last": _iso(auditor.last)},
        "totals": {
            "requests": auditor.total.requests,
            "cost_usd": usd(total_cost),
            "input_cost_usd": usd(input_cost),
            "output_cost_usd": usd(output_cost),
            "output_share": _share(usd(output_cost), usd(total_cost)),
            "breakdown": {k: v for k, v in total.to_dict().items() if k != "model"},
            "tokens": auditor.total.tokens() if auditor.total.v else dict(_TOKENS_ZERO),
            "errors": auditor.errors,
            "malformed": auditor.malformed_count,
        },
        "malformed": [{"file": f, "line": ln, "reason": r} for f, ln, r in auditor.malformed],
        "malformed_listed_max": options.max_malformed,
        "warnings": [{"file": f, "line": ln, "reason": r} for f, ln, r in auditor.warnings],
        "warnings_total": auditor.warnings_count,
        "by_model": by_model,
        "by_family": by_family,
        "by_day": by_day,
        "top_templates": top_templates,
        "cache": {"families": cache_rows},
        "batch": {"families": batch_rows, "cost_now_usd": usd(batch_now), "cost_batched_usd": usd(batch_after),
                  "saving_usd": usd(batch_now - batch_after),
                  "night_hours_utc": list(options.night.hours())},
        "rightsize": {"candidates": rightsize_rows,
                      "status": "hypothesis: each saving holds only if `parity prove` shows the cheaper model is "
                                "at least as good on this task"},
        "tokens": tokens_section,
        "findings": [f.to_dict() for f in findings],
        "savings": savings.to_dict(),
    }
    return AuditReport(data, findings)


def _cache_family(pricer: Pricer, fam: Family, acc: CostAcc, fam_cost: Decimal
                  ) -> tuple[list[Finding], list[str], dict[str, Any]]:
    """Cache findings of one family, the delta buckets they contribute to the savings, and its table row."""
    c = fam.cache
    tokens = acc.tokens()
    read, written = tokens["cache_read"], tokens["cache_write_5m"] + tokens["cache_write_1h"]
    uncached = tokens["input"]
    prompt = read + written + uncached
    findings: list[Finding] = []
    buckets: list[str] = []

    def bucket_saving(bucket: str) -> tuple[Decimal, int]:
        delta = CostAcc.total(a for (b, _), a in c.deltas.items() if b == bucket)
        return -pricer.total(delta), sum(v[4] for v in delta.v.values() if v[4] > 0)

    missed = 0
    for cause, stats in sorted(c.causes.items(), key=lambda kv: -kv[1].requests):
        saving, moved = bucket_saving(cause)
        if saving > 0:
            buckets.append(cause)
            missed += moved
        detail = {"invalidated_from": stats.invalidated_from, "example": stats.example.strip()}
        if cause != "no_breakpoint" and c.bp_requests == 0:
            detail["note"] = "this family has no cache breakpoint either; the saving is under no_breakpoint"
        findings.append(Finding(
            lever="cache", family=fam.id, label=fam.label, cause=cause, block_path=stats.block_path,
            offset=stats.offset, example_lines=list(stats.lines), example_files=list(stats.files),
            requests=stats.requests, cost_usd=pricer.total(stats.cost), saving_usd=max(saving, Decimal(0)),
            fix=stats.fix, detail=detail,
        ))

    mean_prefix = c.mean_prefix_tokens
    no_bp_saving, moved = bucket_saving("no_breakpoint")
    if no_bp_saving > 0 and "no_breakpoint" in c.affected:
        buckets.append("no_breakpoint")
        missed += moved
        affected = c.affected["no_breakpoint"]
        lines, files = c.examples.get("no_breakpoint", ((fam.first_line,), (fam.first_file,)))
        where = c.suggested_path or "the last system block"
        if c.misplaced_bp and c.bp_requests:
            problem = (f"the breakpoint ({c.bp_path or 'automatic, on the last block'}) is not at the end of the "
                       f"~{mean_prefix:,.0f}-token stable prefix, so the varying part is what gets cached")
        else:
            problem = f"a ~{mean_prefix:,.0f}-token prefix repeats on every request but nothing marks it for caching"
        findings.append(Finding(
            lever="cache", family=fam.id, label=fam.label, cause="no_breakpoint", block_path=where, offset=None,
            example_lines=list(lines), example_files=list(files), requests=affected.requests,
            cost_usd=pricer.total(affected), saving_usd=no_bp_saving,
            fix=f"{problem}: add \"cache_control\": {{\"type\": \"ephemeral\"}} to {where} (the end of the stable "
                "prefix; a string system prompt becomes [{\"type\": \"text\", \"text\": ..., \"cache_control\": ...}])",
            detail={"prefix_tokens_estimate": round(mean_prefix)},
        ))

    if c.bp_requests and c.zero_counter_bp * 2 >= c.bp_requests and c.requests:
        estimate = c.bp_tokens if c.bp_tokens is not None else round(mean_prefix)
        if estimate < c.min_tokens:
            affected_cost = fam_cost
            findings.append(Finding(
                lever="cache", family=fam.id, label=fam.label, cause="below_min_cacheable", block_path=c.bp_path,
                offset=None, example_lines=[fam.first_line], example_files=[fam.first_file],
                requests=c.zero_counter_bp, cost_usd=affected_cost, saving_usd=Decimal(0),
                fix=(f"the prefix up to the breakpoint at {c.bp_path} is about {estimate:,} tokens, under the "
                     f"{c.min_tokens:,}-token minimum this model caches, so nothing is ever written or read (both "
                     "cache counters are 0): move more stable content (instructions, examples, tool definitions) "
                     f"before the breakpoint to pass {c.min_tokens:,} tokens, or drop the cache_control"),
                detail={"prefix_tokens_estimate": estimate, "min_cacheable_tokens": c.min_tokens},
            ))

    # TTL: 5m or 1h, from this family's own gaps
    main_key = max(acc.v, key=lambda k: acc.v[k][0]) if acc.v else None
    current = "none" if not c.bp_requests else ("1h" if c.bp_1h * 2 > c.bp_requests else "5m")
    advice = None
    if main_key is not None:
        rates = pricer.rates(main_key)
        base = float(rates.input) or 1.0
        advice = ttl_advice(c.gaps, float(rates.cache_read) / base, float(rates.cache_write_5m) / base,
                            float(rates.cache_write_1h) / base, mean_prefix, current)
        ttl_saving, moved = bucket_saving("ttl")
        advice["saving_usd_if_switched"] = usd(ttl_saving)
        if current != "1h" and ttl_saving > 0 and mean_prefix >= c.min_tokens and c.gaps.get("le_1h", 0) >= 3:
            advice["recommended"] = "1h"
            buckets.append("ttl")
            missed += moved
            lines, files = c.examples.get("ttl", ((fam.first_line,), (fam.first_file,)))
            where = c.bp_path or c.suggested_path or "the end of the stable prefix"
            affected = c.affected.get("ttl", CostAcc())
            findings.append(Finding(
                lever="cache", family=fam.id, label=fam.label, cause="ttl_expired", block_path=where, offset=None,
                example_lines=list(lines), example_files=list(files), requests=c.gaps.get("le_1h", 0),
                cost_usd=pricer.total(affected), saving_usd=ttl_saving,
                fix=(f"{c.gaps.get('le_1h', 0)} requests came 5-60 minutes after the previous one of this family, "
                     f"after the 5-minute cache had expired: use \"cache_control\": {{\"type\": \"ephemeral\", "
                     f"\"ttl\": \"1h\"}} at {where}. {advice['arithmetic']}"),
                detail={"ttl": advice},
            ))
        elif current == "1h" and ttl_saving > 0:
            advice["recommended"] = "5m"
        elif current != "1h":
            advice["recommended"] = "5m"

    unexplained = CostAcc.total(a for (b, _), a in c.deltas.items() if b == "unexplained")
    row = {
        "family": fam.id,
        "label": fam.label,
        "requests": c.requests,
        "hit_ratio": round(read / prompt, 4) if prompt else 0.0,
        "read_tokens": read,
        "written_tokens": written,
        "uncached_tokens": uncached,
        "missed_tokens": missed,
        "unexplained_missed_tokens": sum(v[4] for v in unexplained.v.values() if v[4] > 0),
        "breakpoint": {
            "requests_with_breakpoint": c.bp_requests,
            "path": c.bp_path,
            "suggested_path": c.suggested_path,
            "prefix_tokens_estimate": round(mean_prefix),
            "min_cacheable_tokens": c.min_tokens,
        },
        "ttl": advice,
        "concurrent_misses": c.concurrent,
        "unclassified_divergences": c.unclassified,
        "unclassified_example": None if c.unclassified_example is None else {
            "block_path": c.unclassified_example.block_path, "offset": c.unclassified_example.offset,
            "example_lines": list(c.unclassified_example.lines)},
        "causes": sorted({f.cause for f in findings}),
        "saving_usd": usd(sum((f.saving_usd for f in findings), Decimal(0))),
    }
    return findings, buckets, row


def _tokens_section(auditor: Auditor, counter: Any, findings: list[Finding]) -> dict[str, Any]:
    if not auditor.options.recount or not auditor.sample:
        return {"recounted": 0, "estimate": None, "rows": []}
    counter = counter or TokenCounter()
    rows = recount(auditor.sample, counter)
    estimate = any(r.estimate for r in rows)
    diffs = [r for r in rows if r.difference is not None and r.logged_input_tokens]
    off = [r for r in diffs if abs(r.difference) > 0.02 * r.logged_input_tokens]
    section = {
        "recounted": len(rows),
        "estimate": estimate,
        "label": ESTIMATE_LABEL if estimate else "count_tokens",
        "differing_over_2pct": len(off),
        "rows": [r.to_dict() for r in rows[:50]],
    }
    if not estimate and off and len(off) * 10 >= len(diffs):
        files = list(auditor.inputs)
        findings.append(Finding(
            lever="tokens", family="*", cause="usage_mismatch", requests=len(off),
            example_lines=[r.line for r in off[:2]], example_files=files[:1] * len(off[:2]) if len(files) == 1 else [],
            fix=("count_tokens disagrees with the logged usage by more than 2 % on "
                 f"{len(off)} of {len(diffs)} recounted requests: check that logs record the request as sent "
                 "(system prompt, tools and images included)"),
        ))
    return section


def _share(part: str, whole: str) -> float:
    w = Decimal(whole)
    return round(float(_RATIO.divide(Decimal(part), w)), 4) if w else 0.0


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _rejected(choice: BilledChoice) -> dict[str, Any]:
    """The preferred candidate that would cost more once billed, and why (empty when it saves)."""
    if choice.rejected is None:
        return {}
    return {"rejected_model": choice.rejected, "rejected_cost_usd": usd(choice.rejected_cost or Decimal(0)),
            "note": choice.note}


def _rightsize_cause(reasons: list[str]) -> str:
    first = reasons[0].split(":", 1)[0]
    return {"short": "short_outputs", "closed set": "closed_set_outputs", "extractive": "extractive_outputs"}.get(
        first, "simple_outputs")


__all__ = ["AuditReport", "build_report"]


# --- sources: each input's own cost beside Parity's ---------------------------------------------------------

from parity.readers.common import BODIES_TAG, NEEDS_BODIES, SOURCE_COST_TAG  # noqa: E402
BUG_PATTERNS = (
    ("ttl_1h_at_5m", "1-hour cache writes priced at the 5-minute rate"),
    ("cache_read_free", "cache reads priced at $0"),
    ("cache_counted_twice", "cache tokens counted twice (added again to input, as with inclusive input tokens)"),
    ("batch_not_discounted", "batch calls not discounted 50%"),
)
"""Known ways a tool's own cost goes wrong on Claude cache and batch tokens (landscape.md §10.2), by id."""


class _Side:
    """Parity's cost of some traffic, the source's own cost of the part that carried one, and that part priced
    under each bug pattern."""

    def __init__(self) -> None:
        self.acc = CostAcc()
        self.costed = CostAcc()  # the records that carried a source cost, the only fair comparison
        self.patterns = {name: CostAcc() for name, _ in BUG_PATTERNS}
        self.source_cost: Decimal | None = None

    def add(self, key: Any, counts: tuple[int, int, int, int, int], amount: Decimal | None) -> None:
        self.acc.add(key, 1, *counts)
        if amount is None:
            return
        inp, w5, w1, read, out = counts
        self.costed.add(key, 1, *counts)
        self.patterns["ttl_1h_at_5m"].add(key, 1, inp, w5 + w1, 0, read, out)
        self.patterns["cache_read_free"].add(key, 1, inp, w5, w1, 0, out)
        self.patterns["cache_counted_twice"].add(key, 1, inp + read + w5 + w1, w5, w1, read, out)
        self.patterns["batch_not_discounted"].add(key._replace(batch=False), 1, *counts)
        with localcontext(EXACT):
            self.source_cost = (self.source_cost or Decimal(0)) + amount

    def compare(self, pricer: Pricer) -> dict[str, Any]:
        """`source_cost_usd`, `difference_usd`, `agrees`, `explanation`, `explanation_id` for this side."""
        out: dict[str, Any] = {"source_cost_usd": None, "source_cost_records": self.costed.requests,
                               "difference_usd": None, "agrees": None, "explanation": None, "explanation_id": None}
        if self.source_cost is None:
            return out
        cost = pricer.total(self.costed)
        n = self.costed.requests
        out.update(source_cost_usd=usd(self.source_cost), difference_usd=usd(self.source_cost - cost),
                   agrees=_close(self.source_cost, cost, n))
        if out["agrees"]:
            return out
        for name, text in BUG_PATTERNS:
            alt = pricer.total(self.patterns[name])
            if alt != cost and _close(self.source_cost, alt, n):
                out["explanation"] = f"the source's cost matches this traffic with {text}: ${usd(alt)}"
                out["explanation_id"] = name
                return out
        out["explanation"] = "no known bug pattern explains the difference"
        return out


class SourceTally:
    """One input's records, Parity's exact cost of them (as the audit prices them), the source's own cost, and
    the same traffic priced under each known bug pattern, so a difference can be named, not just shown; the same
    per model."""

    def __init__(self, path: str, fmt: str, pricer: Pricer) -> None:
        self.path, self.format, self.pricer = path, fmt, pricer
        self.records = 0
        self.priced = 0
        self.with_bodies = 0
        self.whole = _Side()
        self.models: dict[str, _Side] = {}

    def observe(self, item: Any) -> None:
        """Count one reader item; Exchanges the audit can price add to the costs, the rest only to `records`."""
        from parity.audit.cost import UnpricedError, usage_counts
        from parity.exchange import Exchange

        self.records += 1
        if not isinstance(item, Exchange) or item.response is None:
            return
        model = item.response.get("model") or item.request.get("model")
        usage = item.response.get("usage")
        try:
            counts = usage_counts(usage)
            key = self.pricer.key(model, usage, counts, batch=item.batch, at=item.started_at)
        except (UnpricedError, TypeError):
            return
        self.priced += 1
        if item.tags.get(BODIES_TAG) != "no":
            self.with_bodies += 1
        raw = item.tags.get(SOURCE_COST_TAG)
        amount = None
        if raw is not None:
            try:
                amount = Decimal(raw)
            except ArithmeticError:
                amount = None
        self.whole.add(key, counts, amount)
        self.models.setdefault(key.model, _Side()).add(key, counts, amount)

    def merge_auditor(self, auditor: Auditor) -> None:
        """Take the cost of a partial audit (a JSONL file read by worker processes: no source cost there)."""
        acc = CostAcc.total(f.cost() for f in auditor.families.values())
        self.whole.acc.merge(acc)
        self.priced += acc.requests
        self.records += sum(v[1] for v in auditor.inputs.values())
        self.with_bodies += acc.requests
        for model in {key.model for key in acc.v}:
            self.models.setdefault(model, _Side()).acc.merge(acc.filtered(lambda k, m=model: k.model == m))

    def to_dict(self) -> dict[str, Any]:
        """The `sources[]` entry (docs/audit-json.md)."""
        with localcontext(EXACT):
            out: dict[str, Any] = {
                "path": self.path, "format": self.format, "records": self.records, "priced": self.priced,
                "cost_usd": usd(self.pricer.total(self.whole.acc)), **self.whole.compare(self.pricer),
                "bodies": "all" if self.with_bodies == self.priced else "some" if self.with_bodies else "none",
                "needs_bodies": [] if self.with_bodies == self.priced else list(NEEDS_BODIES),
                "models": [],
            }
            for model, side in sorted(self.models.items(), key=lambda kv: -self.pricer.total(kv[1].acc)):
                compared = side.compare(self.pricer)
                out["models"].append({"model": model, "requests": side.acc.requests,
                                      "cost_usd": usd(self.pricer.total(side.acc)),
                                      **{k: compared[k] for k in ("source_cost_usd", "difference_usd", "agrees",
                                                                  "explanation_id")}})
        return out


def _close(a: Decimal, b: Decimal, records: int) -> bool:
    """Equal within rounding: a micro-dollar per record, or 0.01% of the amount (tools log float dollars)."""
    tolerance = max(Decimal("0.000001") * max(records, 1), abs(b) * Decimal("0.0001"))
    return abs(a - b) <= tolerance


def add_sources(report: AuditReport, tallies: list[SourceTally]) -> AuditReport:
    """Put the top-level `sources` list into a report (additive to `parity.audit/1`)."""
    report.data["sources"] = [t.to_dict() for t in tallies]
    return report


__all__ += ["BUG_PATTERNS", "NEEDS_BODIES", "SourceTally", "add_sources"]
