"""Signed certificates: an Ed25519 or HMAC signature over the canonical JSON of everything but the signature, that
survives a write/load round trip and fails on the wrong key, a tampered body or a missing signature when one is
required."""

from __future__ import annotations

import copy
import os
import stat

import pytest

from parity.errors import InputError, ParityError
from parity.proof import certificate as certs
from parity.proof.signing import (
    ENV_FILE,
    ENV_SECRET,
    SigningKey,
    check_signature,
    generate_key_file,
    load_signing_key,
    sign,
)

CERT = {"format": "parity-certificate", "version": 2, "id": "cert_0123456789abcdef0123", "task": "triage",
        "decision": {"verdict": "switch", "candidate": "claude-haiku-4-5"}, "scores": [0.25, 1.0, 0.5],
        "note": "naïve ünïcode", "cost": {"saving_per_request": "0.000327677619"}}


@pytest.fixture(autouse=True)
def _no_key_in_env(monkeypatch):
    monkeypatch.delenv(ENV_FILE, raising=False)
    monkeypatch.delenv(ENV_SECRET, raising=False)


@pytest.fixture
def ed(tmp_path) -> SigningKey:
    return generate_key_file(tmp_path / "issuer.pem")


def test_a_generated_key_file_is_private_and_loads_back_as_the_same_key(tmp_path, ed):
    path = tmp_path / "issuer.pem"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    loaded = load_signing_key(path)
    assert loaded == ed and loaded.kind == "ed25519" and len(loaded.key_id) == 16 and loaded.can_sign
    assert repr(loaded.secret) not in repr(loaded) and loaded.secret.hex() not in repr(loaded)  # never printed
    with pytest.raises(InputError, match="already there"):
        generate_key_file(path)  # an existing key is never overwritten


def test_keys_come_from_the_path_then_the_key_file_variable_then_the_secret_variable(tmp_path, monkeypatch, ed):
    assert load_signing_key() is None
    monkeypatch.setenv(ENV_SECRET, "team secret")
    hmac_key = load_signing_key()
    assert hmac_key is not None and hmac_key.kind == "hmac-sha256" and hmac_key.key_id != ed.key_id
    monkeypatch.setenv(ENV_FILE, str(tmp_path / "issuer.pem"))
    assert load_signing_key() == ed
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text("team secret\n")
    assert load_signing_key(secret_file) == hmac_key  # a non-PEM file holds an HMAC secret; the newline is dropped
    with pytest.raises(InputError, match="no such signing key file"):
        load_signing_key(tmp_path / "missing.pem")
    (tmp_path / "empty").write_text("  \n")
    with pytest.raises(InputError, match="empty"):
        load_signing_key(tmp_path / "empty")


@pytest.mark.parametrize("kind", ["ed25519", "hmac"])
def test_a_signed_certificate_checks_with_its_key_after_a_round_trip(tmp_path, ed, kind):
    key = ed if kind == "ed25519" else load_signing_key_from_secret("s3cret")
    signed = sign(CERT, key)
    assert set(signed) == set(CERT) | {"signature"} and CERT.get("signature") is None  # the input is not changed
    sig = signed["signature"]
    assert sig["alg"] == key.kind and sig["key_id"] == key.key_id and sig["value"]
    assert ("public_key" in sig) == (kind == "ed25519")
    assert check_signature(signed, key) is None
    assert check_signature(signed, key, required=True) is None
    # survives pretty-printing, key order and a write/load round trip
    path = certs.write_json(signed, tmp_path / "signed.json")
    reloaded = certs.load(path)
    assert reloaded == signed and check_signature(reloaded, key) is None
    # signing again replaces the signature rather than signing the old one
    assert sign(signed, key)["signature"] == sig


def load_signing_key_from_secret(secret: str) -> SigningKey:
    os.environ[ENV_SECRET] = secret
    try:
        key = load_signing_key()
    finally:
        del os.environ[ENV_SECRET]
    assert key is not None
    return key


def test_the_wrong_key_fails(tmp_path, ed):
    other = generate_key_file(tmp_path / "other.pem")
    signed = sign(CERT, ed)
    assert "not with the key given" in check_signature(signed, other)
    hmac_signed = sign(CERT, load_signing_key_from_secret("right secret"))
    wrong = load_signing_key_from_secret("wrong secret")
    assert "not with the key given" in check_signature(hmac_signed, wrong)
    # a forger who knows the key id but not the secret: the id matches, the value does not
    forged = SigningKey("hmac-sha256", hmac_signed["signature"]["key_id"], secret=b"wrong secret")
    assert "changed after it was signed" in check_signature(hmac_signed, forged)
    assert "not with the key given" in check_signature(hmac_signed, ed)  # another kind of key altogether


def test_a_tampered_certificate_fails_with_or_without_the_key(ed):
    for key in (ed, load_signing_key_from_secret("s3cret")):
        signed = sign(CERT, key)
        tampered = copy.deepcopy(signed)
        tampered["decision"]["verdict"] = "do_not_switch"
        assert "changed after it was signed" in check_signature(tampered, key)
    signed = sign(CERT, ed)
    tampered = copy.deepcopy(signed)
    tampered["scores"][0] = 1.0
    # without a key an Ed25519 signature is still checked against the public key it carries
    assert "changed after it was signed" in check_signature(tampered, None)
    assert check_signature(signed, None) is None
    # swapping in another public key under the same id is caught
    other = copy.deepcopy(signed)
    other["signature"]["public_key"] = sign(CERT, SigningKey("ed25519", "x", *_fresh_seed()))["signature"]["public_key"]
    assert "not key" in check_signature(other, None)
    broken = copy.deepcopy(signed)
    broken["signature"]["value"] = "not base64!"
    assert "base64" in check_signature(broken, ed)
    assert "malformed" in check_signature({**CERT, "signature": "abc"}, ed)


def _fresh_seed() -> tuple[bytes, bytes]:
    from parity.proof import signing

    key = signing._ed25519_key(private=signing._crypto()[1].Ed25519PrivateKey.generate())
    return key.secret, key.public


def test_an_unsigned_certificate_fails_only_when_a_signature_is_required(ed):
    assert check_signature(CERT, None) is None and check_signature(CERT, ed) is None
    assert "not signed" in check_signature(CERT, None, required=True)
    assert "not signed" in check_signature(CERT, ed, required=True)
    hmac_signed = sign(CERT, load_signing_key_from_secret("s3cret"))
    assert check_signature(hmac_signed, None) is None  # cannot be checked, and nobody asked for it
    assert "without its secret" in check_signature(hmac_signed, None, required=True)


def test_a_public_key_checks_but_cannot_sign(tmp_path, ed):
    pub = tmp_path / "issuer.pem.pub"
    pub.write_text(ed.public_pem())
    public = load_signing_key(pub)
    assert public is not None and public.key_id == ed.key_id and not public.can_sign
    assert check_signature(sign(CERT, ed), public, required=True) is None
    with pytest.raises(ParityError, match="public key"):
        sign(CERT, public)
