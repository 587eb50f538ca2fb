"""Every route stands on a certificate (issue 15): a `route` entry is taken only on a certificate that verifies and
is about exactly this route. As a user meets it: the official SDK against the gateway, the emulator upstream. A
refused route's task is answered by its baseline as passthrough, and the gateway says why in its log, in
/metrics, in the ledger and in the `x-parity-reason` header; `parity serve` lists the certificate each task routes
on, or why it refused."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from parity.cli.base import app
from parity.errors import InputError
from parity.gateway.certified import REASONS, route_problem
from parity.policy import CertificateRef, Contract, Match, Policy, TaskPolicy, TunedPrompt, save_policy
from parity.proof import certificate as certs
from parity.emulator.prove import prove_scenario
from parity.proof.signing import generate_key_file, load_signing_key, sign

from .conftest import BASELINE, CANDIDATE, SCHEMA, TASK, USER, certified

PARAMS = dict(model=BASELINE, max_tokens=200, messages=USER)
OTHER_CANDIDATE = "claude-sonnet-4-6"


def hand_made(task: str = "triage") -> TaskPolicy:
    return TaskPolicy(task=task, mode="route", baseline_model=BASELINE, candidate_model=CANDIDATE,
                      prompt=TunedPrompt(system="Classify the report. Answer with JSON only."),
                      contract=Contract(json_schema=SCHEMA), match=Match(header=task))


def genuine(task: str = "triage", which: int = 0) -> TaskPolicy:
    return certified(hand_made(task), which)


def copy_certificate(entry: TaskPolicy, to: Path, edit=None) -> TaskPolicy:
    """The entry on a copy of its certificate file (edited by `edit(cert)` when given; the id is kept)."""
    assert entry.certificate is not None and entry.certificate.path
    cert = json.loads(Path(entry.certificate.path).read_text())
    if edit is not None:
        edit(cert)
    to.parent.mkdir(parents=True, exist_ok=True)
    to.write_text(certs.dumps(cert))
    return dataclasses.replace(entry, certificate=CertificateRef(id=entry.certificate.id, path=str(to)))


def edit_a_score(cert: dict) -> None:
    observation = cert["candidates"][0]["observations"][0]
    observation["x"] = 0.0 if observation["x"] else 1.0


def refused_routes(http) -> list[str]:
    return [line for line in http.get("/metrics").text.splitlines() if line.startswith("parity_policy_refused_routes{")]


@pytest.fixture(scope="module")
def not_switch(tmp_path_factory) -> TaskPolicy:
    """A triage route on a genuine certificate whose verdict is not switch (the candidate fails arithmetic)."""
    proof = prove_scenario("triage", "math_reasoning", seed=0, baseline=BASELINE, candidates=(CANDIDATE,),
                       run_dir=tmp_path_factory.mktemp("not-switch"))
    assert proof.verdict != "switch"
    prompt = proof.outcome.candidates[0].prompt
    return dataclasses.replace(hand_made(), prompt=prompt,
                               certificate=CertificateRef(id=proof.certificate_id, path=str(proof.certificate_path)))


def _case(name: str, tmp_path: Path, not_switch: TaskPolicy) -> tuple[TaskPolicy, dict]:
    """(the route entry, extra gateway settings) of one way a route can lack a certificate that backs it."""
    if name == "uncertified":
        return dataclasses.replace(genuine(), certificate=None), {}
    if name == "tampered":
        return copy_certificate(genuine(), tmp_path / "tampered.json", edit_a_score), {}
    if name == "missing_file":
        return dataclasses.replace(genuine(), certificate=CertificateRef(id=genuine().certificate.id,
                                                                         path=str(tmp_path / "gone.json"))), {}
    if name == "other_id":
        return dataclasses.replace(genuine(), certificate=CertificateRef(id="cert_00000000000000000000",
                                                                         path=genuine().certificate.path)), {}
    if name == "other_task":
        return dataclasses.replace(genuine("labels"), task="triage"), {}
    if name == "other_candidate":
        return dataclasses.replace(genuine(), candidate_model=OTHER_CANDIDATE), {}
    if name == "other_prompt":
        return dataclasses.replace(genuine(), prompt=TunedPrompt(system="Classify the report. Answer with JSON only.")), {}
    if name == "not_switch":
        return not_switch, {}
    key = generate_key_file(tmp_path / "gateway-key.pem")
    if name == "unsigned":
        return genuine(), {"signing_key_path": str(tmp_path / "gateway-key.pem")}
    assert name == "signed_by_another_key" and key.can_sign
    stranger = generate_key_file(tmp_path / "stranger.pem")
    return copy_certificate(genuine(), tmp_path / "signed.json", lambda c: c.update(sign(c, stranger))), \
        {"signing_key_path": str(tmp_path / "gateway-key.pem")}


CASES = [
    ("uncertified", "no_certificate"),
    ("tampered", "certificate_does_not_verify"),
    ("missing_file", "certificate_not_found"),
    ("other_id", "certificate_id_mismatch"),
    ("other_task", "certificate_other_task"),
    ("other_candidate", "certificate_other_candidate"),
    ("other_prompt", "certificate_other_prompt"),
    ("not_switch", "certificate_not_switch"),
    ("unsigned", "certificate_signature"),
    ("signed_by_another_key", "certificate_signature"),
]


@pytest.mark.parametrize("case, reason", CASES, ids=[c for c, _ in CASES])
def test_a_route_without_a_certificate_that_backs_it_is_served_by_the_baseline(case, reason, make, tmp_path,
                                                                               not_switch, caplog):
    assert reason in REASONS
    entry, settings = _case(case, tmp_path, not_switch)
    caplog.set_level(logging.WARNING, logger="parity.gateway")
    harness = make(policy=Policy({"triage": entry}), **settings)
    with harness.sdk() as sdk:
        raw = sdk.messages.with_raw_response.create(**PARAMS, extra_headers=TASK)
        streamed = sdk.messages.create(**PARAMS, extra_headers=TASK, stream=True)
        kinds = [event.type for event in streamed]
    message = raw.parse()
    assert message.model == BASELINE and kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert raw.http_response.headers["x-parity-route"] == "passthrough"
    assert raw.http_response.headers["x-parity-reason"] == reason
    assert harness.brain.models() == [BASELINE, BASELINE]  # the candidate was never asked
    rows = harness.ledger(at_least=2)
    assert [(row.route, row.reason.split(":", 1)[0]) for row, _ in rows] == [("passthrough", reason)] * 2
    assert all(ex.tags["task"] == "triage" for _, ex in rows)
    with harness.http() as http:
        assert refused_routes(http) == [f'parity_policy_refused_routes{{reason="{reason}",task="triage"}} 1.0']
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "parity.gateway"]
    assert any("task triage is not routed" in m and f"{reason}: " in m for m in warned), warned


def test_a_route_on_a_certificate_that_verifies_is_taken(make, caplog):
    caplog.set_level(logging.INFO, logger="parity.gateway")
    entry = genuine()
    harness = make(policy=Policy({"triage": entry}))
    with harness.sdk() as sdk:
        raw = sdk.messages.with_raw_response.create(**PARAMS, extra_headers=TASK)
    assert raw.parse().model == CANDIDATE and raw.http_response.headers["x-parity-route"] == "routed"
    (row, _), = harness.ledger()
    assert row.route == "routed"
    with harness.http() as http:
        assert refused_routes(http) == []
    assert any(f"on certificate {entry.certificate.id}" in r.getMessage() for r in caplog.records)
    assert harness.gateway.tasks.refused == {}


def test_a_certificate_signed_with_the_gateways_key_routes(make, tmp_path):
    key = generate_key_file(tmp_path / "key.pem")
    entry = copy_certificate(genuine(), tmp_path / "signed.json", lambda c: c.update(sign(c, key)))
    harness = make(policy=Policy({"triage": entry}), signing_key_path=str(tmp_path / "key.pem"))
    with harness.sdk() as sdk:
        assert sdk.messages.create(**PARAMS, extra_headers=TASK).model == CANDIDATE
    assert harness.gateway.signing_key.key_id == key.key_id


def test_the_signing_key_comes_from_the_environment_too(make, tmp_path, monkeypatch):
    monkeypatch.setenv("PARITY_SIGNING_KEY", "a shared secret")
    harness = make(policy=Policy({"triage": genuine()}))
    with harness.sdk() as sdk:
        assert sdk.messages.create(**PARAMS, extra_headers=TASK).model == BASELINE
    assert harness.gateway.tasks.refused["triage"].startswith("certificate_signature: ")
    key = load_signing_key()
    signed = copy_certificate(genuine(), tmp_path / "hmac.json", lambda c: c.update(sign(c, key)))
    assert route_problem(signed, signing_key=key) is None


def test_only_the_refused_route_falls_to_its_baseline(make):
    """One task's broken certificate does not stop another task's route."""
    harness = make(policy=Policy({"triage": dataclasses.replace(genuine(), certificate=None),
                                  "labels": genuine("labels")}))
    with harness.sdk() as sdk:
        assert sdk.messages.create(**PARAMS, extra_headers=TASK).model == BASELINE
        assert sdk.messages.create(**PARAMS, extra_headers={"x-parity-task": "labels"}).model == CANDIDATE
    assert set(harness.gateway.tasks.refused) == {"triage"}


def test_a_reload_that_breaks_a_certificate_stops_routing_and_a_good_one_resumes_it(make, tmp_path):
    """The policy file names its certificate by a path relative to the policy's folder. Editing the certificate
    in place, or rewriting the policy onto a certificate for another task, refuses the route at the next reload
    check; putting the good certificate back routes again. The check is not redone per request."""
    folder = tmp_path / "deploy"
    good = copy_certificate(genuine(), folder / "certs" / "triage.json")
    original = Path(good.certificate.path).read_text()
    entry = dataclasses.replace(good, certificate=CertificateRef(id=good.certificate.id, path="certs/triage.json"))
    policy_path = folder / "policy.json"
    save_policy(Policy({"triage": entry}), policy_path)
    harness = make(policy_path=str(policy_path))
    tasks = harness.gateway.tasks

    def ask(sdk) -> str:
        tasks._checked = 0.0  # the next request runs the reload check (at most once a second otherwise)
        return sdk.messages.create(**PARAMS, extra_headers=TASK).model

    def touch(path: Path) -> None:
        stat = os.stat(path)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))

    with harness.sdk() as sdk, harness.http() as http:
        assert ask(sdk) == CANDIDATE
        cert = json.loads(original)
        edit_a_score(cert)
        Path(good.certificate.path).write_text(certs.dumps(cert))
        touch(Path(good.certificate.path))
        assert ask(sdk) == BASELINE
        assert refused_routes(http) == ['parity_policy_refused_routes{reason="certificate_does_not_verify",task="triage"} 1.0']
        Path(good.certificate.path).write_text(original)
        touch(Path(good.certificate.path))
        assert ask(sdk) == CANDIDATE and refused_routes(http) == []
        other = copy_certificate(genuine("labels"), folder / "certs" / "labels.json")
        save_policy(Policy({"triage": dataclasses.replace(other, task="triage")}), policy_path)
        touch(policy_path)
        assert ask(sdk) == BASELINE
        assert refused_routes(http) == ['parity_policy_refused_routes{reason="certificate_other_task",task="triage"} 1.0']
        save_policy(Policy({"triage": entry}), policy_path)
        touch(policy_path)
        assert ask(sdk) == CANDIDATE and refused_routes(http) == []


def test_the_check_is_cached_and_never_run_per_request(make, tmp_path, monkeypatch):
    from parity.proof import certificate

    calls: list[str] = []
    real = certificate.verify
    monkeypatch.setattr(certificate, "verify", lambda *args, **kwargs: calls.append(args[0]["id"]) or real(*args, **kwargs))
    entry = copy_certificate(genuine(), tmp_path / "cached.json")
    harness = make(policy=Policy({"triage": entry}))
    assert len(calls) == 1
    with harness.sdk() as sdk:
        for _ in range(3):
            harness.gateway.tasks._checked = 0.0
            assert sdk.messages.create(**PARAMS, extra_headers=TASK).model == CANDIDATE
    harness.gateway.tasks._use(Policy({"triage": entry}))  # a reload with the certificate untouched: not re-verified
    assert len(calls) == 1


def finite_pool_certificate(entry: TaskPolicy, path: Path) -> TaskPolicy:
    """The entry on its certificate's evidence re-tested as earlier versions of `parity prove` did, with the
    finite-pool correction (`pool_size`, the size of the test split): a consistent certificate that verifies."""
    from parity.proof.sequential import run_sequential

    cert = json.loads(Path(entry.certificate.path).read_text())
    (chosen,) = [c for c in cert["candidates"] if c["model"] == cert["decision"]["candidate"]]
    pool = len(cert["splits"]["test"])
    p = chosen["result"]
    result = run_sequential([o["x"] for o in chosen["observations"]], mode=p["mode"], margin=p["margin"],
                            alpha=p["alpha"], n_max=p["n_max"], method=p["method"], futility=p["futility"],
                            pool_size=pool, candidates=p["candidates"], futility_alpha=p["futility_alpha"], c=p["c"],
                            grid_size=p["grid_size"])
    assert result.verdict == "switch"
    chosen.update(result=result.to_dict(trajectory=True), n_used=result.n_used, stopped_by=result.stopped_by,
                  observations=chosen["observations"][: result.n_used])
    cert["hypothesis"] = certs.hypothesis_block(cert["scoring"]["test_mode"], cert["parameters"]["margin"], pool)
    cert["id"] = certs.certificate_id(cert)
    path.write_text(certs.dumps(cert))
    assert certs.verify(path).ok and certs.verify(path).finite_pool == pool
    return dataclasses.replace(entry, certificate=CertificateRef(id=cert["id"], path=str(path)))


def test_a_finite_pool_certificate_cannot_back_a_route(make, tmp_path):
    """A test with a finite-pool correction speaks for its N prompts only, not for the traffic a route serves."""
    pooled = finite_pool_certificate(genuine(), tmp_path / "pool.json")
    problem = route_problem(pooled)
    assert problem is not None and problem.startswith("certificate_finite_pool: ") and "finite-pool" in problem
    harness = make(policy=Policy({"triage": pooled}))
    with harness.sdk() as sdk:
        raw = sdk.messages.with_raw_response.create(**PARAMS, extra_headers=TASK)
    assert raw.parse().model == BASELINE and raw.http_response.headers["x-parity-reason"] == "certificate_finite_pool"


def test_problems_say_what_to_do():
    problem = route_problem(dataclasses.replace(genuine(), certificate=None))
    assert problem.startswith("no_certificate: ") and "parity prove --task triage" in problem
    other = route_problem(dataclasses.replace(genuine(), candidate_model=OTHER_CANDIDATE))
    assert CANDIDATE in other and OTHER_CANDIDATE in other


# ---- parity serve ------------------------------------------------------------------------------------------------


def _serve(tmp_path: Path, monkeypatch, *extra: str):
    """`parity serve --upstream emulator --policy ...` up to the point it would listen: its start-up summary."""
    import uvicorn

    served = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: served.append(app))
    result = CliRunner().invoke(app, ["serve", "--upstream", "emulator", "--ledger", "off",
                                      "--policy", str(tmp_path / "policy.json"), *extra], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert len(served) == 1
    return result.output, served[0].state.gateway


def test_parity_serve_prints_the_certificate_each_route_stands_on_or_why_it_refused(tmp_path, monkeypatch):
    routed = copy_certificate(genuine(), tmp_path / "certs" / "triage.json")
    routed = dataclasses.replace(routed, certificate=CertificateRef(id=routed.certificate.id, path="certs/triage.json"))
    save_policy(Policy({
        "triage": routed,
        "labels": dataclasses.replace(genuine("labels"), certificate=None),
        "summary": TaskPolicy("summary", "observe", BASELINE),
    }), tmp_path / "policy.json")
    output, gateway = _serve(tmp_path, monkeypatch)
    lines = {line.split(":", 1)[0].strip(): line for line in output.splitlines() if line.strip().startswith("task ")}
    assert f"on certificate {routed.certificate.id}" in lines["task triage"]
    assert f"{BASELINE} → {CANDIDATE}" in lines["task triage"]
    assert "route refused" in lines["task labels"] and f"served by the baseline {BASELINE}" in lines["task labels"]
    assert "no_certificate: " in lines["task labels"]
    assert "observe" in lines["task summary"]
    assert set(gateway.tasks.refused) == {"labels"}


def test_parity_serve_with_a_signing_key_refuses_unsigned_certificates(tmp_path, monkeypatch):
    key = generate_key_file(tmp_path / "key.pem")
    save_policy(Policy({
        "triage": genuine(),
        "labels": copy_certificate(genuine("labels"), tmp_path / "labels.json", lambda c: c.update(sign(c, key))),
    }), tmp_path / "policy.json")
    output, gateway = _serve(tmp_path, monkeypatch, "--signing-key", str(tmp_path / "key.pem"))
    lines = {line.split(":", 1)[0].strip(): line for line in output.splitlines() if line.strip().startswith("task ")}
    assert "route refused" in lines["task triage"] and "certificate_signature: " in lines["task triage"]
    assert "not signed" in lines["task triage"]
    assert f"on certificate {genuine('labels').certificate.id}" in lines["task labels"]
    assert f"signed with key {key.key_id}" in output
    assert set(gateway.tasks.refused) == {"triage"}


def test_parity_serve_says_what_to_do_about_a_missing_signing_key_file(tmp_path, monkeypatch):
    save_policy(Policy({"triage": genuine()}), tmp_path / "policy.json")
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: None)
    result = CliRunner().invoke(app, ["serve", "--upstream", "emulator", "--ledger", "off", "--policy",
                                      str(tmp_path / "policy.json"), "--signing-key", str(tmp_path / "nope.pem")])
    assert isinstance(result.exception, InputError)  # `parity` prints it as one line (parity.cli.main)
    assert "no such signing key file" in str(result.exception) and "nope.pem" in str(result.exception)
