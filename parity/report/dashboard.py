"""The live dashboard page: one self-contained HTML page (inline CSS and SVG, no scripts, no network) that reloads
itself every few seconds with `<meta http-equiv="refresh">`.

It shows what `parity.audit.summary.summarize` read from the ledger (exact spend over time by cost category, requests
by route, fallbacks by reason, drift calls per task), the drift state of each watched task with its e-values, the
certificates behind the policy with their verdicts, and each gateway key's spend against its budget. Served by the
gateway at GET /dashboard (`parity.gateway.dashboard`) and standalone by `parity dashboard --ledger URL`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from parity.audit.cost import usd
from parity.audit.summary import CATEGORIES, LedgerSummary
from parity.policy import Policy
from parity.pricing import format_usd
from parity.report.html import Page, Safe, badge, escape, table

__all__ = ["CertificateRow", "KeyRow", "certificate_rows", "key_rows", "render_dashboard"]

DEFAULT_REFRESH_S = 15
_LEVERS = {
    "cache": "cached tokens (written or read) priced as plain input, minus what was paid",
    "batch": "batch requests at standard rates, minus what was paid",
    "rightsize": "routed requests billed on their task's baseline model, minus what was paid; needs the policy",
}


@dataclass(frozen=True)
class CertificateRow:
    task: str
    mode: str
    baseline: str
    candidate: str | None
    certificate: str | None
    verdict: str | None
    in_force: str  # "routed", "refused: why", or the mode when not routing


@dataclass(frozen=True)
class KeyRow:
    id: str
    name: str
    active: bool
    budget: Decimal | None
    spent: Decimal


def certificate_rows(policy: Policy | None, refused: Mapping[str, str] | None = None) -> list[CertificateRow]:
    """One row per policy task: its certificate and verdict, and whether the gateway routes on it (`refused` maps
    a task to why its route is refused, as the gateway's `TaskRouter.refused`)."""
    if policy is None:
        return []
    refused = refused or {}
    rows = []
    for name, task in sorted(policy.tasks.items()):
        cert = task.certificate
        if task.mode != "route":
            in_force = task.mode
        elif name in refused:
            in_force = f"refused: {refused[name]}"
        else:
            in_force = "routed"
        rows.append(CertificateRow(name, task.mode, task.baseline_model, task.candidate_model,
                                   cert.id if cert else None, cert.verdict if cert else None, in_force))
    return rows


def key_rows(keys: Iterable[Any], spent: Mapping[str, Decimal] | Any) -> list[KeyRow]:
    """Rows for gateway keys (`parity.gateway.keys.GatewayKey` records); `spent` maps a key id to its spend or is a
    callable that returns it (the gateway's live `KeyLimits.spent`)."""
    spend = spent if callable(spent) else (lambda key_id: spent.get(key_id, Decimal(0)))
    return [KeyRow(k.id, k.name, k.active, k.budget, spend(k.id)) for k in keys]


def render_dashboard(summary: LedgerSummary, *, drift: Mapping[str, Mapping[str, Any]] | None = None,
                     drift_source: str = "", certificates: Sequence[CertificateRow] = (),
                     keys: Sequence[KeyRow] | None = None, refresh_s: int = DEFAULT_REFRESH_S,
                     source: str = "") -> str:
    """The dashboard page as HTML text.

    `drift` maps a task to its drift status (the gateway's `DriftMonitor.status()`, or a persisted rollback from
    `parity.audit.summary.drift_states`); `keys` is None when the gateway has no keys file."""
    from parity.report.plots import bar_svg, stacked_bar_svg  # matplotlib loads only when a page is drawn

    page = Page("Parity dashboard", subtitle=f"Ledger {source}" if source else None)
    page.html(_cards(summary))
    if summary.unpriced:
        page.notice(f"{len(summary.unpriced)} ledger rows could not be priced and are not in the total "
                    f"(first: row {summary.unpriced[0][0]}: {summary.unpriced[0][1]}); `parity audit` lists them.")

    page.heading("Spend over time")
    if summary.spend_over_time:
        fmt = {"minute": "%m-%d %H:%M", "hour": "%m-%d %H:00", "day": "%Y-%m-%d"}[summary.bucket]
        labels = [start.strftime(fmt) for start, _ in summary.spend_over_time]
        stacks = {c: [amounts[c] for _, amounts in summary.spend_over_time] for c in CATEGORIES}
        page.html(_figure("spend", stacked_bar_svg(labels, stacks, ylabel="USD", title=f"Spend per {summary.bucket}"),
                          "Exact list-price cost by category, net of the batch discount (as `parity audit`)."))
    else:
        page.paragraph("No priced exchanges in the ledger yet.", muted=True)
    page.table(["Category", "Spend", "Share"],
               [(c, format_usd(a), _share(a, summary.total_usd)) for c, a in summary.by_category.items()],
               numeric=[1, 2])

    page.heading("Realised saving by lever")
    levers = {name: amount for name, amount in summary.savings.items() if amount is not None}
    if levers and any(levers.values()):
        page.html(_figure("savings", bar_svg(list(levers), list(levers.values()), horizontal=True, xlabel="USD saved",
                                             value_format="{:,.6f}", color="#1c7c4a"),
                          "Against the same traffic without the lever, at the same token counts (as `parity "
                          "savings`)."))
    page.table(["Lever", "Saved", "How it is counted"],
               [(name, format_usd(amount) if amount is not None else "n/a", _LEVERS.get(name, ""))
                for name, amount in summary.savings.items()], numeric=[1])

    page.heading("Requests by route")
    if summary.routes:
        page.html(_figure("routes", bar_svg(list(summary.routes), list(summary.routes.values()), horizontal=True,
                                            value_format="{:,.0f}", xlabel="requests"),
                          "Every ledger row: answers, shadow (drift) calls, rejected candidate attempts."))
    else:
        page.paragraph("No requests recorded yet.", muted=True)

    page.heading("Fallbacks by reason")
    if summary.fallbacks:
        page.html(_figure("fallbacks", bar_svg(list(summary.fallbacks), list(summary.fallbacks.values()),
                                               horizontal=True, value_format="{:,.0f}", xlabel="fallbacks",
                                               color="#b3261e"),
                          "Routed requests answered by the baseline instead, by the reason code recorded."))
    else:
        page.paragraph("No fallbacks recorded.", muted=True)

    page.heading("Drift watch")
    page.html(_drift_table(drift or {}, summary.shadowed, drift_source))

    page.heading("Certificates")
    if certificates:
        page.table(["Task", "Mode", "Baseline", "Candidate", "Certificate", "Verdict", "In force"],
                   [(c.task, c.mode, c.baseline, c.candidate or "", c.certificate or "—", _verdict(c.verdict),
                     c.in_force) for c in certificates])
    else:
        page.paragraph("No policy given (pass --policy FILE, or serve with a policy).", muted=True)

    page.heading("Key budgets")
    if keys is None:
        page.paragraph("No keys file (pass --keys FILE, or serve with --keys).", muted=True)
    elif not keys:
        page.paragraph("The keys file has no keys.", muted=True)
    else:
        page.table(["Key", "Name", "Status", "Spent", "Budget", "Used"],
                   [(k.id, k.name, "active" if k.active else "revoked", format_usd(k.spent),
                     format_usd(k.budget) if k.budget is not None else "no budget",
                     _share(k.spent, k.budget) if k.budget else "") for k in keys], numeric=[3, 4, 5])

    html = page.render()
    refresh = f'<meta http-equiv="refresh" content="{max(1, int(refresh_s))}">' if refresh_s else ""
    return html.replace("<head>", f"<head>{refresh}", 1)


def _cards(s: LedgerSummary) -> Safe:
    """Headline numbers; the total carries its exact amount in `data-usd` (what the browser test reads)."""
    span = (f"{s.first:%Y-%m-%d %H:%M} to {s.last:%Y-%m-%d %H:%M} UTC" if s.first and s.last else "no traffic yet")
    cards = [
        ("Total spend", format_usd(s.total_usd), f' id="total-usd" data-usd="{escape(usd(s.total_usd))}"'),
        ("Priced requests", f"{s.priced:,}", ' id="priced"'),
        ("Ledger rows", f"{s.rows:,}", ' id="rows"'),
        ("Errors (not billed)", f"{s.errors:,}", ""),
    ]
    body = "".join(f'<div class="card"><div class="k">{escape(k)}</div><div class="v"{attrs}>{escape(v)}</div></div>'
                   for k, v, attrs in cards)
    return Safe(f'<div class="cards">{body}</div><p class="muted">Traffic {escape(span)}; '
                f"refreshes by itself.</p>")


def _figure(name: str, svg: Safe, caption: str) -> Safe:
    return Safe(f'<figure class="chart" data-chart="{escape(name)}">{svg}'
                f"<figcaption>{escape(caption)}</figcaption></figure>")


def _drift_table(drift: Mapping[str, Mapping[str, Any]], shadowed: Mapping[str, int], source: str) -> Safe:
    tasks = sorted(set(drift) | set(shadowed))
    if not tasks:
        return Safe('<p class="muted">No routed task is watched for drift.</p>')
    rows = []
    for task in tasks:
        st = drift.get(task, {})
        segment = st.get("current_segment") if isinstance(st.get("current_segment"), Mapping) else st
        state = st.get("state") or "no live state"
        kind = "bad" if state == "rolled_back" else "good" if state == "watching" else ""
        rows.append((task, badge(str(state).replace("_", " "), kind), _num(segment.get("e_value")),
                     _num(segment.get("futility_e_value")), st.get("judged", ""), shadowed.get(task, 0),
                     st.get("reason") or (st.get("rollback") or {}).get("reason") or ""))
    note = f'<p class="muted">{escape(source)}</p>' if source else ""
    return Safe(table(["Task", "State", "e-value (still as good)", "e-value (worse: rolls back)", "Judged",
                       "Drift calls in ledger", "Rollback reason"], rows, numeric=[2, 3, 4, 5]) + note)


def _num(value: Any) -> str:
    if value is None or value == "":
        return "—"
    try:
        return f"{float(value):.3g}"
    except (TypeError, ValueError):
        return str(value)


def _verdict(verdict: str | None) -> Safe | str:
    if not verdict:
        return "—"
    return badge(verdict, "good" if verdict == "switch" else "bad" if verdict == "do_not_switch" else "")


def _share(part: Decimal, whole: Decimal | None) -> str:
    if not whole:
        return "—"
    return f"{float(part / whole):.1%}"
