"""One policy for every gateway replica on a shared (PostgreSQL) ledger: the one loaded last, by any replica.

Why: replicas each read their own `--policy` file, so a policy change reached only the replicas whose file was
rewritten, and a replica started without the file routed nothing. Here a replica that loads a policy (at start, or
when its file changes) stores it as a new version in the ledger (`parity.ledger.policies`), together with the text
of the certificate files its routes name; every replica polls for the newest version (every `poll_s`, off the
request path) and puts it in force before its next request, so a change loaded on one replica is served by all
within seconds. A replica started without `--policy` serves the shared one.

The certificate check is not inherited: a replica writes the certificates it read from the database to a folder of
its own and checks every route of the policy against them (`certified.route_problem`, through `TaskRouter`) exactly
as it checks a policy file, signing key included; a route whose certificate is missing or altered is refused there.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from parity.gateway.certified import certificate_path
from parity.gateway.routing import TaskRouter
from parity.ledger.policies import PolicyStore
from parity.policy import Policy, load_policy
from parity.proof.signing import SigningKey

log = logging.getLogger("parity.gateway")


def policy_document(policy: Policy, base_dir: Path | None) -> dict[str, Any]:
    """What a replica shares: the policy, and the text of each certificate file its route entries name (keyed by
    the path as the entry names it); a file it cannot read is left out, so other replicas refuse that route too."""
    certificates: dict[str, str] = {}
    for task in policy.tasks.values():
        path = certificate_path(task, base_dir) if task.mode == "route" else None
        if path is None or task.certificate is None or task.certificate.path is None:
            continue
        try:
            certificates[task.certificate.path] = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
    return {"policy": policy.to_dict(), "certificates": certificates}


def materialize(document: Mapping[str, Any], folder: Path, version: int) -> Policy:
    """The policy of a shared `document`, its certificates written under `folder` (named by their hash, so nothing
    in the document chooses a path) and its route entries pointed at them; validated like a policy file."""
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}
    for named, text in (document.get("certificates") or {}).items():
        path = folder / f"certificate-{hashlib.sha256(text.encode()).hexdigest()[:32]}.json"
        if not path.exists():
            path.write_text(text, encoding="utf-8")
        written[named] = str(path)
    file = folder / f"policy-v{version}.json"
    file.write_text(json.dumps(document.get("policy") or {"version": 1, "tasks": {}}), encoding="utf-8")
    policy = load_policy(file)
    for name, task in policy.tasks.items():
        ref = task.certificate
        if ref is not None and ref.path in written:
            policy.tasks[name] = dataclasses.replace(task, certificate=dataclasses.replace(ref, path=written[ref.path]))
    return policy


class SharedTaskRouter(TaskRouter):
    """A `TaskRouter` whose policy is the newest one any replica on the ledger loaded (see the module docstring).

    `policy` / `path`: what this replica was given (published at start); with neither it serves the shared one."""

    def __init__(self, store: PolicyStore, policy: Policy | None = None, path: str | None = None, *,
                 signing_key: SigningKey | None = None,
                 on_checked: Callable[[Mapping[str, str]], None] | None = None, poll_s: float = 1.0):
        super().__init__(policy, path, signing_key=signing_key, on_checked=on_checked)
        self.store = store
        self.poll_s = poll_s
        self.version = 0  # the shared version in force here
        self._folder = Path(tempfile.mkdtemp(prefix="parity-shared-policy-"))
        self._lock = threading.Lock()
        self._outgoing: Policy | None = None  # loaded here from the file, not yet published
        self._incoming: tuple[int, Policy] | None = None  # published elsewhere, not yet in force here
        self._seen = 0  # the newest version the poller has fetched or published
        self._stop = threading.Event()
        if policy is not None or path is not None:
            self.version = self._seen = self._publish(self.policy)
        else:
            self._fetch()
            self._adopt()
        self._poller = threading.Thread(target=self._loop, name="parity-policy-poll", daemon=True)
        self._poller.start()

    def _publish(self, policy: Policy) -> int:
        version = self.store.publish(policy_document(policy, self.base_dir), source=self.path or "memory")
        log.info("policy shared with the other replicas as version %d: %d task(s)", version, len(policy.tasks))
        return version

    def _fetch(self) -> None:
        """Read a newer shared version, if any, and keep it for the next request (poller thread)."""
        newest = self.store.newest()
        if newest is None or newest[0] <= self._seen:
            return
        version, document = newest
        policy = materialize(document, self._folder, version)
        with self._lock:
            self._seen = version
            self._incoming = (version, policy)

    def _adopt(self) -> None:
        with self._lock:
            if self._outgoing is not None:  # this replica's own load is newer: it goes out first
                return
            incoming, self._incoming = self._incoming, None
            if incoming is None or incoming[0] <= self.version:
                return
            self.version = incoming[0]
        self._use(incoming[1])  # the certificate check, as for a file
        log.info("policy version %d, loaded by another replica, is in force: %d task(s)", incoming[0],
                 len(incoming[1].tasks))

    def reload_if_changed(self, every_s: float = 1.0) -> None:
        """A changed policy file is loaded (and shared with the others); a version another replica shared is put
        in force."""
        before, stamps = self.policy, self._stamps
        super().reload_if_changed(every_s)
        if self.policy is not before or self._stamps != stamps:  # its file or a certificate changed here: loaded last
            with self._lock:
                self._outgoing, self._incoming = self.policy, None
        self._adopt()

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                with self._lock:
                    outgoing, self._outgoing = self._outgoing, None
                if outgoing is not None:
                    version = self._publish(outgoing)
                    with self._lock:
                        self._seen = max(self._seen, version)
                        self.version = max(self.version, version)
                self._fetch()
            except Exception:
                log.exception("reading or writing the shared policy failed; retrying in %.1f s", self.poll_s)

    def close(self) -> None:
        self._stop.set()
        self._poller.join(timeout=5)
        shutil.rmtree(self._folder, ignore_errors=True)


__all__ = ["SharedTaskRouter", "materialize", "policy_document"]
