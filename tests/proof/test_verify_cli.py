"""`parity verify` and `parity signing-key` through Typer's CliRunner: exit 0 verified, 1 when the evidence or the
signature does not hold, 2 when the certificate or key cannot be read; plain words about what an unsigned
certificate does and does not show, and whether a certificate can back a route."""

from __future__ import annotations

import copy
import json
import os
import stat

import pytest
from typer.testing import CliRunner

from parity.cli import app
from parity.proof import certificate as certs
from parity.proof.signing import ENV_FILE, ENV_SECRET, load_signing_key, sign
from tests.proof.test_certificate import _finite_pool, _run

runner = CliRunner()


def invoke(*args: object, env: dict[str, str] | None = None):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200", **(env or {})})


@pytest.fixture(autouse=True)
def _no_key_in_env(monkeypatch):
    monkeypatch.delenv(ENV_FILE, raising=False)
    monkeypatch.delenv(ENV_SECRET, raising=False)


@pytest.fixture(scope="module")
def triage(tmp_path_factory):
    out, _ = _run(tmp_path_factory, "ticket_triage", n=300, n_max=120, max_prompt_candidates=8)
    return out


def _write(tmp_path, cert: dict, name: str = "cert.json"):
    return certs.write_json(cert, tmp_path / name)


def test_an_unsigned_certificate_verifies_and_says_what_that_does_not_show(triage):
    res = invoke("verify", triage.certificate_path)
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    assert "verified: the stored evidence gives the same verdict (switch)" in out
    assert "the certificate is unsigned" in out and "real model calls" in out and "re-computed its id" in out
    assert "(simulated)" in out and "simulated: made on the emulator" in out
    assert "can back a route" in out and "cannot back a route" not in out
    assert "hypothesis: H0:" in out and certs.POPULATION in out


def test_signing_key_makes_a_private_key_and_a_public_one_to_share(tmp_path):
    path = tmp_path / "keys" / "issuer.pem"
    res = invoke("signing-key", path)
    assert res.exit_code == 0, res.output
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and (tmp_path / "keys" / "issuer.pem.pub").exists()
    key = load_signing_key(path)
    assert key.key_id in res.output and load_signing_key(f"{path}.pub").key_id == key.key_id
    again = invoke("signing-key", path)
    assert again.exit_code == 2 and "never overwritten" in again.output


def test_a_signed_certificate_passes_only_with_the_right_key(tmp_path, triage):
    invoke("signing-key", tmp_path / "issuer.pem")
    invoke("signing-key", tmp_path / "other.pem")
    issuer = load_signing_key(tmp_path / "issuer.pem")
    signed = _write(tmp_path, sign(triage.certificate, issuer))

    res = invoke("verify", signed, "--key", tmp_path / "issuer.pem.pub")
    assert res.exit_code == 0 and "signature verified" in res.output, res.output
    res = invoke("verify", signed, env={ENV_FILE: str(tmp_path / "issuer.pem")})  # the issuer's own setup
    assert res.exit_code == 0 and "signature verified" in res.output
    res = invoke("verify", signed)  # no key: checked against the public key it carries, signer not checked
    assert res.exit_code == 0 and "signature intact" in res.output
    res = invoke("verify", signed, "--key", tmp_path / "other.pem.pub")
    assert res.exit_code == 1 and "not with the key given" in res.output and "not verified" in res.output

    # an unsigned certificate fails when a key is given or a signature is required
    res = invoke("verify", triage.certificate_path, "--key", tmp_path / "issuer.pem.pub")
    assert res.exit_code == 1 and "not signed" in res.output
    res = invoke("verify", triage.certificate_path, "--require-signature")
    assert res.exit_code == 1 and "not signed" in res.output

    # a forger who rewrites the evidence, re-hashes the id and re-signs with their own key
    forged = copy.deepcopy(triage.certificate)
    forged["cost"]["projected_monthly_saving"] = "1000000"
    forged["id"] = certs.certificate_id(forged)
    forged_path = _write(tmp_path, sign(forged, load_signing_key(tmp_path / "other.pem")), "forged.json")
    res = invoke("verify", forged_path, "--key", tmp_path / "issuer.pem.pub")
    assert res.exit_code == 1 and "not with the key given" in res.output
    # ... or leaves the signature alone
    edited = json.loads(signed.read_text())
    edited["cost"]["projected_monthly_saving"] = "1000000"
    edited["id"] = certs.certificate_id(edited)
    res = invoke("verify", _write(tmp_path, edited, "edited.json"), "--key", tmp_path / "issuer.pem.pub")
    assert res.exit_code == 1 and "changed after it was signed" in res.output


def test_an_hmac_signed_certificate_needs_the_same_secret(tmp_path, triage):
    (tmp_path / "secret").write_text("team secret\n")
    (tmp_path / "wrong").write_text("not the secret\n")
    signed = _write(tmp_path, sign(triage.certificate, load_signing_key(tmp_path / "secret")))
    assert invoke("verify", signed, "--key", tmp_path / "secret").exit_code == 0
    assert invoke("verify", signed, env={ENV_SECRET: "team secret"}).exit_code == 0
    res = invoke("verify", signed, "--key", tmp_path / "wrong")
    assert res.exit_code == 1 and "not with the key given" in res.output
    res = invoke("verify", signed)
    assert res.exit_code == 0 and "signature not checked" in res.output


def test_a_tampered_certificate_fails_and_an_unreadable_one_exits_2(tmp_path, triage):
    forged = copy.deepcopy(triage.certificate)
    for o in forged["candidates"][0]["observations"]:
        o["x"], o["unit"] = -1.0, 0.0
    forged["id"] = certs.certificate_id(forged)
    res = invoke("verify", _write(tmp_path, forged))
    assert res.exit_code == 1 and "not verified" in res.output and "its evidence gives" in res.output
    (tmp_path / "x.json").write_text('{"hello": 1}')
    res = invoke("verify", tmp_path / "x.json")
    assert res.exit_code == 2 and "not a Parity certificate" in res.output
    res = invoke("verify", triage.certificate_path, "--key", tmp_path / "missing.pem")
    assert res.exit_code == 2 and "no such signing key file" in res.output


def test_a_finite_pool_certificate_is_reported_as_unable_to_back_a_route(tmp_path, triage):
    res = invoke("verify", _write(tmp_path, _finite_pool(triage.certificate)))
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    assert "cannot back a route: it is a finite-pool certificate" in out
    assert "prompts of the test split only" in out
