"""The Admin API's usage and cost reports, served by the emulator for the traffic it answered, and the whole loop
offline: the real `anthropic` SDK sends traffic (plain, streamed, cached with both TTLs, batched, over two days)
through `parity.wrap`, `parity reconcile` fetches the cost report with an admin key and ties the logged calls out
to it cell by cell, and a planted difference is flagged."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest
from typer.testing import CliRunner

import parity
from parity.cli import app
from parity.emulator.clock import ManualClock
from parity.emulator.service import Emulator
from parity.errors import InputError
from parity.exchange import Exchange, read_jsonl
from parity.pricing import cost
from parity.readers import read_exchanges
from parity.readers.anthropic_admin import COST_FORMAT, USAGE_FORMAT, fetch_report, read_cost_report
from parity.reconcile import fetch_cost_report, reconcile
from parity.wrap import flush

from servers import uvicorn_on_socket

from .conftest import ScriptBrain, text_reply

ADMIN_KEY = "sk-ant-admin01-emulator-test"
START = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)
MODELS = ("claude-sonnet-4-6", "claude-haiku-4-5", "claude-opus-4-6")
HEADERS = {"x-api-key": ADMIN_KEY, "anthropic-version": "2023-06-01"}
WINDOW = {"starting_at": "2026-11-01T00:00:00Z", "ending_at": "2026-11-05T00:00:00Z"}


def _system(model: str, ttl: str) -> list[dict[str, Any]]:
    text = f"You are the {ttl} support agent for Acme, serving on {model}. Answer briefly and politely. " * 500
    return [{"type": "text", "text": text, "cache_control": {"type": "ephemeral", "ttl": ttl}}]


def _traffic(client: anthropic.Anthropic, emulator: Emulator) -> None:
    """Two days of calls: cache writes (1h and 5m) and reads, plain, streamed, batched, and one that fails."""
    for day in range(2):
        for model in MODELS:
            for ttl in ("1h", "5m"):
                for turn in range(2):  # the first writes the prefix, the second reads it
                    client.messages.create(model=model, max_tokens=200, system=_system(model, ttl),
                                           messages=[{"role": "user", "content": f"day {day} turn {turn}"}])
                    emulator.clock.advance(30)
            stream = client.messages.create(model=model, max_tokens=200, stream=True,
                                            messages=[{"role": "user", "content": f"stream on day {day}"}])
            for _ in stream:
                pass
            emulator.clock.advance(30)
        batch = client.messages.batches.create(requests=[
            {"custom_id": f"d{day}-{i}", "params": {"model": model, "max_tokens": 100,
                                                    "messages": [{"role": "user", "content": f"batch {i}"}]}}
            for i, model in enumerate(MODELS)])
        assert len(list(client.messages.batches.results(batch.id))) == len(MODELS)
        with pytest.raises(anthropic.NotFoundError):  # answered with an error: never billed
            client.messages.create(model="claude-nonexistent-9", max_tokens=10,
                                   messages=[{"role": "user", "content": "x"}])
        emulator.clock.advance(timedelta(days=1).total_seconds())


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The emulator on a socket, after the traffic, with the exchanges `parity.wrap` logged."""
    brain = ScriptBrain().always(lambda request: text_reply(f"Answer to: {request.last_user_text} " * 4))
    emulator = Emulator(brain=brain, clock=ManualClock(START.timestamp()))
    emulator.batches.processing_s = "instant"
    with uvicorn_on_socket(emulator.app(), lifespan="off") as base_url:
        log = tmp_path_factory.mktemp("admin") / "exchanges.jsonl"
        with anthropic.Anthropic(base_url=base_url, api_key="sk-ant-api03-user", max_retries=0) as sdk:
            client = parity.wrap(sdk, sink=str(log), clock=emulator.clock.now)
            _traffic(client, emulator)
            assert flush(client)
        yield {"emulator": emulator, "base_url": base_url, "log": log}


@pytest.fixture
def http(served: dict[str, Any]) -> Iterator[httpx2.Client]:
    with httpx2.Client(transport=served["emulator"].transport(), base_url="http://emulator.local") as client:
        yield client


def _logged(served: dict[str, Any]) -> list[Exchange]:
    return [item for _, item in read_jsonl(served["log"]) if isinstance(item, Exchange) and item.response]


def _fetch(served: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    start, end = (datetime.fromisoformat(WINDOW[k].replace("Z", "+00:00")) for k in ("starting_at", "ending_at"))
    return fetch_report(kind, start, end, key=ADMIN_KEY, base_url="http://emulator.local",
                        transport=served["emulator"].transport())


def test_traffic_covers_every_kind_of_billed_token(served: dict[str, Any]) -> None:
    logged = _logged(served)
    assert len(logged) == 2 * (len(MODELS) * 5 + len(MODELS))  # 4 cached + 1 streamed per model, 3 batched, a day
    usage = [e.usage for e in logged]
    assert all(sum(u["cache_creation"][f"ephemeral_{ttl}_input_tokens"] for u in usage) for ttl in ("5m", "1h"))
    assert sum(u["cache_read_input_tokens"] for u in usage) and sum(e.batch for e in logged) == 2 * len(MODELS)


def test_usage_report_counts_what_was_answered(served: dict[str, Any]) -> None:
    pages = _fetch(served, USAGE_FORMAT)
    assert len(pages) == 1 and pages[0]["has_more"] is False and len(pages[0]["data"]) == 4 * 24
    got: dict[tuple[str, str], list[int]] = {}
    for bucket in pages[0]["data"]:
        for row in bucket["results"]:
            assert row["context_window"] == "0-200k" and row["inference_geo"] == "global" and row["api_key_id"] is None
            sums = got.setdefault((row["model"], row["service_tier"]), [0] * 5)
            for i, n in enumerate((row["uncached_input_tokens"], row["cache_read_input_tokens"],
                                   row["cache_creation"]["ephemeral_5m_input_tokens"],
                                   row["cache_creation"]["ephemeral_1h_input_tokens"], row["output_tokens"])):
                sums[i] += n
    want: dict[tuple[str, str], list[int]] = {}
    for e in _logged(served):
        u = e.usage
        sums = want.setdefault((e.response["model"], u["service_tier"]), [0] * 5)
        for i, n in enumerate((u["input_tokens"], u["cache_read_input_tokens"],
                               u["cache_creation"]["ephemeral_5m_input_tokens"],
                               u["cache_creation"]["ephemeral_1h_input_tokens"], u["output_tokens"])):
            sums[i] += n
    assert got == want and len(want) == 2 * len(MODELS)


def test_usage_report_audits_to_the_logs_total(served: dict[str, Any], tmp_path: Path) -> None:
    from parity.audit import audit_paths
    from parity.readers.anthropic_admin import write_pages

    report = write_pages(_fetch(served, USAGE_FORMAT), tmp_path / "usage.jsonl")
    logs_total = sum((cost(e.response["model"], e.usage, batch=e.batch, at=e.started_at).total
                      for e in _logged(served)), Decimal(0))
    data = audit_paths([str(report)], workers=1).data
    assert data["sources"][0]["format"] == USAGE_FORMAT and data["malformed"] == []
    assert Decimal(data["totals"]["cost_usd"]) == logs_total


def test_cost_report_ties_out_to_the_logs_exactly(served: dict[str, Any], tmp_path: Path) -> None:
    fetched = fetch_cost_report(tmp_path / "cost.jsonl", key=ADMIN_KEY, base_url="http://emulator.local",
                                transport=served["emulator"].transport())
    data = reconcile([str(served["log"])], fetched, tolerance=Decimal(0))  # not a cent: not a micro-dollar either
    assert data["flagged"] == 0 and Decimal(data["totals"]["difference_usd"]) == 0
    assert data["priced_calls"] == len(_logged(served)) and data["unpriced"] == []
    assert {r["cost_type"] for r in data["rows"]} == {"input", "cache_write_5m", "cache_write_1h", "cache_read",
                                                       "output", "batch"}
    assert {r["date"] for r in data["rows"]} == {"2026-11-02", "2026-11-03"}
    billed = sum((line.usd for line in read_cost_report(tmp_path / "cost.jsonl")), Decimal(0))
    assert Decimal(data["totals"]["billed_usd"]) == billed


def test_a_planted_difference_is_flagged(served: dict[str, Any], tmp_path: Path) -> None:
    """One logged call loses 1,000 output tokens and another's 1-hour writes are logged as 5-minute writes: the
    cells those touch, and only those, are off."""
    lines = served["log"].read_text().splitlines()
    records = [json.loads(line) for line in lines]
    out_i = next(i for i, r in enumerate(records) if r.get("response") and not r.get("batch")
                 and r["response"]["model"] == "claude-opus-4-6")
    ttl_i = next(i for i, r in enumerate(records) if r.get("response") and r["response"]["model"] == "claude-haiku-4-5"
                 and r["response"]["usage"]["cache_creation"]["ephemeral_1h_input_tokens"])
    records[out_i]["response"]["usage"]["output_tokens"] += 1000
    split = records[ttl_i]["response"]["usage"]["cache_creation"]
    split["ephemeral_5m_input_tokens"], split["ephemeral_1h_input_tokens"] = split["ephemeral_1h_input_tokens"], 0
    planted = tmp_path / "planted.jsonl"
    planted.write_text("".join(json.dumps(r) + "\n" for r in records))
    fetched = fetch_cost_report(tmp_path / "cost.jsonl", key=ADMIN_KEY, base_url="http://emulator.local",
                                transport=served["emulator"].transport())
    data = reconcile([str(planted)], fetched)
    flagged = [(r["date"], r["model"], r["cost_type"]) for r in data["rows"] if r["flagged"]]
    day = lambda i: records[i]["started_at"][:10]  # noqa: E731
    assert sorted(flagged) == sorted([(day(out_i), "claude-opus-4-6", "output"),
                                      (day(ttl_i), "claude-haiku-4-5", "cache_write_5m"),
                                      (day(ttl_i), "claude-haiku-4-5", "cache_write_1h")])
    causes = {r["cost_type"]: r["cause"] for r in data["rows"] if r["flagged"]}
    assert "1-hour cache writes logged as 5-minute" in causes["cache_write_1h"]
    assert Decimal(next(r for r in data["rows"] if r["flagged"] and r["cost_type"] == "output")["difference_usd"]) \
        == Decimal(-1000) * Decimal("25") / 10**6  # Opus 4.6 output: $25 / MTok


def test_paging_follows_next_page(served: dict[str, Any], http: httpx2.Client) -> None:
    first = http.get("/v1/organizations/cost_report", headers=HEADERS,
                     params={**WINDOW, "limit": 3, "group_by[]": "description"}).json()
    assert first["has_more"] is True and [b["starting_at"][:10] for b in first["data"]] == [
        "2026-11-01", "2026-11-02", "2026-11-03"]
    second = http.get("/v1/organizations/cost_report", headers=HEADERS,
                      params={**WINDOW, "limit": 3, "group_by[]": "description", "page": first["next_page"]}).json()
    assert second["has_more"] is False and second["next_page"] is None
    assert [b["starting_at"][:10] for b in second["data"]] == ["2026-11-04"] and second["data"][0]["results"] == []
    bad = http.get("/v1/organizations/cost_report", headers=HEADERS, params={**WINDOW, "page": "page_bm9wZQ=="})
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"


def test_minute_buckets_and_filters(served: dict[str, Any], http: httpx2.Client) -> None:
    params = {"starting_at": "2026-11-02T09:00:00Z", "ending_at": "2026-11-02T10:00:00Z", "bucket_width": "1m",
              "models[]": "claude-haiku-4-5", "group_by[]": ["model", "service_tier"]}
    page = http.get("/v1/organizations/usage_report/messages", headers=HEADERS, params=params).json()
    assert len(page["data"]) == 60 and page["has_more"] is False
    rows = [r for b in page["data"] for r in b["results"]]
    assert rows and {r["model"] for r in rows} == {"claude-haiku-4-5"} and {r["service_tier"] for r in rows} <= {
        "standard", "batch"}
    assert all(r["workspace_id"] is None for r in rows)  # not grouped by it: null, as the API reports it


def test_cost_report_without_description_has_one_total_per_day(served: dict[str, Any], http: httpx2.Client,
                                                               tmp_path: Path) -> None:
    page = http.get("/v1/organizations/cost_report", headers=HEADERS, params=WINDOW).json()
    days = {b["starting_at"][:10]: b["results"] for b in page["data"]}
    assert [len(days[d]) for d in sorted(days)] == [0, 1, 1, 0]
    row = days["2026-11-02"][0]
    assert row["model"] is None and row["token_type"] is None and Decimal(row["amount"]) > 0
    path = tmp_path / "ungrouped.json"
    path.write_text(json.dumps(page))
    with pytest.raises(InputError, match=r"group_by\[\]=description"):
        read_cost_report(path)


@pytest.mark.parametrize("path, params, message", [
    ("/v1/organizations/cost_report", {"bucket_width": "1h"}, "bucket_width"),
    ("/v1/organizations/usage_report/messages", {"bucket_width": "2h"}, "bucket_width"),
    ("/v1/organizations/usage_report/messages", {"limit": "0"}, "limit"),
    ("/v1/organizations/cost_report", {"limit": "32"}, "limit"),
    ("/v1/organizations/usage_report/messages", {"group_by[]": "colour"}, "group_by"),
    ("/v1/organizations/cost_report", {"group_by[]": "model"}, "group_by"),
    ("/v1/organizations/usage_report/messages", {"group_by[]": "speed"}, "fast-mode-2026-02-01"),
    ("/v1/organizations/usage_report/messages", {"starting_at": None}, "starting_at"),
    ("/v1/organizations/usage_report/messages", {"ending_at": "2026-10-01T00:00:00Z"}, "ending_at"),
    ("/v1/organizations/cost_report", {"starting_at": "yesterday"}, "starting_at"),
])
def test_bad_queries_are_invalid_request_errors(http: httpx2.Client, path: str, params: dict[str, Any],
                                                message: str) -> None:
    query = {k: v for k, v in {**WINDOW, **params}.items() if v is not None}
    response = http.get(path, headers=HEADERS, params=query)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and message in error["message"]


def test_only_an_admin_key_reads_the_reports(served: dict[str, Any], http: httpx2.Client) -> None:
    for path in ("/v1/organizations/usage_report/messages", "/v1/organizations/cost_report"):
        response = http.get(path, params=WINDOW, headers={"x-api-key": "sk-ant-api03-user",
                                                          "anthropic-version": "2023-06-01"})
        assert response.status_code == 401 and response.json()["error"]["type"] == "authentication_error"
        assert "Admin API key" in response.json()["error"]["message"] and response.headers["request-id"]
        bearer = http.get(path, params=WINDOW, headers={"authorization": f"Bearer {ADMIN_KEY}",
                                                        "anthropic-version": "2023-06-01"})
        assert bearer.status_code == 200
    with pytest.raises(InputError, match="ANTHROPIC_ADMIN_KEY must be an Admin API key"):
        fetch_report(COST_FORMAT, START, START + timedelta(days=1), key="sk-ant-api03-user",
                     base_url="http://emulator.local", transport=served["emulator"].transport())


def test_workspaces_are_grouped_and_the_default_is_null() -> None:
    emulator = Emulator(brain=ScriptBrain(), clock=ManualClock(START.timestamp()))
    for workspace in (None, "wrkspc_team_b"):
        headers = {"anthropic-workspace-id": workspace} if workspace else {}
        with emulator.client(default_headers=headers) as client:
            client.messages.create(model="claude-haiku-4-5", max_tokens=50,
                                   messages=[{"role": "user", "content": "hi"}])
    with httpx2.Client(transport=emulator.transport(), base_url="http://emulator.local") as http:
        page = http.get("/v1/organizations/usage_report/messages", headers=HEADERS,
                        params={**WINDOW, "group_by[]": "workspace_id"}).json()
    assert sorted((r["workspace_id"] or "") for b in page["data"] for r in b["results"]) == ["", "wrkspc_team_b"]


def test_cli_fetches_the_report_and_ties_out(served: dict[str, Any], tmp_path: Path) -> None:
    """`parity reconcile LOG` with only ANTHROPIC_ADMIN_KEY and ANTHROPIC_BASE_URL set, over a real socket."""
    env = {"ANTHROPIC_ADMIN_KEY": ADMIN_KEY, "ANTHROPIC_BASE_URL": served["base_url"], "COLUMNS": "200"}
    out, saved = tmp_path / "reconcile.json", tmp_path / "bill.jsonl"
    result = CliRunner().invoke(app, ["reconcile", str(served["log"]), "--json", str(out), "--save-cost-report",
                                      str(saved), "--tolerance", "0"], env=env)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["flagged"] == 0 and data["cost_report"] == str(saved) and "tie out" in result.output
    again = CliRunner().invoke(app, ["reconcile", str(served["log"]), "--cost-report", str(saved), "--tolerance", "0"],
                               env={"ANTHROPIC_ADMIN_KEY": None})
    assert again.exit_code == 0 and "tie out" in again.output


def test_cli_without_an_admin_key_says_which_variable_and_exits_2(served: dict[str, Any]) -> None:
    result = CliRunner().invoke(app, ["reconcile", str(served["log"])],
                                env={"ANTHROPIC_ADMIN_KEY": None, "ANTHROPIC_BASE_URL": served["base_url"]})
    assert result.exit_code == 2
    assert "set ANTHROPIC_ADMIN_KEY" in result.output and "Traceback" not in result.output


def test_audit_fetches_the_usage_report(served: dict[str, Any], tmp_path: Path) -> None:
    out, saved = tmp_path / "audit.json", tmp_path / "usage.jsonl"
    result = CliRunner().invoke(app, ["audit", "--admin-usage", "--since", "2026-11-02", "--until", "2026-11-03",
                                      "--base-url", served["base_url"], "--save-usage", str(saved), "--json", str(out),
                                      "--quiet"], env={"ANTHROPIC_ADMIN_KEY": ADMIN_KEY})
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert [s["format"] for s in data["sources"]] == [USAGE_FORMAT] and data["sources"][0]["path"] == str(saved)
    logged = sum((cost(e.response["model"], e.usage, batch=e.batch, at=e.started_at).total for e in _logged(served)),
                 Decimal(0))
    assert Decimal(data["totals"]["cost_usd"]) == logged
    assert sum(1 for _ in read_exchanges(saved)) > 0


def test_usage_log_keeps_sums_not_calls() -> None:
    """A long emulator run keeps one entry per minute and dimension set, however many calls it answers."""
    from parity.emulator.admin_api import UsageLog

    recorded = UsageLog()
    usage = {"input_tokens": 10, "cache_read_input_tokens": 2000, "cache_creation_input_tokens": 1500,
             "cache_creation": {"ephemeral_5m_input_tokens": 500, "ephemeral_1h_input_tokens": 1000},
             "output_tokens": 40, "service_tier": "batch"}
    for i in range(5000):
        recorded.record(START.timestamp() + i % 60, "claude-haiku-4-5", "wrkspc_x", usage)
    ((minute, dims, counts),) = recorded.usage()
    assert minute == START.timestamp() and dims.workspace_id == "wrkspc_x" and dims.service_tier == "batch"
    assert counts[:5] == [50_000, 10_000_000, 2_500_000, 5_000_000, 200_000]
    lines = {token_type: usd for _, _, token_type, usd in recorded.cost()}
    assert len(lines) == 5 and sum(lines.values()) == 5000 * cost("claude-haiku-4-5", usage, at=START).total
