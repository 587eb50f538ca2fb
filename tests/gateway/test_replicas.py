"""Gateway replicas on one real PostgreSQL ledger: a key's budget holds across them, a rollback decided by one is
obeyed by the other within seconds, and a replica SIGKILLed under load loses no answered request."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from decimal import Decimal

import httpx
import httpx2
import pytest

from parity.api.transport import AsyncASGITransport
from parity.gateway.keys import KeyStore
from parity.ledger.reader import read_rows
from parity.policy import Policy

from ledger.pg import scratch_schema

from .conftest import BASELINE, USER, policy


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


# ---- subprocess replicas: SIGKILL under load --------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _serve(pg: str, journal: str, name: str, cwd) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "parity", "serve", "--upstream", "emulator", "--port", str(port), "--ledger", pg,
         "--journal", journal, "--replica", name],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, process.stdout.read()
        try:
            httpx.get(f"{base}/healthz", timeout=0.5)
            return process, base
        except httpx.TransportError:
            assert time.monotonic() < deadline, f"replica {name} did not start"
            time.sleep(0.1)


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
