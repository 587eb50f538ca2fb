"""Batch detection, right-size candidates and template fingerprints."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

from parity.audit import audit_paths, fingerprint
from parity.audit import batch as batching
from parity.exchange import Exchange
from parity.pricing import cost

T0 = datetime(2026, 11, 20, tzinfo=timezone.utc)


def _ex(at: datetime, *, model: str = "claude-sonnet-4-6", system: str = "You summarise invoices.", text: str = "ok",
        out: int = 3, tags: dict | None = None, stream: bool = False, batch: bool = False, **request: object) -> Exchange:
    body = {"model": model, "max_tokens": 100, "system": system, "messages": [{"role": "user", "content": "Invoice 1"}],
            **request}
    if stream:
        body["stream"] = True
    return Exchange(request=body, response={"id": "m", "type": "message", "role": "assistant", "model": model,
                                            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
                                            "usage": {"input_tokens": 800, "output_tokens": out}},
                    started_at=at, duration_ms=900, tags=tags or {}, batch=batch)


def _write(tmp_path: Path, exchanges: list[Exchange]) -> Path:
    path = tmp_path / "log.jsonl"
    path.write_text("".join(e.to_json() + "\n" for e in exchanges))
    return path


def test_batch_slices() -> None:
    at = T0.replace(hour=14)
    assert batching.classify(_ex(at, stream=True, tags={"job": "nightly"}), 14) == ("live", None)
    assert batching.classify(_ex(at, tags={"job": "nightly-digest"}), 14) == ("job", "tag")
    assert batching.classify(_ex(at, tags={"pipeline": "etl"}), 14) == ("job", "tag")
    assert batching.classify(_ex(at, tags={"user_agent": "Airflow/2.9 python-requests"}), 14) == ("job", "user_agent")
    assert batching.classify(_ex(at, tags={"user_agent": "Mozilla/5.0"}), 14) == ("ns14", None)
    assert batching.classify(_ex(at, metadata={"user_id": "cron-backfill"}), 14) == ("job", "metadata")
    assert batching.classify(_ex(at, tags={"mode": "interactive", "job": "x"}), 14) == ("live", None)
    assert batching.classify(_ex(at, tags={"task": "batch-summaries"}), 14) == ("ns14", None)
    assert batching.classify(_ex(at, batch=True), 14) == ("batch", None)
    assert batching.classify(_ex(at), 3) == ("ns03", None)


def test_night_bursts_and_jobs_are_batch_candidates(tmp_path: Path) -> None:
    night = [_ex(T0 + timedelta(days=d, hours=2, minutes=m), system="Nightly digest writer.")
             for d in range(3) for m in range(0, 60, 5)]
    day = [_ex(T0 + timedelta(days=d, hours=h), system="Daytime helper.") for d in range(3) for h in range(8, 20)]
    streamed = [_ex(T0 + timedelta(days=d, hours=3, minutes=m), system="Night chat.", stream=True)
                for d in range(3) for m in range(0, 60, 5)]
    tagged = [_ex(T0 + timedelta(hours=h), system="Report builder.", tags={"job": "weekly-report"}) for h in range(5)]
    report = audit_paths([str(_write(tmp_path, night + day + streamed + tagged))]).to_json()
    batch = {f["label"]: f for f in report["findings"] if f["lever"] == "batch"}
    assert set(batch) == {"system: Nightly digest writer.", "system: Report builder."}
    nightly = batch["system: Nightly digest writer."]
    assert nightly["cause"] == "night_burst" and nightly["requests"] == 36
    per_request = cost("claude-sonnet-4-6", {"input_tokens": 800, "output_tokens": 3}).total
    assert Decimal(nightly["cost_usd"]) == 36 * per_request
    assert Decimal(nightly["saving_usd"]) == 18 * per_request  # 50 % of every category
    assert batch["system: Report builder."]["cause"] == "job_tag"
    assert Decimal(report["batch"]["saving_usd"]) == Decimal(report["batch"]["cost_now_usd"]) / 2


def test_one_night_of_logs_is_not_a_night_burst(tmp_path: Path) -> None:
    night = [_ex(T0 + timedelta(hours=2, minutes=m), system="Nightly digest writer.") for m in range(0, 60, 2)]
    report = audit_paths([str(_write(tmp_path, night))]).to_json()
    assert [f for f in report["findings"] if f["lever"] == "batch"] == []


def test_closed_set_outputs_on_a_big_model_are_a_hypothesis(tmp_path: Path) -> None:
    labels = ["billing", "shipping", "refund"]
    classify = [_ex(T0 + timedelta(minutes=i), system="Label the ticket: billing, shipping or refund.",
                    text=labels[i % 3], out=2, stream=True) for i in range(30)]
    on_haiku = [_ex(T0 + timedelta(minutes=i), model="claude-haiku-4-5", system="Label the mood: happy or sad.",
                    text="happy", out=2, stream=True) for i in range(30)]
    essays = [_ex(T0 + timedelta(minutes=i), system="Write a detailed essay about the invoice.",
                  text=f"Essay {i}: " + "a long considered paragraph " * 40, out=400, stream=True) for i in range(30)]
    report = audit_paths([str(_write(tmp_path, classify + on_haiku + essays))]).to_json()
    [candidate] = report["rightsize"]["candidates"]
    assert candidate["label"].startswith("system: Label the ticket")
    assert candidate["model"] == "claude-sonnet-4-6"
    assert any(r.startswith("closed set: 3 distinct") for r in candidate["reasons"])
    target = candidate["candidate_model"]
    usage = {"input_tokens": 800, "output_tokens": 2}
    at = T0
    assert Decimal(candidate["cost_if_proven_usd"]) == 30 * cost(target, usage, at=at).total
    assert Decimal(candidate["saving_if_proven_usd"]) == 30 * (cost("claude-sonnet-4-6", usage, at=at).total
                                                               - cost(target, usage, at=at).total)
    [finding] = [f for f in report["findings"] if f["lever"] == "rightsize"]
    assert finding["hypothesis"] is True and "parity prove" in finding["fix"]
    assert "hypothesis" in report["rightsize"]["status"]


def test_fingerprint_survives_volatile_values_not_templates() -> None:
    base = {"model": "claude-sonnet-4-6", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    a = {**base, "system": "You are the billing bot. Today is Tuesday, November 24, 2026 10:00:05. Request "
                           "req_01HxYz7890abcdef. Trace 3f2a9c1e-77b0-4c1d-9a2e-0b1c2d3e4f5a."}
    b = {**base, "model": "claude-opus-4-8", "tools": [{"name": "x", "input_schema": {"type": "object"}}],
         "system": "You are the billing bot. Today is Wednesday, November 25, 2026 09:13:44. Request "
                   "req_01AbCd1234zzzzzz. Trace 9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b."}
    c = {**base, "system": "You are the shipping bot. Today is Tuesday, November 24, 2026 10:00:05."}
    assert fingerprint(a) == fingerprint(b) != fingerprint(c)
    assert fingerprint(a).startswith("fp_") and len(fingerprint(a)) == 15
    u1 = {**base, "messages": [{"role": "user", "content": "Translate to French:\nhello"}]}
    u2 = {**base, "messages": [{"role": "user", "content": "Translate to French:\ngood night"}]}
    u3 = {**base, "messages": [{"role": "user", "content": "Summarise:\nhello"}]}
    assert fingerprint(u1) == fingerprint(u2) != fingerprint(u3)
    as_blocks = {**base, "system": [{"type": "text", "text": a["system"], "cache_control": {"type": "ephemeral"}}]}
    assert fingerprint(as_blocks) == fingerprint(a)
