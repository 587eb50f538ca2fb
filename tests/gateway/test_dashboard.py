"""The live dashboard: its figures agree with exact pricing and `parity audit` on the same ledger, it is served by
the gateway (a gateway key required when it has keys) and standalone (`parity dashboard`), and it renders in a real
headless Chromium (Debian's /usr/bin/chromium driven by Playwright; never Playwright's own browser download)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from parity import pricing
from parity.audit.cost import usd
from parity.audit.run import audit_paths
from parity.audit.summary import CATEGORIES, drift_states, summarize
from parity.exchange import Exchange
from parity.gateway.keys import KeyStore
from parity.ledger.reader import read_rows
from parity.ledger.writer import LedgerEntry, LedgerWriter
from parity.report.dashboard import KeyRow, render_dashboard

from servers import uvicorn_on_socket

CHROMIUM = "/usr/bin/chromium"
BASELINE = "claude-opus-4-8"
CANDIDATE = "claude-haiku-4-5"
DOCS_SHOT = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"


def exact_total(url: str) -> Decimal:
    """The ledger's exact total, priced row by row with `parity.pricing.cost` (independently of the dashboard)."""
    total = Decimal(0)
    for row in read_rows(url):
        ex = row.exchange
        if ex.response is None:
            continue
        model = ex.response.get("model") or ex.request.get("model")
        total += pricing.cost(model, ex.response["usage"], batch=ex.batch, at=ex.started_at).total
    return total


def _message(model: str, **usage: int) -> dict[str, Any]:
    return {"id": "msg_x", "type": "message", "role": "assistant", "model": model, "stop_reason": "end_turn",
            "content": [{"type": "text", "text": "ok"}], "usage": usage}


def write_known_ledger(url: str) -> None:
    """Traffic with every cost category, a batch request, a fallback, a shadow call, an error and a key."""
    t0 = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)
    writer = LedgerWriter(url)
    entries = [
        LedgerEntry(Exchange({"model": BASELINE, "messages": []}, _message(
            BASELINE, input_tokens=1200, output_tokens=300, cache_creation_input_tokens=4096), started_at=t0,
            route="passthrough"), key_id="k1", status_code=200),
        LedgerEntry(Exchange({"model": BASELINE, "messages": []}, _message(
            BASELINE, input_tokens=50, output_tokens=250, cache_read_input_tokens=4096),
            started_at=t0 + timedelta(hours=1), route="passthrough"), key_id="k1", status_code=200),
        LedgerEntry(Exchange({"model": CANDIDATE, "messages": []}, _message(CANDIDATE, input_tokens=900,
                                                                            output_tokens=70),
                             started_at=t0 + timedelta(hours=2), route="routed", tags={"task": "triage"}),
                    status_code=200),
        LedgerEntry(Exchange({"model": BASELINE, "messages": []}, _message(BASELINE, input_tokens=900,
                                                                           output_tokens=90),
                             started_at=t0 + timedelta(hours=2), route="fallback", tags={"task": "triage"}),
                    reason="contract_schema: not valid JSON", status_code=200),
        LedgerEntry(Exchange({"model": BASELINE, "messages": []}, _message(BASELINE, input_tokens=700,
                                                                           output_tokens=33),
                             started_at=t0 + timedelta(hours=3), route="shadow", tags={"task": "triage"}),
                    reason="drift_baseline", status_code=200),
        LedgerEntry(Exchange({"model": BASELINE, "messages": []}, _message(BASELINE, input_tokens=10_000,
                                                                           output_tokens=2_000),
                             started_at=t0 + timedelta(hours=5), route="deferred", batch=True), status_code=200),
        LedgerEntry(Exchange({"model": BASELINE, "messages": []}, None,
                             {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}},
                             started_at=t0 + timedelta(hours=5), route="passthrough"), status_code=529),
    ]
    for entry in entries:
        ex = entry.exchange
        cost = pricing.cost(ex.response["model"], ex.usage, batch=ex.batch, at=ex.started_at).total if ex.usage else None
        writer.write(dataclasses.replace(entry, cost_usd=cost))
    assert writer.flush(30)
    writer.close()


def test_summary_is_exact_and_agrees_with_the_audit(tmp_path):
    url = str(tmp_path / "ledger.db")
    write_known_ledger(url)
    summary = summarize(url)
    expected = exact_total(url)
    assert expected > 0
    assert summary.total_usd == expected
    assert summary.total_usd == audit_paths([url], fmt="ledger").total_cost  # the same figure `parity audit` prints
    assert sum(summary.by_category.values(), Decimal(0)) == expected
    assert sum((sum(a.values(), Decimal(0)) for _, a in summary.spend_over_time), Decimal(0)) == expected
    assert all(summary.by_category[c] > 0 for c in CATEGORIES)
    assert summary.bucket == "hour" and len(summary.spend_over_time) == 5
    assert summary.routes == {"passthrough": 3, "routed": 1, "fallback": 1, "shadow": 1, "deferred": 1}
    assert summary.fallbacks == {"contract_schema": 1}
    assert summary.shadowed == {"triage": 1}
    assert summary.errors == 1 and summary.priced == 6 and summary.unpriced == []
    assert set(summary.spend_by_key) == {"k1"}  # as the gateway's budgets count it: the ledger's cost_usd
    assert summary.spend_by_key["k1"] == sum((r.cost_usd for r in read_rows(url) if r.key_id == "k1"), Decimal(0))
    assert summary.savings["rightsize"] is None  # no baselines given: routing's saving is unknown
    assert summary.savings == summarize(url, baselines={"triage": BASELINE}).savings | {"rightsize": None}


def test_realised_savings_by_lever(tmp_path):
    url = str(tmp_path / "ledger.db")
    write_known_ledger(url)
    cost = pricing.cost
    cache = batch = routing = Decimal(0)
    for row in read_rows(url):
        ex = row.exchange
        if ex.response is None:
            continue
        usage, model, at = ex.response["usage"], ex.response["model"], ex.started_at
        paid = cost(model, usage, batch=ex.batch, at=at).total
        plain = {"input_tokens": usage["input_tokens"] + usage.get("cache_creation_input_tokens", 0)
                 + usage.get("cache_read_input_tokens", 0), "output_tokens": usage["output_tokens"]}
        cache += cost(model, plain, batch=ex.batch, at=at).total - paid
        if ex.batch:
            batch += cost(model, usage, at=at).total - paid
        if row.route == "routed":
            routing += cost(BASELINE, usage, at=at).total - paid
    savings = summarize(url, baselines={"triage": BASELINE}).savings
    assert savings == {"cache": cache, "batch": batch, "rightsize": routing}
    assert cache > 0 and batch > 0


def _policy_and_state(tmp_path: Path) -> tuple[Path, Path]:
    """A policy routing "triage" on a certificate the gateway cannot verify (its file is missing), an observed task,
    and the persisted drift rollback of "triage"."""
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"version": 1, "tasks": {
        "triage": {"mode": "route", "baseline_model": BASELINE, "candidate_model": CANDIDATE,
                   "certificate": {"id": "cert-123", "path": "missing.json", "verdict": "switch"}},
        "notes": {"mode": "observe", "baseline_model": BASELINE}}}))
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    (state / "drift-triage.json").write_text(json.dumps({
        "task": "triage", "rolled_back_at": "2026-11-30T12:00:00Z", "reason": "candidate worse than the margin",
        "evidence": {"candidate_model": CANDIDATE, "baseline_model": BASELINE, "judged": 40,
                     "test": {"e_value": 0.25, "futility_e_value": 21.5}}}))
    return policy, state


def test_page_shows_drift_certificates_and_budgets(tmp_path):
    url = str(tmp_path / "ledger.db")
    write_known_ledger(url)
    _, state = _policy_and_state(tmp_path)
    drift = drift_states(state)
    assert drift["triage"]["state"] == "rolled_back" and drift["triage"]["futility_e_value"] == 21.5
    live = {"summarize": {"task": "summarize", "state": "watching", "judged": 12,
                          "current_segment": {"e_value": 3.75, "futility_e_value": 0.5}}}
    html = render_dashboard(summarize(url), drift={**drift, **live}, refresh_s=7, keys=[
        KeyRow("k1", "team-a", True, Decimal("5"), Decimal("1.25"))])
    assert '<meta http-equiv="refresh" content="7">' in html
    assert "rolled back" in html and "21.5" in html and "3.75" in html and "watching" in html
    assert "team-a" in html and "25.0%" in html
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org", "")  # offline: no CDN


def test_cli_writes_the_page_with_policy_and_keys(tmp_path):
    from parity.cli import app

    url = str(tmp_path / "ledger.db")
    write_known_ledger(url)
    policy, _ = _policy_and_state(tmp_path)
    keys = tmp_path / "keys.json"
    KeyStore(keys).create("team-a", budget_usd="2")
    out = tmp_path / "page.html"
    result = CliRunner().invoke(app, ["dashboard", "--ledger", url, "--policy", str(policy), "--keys", str(keys),
                                      "--html", str(out)])
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert f'data-usd="{usd(exact_total(url))}"' in html
    assert "cert-123" in html and "switch" in html and "refused: " in html and "team-a" in html


# ---- in a real browser ------------------------------------------------------------------------------------------


def _chromium() -> Any:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is not installed (Debian's chromium; .ci/run installs it)")
    return pytest.importorskip("playwright.sync_api", reason="playwright (the test extra) is not installed")


def _check_page(page: Any, expected: Decimal, *, charts: int = 2) -> None:
    """The charts are drawn (SVG with a size and marks in it), the total is the ledger's exact total, it refreshes."""
    figures = page.locator("figure.chart svg")
    assert figures.count() == charts
    charts = figures
    for i in range(charts.count()):
        box = charts.nth(i).bounding_box()
        assert box is not None and box["width"] > 50 and box["height"] > 50, box
        assert charts.nth(i).locator("path, rect, use").count() > 3  # something is drawn in it
    total = page.locator("#total-usd")
    assert total.get_attribute("data-usd") == usd(expected)
    assert total.inner_text().strip() == pricing.format_usd(expected)
    assert page.locator('meta[http-equiv="refresh"]').count() == 1


def test_dashboard_in_chromium(tmp_path):
    sync_api = _chromium()
    import anthropic
    import httpx

    from parity.emulator.service import Emulator
    from parity.gateway.app import create_gateway
    from parity.gateway.local import emulator_config

    from parity.cli.dashboard import dashboard_app

    ledger = str(tmp_path / "ledger.db")
    keys = tmp_path / "keys.json"
    secret, record = KeyStore(keys).create("team-a", budget_usd="3")
    config = emulator_config(Emulator(), ledger_url=ledger, keys_path=str(keys))
    app = create_gateway(config)
    system = [{"type": "text", "text": "You sort support tickets into bug, feature or question. " * 300,
               "cache_control": {"type": "ephemeral"}}]
    with uvicorn_on_socket(app, lifespan="on", timeout_s=30) as gw_url:
        client = anthropic.Anthropic(base_url=gw_url, api_key=secret, max_retries=0)
        for i in range(4):
            client.messages.create(model=BASELINE, max_tokens=64, system=system,
                                   messages=[{"role": "user", "content": f"Ticket {i}: the app crashes on save."}])
        client.messages.create(model=CANDIDATE, max_tokens=32, messages=[{"role": "user", "content": "hello"}])
        app.state.gateway.recorder.flush(30)
        expected = exact_total(ledger)
        assert expected > 0 and expected == audit_paths([ledger], fmt="ledger").total_cost
        usage = [r.exchange.usage for r in read_rows(ledger)]
        assert any(u.get("cache_read_input_tokens") for u in usage), usage  # cache reads are on the chart too

        assert httpx.get(f"{gw_url}/dashboard").status_code == 401  # the gateway has keys: a key is required
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            try:
                context = browser.new_context(http_credentials={"username": "admin", "password": secret},
                                              viewport={"width": 1200, "height": 900})
                page = context.new_page()
                response = page.goto(f"{gw_url}/dashboard", wait_until="load")
                assert response is not None and response.status == 200
                _check_page(page, expected, charts=3)  # spend, saving (cache), routes
                assert page.locator("text=team-a").count() >= 1  # key budgets
                page.screenshot(path=str(tmp_path / "dashboard-gateway.png"), full_page=True)

                # standalone, on a ledger with every kind of row, a policy, the drift state and the keys
                known = str(tmp_path / "known.db")
                write_known_ledger(known)
                policy, state = _policy_and_state(tmp_path)
                served = dashboard_app(known, keys=keys, policy=policy, state_dir=state, refresh_s=5)
                with uvicorn_on_socket(served, lifespan="off", timeout_s=30) as standalone_url:
                    assert httpx.get(f"{standalone_url}/").status_code == 401
                    page = context.new_page()
                    response = page.goto(f"{standalone_url}/", wait_until="load")
                    assert response is not None and response.status == 200
                    _check_page(page, exact_total(known), charts=4)  # + fallbacks
                    assert page.locator("text=cert-123").count() == 1 and page.locator("text=21.5").count() == 1
                    shot = tmp_path / "dashboard.png"
                    page.screenshot(path=str(shot), full_page=True)
                    assert shot.stat().st_size > 10_000
                    if not DOCS_SHOT.exists():  # once, for the README
                        DOCS_SHOT.parent.mkdir(exist_ok=True)
                        shutil.copyfile(shot, DOCS_SHOT)
            finally:
                browser.close()


def test_gateway_route_needs_a_key_when_it_has_keys(tmp_path):
    import base64

    from starlette.testclient import TestClient

    from parity.emulator.service import Emulator
    from parity.gateway.app import create_gateway
    from parity.gateway.local import emulator_config

    open_app = create_gateway(emulator_config(Emulator()))  # no keys, no ledger: open, and says what is missing
    with TestClient(open_app) as client:
        page = client.get("/dashboard")
        assert page.status_code == 200 and "serve with --ledger" in page.text
        assert page.headers["cache-control"] == "no-store"

    keys = tmp_path / "keys.json"
    secret, _ = KeyStore(keys).create("ops")
    app = create_gateway(emulator_config(Emulator(), keys_path=str(keys), ledger_url=str(tmp_path / "l.db")))
    with TestClient(app) as client:
        refused = client.get("/dashboard")
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Basic")
        assert client.get("/dashboard", headers={"x-api-key": "sk-parity-nope_wrong"}).status_code == 401
        assert client.get("/dashboard", headers={"x-api-key": secret}).status_code == 200
        assert client.get("/dashboard", headers={"authorization": f"Bearer {secret}"}).status_code == 200
        basic = base64.b64encode(f"admin:{secret}".encode()).decode()
        assert client.get("/dashboard", headers={"authorization": f"Basic {basic}"}).status_code == 200
        assert client.get("/dashboard", headers={"authorization": "Basic !!!"}).status_code == 401
