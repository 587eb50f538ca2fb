"""`parity prove` through Typer's CliRunner on the in-process emulator: a switch writes the policy entry the
gateway then routes by, a refusal writes none, exit codes say which, progress is shown, bad input is a clear
error naming what and where, and an interrupted run resumes."""

from __future__ import annotations

import json
from decimal import Decimal
from io import StringIO
from pathlib import Path

import anthropic
import httpx2
import pytest
from rich.console import Console
from rich.progress import Progress
from typer.testing import CliRunner

from parity.emulator import workloads
from parity.api.transport import EventLoopThread, SyncASGITransport
import parity.cli.prove as cli
from parity.cli import app
from parity.emulator.brains.simulated import SimulatedBrain
from parity.emulator.service import Emulator
from parity.exchange import Exchange
from parity.gateway.app import create_gateway
from parity.gateway.local import emulator_config
from parity.policy import load_policy
from parity.emulator.prove import prove_scenario

BASELINE, CANDIDATE = "claude-opus-4-8", "claude-haiku-4-5"
runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def _prove(tmp_path: Path, family: str, *extra: object):
    return invoke("prove", "--task", family, "--emulator-family", family, "--n", 160, "--baseline", BASELINE,
                  "--candidate", CANDIDATE, "--margin", "0.1", "--n-max", 80, "--run-dir", tmp_path / family,
                  "--policy", tmp_path / "policy.json", *extra)


class RecordingBrain:
    name = "recording"

    def __init__(self):
        self.inner = SimulatedBrain(seed=0)
        self.requests = []

    def reply(self, request):
        self.requests.append(request)
        return self.inner.reply(request)


def test_a_switch_writes_the_policy_the_gateway_routes_by(tmp_path):
    html = tmp_path / "certificate.html"
    res = _prove(tmp_path, "ticket_triage", "--html", html, "--monthly-requests", 100000)
    assert res.exit_code == 0, res.output
    out = res.output
    assert "switch" in out and "(simulated)" in out and "certificate cert_" in out and html.exists()
    assert f"policy entry: route ticket_triage → {CANDIDATE}" in out
    # progress was shown for every stage of the run, not only at the end
    for stage in ("data", "baseline", "optimise", "test", "policy"):
        assert stage in out, stage
    cert_path = tmp_path / "ticket_triage" / "certificate.json"
    cert = json.loads(cert_path.read_text())
    entry = load_policy(tmp_path / "policy.json").tasks["ticket_triage"]
    assert entry.mode == "route" and entry.candidate_model == CANDIDATE and entry.baseline_model == BASELINE
    assert entry.certificate.id == cert["id"] and entry.certificate.verdict == "switch"
    assert entry.prompt.demos and entry.contract.labels
    # the proof's cost against a month's saving, and what the tuned prompt adds per request, in JSON and print
    cost = cert["cost"]
    share = Decimal(cost["proof_share_of_monthly_saving"])
    assert share == (Decimal(cost["proof"]["spent"]) / Decimal(cost["projected_monthly_saving"])).quantize(Decimal("0.0001"))
    assert f"{float(share):.1%} of one month's projected saving" in " ".join(out.split())
    optimization = cert["candidates"][0]["optimization"]
    assert Decimal(cost["demonstrations_per_request"]) == (
        Decimal(str(optimization["cost_per_request"])) - Decimal(str(optimization["base_prompt_cost_per_request"]))
    ).quantize(Decimal("1e-9")) > 0
    assert "of one month" in html.read_text() and "projected saving" in html.read_text()
    verified = invoke("verify", cert_path)
    assert verified.exit_code == 0 and "verified" in verified.output

    # the gateway reads that file: a triage request is answered by the candidate with the tuned prompt
    brain = RecordingBrain()
    upstream = Emulator(brain=brain, seed=0)
    gateway_app = create_gateway(emulator_config(upstream, policy_path=str(tmp_path / "policy.json")))
    loop = EventLoopThread("prove-cli-gateway")
    try:
        http = httpx2.Client(transport=SyncASGITransport(gateway_app, loop_thread=loop), base_url="http://gw.test")
        client = anthropic.Anthropic(base_url="http://gw.test", api_key="sk-anything", http_client=http,
                                     max_retries=0)
        request = workloads.request_for(workloads.items("ticket_triage", 1, seed=99)[0],
                                        model=BASELINE)
        message = client.messages.create(**request, extra_headers={"x-parity-task": "ticket_triage"})
        assert message.model == CANDIDATE
        sent = brain.requests[-1]
        assert sent.model == CANDIDATE and len(sent.messages) == 2 * len(entry.prompt.demos) + 1
        assert sent.messages[0]["content"][0]["text"] == entry.prompt.demos[0].input
    finally:
        loop.submit(gateway_app.state.gateway.aclose()).result(timeout=30)


def test_a_refusal_exits_1_and_routes_nothing(tmp_path):
    res = _prove(tmp_path, "math_reasoning")
    assert res.exit_code == 1, res.output
    assert "do_not_switch" in res.output and "futility" in res.output and "Do not switch" in res.output
    assert not (tmp_path / "policy.json").exists()
    assert "policy entry" not in res.output


def _log(path: Path, n: int = 40, model: str = BASELINE) -> Path:
    emulator = Emulator(seed=0)
    client = emulator.client()
    lines = []
    for item in workloads.items("ticket_triage", n, seed=3):
        request = workloads.request_for(item, model=model)
        response = client.messages.create(**request).model_dump(mode="json")
        lines.append(Exchange(request=request, response=response, tags={"task": "triage"}).to_json())
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("args, message", [
    (["--data", "{missing}"], "missing.jsonl: no such file"),
    (["--data", "{bad}"], "bad.jsonl:3: not valid JSON"),
    (["--data", "{other_model}"], "came from 'claude-sonnet-4-6'"),
    (["--emulator-family", "ticket_triage", "--judge", CANDIDATE, "--scoring", "judge"], "candidate's model"),
    (["--emulator-family", "ticket_triage", "--judge", "claude-sonnet-4-6", "--scoring", "judge"], "weaker"),
    (["--emulator-family", "poetry"], "unknown emulator family 'poetry'"),
    (["--emulator-family", "ticket_triage", "--data", "{good}"], "exactly one source"),
    (["--emulator-family", "ticket_triage", "--budget-usd", "lots"], "--budget-usd must be a number"),
    (["--emulator-family", "ticket_triage", "--split-by", "row"], "unknown split 'row'"),
    (["--emulator-family", "ticket_triage", "--scoring", "vibes"], "unknown scoring 'vibes'"),
])
def test_bad_input_is_a_clear_error_with_exit_2(tmp_path, monkeypatch, args, message):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")  # a user with a key: the input is checked before any call
    good = _log(tmp_path / "good.jsonl", 6)
    lines = good.read_text().splitlines()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([lines[0], lines[1], "{oops", lines[2]]) + "\n")
    other = _log(tmp_path / "other.jsonl", 6, model="claude-sonnet-4-6")
    paths = {"missing": tmp_path / "missing.jsonl", "bad": bad, "good": good, "other_model": other}
    args = [a.format(**paths) for a in args]
    res = invoke("prove", "--task", "triage", "--baseline", BASELINE, "--candidate", CANDIDATE, "--n", 40,
                 "--run-dir", tmp_path / "run", *args)
    assert res.exit_code == 2, res.output
    assert "error:" in res.output and message in res.output
    assert "Traceback" not in res.output


def test_an_interrupted_run_exits_130_and_the_same_command_resumes(tmp_path, monkeypatch):
    made = []
    real_client = cli._client

    def interrupted_client(use_emulator, brain, seed):
        client = real_client(use_emulator, brain, seed)
        if not made:  # the first process is stopped with Ctrl-C at its third batch
            original = client.messages.batches.create
            calls = []

            def create(*args, **kwargs):
                calls.append(1)
                if len(calls) == 3:
                    raise KeyboardInterrupt
                return original(*args, **kwargs)

            client.messages.batches.create = create
        made.append(client)
        return client

    monkeypatch.setattr(cli, "_client", interrupted_client)
    first = _prove(tmp_path, "ticket_triage")
    assert first.exit_code == 130 and "interrupted" in first.output and "--run-dir" in first.output
    assert not (tmp_path / "ticket_triage" / "certificate.json").exists()
    resumed = _prove(tmp_path, "ticket_triage")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((tmp_path / "ticket_triage" / "certificate.json").read_text())["decision"]["verdict"] == "switch"


def test_verify_rejects_a_file_that_is_not_a_certificate(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"hello": 1}')
    res = invoke("verify", path)
    assert res.exit_code == 2 and "not a Parity certificate" in res.output
    res = invoke("verify", tmp_path / "none.json")
    assert res.exit_code == 2 and "no such certificate file" in res.output


def test_prove_task_gives_the_demo_its_headline_numbers(tmp_path):
    shown = StringIO()
    with Progress(console=Console(file=shown, width=160, force_terminal=False)) as progress:
        switch = prove_scenario("ticket_triage", "ticket_triage", run_dir=tmp_path / "triage",
                            progress=progress, monthly_requests=100_000, policy_path=tmp_path / "policy.json")
        refuse = prove_scenario("math_reasoning", "math_reasoning", run_dir=tmp_path / "math", progress=progress)
    assert "prove ticket_triage" in shown.getvalue() and "prove math_reasoning" in shown.getvalue()
    assert (switch.verdict, switch.candidate, switch.stopped_by) == ("switch", CANDIDATE, "efficacy")
    assert switch.policy_entry is not None and switch.policy_entry.certificate.id == switch.certificate_id
    assert load_policy(tmp_path / "policy.json").tasks["ticket_triage"].candidate_model == CANDIDATE
    assert switch.lower_bound <= switch.estimate and switch.threshold == -0.1 and 0 < switch.n_used <= 150
    assert switch.cost_per_request_after < switch.cost_per_request_before
    assert switch.cost_per_request_after < switch.net_cost_per_request_after  # routing pays the drift watch too
    assert switch.projected_monthly_saving == (switch.cost_per_request_before - switch.net_cost_per_request_after) * 100_000
    assert switch.proof_cost_sync_usd == 2 * switch.proof_cost_usd > 0 and switch.simulated
    assert (refuse.verdict, refuse.candidate, refuse.stopped_by) == ("do_not_switch", None, "futility")
    assert refuse.policy_entry is None and refuse.estimate < -0.1 and refuse.projected_monthly_saving is None
    assert refuse.cost_per_request_after is not None  # what the refused candidate would have cost, for the table
