"""Reports: offline self-contained HTML with inline SVG plots, user strings escaped everywhere."""

from __future__ import annotations

import re
from datetime import date, timedelta
from decimal import Decimal

import pytest

from parity.report import plots
from parity.report.html import Page, Safe, badge, escape, table

EXTERNAL = re.compile(r"""(?:src|href|xlink:href|url)\s*[=(]\s*["']?\s*(?:https?:)?//""", re.I)
EVIL = '<script>alert("x")</script>&$1$'


def assert_self_contained(text: str) -> None:
    assert not EXTERNAL.search(text), EXTERNAL.search(text).group(0)
    assert "<script" not in text.lower()
    assert "<!DOCTYPE svg" not in text and "<metadata" not in text


def test_every_plot_is_inline_svg_that_escapes_labels():
    days = [date(2026, 1, 1) + timedelta(days=d) for d in range(10)]
    svgs = [
        plots.line_svg({EVIL: [(d, k) for k, d in enumerate(days)]}, title=EVIL, ylabel="ratio"),
        plots.bar_svg([EVIL, "b"], [Decimal("1.25"), 3], horizontal=True, title="spend"),
        plots.stacked_bar_svg([d.isoformat() for d in days], {EVIL: [1] * 10, "output": [Decimal("2.5")] * 10}),
        plots.waterfall_svg(("now", Decimal("100")), [(EVIL, Decimal("-20")), ("batch", -10)], "after"),
        plots.confidence_sequence_svg([1, 2, 3], [0.0, 0.01, 0.02], [-0.5, -0.2, -0.01], -0.05, upper=[0.5, 0.2, 0.05]),
        plots.histogram_svg([1, 2, 2, 3, 3, 3], bins=3, xlabel=EVIL),
        plots.win_tie_loss_svg(7, 2, 1, labels=[EVIL]),
    ]
    for svg in svgs:
        assert isinstance(svg, Safe) and svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
        assert_self_contained(svg)
        assert "<script>" not in svg
    assert "&lt;script&gt;" in svgs[0]  # the label is there, as text, escaped
    assert all(v in svgs[3] for v in ("100.00", "−20.00", "−10.00", "70.00"))  # the waterfall walks 100 → 70
    assert "bound clears the margin at n=3" in svgs[4]


def test_plot_ids_do_not_collide_between_figures():
    a = plots.bar_svg(["x"], [1])
    b = plots.bar_svg(["x"], [1])
    ids = lambda svg: set(re.findall(r'id="([^"]+)"', svg))  # noqa: E731
    assert ids(a) and not ids(a) & ids(b)
    for svg in (a, b):  # every internal reference points at an id of the same figure
        refs = set(re.findall(r'(?:url\(#|href="#)([^)"]+)', svg))
        assert refs and refs <= ids(svg)


def test_bad_plot_input_is_refused():
    with pytest.raises(ValueError, match="has 1 values for 2 labels"):
        plots.stacked_bar_svg(["a", "b"], {"input": [1]})
    with pytest.raises(ValueError, match="same number of rows"):
        plots.win_tie_loss_svg([1, 2], [1], [1, 2])


def test_page_escapes_text_and_marks_simulation(tmp_path):
    page = Page(EVIL, subtitle=EVIL, simulated=True)
    page.heading(EVIL, badges=[badge("switch", "good")]).paragraph(EVIL).cards({EVIL: "$12.00"})
    page.table(["family", "cost"], [[EVIL, "1.00"], [Safe("<code>ok</code>"), "2.00"]], numeric=[1])
    page.figure(plots.bar_svg(["a"], [1]), caption=EVIL)
    path = page.write(tmp_path / "sub" / "r.html")
    text = path.read_text()
    assert_self_contained(text)
    assert text.count("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;") >= 5
    assert '<span class="badge simulated">simulated</span>' in text and "simulated emulator" in text
    assert "<code>ok</code>" in text and '<td class="num">2.00</td>' in text and "<svg" in text
    assert not Page("plain").render().count("badge simulated")
    with pytest.raises(TypeError):
        page.figure("<svg/>")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        page.html("<b>raw</b>")  # type: ignore[arg-type]


def test_escape_and_table_helpers():
    assert escape(None) == "" and escape('"&') == "&quot;&amp;" and escape(Safe("<b>")) == "<b>"
    assert "<th class=\"num\">n</th>" in table(["a", "n"], [], numeric=[1])


# -- the audit page -------------------------------------------------------------------------------------------

def _breakdown(total: str, **parts: str) -> dict:
    out = {k: "0" for k in ("input", "cache_write_5m", "cache_write_1h", "cache_read", "output", "batch_discount")}
    out.update(parts)
    out["total"] = total
    return out


def _row(requests: int, total: str, **parts: str) -> dict:
    tokens = {k: 1000 for k in ("input", "cache_write_5m", "cache_write_1h", "cache_read", "output")}
    return {"requests": requests, "cost_usd": total, "breakdown": _breakdown(total, **parts), "tokens": tokens}


def audit_report() -> dict:
    """A report written by hand to the documented schema (parity.audit/1)."""
    fam = {"family": "fp_1", "kind": "fingerprint", "label": EVIL, "models": {"claude-sonnet-4-5": 2},
           "example_line": 1, **_row(2, "3.00", input="2.00", output="1.00")}
    return {
        "schema": "parity.audit/1",
        "generated_at": "2026-03-02T00:00:00Z",
        "inputs": [{"file": "/logs/app.jsonl", "lines": 3, "records": 2}],
        "period": {"first": "2026-03-01T00:00:00Z", "last": "2026-03-01T23:00:00Z"},
        "totals": {"requests": 2, "cost_usd": "3.00", "input_cost_usd": "2.00", "output_cost_usd": "1.00",
                   "output_share": 0.3333, "breakdown": _breakdown("3.00", input="2.00", output="1.00"),
                   "tokens": {"input": 2000, "cache_write_5m": 0, "cache_write_1h": 0, "cache_read": 0, "output": 40},
                   "errors": 0, "malformed": 1},
        "malformed": [{"file": "/logs/app.jsonl", "line": 3, "reason": "not valid JSON " + EVIL}],
        "by_model": [{"model": "claude-sonnet-4-5", **_row(2, "3.00", input="2.00", output="1.00")}],
        "by_family": [fam],
        "by_day": [{"day": "2026-03-01", **_row(1, "1.00", input="0.75", output="0.50", batch_discount="-0.25")},
                   {"day": "2026-03-02", **_row(1, "2.00", input="1.25", output="0.75")}],
        "top_templates": [{"family": "fp_1", "label": EVIL, "requests": 2, "cost_usd": "3.00", "share": 1.0,
                           "output_share": 0.3333}],
        "cache": {"families": [{"family": "fp_1", "label": EVIL, "requests": 2, "hit_ratio": 0.25, "read_tokens": 500,
                                "written_tokens": 0, "uncached_tokens": 1500, "missed_tokens": 900,
                                "breakpoint": {"path": None, "suggested_path": "system.0"}, "ttl": {"recommended": "5m"},
                                "causes": ["volatile_timestamp"]}]},
        "batch": {"families": [{"family": "fp_1", "label": EVIL, "requests": 2, "reasons": {"tag": 2, "night_burst": 1},
                                "cost_now_usd": "3.00", "cost_batched_usd": "1.50", "saving_usd": "1.50"}],
                  "cost_now_usd": "3.00", "cost_batched_usd": "1.50", "saving_usd": "1.50"},
        "rightsize": {"candidates": [], "status": "hypothesis"},
        "tokens": {"recounted": 0, "estimate": None, "rows": []},
        "findings": [{"lever": "cache", "family": "fp_1", "label": EVIL, "cause": "volatile_timestamp",
                      "block_path": "system.0.text", "offset": 212, "example_lines": [1, 2],
                      "example_files": ["/logs/app.jsonl", "/logs/app.jsonl"], "requests": 2, "cost_usd": "3.00",
                      "saving_usd": "1.20", "hypothesis": False, "fix": "move the date " + EVIL}],
        "savings": {
            "levers": [{"lever": "cache", "saving_usd": "1.20", "applies_to_usd": "3.00", "saving_pct_of_total": 40.0},
                       {"lever": "batch", "saving_usd": "0", "applies_to_usd": "0", "saving_pct_of_total": 0.0},
                       {"lever": "rightsize", "saving_usd": "0.90", "applies_to_usd": "3.00",
                        "saving_pct_of_total": 30.0, "hypothesis": True}],
            "stacked": {"order": ["cache", "batch", "rightsize"], "cost_before_usd": "3.00",
                        "steps": [{"lever": "cache", "saving_usd": "1.20", "cost_after_usd": "1.80"},
                                  {"lever": "batch", "saving_usd": "0", "cost_after_usd": "1.80"},
                                  {"lever": "rightsize", "saving_usd": "0.54", "cost_after_usd": "1.26",
                                   "hypothesis": True}],
                        "cost_after_usd": "1.80", "saving_usd": "1.20", "blended_saving_pct": 40.0,
                        "with_hypotheses": {"cost_after_usd": "1.26", "saving_usd": "1.74", "blended_saving_pct": 58.0},
                        "sum_of_standalone_usd": "2.10"},
            "assumptions": ["levers stack on token vectors " + EVIL]},
    }


def test_audit_html_is_self_contained_with_the_three_plots(tmp_path):
    from parity.report.audit_html import write_audit_html

    report = audit_report()
    try:
        from parity.audit.findings import validate_report
    except ImportError:  # the audit package not present: the fixture still follows docs/audit-json.md
        pass
    else:
        validate_report(report)
    text = write_audit_html(report, tmp_path / "audit.html", simulated=True).read_text()
    assert_self_contained(text)
    assert text.count("<svg") == 3
    assert "Spend per day by category" in text and "Cache hit ratio per family" in text and "Savings waterfall" in text
    assert "<script>alert" not in text and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in text
    assert "badge simulated" in text
    assert "system.0.text offset 212" in text and "app.jsonl:1, app.jsonl:2" in text
    assert "$3.00" in text and "$1.20 (40.0%)" in text and "$1.26" in text  # totals, stacked saving, end of waterfall
    assert "do not add up" in text and "app.jsonl:3" in text
    assert "none (put one at system.0)" in text and "tag: 2, night_burst: 1" in text


def test_audit_html_from_a_real_audit(tmp_path):
    pytest.importorskip("parity.audit.run")
    from datetime import datetime, timedelta, timezone

    from parity.audit.run import audit_exchanges
    from parity.exchange import Exchange
    from parity.report.audit_html import render_audit_html

    t0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
    items = []
    for k in range(6):
        at = t0 + timedelta(hours=7 * k)
        request = {"model": "claude-sonnet-4-5", "max_tokens": 50, "system": f"Now: {at.isoformat()}. " + "Rules. " * 300,
                   "messages": [{"role": "user", "content": f"ticket {k}"}]}
        response = {"id": f"m{k}", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                    "content": [{"type": "text", "text": "billing"}], "stop_reason": "end_turn",
                    "usage": {"input_tokens": 1200, "output_tokens": 2}}
        items.append(("app.jsonl", k + 1, Exchange(request=request, response=response, started_at=at, duration_ms=500)))
    report = audit_exchanges(items).data
    text = render_audit_html(report)
    assert_self_contained(text)
    assert text.count("<svg") == 3 and "badge simulated" not in text
