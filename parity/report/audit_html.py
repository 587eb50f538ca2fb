"""`parity audit --html FILE`: the audit JSON (schema `parity.audit/1`, docs/audit-json.md) as one offline page.

Plots: spend over time by category, cache hit ratio per family, and the savings waterfall (the stacked steps,
so the bars end where the levers applied in order end, never at a sum of percentages). Every string from the
logs (family labels, block paths, fixes, malformed reasons) is escaped.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from parity.audit.report import BUG_PATTERNS
from parity.files import write_atomic
from parity.pricing import format_usd
from parity.report import plots
from parity.report.html import Page, Safe, badge, escape

__all__ = ["money", "render_audit_html", "write_audit_html"]

CATEGORY_LABELS = {
    "input": "input",
    "cache_write_5m": "cache write 5m",
    "cache_write_1h": "cache write 1h",
    "cache_read": "cache read",
    "output": "output",
    "batch_discount": "batch discount",
}
LEVER_LABELS = {"cache": "prompt caching", "batch": "Batch API", "rightsize": "right-size", "cost": "cost",
                "tokens": "tokens"}
MAX_ROWS = 50
PATTERN_LABELS = dict(BUG_PATTERNS)
"""`sources[].explanation_id` → what the tool got wrong, in words."""


def _dec(value: Any) -> Decimal:
    try:
        return Decimal(str(value)) if value not in (None, "") else Decimal(0)
    except InvalidOperation:
        return Decimal(0)


def money(value: Any) -> str:
    """A report amount for people (`format_usd`); a missing or unreadable amount reads $0.00."""
    return format_usd(_dec(value))


def _pct(value: Any) -> str:
    try:
        return f"{float(value):.1f}%"
    except (TypeError, ValueError):
        return ""


def _share(part: Any, whole: Any) -> str:
    whole_d = _dec(whole)
    return f"{float(_dec(part) / whole_d * 100):.1f}%" if whole_d else ""


def _label(row: Mapping[str, Any]) -> str:
    return str(row.get("label") or row.get("family") or "")


def _where(finding: Mapping[str, Any]) -> str:
    path = finding.get("block_path")
    if not path:
        return ""
    offset = finding.get("offset")
    return f"{path} offset {offset}" if offset is not None else str(path)


def _reasons(value: Any) -> str:
    """`reasons` as the JSON has them: {signal: requests} for batch, a list of phrases for right-size."""
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {v:,}" if isinstance(v, int) else f"{k}: {v}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return "; ".join(map(str, value))
    return "" if value is None else str(value)


def _lines(finding: Mapping[str, Any]) -> str:
    lines = [str(n) for n in finding.get("example_lines") or []]
    files = finding.get("example_files") or []
    if files and len(files) == len(lines):
        return ", ".join(f"{os.path.basename(str(f))}:{n}" for f, n in zip(files, lines))
    return ", ".join(lines)


def render_audit_html(report: Mapping[str, Any], *, simulated: bool | None = None) -> str:
    """The audit report as a self-contained HTML page (a string)."""
    sim = bool(report.get("simulated", False)) if simulated is None else simulated
    totals = report.get("totals") or {}
    period = report.get("period") or {}
    inputs = report.get("inputs") or []
    sources = ", ".join(os.path.basename(str(i.get("file", ""))) for i in inputs)
    span = f"{period.get('first') or '?'} to {period.get('last') or '?'}" if period else ""
    subtitle = " · ".join(x for x in (sources, span, f"generated {report.get('generated_at', '')}".strip()) if x)
    page = Page("Parity audit", subtitle=subtitle, simulated=sim,
                simulated_note="These logs came from the simulated emulator: the spend and savings are a "
                               "demonstration, not a real bill.")

    savings = report.get("savings") or {}
    stacked = savings.get("stacked") or {}
    cards: dict[str, str] = {
        "total spend": money(totals.get("cost_usd")),
        "requests": f"{int(totals.get('requests') or 0):,}",
        "output share of spend": _share(totals.get("output_cost_usd"), totals.get("cost_usd")),
    }
    if stacked:
        cards["stacked saving (proven levers)"] = (
            f"{money(stacked.get('saving_usd'))} ({_pct(stacked.get('blended_saving_pct'))})")
    cards["malformed records"] = f"{int(totals.get('malformed') or 0):,}"
    page.cards(cards)

    _spend_section(page, report, totals)
    _sources_section(page, report)
    _cache_section(page, report)
    _findings_section(page, report)
    _batch_rightsize_sections(page, report)
    _savings_section(page, savings)
    _tokens_section(page, report)
    _malformed_section(page, report, totals)
    return page.render()


def write_audit_html(report: Mapping[str, Any], path: str | os.PathLike[str], *, simulated: bool | None = None) -> Path:
    """Write the audit report as one self-contained offline HTML file; returns its path."""
    return write_atomic(path, render_audit_html(report, simulated=simulated))


# -- sections -------------------------------------------------------------------------------------------------


def _spend_section(page: Page, report: Mapping[str, Any], totals: Mapping[str, Any]) -> None:
    page.heading("Where the money goes")
    breakdown = totals.get("breakdown") or {}
    tokens = totals.get("tokens") or {}
    if breakdown:
        page.paragraph("Input against output first: output tokens cost five times input tokens, so the split "
                       "decides which lever matters.", muted=True)
        rows = []
        for key, name in CATEGORY_LABELS.items():
            if key in breakdown and (_dec(breakdown[key]) or key in ("input", "output")):
                rows.append([name, f"{int(tokens.get(key, 0)):,}" if key in tokens else "",
                             money(breakdown[key]), _share(breakdown[key], totals.get("cost_usd"))])
        rows.append(["total", "", money(breakdown.get("total", totals.get("cost_usd"))), "100.0%"])
        page.table(["category", "tokens", "cost", "share"], rows, numeric=[1, 2, 3])

    by_day = report.get("by_day") or []
    if by_day:
        days = [str(d.get("day", "")) for d in by_day]
        stacks: dict[str, list[Decimal]] = {}
        for key, name in CATEGORY_LABELS.items():
            values = [_dec((d.get("breakdown") or {}).get(key)) for d in by_day]
            if any(values):
                stacks[name] = values
        if not stacks:
            stacks["total"] = [_dec(d.get("cost_usd")) for d in by_day]
        page.figure(plots.stacked_bar_svg(days, stacks, title="Spend per day by category", ylabel="USD"),
                    caption="Daily spend at list prices by token category; a batch discount is drawn below zero.")

    by_model = report.get("by_model") or []
    if by_model:
        page.heading("By model", 3)
        page.table(["model", "requests", "input", "output", "cost", "share"], [
            [m.get("model", ""), f"{int(m.get('requests') or 0):,}", money((m.get("breakdown") or {}).get("input")),
             money((m.get("breakdown") or {}).get("output")), money(m.get("cost_usd")),
             _share(m.get("cost_usd"), totals.get("cost_usd"))] for m in by_model[:MAX_ROWS]
        ], numeric=[1, 2, 3, 4, 5])

    top = report.get("top_templates") or []
    if top:
        page.heading("Top templates by spend", 3)
        page.table(["family", "requests", "cost", "share of spend", "output share"], [
            [_label(t), f"{int(t.get('requests') or 0):,}", money(t.get("cost_usd")), _pct(_as_pct(t.get("share"))),
             _pct(_as_pct(t.get("output_share")))] for t in top[:MAX_ROWS]
        ], numeric=[1, 2, 3, 4])


def _verdict(entry: Mapping[str, Any]) -> str:
    """How the source's own cost compares with Parity's: agrees, or the named bug pattern, or unexplained."""
    if entry.get("source_cost_usd") is None:
        return "no cost in this source"
    if entry.get("agrees"):
        return "agrees"
    pattern = PATTERN_LABELS.get(str(entry.get("explanation_id") or ""))
    return f"differs: {pattern}" if pattern else "differs: no known bug pattern explains it"


def _sources_section(page: Page, report: Mapping[str, Any]) -> None:
    """Each input's records and Parity's cost beside the source's own (LiteLLM `spend`, Langfuse `total_cost`,
    Helicone `costUSD`, ...), the difference named by the bug pattern that explains it; then per model."""
    sources: Sequence[Mapping[str, Any]] = report.get("sources") or []
    if not sources:
        return
    page.heading("Sources: Parity's cost beside each tool's own")
    page.paragraph("Parity prices every call from its dated price table; where a log carries the tool's own cost, "
                   "both are shown, and a difference is named when a known cache or batch pricing bug reproduces "
                   "it.", muted=True)
    page.table(["path", "format", "records", "priced", "Parity's cost", "source's cost", "difference", "verdict"], [
        [str(s.get("path", "")), s.get("format", ""), f"{int(s.get('records') or 0):,}",
         f"{int(s.get('priced') or 0):,}", money(s.get("cost_usd")),
         "" if s.get("source_cost_usd") is None else money(s.get("source_cost_usd")),
         "" if s.get("difference_usd") is None else money(s.get("difference_usd")), _verdict(s)]
        for s in sources[:MAX_ROWS]
    ], numeric=[2, 3, 4, 5, 6])
    for s in sources[:MAX_ROWS]:
        models = s.get("models") or []
        if s.get("source_cost_usd") is not None and models:
            page.heading(f"{os.path.basename(str(s.get('path', '')))} by model", 3)
            page.table(["model", "requests", "Parity's cost", "source's cost", "difference", "verdict"], [
                [m.get("model", ""), f"{int(m.get('requests') or 0):,}", money(m.get("cost_usd")),
                 "" if m.get("source_cost_usd") is None else money(m.get("source_cost_usd")),
                 "" if m.get("difference_usd") is None else money(m.get("difference_usd")), _verdict(m)]
                for m in models[:MAX_ROWS]
            ], numeric=[1, 2, 3, 4])
        if s.get("needs_bodies"):
            page.paragraph(f"{s.get('path', '')}: cost-level audit only ({s.get('bodies', 'no')} request bodies); "
                           "not run without them: " + "; ".join(map(str, s["needs_bodies"])) + ".", muted=True)


def _as_pct(share: Any) -> Any:
    """Shares in the JSON are fractions (0..1); show them as percentages."""
    try:
        value = float(share)
    except (TypeError, ValueError):
        return None
    return value * 100 if value <= 1 else value


def _cache_section(page: Page, report: Mapping[str, Any]) -> None:
    families = (report.get("cache") or {}).get("families") or []
    if not families:
        return
    page.heading("Prompt caching per family")
    shown = sorted(families, key=lambda f: -int(f.get("requests") or 0))[:25]
    page.figure(plots.bar_svg([_label(f) for f in shown], [float(f.get("hit_ratio") or 0) * 100 for f in shown],
                              horizontal=True, title="Cache hit ratio per family", xlabel="% of prompt tokens read "
                              "from cache", value_format="{:.1f}%"),
                caption="Hit ratio = cache_read_input_tokens / all prompt tokens, from the logged usage.")
    rows = []
    for f in shown:
        ttl = f.get("ttl") or {}
        bp = f.get("breakpoint") or {}
        rows.append([_label(f), f"{int(f.get('requests') or 0):,}", _pct(float(f.get("hit_ratio") or 0) * 100),
                     f"{int(f.get('read_tokens') or 0):,}", f"{int(f.get('written_tokens') or 0):,}",
                     f"{int(f.get('missed_tokens') or 0):,}",
                     bp.get("path") or (f"none (put one at {bp['suggested_path']})" if bp.get("suggested_path") else "none"),
                     ttl.get("recommended") or "", ", ".join(f.get("causes") or []) or "healthy"])
    page.table(["family", "requests", "hit ratio", "read", "written", "could have been read", "breakpoint",
                "TTL", "causes"], rows, numeric=[1, 2, 3, 4, 5])


def _findings_section(page: Page, report: Mapping[str, Any]) -> None:
    findings = report.get("findings") or []
    page.heading("Findings")
    if not findings:
        page.paragraph("Nothing to fix was found.")
        return
    rows = []
    for f in findings[:200]:
        lever = str(f.get("lever", ""))
        name = Safe(escape(LEVER_LABELS.get(lever, lever)) + (badge("hypothesis", "simulated") if f.get("hypothesis")
                                                               else ""))
        rows.append([name, _label(f), f.get("cause", ""), Safe(f"<code>{escape(_where(f))}</code>") if _where(f) else "",
                     _lines(f), f"{int(f.get('requests') or 0):,}", money(f.get("cost_usd")),
                     money(f.get("saving_usd")), f.get("fix", "")])
    page.table(["lever", "family", "cause", "where", "example lines", "requests", "cost", "saving", "fix"], rows,
               numeric=[5, 6, 7])
    if len(findings) > 200:
        page.paragraph(f"{len(findings) - 200} more findings are in the JSON report.", muted=True)


def _batch_rightsize_sections(page: Page, report: Mapping[str, Any]) -> None:
    batch = report.get("batch") or {}
    if batch.get("families"):
        page.heading("Batch: traffic nobody waits on")
        page.paragraph(f"Now {money(batch.get('cost_now_usd'))}; through the Message Batches API "
                       f"{money(batch.get('cost_batched_usd'))} (saving {money(batch.get('saving_usd'))}).")
        page.table(["family", "requests", "why", "cost now", "batched", "saving"], [
            [_label(b), f"{int(b.get('requests') or 0):,}", _reasons(b.get("reasons")),
             money(b.get("cost_now_usd")), money(b.get("cost_batched_usd")), money(b.get("saving_usd"))]
            for b in batch["families"][:MAX_ROWS]
        ], numeric=[1, 3, 4, 5])
    rightsize = report.get("rightsize") or {}
    if rightsize.get("candidates"):
        page.heading("Right-size candidates", badges=[badge("hypothesis until proven", "simulated")])
        page.paragraph(rightsize.get("status", ""), muted=True)
        page.table(["family", "model", "candidate", "why", "requests", "cost", "if proven", "saving if proven"], [
            [_label(c), c.get("model", ""), c.get("candidate_model", ""), _reasons(c.get("reasons")),
             f"{int(c.get('requests') or 0):,}", money(c.get("cost_usd")), money(c.get("cost_if_proven_usd")),
             money(c.get("saving_if_proven_usd"))] for c in rightsize["candidates"][:MAX_ROWS]
        ], numeric=[4, 5, 6, 7])


def _savings_section(page: Page, savings: Mapping[str, Any]) -> None:
    stacked = savings.get("stacked") or {}
    if not stacked:
        return
    page.heading("Savings, stacked")
    steps = stacked.get("steps") or []
    if steps:
        bars = [(LEVER_LABELS.get(s.get("lever"), s.get("lever")) + (" (hypothesis)" if s.get("hypothesis") else ""),
                 -_dec(s.get("saving_usd"))) for s in steps]
        end = (stacked.get("with_hypotheses") or {}).get("cost_after_usd") or stacked.get("cost_after_usd")
        page.figure(plots.waterfall_svg(("spend now", _dec(stacked.get("cost_before_usd"))), bars,
                                        "after all levers", title="Savings waterfall", ylabel="USD"),
                    caption="Each lever acts on what the previous ones left, on the traffic it applies to; "
                            f"ends at {money(end)}.")
    with_h = stacked.get("with_hypotheses") or {}
    page.paragraph(
        f"Proven levers (cache, batch): {money(stacked.get('cost_before_usd'))} → {money(stacked.get('cost_after_usd'))}, "
        f"saving {money(stacked.get('saving_usd'))} ({_pct(stacked.get('blended_saving_pct'))})."
        + (f" With the right-size hypothesis: {money(with_h.get('cost_after_usd'))}, saving "
           f"{money(with_h.get('saving_usd'))} ({_pct(with_h.get('blended_saving_pct'))})." if with_h else ""))
    levers = savings.get("levers") or []
    if levers:
        page.table(["lever", "applies to", "saving alone", "% of total alone"], [
            [LEVER_LABELS.get(lv.get("lever"), lv.get("lever")) + (" (hypothesis)" if lv.get("hypothesis") else ""),
             money(lv.get("applies_to_usd")), money(lv.get("saving_usd")), _pct(lv.get("saving_pct_of_total"))]
            for lv in levers
        ], numeric=[1, 2, 3])
        page.paragraph("Stand-alone savings are each measured on today's bill; they overlap and do not add up "
                       f"(their sum would be {money(stacked.get('sum_of_standalone_usd'))}).", muted=True)
    assumptions = savings.get("assumptions") or []
    if assumptions:
        page.heading("Assumptions", 3)
        page.html(Safe("<ul>" + "".join(f"<li>{escape(a)}</li>" for a in assumptions) + "</ul>"))


def _tokens_section(page: Page, report: Mapping[str, Any]) -> None:
    tokens = report.get("tokens") or {}
    rows = tokens.get("rows") or []
    if not tokens.get("recounted"):
        return
    page.heading("Token recount", badges=[badge(tokens.get("label", ""), "simulated" if tokens.get("estimate") else "")])
    page.paragraph(f"{tokens.get('recounted')} logged requests counted again; "
                   f"{tokens.get('differing_over_2pct', 0)} differ from the logged usage by more than 2%.")
    page.table(["line", "model", "counted", "logged", "difference"], [
        [r.get("line", ""), r.get("model", ""), f"{int(r.get('input_tokens') or 0):,}",
         "" if r.get("logged_input_tokens") is None else f"{int(r['logged_input_tokens']):,}",
         "" if r.get("difference") is None else f"{int(r['difference']):+,}"] for r in rows[:MAX_ROWS]
    ], numeric=[0, 2, 3, 4])


def _malformed_section(page: Page, report: Mapping[str, Any], totals: Mapping[str, Any]) -> None:
    malformed: Sequence[Mapping[str, Any]] = report.get("malformed") or []
    if not malformed:
        return
    page.heading("Skipped records")
    count = int(totals.get("malformed") or len(malformed))
    page.paragraph(f"{count:,} records could not be read or priced; they are left out of every total above.")
    page.table(["where", "reason"], [[f"{os.path.basename(str(m.get('file', '')))}:{m.get('line', '')}",
                                      m.get("reason", "")] for m in malformed[:MAX_ROWS]])
    if count > min(len(malformed), MAX_ROWS):
        page.paragraph(f"Showing {min(len(malformed), MAX_ROWS)} of {count:,}; the JSON report lists up to "
                       f"{report.get('malformed_listed_max', len(malformed))}.", muted=True)
