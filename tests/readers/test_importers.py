"""Each importer on a few hundred calls in its tool's own format: the exact total, the malformed rows by line, the
source's own cost beside Parity's, and the token conventions checked per file."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from parity.audit import audit_paths
from parity.cli import app
from parity.errors import InputError
from parity.exchange import Exchange
from parity.pricing import cost
from parity.readers import FORMATS, detect_format, read_exchanges
from parity.readers.common import SemanticsError
from readers.fixtures import generate

EXPECTED_FORMAT = {
    "litellm.csv": "litellm", "litellm.json": "litellm", "langfuse.jsonl": "langfuse", "langfuse.csv": "langfuse",
    "helicone.jsonl": "helicone", "otlp.jsonl": "otlp", "usage_report.jsonl": "anthropic-usage",
}
SOURCE_COST = {  # what each tool's own cost field should show against Parity's, by the generator's design
    "litellm.csv": (True, None), "litellm.json": (True, None), "otlp.jsonl": (True, None),
    "langfuse.jsonl": (False, "cache_counted_twice"), "langfuse.csv": (False, "cache_counted_twice"),
    "helicone.jsonl": (False, "ttl_1h_at_5m"), "usage_report.jsonl": (None, None),
}


def expected_total(calls: list[generate.Call]) -> Decimal:
    """Independently of any reader: pricing.cost over the generator's token counts, call by call."""
    total = Decimal(0)
    for c in calls:
        usage = {"input_tokens": c.uncached, "cache_read_input_tokens": c.read, "output_tokens": c.output,
                 "cache_creation_input_tokens": c.w5 + c.w1,
                 "cache_creation": {"ephemeral_5m_input_tokens": c.w5, "ephemeral_1h_input_tokens": c.w1}}
        total += cost(c.model, usage, batch=c.batch, at=c.started).total
    return total


def test_fixtures_cover_every_cache_kind_and_batch(calls: list[generate.Call]) -> None:
    assert len(calls) >= 300
    assert any(c.read for c in calls) and any(c.w5 for c in calls) and any(c.w1 for c in calls)
    assert sum(c.batch for c in calls) >= 40


@pytest.mark.parametrize("name", sorted(EXPECTED_FORMAT))
def test_detected_from_the_file_itself(fixtures: dict[str, Any], name: str) -> None:
    assert detect_format(fixtures[name][0]) == EXPECTED_FORMAT[name]
    assert EXPECTED_FORMAT[name] in FORMATS


def test_cost_report_is_detected(fixtures: dict[str, Any]) -> None:
    assert detect_format(fixtures["cost_report.json"][0]) == "anthropic-cost"
    with pytest.raises(InputError, match="parity reconcile"):
        list(read_exchanges(fixtures["cost_report.json"][0]))


@pytest.mark.parametrize("name", sorted(EXPECTED_FORMAT))
def test_audits_to_the_exact_total(fixtures: dict[str, Any], calls: list[generate.Call], name: str) -> None:
    path, bad_lines = fixtures[name]
    data = audit_paths([str(path)], workers=1).data
    assert Decimal(data["totals"]["cost_usd"]) == expected_total(calls)  # to the micro-dollar and beyond: exact
    assert data["totals"]["tokens"]["cache_write_1h"] == sum(c.w1 for c in calls)
    assert data["totals"]["tokens"]["cache_read"] == sum(c.read for c in calls)
    assert Decimal(data["totals"]["breakdown"]["batch_discount"]) < 0
    assert sorted(m["line"] for m in data["malformed"]) == bad_lines
    assert all(m["file"] == str(path) for m in data["malformed"])


@pytest.mark.parametrize("name", sorted(EXPECTED_FORMAT))
def test_source_cost_beside_parity(fixtures: dict[str, Any], calls: list[generate.Call], name: str) -> None:
    path, _ = fixtures[name]
    (source,) = audit_paths([str(path)], workers=1).data["sources"]
    assert source["path"] == str(path) and source["format"] == EXPECTED_FORMAT[name]
    assert Decimal(source["cost_usd"]) == expected_total(calls)
    agrees, pattern = SOURCE_COST[name]
    if agrees is None:
        assert source["source_cost_usd"] is None and source["agrees"] is None
        return
    assert source["source_cost_usd"] is not None
    assert source["agrees"] is agrees and source["explanation_id"] == pattern
    assert {m["model"] for m in source["models"]} == set(generate.MODELS)
    assert all(m["source_cost_usd"] is not None and m["agrees"] is agrees for m in source["models"])
    assert Decimal(source["difference_usd"]) == sum(Decimal(m["difference_usd"]) for m in source["models"])


def test_records_without_bodies_get_a_cost_level_audit(fixtures: dict[str, Any]) -> None:
    sources = audit_paths([str(fixtures["litellm.csv"][0]), str(fixtures["helicone.jsonl"][0])],
                          workers=1).data["sources"]
    assert sources[0]["bodies"] == "none" and any("cache-break" in n for n in sources[0]["needs_bodies"])
    assert sources[1]["bodies"] == "all" and sources[1]["needs_bodies"] == []


def test_litellm_response_cache_hits_are_not_priced(fixtures: dict[str, Any]) -> None:
    ids = [item.tags["litellm.request_id"] for _, item in read_exchanges(fixtures["litellm.csv"][0])
           if isinstance(item, Exchange)]
    assert "req_cachehit" not in ids and len(ids) == 300


def test_litellm_contradicting_convention_stops(tmp_path: Path, calls: list[generate.Call]) -> None:
    path = tmp_path / "spend.json"
    generate.write_litellm_json(path, calls[:20])
    rows = json.loads(path.read_text())
    rows[5]["prompt_tokens"] = 10  # fewer than its cache tokens: prompt_tokens cannot be inclusive here
    rows[5]["metadata"]["usage_object"]["cache_read_input_tokens"] = 5000
    path.write_text("[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]\n")
    with pytest.raises(SemanticsError) as caught:
        list(read_exchanges(path))
    assert caught.value.line == 7 and caught.value.field == "prompt_tokens"
    assert "inclusive" in str(caught.value)


def test_helicone_columns_checked_against_the_body(tmp_path: Path, calls: list[generate.Call]) -> None:
    path = tmp_path / "helicone.jsonl"
    generate.write_helicone_jsonl(path, calls[:60])
    lines = path.read_text().splitlines()
    row = json.loads(lines[3])
    row["prompt_tokens"] += 7  # neither inclusive nor exclusive of the body's cache tokens
    lines[3] = json.dumps(row)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SemanticsError) as caught:
        list(read_exchanges(path))
    assert caught.value.line == 4


def test_helicone_without_bodies_detects_exclusive_input(tmp_path: Path) -> None:
    rows = [{"request_id": f"r{i}", "request_created_at": "2026-11-02T10:00:00Z", "model": "claude-haiku-4-5",
             "prompt_tokens": 50, "completion_tokens": 10, "prompt_cache_read_tokens": read,
             "prompt_cache_write_tokens": 0, "costUSD": 0.0} for i, read in enumerate((0, 4000))]
    path = tmp_path / "h.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    items = [item for _, item in read_exchanges(path)]
    assert [i.usage["input_tokens"] for i in items] == [50, 50]  # 50 < 4000: the file counts input exclusive


def test_otel_every_alias_name(fixtures: dict[str, Any], calls: list[generate.Call]) -> None:
    items = [item for _, item in read_exchanges(fixtures["otlp.jsonl"][0]) if isinstance(item, Exchange)]
    by_id = {i.started_at: i for i in items}
    for c in calls:
        usage = by_id[c.started].usage
        assert (usage["input_tokens"], usage["cache_read_input_tokens"], usage["output_tokens"]) == (
            c.uncached, c.read, c.output)
        assert usage["cache_creation"] == {"ephemeral_5m_input_tokens": c.w5, "ephemeral_1h_input_tokens": c.w1}
        assert by_id[c.started].batch is c.batch


def test_usage_report_row_without_model_is_reported(fixtures: dict[str, Any]) -> None:
    data = audit_paths([str(fixtures["usage_report.jsonl"][0])], workers=1).data
    assert [m["line"] for m in data["malformed"]] == [2]
    assert "group_by[]=model" in data["malformed"][0]["reason"]


def test_format_forced_on_the_command_line(fixtures: dict[str, Any], tmp_path: Path) -> None:
    path, _ = fixtures["langfuse.jsonl"]
    out = tmp_path / "r.json"
    result = CliRunner().invoke(app, ["audit", str(path), "--format", "langfuse", "--json", str(out), "--workers", "1"])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["sources"][0]["format"] == "langfuse"
    assert "Sources" in result.output and "twice" in result.output
    result = CliRunner().invoke(app, ["audit", str(path), "--format", "litellm", "--json", str(out)])
    assert result.exit_code == 0  # forced wrong: every row is reported, nothing is priced at zero
    assert json.loads(out.read_text())["totals"]["requests"] == 0
    result = CliRunner().invoke(app, ["audit", str(path), "--format", "nonsense"])
    assert result.exit_code != 0


def test_langfuse_api_rows_in_camel_case(tmp_path: Path) -> None:
    """The Observations API v2 spells the same fields in camelCase (`usageDetails`, `providedModelName`, ...)."""
    row = {"id": "o1", "traceId": "t1", "type": "GENERATION", "startTime": "2026-11-02T10:00:00.000Z",
           "endTime": "2026-11-02T10:00:01.500Z", "providedModelName": "claude-haiku-4-5",
           "usageDetails": {"input": 12, "output": 30, "input_cached_tokens": 2000, "input_cache_creation": 1200},
           "totalCost": 0.00187, "metadata": {"service_tier": "batch"}}
    path = tmp_path / "api.json"
    path.write_text(json.dumps([row], indent=2))
    assert detect_format(path) == "langfuse"
    ((line, item),) = list(read_exchanges(path))
    assert line == 2 and isinstance(item, Exchange) and item.batch and item.duration_ms == 1500
    assert item.usage["cache_read_input_tokens"] == 2000
    assert item.usage["cache_creation"] == {"ephemeral_5m_input_tokens": 1200, "ephemeral_1h_input_tokens": 0}
    assert item.tags["source.cost_usd"] == "0.00187"


def test_pretty_printed_otlp_with_new_cache_write_name(tmp_path: Path) -> None:
    doc = generate._otlp_doc({"traceId": "a" * 32, "spanId": "b" * 16, "name": "chat",
                              "startTimeUnixNano": "1793700000000000000", "endTimeUnixNano": "1793700001000000000",
                              "attributes": [generate._attr("gen_ai.request.model", "claude-sonnet-4-6"),
                                             generate._attr("gen_ai.usage.input_tokens", 5000),
                                             generate._attr("gen_ai.usage.output_tokens", 20),
                                             generate._attr("gen_ai.usage.cache_write.input_tokens", 4000)]})
    path = tmp_path / "trace.json"
    path.write_text(json.dumps(doc, indent=2))
    assert detect_format(path) == "otlp"
    ((_, item),) = list(read_exchanges(path))
    assert item.usage["input_tokens"] == 1000 and item.usage["cache_creation_input_tokens"] == 4000


def test_langfuse_inclusive_input_stops(tmp_path: Path, calls: list[generate.Call]) -> None:
    path = tmp_path / "obs.jsonl"
    generate.write_langfuse_jsonl(path, calls[:30])
    lines = path.read_text().splitlines()
    row = json.loads(lines[3])  # calls[3] has reads and both kinds of writes
    c = calls[3]
    row["usage_details"] = {"input": c.prompt, "output": c.output, "cache_read_input_tokens": c.read,
                            "input_cache_creation_5m": c.w5, "input_cache_creation_1h": c.w1,
                            "total": c.prompt + c.output}
    lines[3] = json.dumps(row)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SemanticsError) as caught:
        list(read_exchanges(path))
    assert caught.value.line == 4 and "12306" in str(caught.value)
