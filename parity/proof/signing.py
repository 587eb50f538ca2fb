"""Signed certificates: who issued a certificate, and that nobody changed it since.

Why: a certificate's id is a hash of its evidence, and `verify` recomputes the verdict from that evidence, so an
edit that breaks the arithmetic is caught. But anyone can rewrite the evidence consistently and re-hash it. A
signature closes that gap: it ties the whole certificate to a key its issuer holds.

Two kinds of key:
- ``ed25519`` (preferred): a private key file (PEM) signs; the public key, embedded in the signature and
  publishable as a .pub file, checks. Whoever checks needs no secret.
- ``hmac-sha256``: a shared secret string (env ``PARITY_SIGNING_KEY``); whoever checks needs the same secret.

The signature covers the canonical JSON (sorted keys, no spaces, UTF-8) of every field but ``signature``
itself, so it survives pretty-printing, key reordering and a write/load round trip, and nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from parity import canonical
from parity.errors import InputError, ParityError

ED25519 = "ed25519"
HMAC_SHA256 = "hmac-sha256"
KINDS = (ED25519, HMAC_SHA256)
ENV_FILE = "PARITY_SIGNING_KEY_FILE"
ENV_SECRET = "PARITY_SIGNING_KEY"
FIELD = "signature"
_PEM = b"-----BEGIN "


@dataclass(frozen=True)
class SigningKey:
    """A key that signs or checks certificates. `key_id` is a short fingerprint (16 hex digits) that names the key
    in a signature without revealing it; `secret` (the HMAC secret or the Ed25519 private seed) is empty for a
    public key loaded only to check."""

    kind: str
    key_id: str
    secret: bytes = field(default=b"", repr=False)
    public: bytes = field(default=b"", repr=False)
    """The raw 32-byte Ed25519 public key (empty for HMAC)."""

    @property
    def can_sign(self) -> bool:
        return bool(self.secret)

    def public_pem(self) -> str:
        """The Ed25519 public key as PEM, to hand to whoever checks certificates (an HMAC key has none)."""
        if self.kind != ED25519:
            raise ParityError("an HMAC key has no public half: whoever checks needs the same secret")
        serialization, ed25519 = _crypto()
        key = ed25519.Ed25519PublicKey.from_public_bytes(self.public)
        return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _crypto() -> tuple[Any, Any]:
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:  # pragma: no cover - a dependency of parity; only a broken install lacks it
        raise ParityError("Ed25519 keys need the `cryptography` package: pip install 'cryptography>=42'") from None
    return serialization, ed25519


def _fingerprint(kind: str, material: bytes) -> str:
    return hashlib.sha256(f"parity-signing/{kind}/".encode() + material).hexdigest()[:16]


def _hmac_key(secret: bytes) -> SigningKey:
    if not secret:
        raise InputError("the HMAC signing secret is empty", field=ENV_SECRET)
    return SigningKey(HMAC_SHA256, _fingerprint(HMAC_SHA256, secret), secret=secret)


def _ed25519_key(private: Any = None, public: Any = None) -> SigningKey:
    serialization, _ = _crypto()
    if private is not None:
        public = private.public_key()
    raw_public = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    seed = b"" if private is None else private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    return SigningKey(ED25519, _fingerprint(ED25519, raw_public), secret=seed, public=raw_public)


def _read_key_file(path: Path) -> SigningKey:
    """A PEM Ed25519 private or public key; any other file holds an HMAC secret (surrounding whitespace dropped)."""
    name = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError("no such signing key file; create one with `parity signing-key PATH`", file=name) from None
    except OSError as exc:
        raise InputError(f"cannot read the signing key file: {exc.strerror}", file=name) from None
    if not raw.lstrip().startswith(_PEM):
        secret = raw.strip()
        if not secret:
            raise InputError("the signing key file is empty", file=name)
        return _hmac_key(secret)
    serialization, ed25519 = _crypto()
    try:
        if b"PRIVATE KEY" in raw:
            key = serialization.load_pem_private_key(raw, password=None)
            if not isinstance(key, ed25519.Ed25519PrivateKey):
                raise InputError(f"the key is {type(key).__name__}, not Ed25519", file=name)
            return _ed25519_key(private=key)
        key = serialization.load_pem_public_key(raw)
    except (ValueError, TypeError) as exc:
        raise InputError(f"not a readable PEM key ({exc}); an unencrypted Ed25519 key is expected", file=name) from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise InputError(f"the key is {type(key).__name__}, not Ed25519", file=name)
    return _ed25519_key(public=key)


def load_signing_key(path: str | Path | None = None) -> SigningKey | None:
    """The key at `path`, else the file named by PARITY_SIGNING_KEY_FILE, else the HMAC secret in
    PARITY_SIGNING_KEY; None when none is set. An InputError when a named file is missing or unreadable."""
    if path is not None:
        return _read_key_file(Path(path))
    named = os.environ.get(ENV_FILE, "").strip()
    if named:
        return _read_key_file(Path(named))
    secret = os.environ.get(ENV_SECRET, "")
    return _hmac_key(secret.encode("utf-8")) if secret else None


def generate_key_file(path: str | Path) -> SigningKey:
    """Write a new Ed25519 private key (PEM, PKCS#8, unencrypted) readable by its owner only (mode 0600).

    Refuses to overwrite an existing file: losing a signing key would orphan every certificate it signed."""
    serialization, ed25519 = _crypto()
    target = Path(path)
    private = ed25519.Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InputError("a file is already there; choose another path (an existing key is never overwritten)",
                         file=str(target)) from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    os.chmod(target, 0o600)  # the umask may have narrowed it further, never widened; make it exact
    return _ed25519_key(private=private)


def canonical_bytes(cert: Mapping[str, Any]) -> bytes:
    """What a signature covers: the certificate without its signature, as canonical JSON."""
    body = {k: v for k, v in cert.items() if k != FIELD}
    return canonical.canonical_bytes(body, allow_nan=False)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any) -> bytes | None:
    if not isinstance(text, str):
        return None
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        return None


def sign(cert: Mapping[str, Any], key: SigningKey) -> dict[str, Any]:
    """The certificate with a "signature" object {alg, key_id, value, public_key (Ed25519 only)}; an existing
    signature is replaced."""
    if not key.can_sign:
        raise ParityError(f"key {key.key_id} is a public key: signing needs the private key file")
    message = canonical_bytes(cert)
    signature: dict[str, Any] = {"alg": key.kind, "key_id": key.key_id}
    if key.kind == HMAC_SHA256:
        signature["value"] = _b64(hmac.new(key.secret, message, hashlib.sha256).digest())
    elif key.kind == ED25519:
        _, ed25519 = _crypto()
        signature["value"] = _b64(ed25519.Ed25519PrivateKey.from_private_bytes(key.secret).sign(message))
        signature["public_key"] = _b64(key.public)
    else:
        raise ParityError(f"unknown signing key kind {key.kind!r}; use one of {', '.join(KINDS)}")
    out = {k: v for k, v in cert.items() if k != FIELD}
    out[FIELD] = signature
    return out


def _ed25519_valid(public: bytes, value: bytes, message: bytes) -> bool:
    _, ed25519 = _crypto()
    from cryptography.exceptions import InvalidSignature  # with _crypto: only Ed25519 pays for the library

    try:
        ed25519.Ed25519PublicKey.from_public_bytes(public).verify(value, message)
    except (InvalidSignature, ValueError):
        return False
    return True


TAMPERED = "the signature does not match the contents: the certificate was changed after it was signed"


def check_signature(cert: Mapping[str, Any], key: SigningKey | None, *, required: bool = False) -> str | None:
    """None when the signature holds; else one sentence saying what is wrong.

    With `key`, the certificate must be signed by that key. Without one, an Ed25519 signature is checked against
    the public key it carries (this shows the certificate is unchanged since it was signed, not who signed it),
    and an HMAC signature cannot be checked (an error only when `required`). An unsigned certificate is an
    error only when `required`."""
    signature = cert.get(FIELD)
    if signature is None:
        return "the certificate is not signed, but a signature is required" if required else None
    if not isinstance(signature, Mapping) or not all(isinstance(signature.get(k), str) for k in ("alg", "key_id", "value")):
        return "the signature is malformed: it needs the strings alg, key_id and value"
    alg, key_id = signature["alg"], signature["key_id"]
    if alg not in KINDS:
        return f"the signature uses an unknown algorithm {alg!r}"
    value = _unb64(signature["value"])
    if value is None:
        return "the signature value is not valid base64"
    message = canonical_bytes(cert)
    if key is not None and (key.kind != alg or key.key_id != key_id):
        return (f"signed with {alg} key {key_id}, not with the key given ({key.kind} key {key.key_id}): "
                "the certificate was issued by someone else, or the wrong key was given")
    if alg == HMAC_SHA256:
        if key is None:
            return f"signed with HMAC key {key_id}, which cannot be checked without its secret" if required else None
        good = hmac.compare_digest(hmac.new(key.secret, message, hashlib.sha256).digest(), value)
        return None if good else TAMPERED
    embedded = _unb64(signature.get("public_key"))
    if embedded is None or len(embedded) != 32:
        return "the Ed25519 signature carries no valid public_key"
    if _fingerprint(ED25519, embedded) != key_id:
        return f"the public key in the signature is not key {key_id}: the signature block was altered"
    if key is not None and not hmac.compare_digest(key.public, embedded):
        return f"signed with a key that claims id {key_id} but is not the key given"
    return None if _ed25519_valid(embedded, value, message) else TAMPERED


__all__ = ["ED25519", "ENV_FILE", "ENV_SECRET", "HMAC_SHA256", "SigningKey", "canonical_bytes", "check_signature",
           "generate_key_file", "load_signing_key", "sign"]
