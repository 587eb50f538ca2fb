"""Gateway replicas on one real PostgreSQL ledger: a key's budget holds across them, a rollback decided by one is
obeyed by the other within seconds, and a replica SIGKILLed under load loses no answered request."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import httpx
import httpx2
import pytest

from parity.api.transport import AsyncASGITransport
from parity.gateway.keys import KeyStore
from parity.ledger.budget import charged as budget_charged
from parity.ledger.reader import read_rows
from parity.ledger.schema import create_engine
from parity.policy import CertificateRef, Policy, save_policy

from ledger.pg import scratch_schema
from servers import start_serve

from .conftest import BASELINE, CANDIDATE, TASK, UPSTREAM_KEY, USER, policy
from .test_certified_routes import copy_certificate, edit_a_score, genuine


@pytest.fixture
def pg():
    with scratch_schema() as url:
        yield url


def test_one_budget_across_two_replicas(make, tmp_path, pg):
    path = tmp_path / "keys.json"
    budget = Decimal("0.004")
    secret, record = KeyStore(path).create("shared", budget_usd=str(budget))
    one = make(keys_path=str(path), ledger_url=pg, replica="one")
    two = make(keys_path=str(path), ledger_url=pg, replica="two")
    body = {"model": BASELINE, "max_tokens": 60, "messages": USER}

    async def one_request(client: httpx2.AsyncClient, stream: bool) -> int:
        response = await client.post("/v1/messages", json={**body, "stream": stream},
                                     headers={"x-api-key": secret, "anthropic-version": "2023-06-01"})
        await response.aread()
        return response.status_code

    async def burst(harness, stream: bool) -> list[int]:
        async with httpx2.AsyncClient(transport=AsyncASGITransport(harness.app), base_url="http://gw.test") as client:
            statuses = []
            for _ in range(6):
                statuses += await asyncio.gather(*(one_request(client, stream) for _ in range(10)))
            return statuses

    first = one.loop.submit(burst(one, False))
    second = two.loop.submit(burst(two, True))  # the other replica streams
    statuses = first.result(timeout=180) + second.result(timeout=180)
    assert one.gateway.recorder.flush(30) and two.gateway.recorder.flush(30)
    rows = [r for r in read_rows(pg) if r.key_id == record.id]
    charged = [r.cost_usd for r in rows if r.cost_usd is not None]
    assert statuses.count(200) == len(charged) and 400 in statuses
    assert {r.exchange.tags.get("gateway_request_id") for r in rows} and len(rows) == statuses.count(200)
    total = sum(charged)
    assert total <= budget + max(charged), (total, budget)
    assert total > budget / 2
    engine = create_engine(pg)
    with engine.connect() as conn:  # the key's running total is the sum of its rows, to the last digit
        assert budget_charged(conn, record.id) == {record.id: total}
    engine.dispose()


def _watched(entry_policy: Policy) -> Policy:
    task = entry_policy.tasks["triage"]
    return Policy({"triage": dataclasses.replace(task, shadow_rate=0.01)})


def test_a_rollback_on_one_replica_routes_the_other_to_the_baseline(make, pg):
    watched = _watched(policy("route"))
    one = make(policy=watched, ledger_url=pg, replica="one", drift_poll_s=0.2)
    two = make(policy=watched, ledger_url=pg, replica="two", drift_poll_s=0.2)
    headers = {"x-api-key": "sk-client", "anthropic-version": "2023-06-01", "x-parity-task": "triage"}
    body = {"model": BASELINE, "max_tokens": 60, "messages": USER}
    with two.http() as http:
        assert http.post("/v1/messages", json=body, headers=headers).headers["x-parity-route"] == "routed"
    task = watched.tasks["triage"]
    monitor = one.gateway.drift.monitor_for(task)
    monitor.roll_back("drift: decided on replica one (test)", {"task": "triage"})
    deadline = time.monotonic() + 5
    with two.http() as http:
        while True:
            answer = http.post("/v1/messages", json=body, headers=headers)
            if answer.headers.get("x-parity-reason") == "rolled_back":
                break
            assert time.monotonic() < deadline, "replica two kept routing after replica one rolled back"
            time.sleep(0.1)
    assert answer.status_code == 200 and answer.headers["x-parity-route"] == "passthrough"
    assert answer.json()["model"] == BASELINE
    assert two.gateway.drift.monitors["triage"].status()["state"] == "rolled_back"


# ---- the deferral queue and the policy, shared ------------------------------------------------------------------


def test_the_deferral_queue_is_shared_and_each_request_is_sent_once(make, pg):
    """Both replicas defer requests at once into one queue on one upstream; each handle resolves on the replica
    that did not issue it, and every request went upstream in exactly one batch, whichever replica sent it."""
    options = {"max_batch": 4, "max_wait_s": 0.2, "poll_interval_s": 0.05}
    one = make(ledger_url=pg, replica="one", deferral_options=options)
    two = make(ledger_url=pg, replica="two", deferral_options=options, upstream_transport=AsyncASGITransport(one.shim))
    body = {"model": BASELINE, "max_tokens": 60, "messages": USER}
    headers = {"x-api-key": "sk-client", "anthropic-version": "2023-06-01", "x-parity-defer": "true"}

    async def defer(harness, n: int) -> list[dict]:
        async with httpx2.AsyncClient(transport=AsyncASGITransport(harness.app), base_url="http://gw.test") as client:
            answers = await asyncio.gather(*(client.post("/v1/messages", json=body, headers=headers) for _ in range(n)))
        assert {a.status_code for a in answers} == {202}
        return [a.json() for a in answers]

    first, second = one.loop.submit(defer(one, 15)), two.loop.submit(defer(two, 15))
    from_one, from_two = first.result(timeout=60), second.result(timeout=60)
    pending = [(two, h) for h in from_one] + [(one, h) for h in from_two]  # each polled on the other replica
    deadline = time.monotonic() + 30
    while pending:
        assert time.monotonic() < deadline, f"{len(pending)} handles never resolved"
        still = []
        for harness, handle in pending:
            with harness.http() as http:
                answer = http.get(handle["poll_url"], headers={"x-api-key": "sk-client"})
            assert answer.status_code in (200, 202), answer.text
            if answer.status_code == 202:
                still.append((harness, handle))
            else:
                assert answer.json()["usage"]["service_tier"] == "batch"
        pending = still
        time.sleep(0.05)
    upstream = one.emulator.client(api_key=UPSTREAM_KEY)
    sent = [entry.custom_id for batch in upstream.messages.batches.list(limit=100).data
            for entry in upstream.messages.batches.results(batch.id)]
    issued = sorted(h["parity_deferred_id"] for h in from_one + from_two)
    assert sorted(sent) == issued  # 30 requests, each in one batch only
    assert one.gateway.deferral.counts["batches"] and two.gateway.deferral.counts["batches"]  # both flushed some
    assert one.gateway.recorder.flush(30) and two.gateway.recorder.flush(30)
    recorded = [r.exchange.tags["parity_deferred_id"] for r in read_rows(pg) if r.route == "deferred"]
    assert sorted(recorded) == issued  # one ledger row per request, whichever replica collected its batch


def _touch(path) -> None:
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))


def test_a_policy_loaded_on_one_replica_is_served_by_the_other_within_seconds(make, pg, tmp_path):
    """Replica one reads a policy file (its certificate beside it); replica two has neither and serves what one
    loaded. One's file then switches the task to route: two routes it within seconds, on its own check of the
    certificate it read from the database. A policy whose certificate was altered in the database routes nowhere."""
    folder = tmp_path / "deploy"  # only replica one reads this folder
    good = copy_certificate(genuine(), folder / "certs" / "triage.json")
    routed = dataclasses.replace(good, certificate=CertificateRef(id=good.certificate.id, path="certs/triage.json"))
    path = folder / "policy.json"
    save_policy(Policy({"triage": dataclasses.replace(routed, mode="observe")}), path)
    one = make(policy_path=str(path), ledger_url=pg, replica="one", policy_poll_s=0.1)
    two = make(ledger_url=pg, replica="two", policy_poll_s=0.1)
    assert two.gateway.tasks.policy.tasks["triage"].mode == "observe"
    body = {"model": BASELINE, "max_tokens": 60, "messages": USER}
    headers = {"x-api-key": "sk-client", "anthropic-version": "2023-06-01", **TASK}
    with two.http() as http:
        assert http.post("/v1/messages", json=body, headers=headers).json()["model"] == BASELINE

    save_policy(Policy({"triage": routed}), path)
    _touch(path)
    one.gateway.tasks._checked = 0.0  # one's next request runs its reload check
    changed = time.monotonic()
    with one.http() as http:
        assert http.post("/v1/messages", json=body, headers=headers).json()["model"] == CANDIDATE
    with two.http() as http:
        while (answer := http.post("/v1/messages", json=body, headers=headers)).json()["model"] != CANDIDATE:
            assert time.monotonic() - changed < 5, "replica two still serves the old policy"
            time.sleep(0.05)
    assert answer.headers["x-parity-route"] == "routed" and two.gateway.tasks.refused == {}
    assert two.gateway.tasks.version == one.gateway.tasks.version >= 2

    document = {"policy": Policy({"triage": routed}).to_dict(), "certificates": {"certs/triage.json": json.dumps(
        _edited(Path(good.certificate.path)))}}
    version = two.gateway.tasks.store.publish(document, source="tampered in the database")
    for harness in (one, two):
        deadline = time.monotonic() + 5
        with harness.http() as http:
            while harness.gateway.tasks.version < version:
                assert time.monotonic() < deadline, "the tampered version was not read"
                http.post("/v1/messages", json=body, headers=headers)
                time.sleep(0.05)
            answer = http.post("/v1/messages", json=body, headers=headers)
        assert answer.json()["model"] == BASELINE and answer.headers["x-parity-reason"] == "certificate_does_not_verify"
        assert set(harness.gateway.tasks.refused) == {"triage"}


def _edited(path: Path) -> dict:
    cert = json.loads(path.read_text())
    edit_a_score(cert)
    return cert


# ---- subprocess replicas: SIGKILL under load --------------------------------------------------------------------


def _serve(pg: str, journal: str, name: str, cwd) -> tuple[subprocess.Popen, str]:
    return start_serve(["--upstream", "emulator", "--ledger", pg, "--journal", journal, "--replica", name], cwd=cwd)


def test_sigkill_under_load_loses_no_acknowledged_request(pg, tmp_path):
    journal = str(tmp_path / "journal")
    a, base_a = _serve(pg, journal, "a", tmp_path)
    b, base_b = _serve(pg, journal, "b", tmp_path)
    acked: dict[str, list[str]] = {"a": [], "b": []}
    stop = threading.Event()
    body = {"model": "claude-haiku-4-5", "max_tokens": 20, "messages": [{"role": "user", "content": "Say hi"}]}

    def load(name: str, base: str) -> None:
        with httpx.Client(base_url=base, timeout=10) as client:
            while not stop.is_set():
                try:
                    answer = client.post("/v1/messages", json=body,
                                         headers={"x-api-key": "sk-any", "anthropic-version": "2023-06-01"})
                except httpx.TransportError:
                    if name == "a":
                        return  # killed
                    raise
                if answer.status_code == 200:
                    acked[name].append(answer.json()["id"])

    threads = [threading.Thread(target=load, args=(n, base)) for n, base in
               (("a", base_a), ("a", base_a), ("a", base_a), ("b", base_b), ("b", base_b))]
    import psycopg

    server, _, options = pg.partition("?options=")
    blocker = psycopg.connect(server, options=options.replace("%3D", "="))
    try:
        for t in threads:
            t.start()
        time.sleep(1.0)
        # the database stalls (a slow disk, a lock, a failover): ledger writes queue up in both replicas
        blocker.execute("LOCK TABLE exchanges IN EXCLUSIVE MODE")
        time.sleep(2.0)
        a.send_signal(signal.SIGKILL)  # answers given, their rows still queued in a's memory: gone with it
        a.wait(timeout=10)
        killed_at = len(acked["b"])
        blocker.rollback()  # the database is back
        time.sleep(1.5)
        stop.set()
        for t in threads:
            t.join(timeout=30)
        assert len(acked["b"]) > killed_at, "replica b stopped serving when a was killed"
        assert acked["a"], "replica a answered nothing before it was killed"
        before = {r.exchange.response.get("id") for r in read_rows(pg) if isinstance(r.exchange.response, dict)}
        only_in_journal = [i for i in acked["a"] if i not in before]
        assert only_in_journal, "the kill lost nothing from a's queue: this test did not test the journal"
        again, _ = _serve(pg, journal, "a2", tmp_path)  # a restarted replica replays a's journal
        again.send_signal(signal.SIGINT)
        again.communicate(timeout=30)
    finally:
        blocker.close()
        stop.set()
        for process in (a, b):
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                process.communicate(timeout=30)
    ledger_ids = {r.exchange.response.get("id") for r in read_rows(pg) if isinstance(r.exchange.response, dict)}
    lost = [i for i in acked["a"] + acked["b"] if i not in ledger_ids]
    assert not lost, f"{len(lost)} of {len(acked['a']) + len(acked['b'])} answered requests missing from the ledger"
    assert not [p for p in os.listdir(journal) if p.endswith(".jsonl")], "journals left after a clean stop"


def test_a_replica_refuses_a_schema_it_does_not_know(pg, tmp_path):
    from parity.ledger.schema import SCHEMA_VERSION, create_engine, schema_version

    engine = create_engine(pg)
    with engine.begin() as conn:
        conn.execute(schema_version.insert().values(version=SCHEMA_VERSION + 1, applied_at="by a newer parity"))
    engine.dispose()
    done = subprocess.run([sys.executable, "-m", "parity", "serve", "--upstream", "emulator", "--port", "1",
                           "--ledger", pg], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    output = done.stdout + done.stderr
    output = " ".join(output.split())  # the terminal wraps lines
    assert done.returncode != 0 and "newer Parity" in output and "Traceback" not in output, output
