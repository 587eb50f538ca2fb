"""A deferred request answered 202 survives a SIGKILL of its replica: real `parity serve` processes, killed and
restarted; each handle still resolves to its batch's Message, no request goes upstream twice where the batch
survived, and each result is one ledger row."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from parity.ledger.reader import read_rows

from ledger.pg import scratch_schema
from servers import start_serve

BODY = {"model": "claude-haiku-4-5", "max_tokens": 20, "messages": [{"role": "user", "content": "Say hi"}]}
HEADERS = {"x-api-key": "sk-client", "anthropic-version": "2023-06-01"}
UPSTREAM_KEY = "sk-ant-upstream-test"


def _start(command: str, args: list[str], cwd: Path, log: Path, ready: str) -> tuple[subprocess.Popen, str]:
    """Run `python -m parity COMMAND ARGS --port P` with the upstream key set, logging to `log`; wait until GET
    `ready` answers; (process, base URL)."""
    env = {**os.environ, "PARITY_UPSTREAM_API_KEY": UPSTREAM_KEY}
    return start_serve(args, cwd=cwd, env=env, ready_path=ready, command=command, log=log)


def _serve(upstream: str, ledger: str, tmp: Path, name: str, *options: str) -> tuple[subprocess.Popen, str]:
    return _start("serve", ["--upstream", upstream, "--ledger", ledger, "--journal", str(tmp / "journal"),
                            "--replica", name, *options], tmp, tmp / f"{name}.log", "/healthz")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _defer(base: str, n: int) -> list[dict]:
    handles = []
    with httpx.Client(base_url=base, timeout=10) as client:
        for i in range(n):
            body = {**BODY, "messages": [{"role": "user", "content": f"Say hi to {i} at {time.time()}"}]}
            answer = client.post("/v1/messages", json=body, headers={**HEADERS, "x-parity-defer": "true"})
            assert answer.status_code == 202, answer.text
            handles.append(answer.json())
    return handles


def _wait_for(base: str, handles: list[dict], status: str, timeout: float = 30.0) -> dict[str, dict]:
    """Poll every handle until each is `status` ("submitted": still 202; "succeeded": 200 and the Message)."""
    seen: dict[str, dict] = {}
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=base, timeout=10) as client:
        while len(seen) < len(handles):
            for handle in handles:
                if handle["parity_deferred_id"] in seen:
                    continue
                answer = client.get(handle["poll_url"], headers=HEADERS)
                if status == "succeeded" and answer.status_code == 200:
                    seen[handle["parity_deferred_id"]] = answer.json()
                elif status != "succeeded" and answer.status_code == 202 and answer.json()["status"] == status:
                    seen[handle["parity_deferred_id"]] = answer.json()
                else:
                    assert answer.status_code in (200, 202), answer.text
            assert time.monotonic() < deadline, f"{len(seen)} of {len(handles)} handles reached {status}"
            time.sleep(0.1)
    return seen


def _deferred_rows(ledger: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in read_rows(ledger):
        if row.route == "deferred":
            key = row.exchange.tags["parity_deferred_id"]
            counts[key] = counts.get(key, 0) + 1
    return counts


def test_deferred_requests_survive_sigkill_on_a_sqlite_ledger(tmp_path):
    """`--upstream emulator`: three requests fill a batch (sent), two wait in the queue; SIGKILL; the restarted
    replica sends the two, and sends the three again because the killed process's in-process emulator took their
    batch with it (the upstream answers 404 for it)."""
    ledger = str(tmp_path / "ledger.db")
    first, base = _serve("emulator", ledger, tmp_path, "first", "--defer-max-batch", "3", "--defer-max-wait", "60",
                         "--defer-poll", "0.2", "--emulator-batch-s", "60")
    try:
        sent = _defer(base, 3)  # a full batch: sent at once
        batches = _wait_for(base, sent, "submitted")
        assert len({h["batch_id"] for h in batches.values()}) == 1
        waiting = _defer(base, 2)  # not full, and the oldest has waited less than 60 s: queued
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    again, base = _serve("emulator", ledger, tmp_path, "again", "--defer-max-batch", "3", "--defer-max-wait", "0.2",
                         "--defer-poll", "0.2", "--emulator-batch-s", "0.5")
    try:
        messages = _wait_for(base, sent + waiting, "succeeded", timeout=60)
    finally:
        _stop(again)
    assert all(m["type"] == "message" and m["usage"]["service_tier"] == "batch" for m in messages.values())
    assert _deferred_rows(ledger) == {h["parity_deferred_id"]: 1 for h in sent + waiting}


@pytest.fixture
def pg():
    with scratch_schema() as url:
        yield url


def test_a_replica_resumes_the_batches_a_killed_replica_sent_and_flushes_its_queue(tmp_path, pg):
    """An upstream that outlives the gateway (a separate emulator, like the real API): replica a sends a batch of
    three and queues two more, then is SIGKILLed; replica b (on the same PostgreSQL ledger) answers a's handles,
    sends the two and collects a's batch without sending its three requests again."""
    emulator, upstream = _start("emulate", ["--batch-processing-s", "3"], tmp_path, tmp_path / "emulator.log",
                                "/v1/models")
    try:
        a, base_a = _serve(upstream, pg, tmp_path, "a", "--defer-max-batch", "3", "--defer-max-wait", "60",
                           "--defer-poll", "0.2")
        try:
            sent = _defer(base_a, 3)
            batch_of = {i: h["batch_id"] for i, h in _wait_for(base_a, sent, "submitted").items()}
            waiting = _defer(base_a, 2)
        finally:
            a.send_signal(signal.SIGKILL)
            a.wait(timeout=10)
        b, base_b = _serve(upstream, pg, tmp_path, "b", "--defer-max-batch", "3", "--defer-max-wait", "0.2",
                           "--defer-poll", "0.2")
        try:
            messages = _wait_for(base_b, sent + waiting, "succeeded", timeout=60)
            with httpx.Client(base_url=base_b, timeout=10) as client:
                after = {h["parity_deferred_id"]: client.get(h["poll_url"], headers=HEADERS) for h in sent}
        finally:
            _stop(b)
        listed = httpx.get(f"{upstream}/v1/messages/batches?limit=100",
                           headers={"x-api-key": UPSTREAM_KEY, "anthropic-version": "2023-06-01"}).json()["data"]
    finally:
        _stop(emulator)
    assert len(messages) == 5 and all(m["usage"]["service_tier"] == "batch" for m in messages.values())
    assert all(answer.status_code == 200 for answer in after.values())
    counted = sum(sum(b["request_counts"].values()) for b in listed)
    assert len(listed) == 2 and counted == 5, listed  # a's batch was collected, not sent again
    assert set(batch_of.values()) <= {b["id"] for b in listed}
    assert _deferred_rows(pg) == {h["parity_deferred_id"]: 1 for h in sent + waiting}
