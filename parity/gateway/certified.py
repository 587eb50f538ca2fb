"""Every route stands on a certificate: the check a `route` policy entry must pass before the gateway routes on it.

`route_problem(entry, signing_key=..., base_dir=...)` says why an entry may not route (None when it may). The
entry must name a certificate file that exists (a relative path is read from the policy file's folder) and that
can back a route on its own (`parity.proof.certificate.verify`: it re-checks from its evidence, its verdict is
switch, its test is about future traffic rather than a finite pool, and its signature holds: by the signing key
when one is configured, which then makes a signature required). And the certificate must be about this entry:
the id the entry names, the same task, baseline, chosen candidate and tuned prompt (by its hash).

A problem reads "code: what is wrong and what to do": the code (the part before the first colon, one of `REASONS`)
is a bounded label for metrics and the `x-parity-reason` header; the rest is for the log and the person reading it.

The gateway calls this when it loads or reloads a policy, never per request; verifying a certificate is cached by
(path, modification time, size, signing key), so a reload that leaves a certificate untouched does not redo it.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parity import catalog
from parity.errors import ParityError
from parity.policy import Demo, TaskPolicy, TunedPrompt

if TYPE_CHECKING:  # pragma: no cover
    from parity.proof.certificate import VerifyResult
    from parity.proof.signing import SigningKey

REASONS = (
    "no_certificate",
    "certificate_not_found",
    "certificate_unreadable",
    "certificate_signature",
    "certificate_does_not_verify",
    "certificate_not_switch",
    "certificate_finite_pool",
    "certificate_id_mismatch",
    "certificate_other_task",
    "certificate_other_baseline",
    "certificate_other_candidate",
    "certificate_other_prompt",
)
"""Every code `route_problem` can return (the metrics' `reason` label values)."""

_CACHE_SIZE = 256


@dataclass(frozen=True)
class _Checked:
    """A certificate file as read and verified once: its JSON and verify's result, or why it could not be read."""

    cert: dict[str, Any] | None = None
    result: VerifyResult | None = None
    unreadable: str | None = None


_verified: dict[tuple[str, int, int, str | None], _Checked] = {}
_lock = threading.Lock()


def certificate_path(entry: TaskPolicy, base_dir: str | Path | None = None) -> Path | None:
    """The certificate file an entry names, a relative path resolved against `base_dir` (the policy file's
    folder; the working directory when None); None when it names none."""
    ref = entry.certificate
    if ref is None or not ref.path:
        return None
    path = Path(ref.path).expanduser()
    if not path.is_absolute():
        path = Path(base_dir if base_dir is not None else Path.cwd()) / path
    return path


def reason_code(problem: str) -> str:
    """The bounded code of a problem `route_problem` returned."""
    return problem.split(":", 1)[0]


def route_problem(entry: TaskPolicy, *, signing_key: SigningKey | None = None,
                  base_dir: str | Path | None = None) -> str | None:
    """Why `entry` may not route (None when a verified certificate backs it exactly); see the module docstring."""
    task = entry.task
    redo = f"run `parity prove --task {task} --policy POLICY` again, or set the task's mode to \"shadow\" or \"observe\""
    ref = entry.certificate
    if ref is None or not ref.id:
        return (f"no_certificate: the route for task {task!r} names no certificate, and a route is only taken on a "
                f"verified certificate; {redo}")
    path = certificate_path(entry, base_dir)
    if path is None:
        return (f"no_certificate: the route for task {task!r} names certificate {ref.id} but not the path of its file "
                f"(certificate.path); add it, or {redo}")
    try:
        stat = path.stat()
    except OSError:
        where = "" if Path(ref.path or "").is_absolute() else f" (a relative path is read from {base_dir or Path.cwd()})"
        return f"certificate_not_found: {path} does not exist{where}; point certificate.path at the file, or {redo}"
    checked = _verify_cached(path, stat, signing_key)
    if checked.unreadable is not None:
        return f"certificate_unreadable: {checked.unreadable}; {redo}"
    cert, result = checked.cert, checked.result
    assert cert is not None and result is not None
    if result.route_problem is not None:
        signature_failed = result.signature == "invalid" or (signing_key is not None and result.signature == "unsigned")
        if signature_failed:
            why = ("a signing key is configured, so only certificates signed with it can back a route"
                   if signing_key is not None else "its own signature fails, so it was changed after it was signed")
            return f"certificate_signature: {path}: {result.problems[0]}; {why}; sign it again, or {redo}"
        if result.problems:
            return (f"certificate_does_not_verify: {path}: {result.route_problem}; `parity verify {path}` lists every "
                    f"problem; {redo}")
        code = "certificate_not_switch" if result.verdict != "switch" else "certificate_finite_pool"
        return f"{code}: {path} cannot back a route: {result.route_problem}; {redo}"
    if cert.get("id") != ref.id:
        return (f"certificate_id_mismatch: the route for task {task!r} names certificate {ref.id} but {path} is "
                f"{cert.get('id')}; point the entry at the certificate it was written from, or {redo}")
    if cert.get("task") != task:
        return f"certificate_other_task: {path} is about task {cert.get('task')!r}, not {task!r}; {redo}"
    if not same_model(entry.baseline_model, str(cert.get("baseline_model"))):
        return (f"certificate_other_baseline: {path} compares against {cert.get('baseline_model')!r}, but the route's "
                f"baseline is {entry.baseline_model!r}; {redo}")
    chosen = (cert.get("decision") or {}).get("candidate")
    if chosen != entry.candidate_model:
        return (f"certificate_other_candidate: {path} chose {chosen!r}, but the route sends task {task!r} to "
                f"{entry.candidate_model!r}; {redo}")
    candidate = next((c for c in cert.get("candidates", []) if c.get("model") == chosen), None)
    if candidate is None:
        return f"certificate_unreadable: {path} chose {chosen!r} but holds no evidence for it; {redo}"
    from parity.proof.optimize import prompt_hash

    wanted = prompt_hash(entry.prompt)
    if candidate.get("prompt_hash") != wanted or _stored_prompt_hash(candidate) != wanted:
        return (f"certificate_other_prompt: the route's tuned prompt (hash {wanted}) is not the one {path} tested "
                f"(hash {candidate.get('prompt_hash')}); copy the certificate's prompt into the entry, or {redo}")
    return None


def _verify_cached(path: Path, stat: os.stat_result, key: SigningKey | None) -> _Checked:
    cache_key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, None if key is None else key.key_id)
    with _lock:
        hit = _verified.get(cache_key)
    if hit is not None:
        return hit
    from parity.proof.certificate import load, verify

    try:
        cert = load(path)
        checked = _Checked(cert, verify(cert, key, required=key is not None))
    except ParityError as exc:
        checked = _Checked(unreadable=str(exc))
    except Exception as exc:  # a file that reads as a certificate but lacks its fields
        checked = _Checked(unreadable=f"{path} is not a complete certificate ({type(exc).__name__}: {exc})")
    with _lock:
        if len(_verified) >= _CACHE_SIZE:
            _verified.clear()
        _verified[cache_key] = checked
    return checked


def _stored_prompt_hash(candidate: dict[str, Any]) -> str | None:
    """The hash of the prompt the certificate stores (it must agree with the hash it states)."""
    from parity.proof.optimize import prompt_hash

    stored = candidate.get("prompt")
    if not isinstance(stored, dict):
        return None
    try:
        demos = [Demo(str(d["input"]), str(d["output"])) for d in stored.get("demos") or []]
        return prompt_hash(TunedPrompt(system=stored.get("system"), demos=demos))
    except (KeyError, TypeError):
        return None


@lru_cache(maxsize=512)
def same_model(requested: str, baseline: str) -> bool:
    """Is `requested` the `baseline` model (dated aliases included)? An unknown model is no other model."""
    if requested == baseline:
        return True
    try:
        return catalog.resolve(requested) == catalog.resolve(baseline)
    except Exception:
        return False


__all__ = ["REASONS", "certificate_path", "reason_code", "route_problem", "same_model"]
