"""The pipeline: split across processes it gives the same report; readers plug in; the CLI and the schema."""

from __future__ import annotations

import importlib.util
import json
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from parity.audit import REPORT_SCHEMA, AuditOptions, audit_exchanges, audit_paths, validate_report
from parity.cli import app
from parity.exchange import read_jsonl

ROOT = Path(__file__).resolve().parents[2]


def _bench_log(path: Path, lines: int) -> Path:
    spec = importlib.util.spec_from_file_location("audit_bench", ROOT / "bench" / "audit_bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.generate(path, lines, seed=3)
    return path


@pytest.fixture(scope="module")
def bench_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _bench_log(tmp_path_factory.mktemp("bench") / "log.jsonl", 3000)


def _summary(report: dict) -> dict:
    return {
        "totals": report["totals"],
        "malformed": [(m["file"], m["line"], m["reason"].split(" (")[0]) for m in report["malformed"]],
        "families": {f["family"]: (f["requests"], f["cost_usd"]) for f in report["by_family"]},
        "days": report["by_day"],
        "batch": {b["family"]: b["saving_usd"] for b in report["batch"]["families"]},
        "causes": sorted((f["lever"], f["family"], f["cause"]) for f in report["findings"]),
    }


def test_split_across_processes_gives_the_same_report(bench_log: Path) -> None:
    one = audit_paths([str(bench_log)], workers=1).to_json()
    two = audit_paths([str(bench_log)], workers=2).to_json()
    validate_report(two)
    assert _summary(one) == _summary(two)
    assert one["totals"]["requests"] == 3000 and one["totals"]["malformed"] == 3
    lines = {m["line"] for m in two["malformed"]}
    text = bench_log.read_text().splitlines()
    assert all(not text[n - 1].startswith('{"request":{') for n in lines)  # real line numbers after the split


def test_family_cap_keeps_totals_exact(bench_log: Path) -> None:
    full = audit_paths([str(bench_log)], workers=1).to_json()
    capped = audit_paths([str(bench_log)], workers=1, options=AuditOptions(max_families=3)).to_json()
    assert capped["totals"] == full["totals"]
    assert len(capped["by_family"]) == 4 and any(f["family"] == "(other)" for f in capped["by_family"])


def test_any_reader_plugs_in(bench_log: Path, tmp_path: Path) -> None:
    items = ((str(bench_log), line, item) for line, item in read_jsonl(bench_log))
    via_reader = audit_exchanges(items).to_json()
    assert _summary(via_reader) == _summary(audit_paths([str(bench_log)], workers=1).to_json())

    span_attrs = [
        {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
        {"key": "gen_ai.provider.name", "value": {"stringValue": "anthropic"}},
        {"key": "gen_ai.request.model", "value": {"stringValue": "claude-sonnet-4-6"}},
        {"key": "gen_ai.response.model", "value": {"stringValue": "claude-sonnet-4-6"}},
        {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "1500"}},
        {"key": "gen_ai.usage.output_tokens", "value": {"intValue": "200"}},
    ]
    t0 = 1_764_000_000_000_000_000
    spans = [{"traceId": "5b8efff798038103d269b633813fc60c", "spanId": f"{k:016x}", "name": "chat",
              "startTimeUnixNano": str(t0 + k * 10**9), "endTimeUnixNano": str(t0 + k * 10**9 + 5 * 10**8),
              "attributes": span_attrs, "status": {}} for k in range(1, 4)]
    otlp = tmp_path / "trace.json"
    otlp.write_text(json.dumps({"resourceSpans": [{"resource": {"attributes": []},
                                                   "scopeSpans": [{"scope": {"name": "x"}, "spans": spans}]}]}, indent=2))
    report = audit_paths([str(otlp)]).to_json()  # detected as OTLP
    assert report["totals"]["requests"] == 3
    from parity.pricing import cost

    assert Decimal(report["totals"]["cost_usd"]) == 3 * cost(
        "claude-sonnet-4-6", {"input_tokens": 1500, "output_tokens": 200}).total


def test_cli_report_json_and_html(bench_log: Path, tmp_path: Path) -> None:
    out, html = tmp_path / "audit.json", tmp_path / "audit.html"
    args = ["audit", str(bench_log), "--json", str(out), "--workers", "1"]
    has_html = importlib.util.find_spec("parity.report.audit_html") is not None
    if has_html:
        args += ["--html", str(html)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    for heading in ("Spend: input vs output", "By model", "Top templates by spend", "Cache, per family",
                    "Savings, stacked", "Skipped 3 line(s)"):
        assert heading in result.output
    assert result.output.index("Spend: input vs output") < result.output.index("By model")
    data = json.loads(out.read_text())
    validate_report(data)
    assert data["savings"]["stacked"]["steps"][0]["lever"] == "cache"
    if has_html:
        assert html.read_text().lstrip().lower().startswith("<!doctype html")


def test_cli_rejects_unknown_format(bench_log: Path) -> None:
    result = CliRunner().invoke(app, ["audit", str(bench_log), "--format", "csv", "-q"])
    assert result.exit_code != 0


def test_schema_is_documented() -> None:
    doc = (ROOT / "docs" / "audit-json.md").read_text()
    for name in REPORT_SCHEMA["required"]:
        assert f"`{name}`" in doc, name
    finding = REPORT_SCHEMA["properties"]["findings"]["items"]
    for name in finding["required"]:
        assert f"`{name}`" in doc, name
    from parity.audit import CACHE_CAUSES

    for cause in CACHE_CAUSES:
        assert f"`{cause}`" in doc, cause


def test_recount_compares_count_tokens_with_logged_usage(bench_log: Path) -> None:
    """`--recount N`: count_tokens through the real SDK (against the emulator) vs the usage the log holds."""
    from parity.emulator.service import Emulator
    from parity.tokens import TokenCounter

    counter = TokenCounter(Emulator().client(), cache_path=None)
    report = audit_paths([str(bench_log)], workers=1, options=AuditOptions(recount=6), counter=counter).to_json()
    tokens = report["tokens"]
    assert tokens["recounted"] == 6 and tokens["estimate"] is False
    for row in tokens["rows"]:
        assert row["difference"] == row["input_tokens"] - row["logged_input_tokens"]
    # the bench log's usage is synthetic (2 characters a token), so count_tokens disagrees: a tokens finding
    [finding] = [f for f in report["findings"] if f["lever"] == "tokens"]
    assert finding["cause"] == "usage_mismatch" and finding["requests"] == tokens["differing_over_2pct"]
    offline = audit_paths([str(bench_log)], workers=1, options=AuditOptions(recount=6)).to_json()
    assert offline["tokens"]["estimate"] is True and "estimate" in offline["tokens"]["label"]
    assert [f for f in offline["findings"] if f["lever"] == "tokens"] == []
