"""Which task a request belongs to, and what the gateway does with it: pass through, route, or shadow.

Task identification is the project's one task rule (`parity.task.task_of`), first match wins:

1. the header `x-parity-task: <name>` (a task's name or its policy `match.header` value);
2. `metadata`: `metadata.user_id` of the form `task:<name>` (the key is the task's `match.metadata_key`, "task" by
   default); a non-API key such as `metadata.task` is also read, and removed before the request goes upstream;
3. the template fingerprint (`parity.fingerprint.fingerprint`) when the policy names one.

Modes (per task, from the policy): observe passes through and records; shadow passes through, and a sampled
share (`shadow_rate`) is also sent, off the request path, to the candidate with its tuned prompt and recorded
as route "shadow"; route sends the request rewritten by `policy.apply_prompt` to the candidate, with no retry,
checks the whole answer against the contract (streams are held until then), and on any failure sends the
ORIGINAL request to the baseline at once and returns the baseline's answer, recording why. A routed task is
passed through instead when the request asks for another model than the policy's baseline (the proof covers
only that pair) or when drift monitoring has rolled the task back.

Every route stands on a certificate: when a policy is loaded or reloaded, each `route` entry is checked by
`certified.route_problem` (a verified switch certificate for this task, baseline, candidate and tuned prompt,
signed when a signing key is configured). An entry that fails is refused: its task's traffic passes through to the
baseline, with the reason logged at WARNING, in `/metrics` (`parity_policy_refused_routes`), in the ledger and in
the `x-parity-reason` header. The check never runs per request; a certificate file that changes on disk is
re-checked with the next reload check.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx2
from starlette.responses import JSONResponse, Response

from parity.contract import check
from parity.gateway import streaming
from parity.gateway.cachefix import CacheHygiene
from parity.gateway.certified import certificate_path, route_problem, same_model
from parity.gateway.drift_watch import DriftWatch
from parity.gateway.metrics import GatewayMetrics
from parity.gateway.recorder import GatewayRecorder, Record
from parity.gateway.upstream import Answer, Upstream, UpstreamFailure, response_headers
from parity.policy import Policy, TaskPolicy, apply_prompt, load_policy
from parity.task import DEFAULT_METADATA_KEY, task_of

if TYPE_CHECKING:
    from parity.proof.signing import SigningKey

log = logging.getLogger("parity.gateway")

MAX_SHADOW_IN_FLIGHT = 32


# ---- identification --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Identified:
    """The task of one request: its name (policy task, or the client's own label), its policy if any, and how."""

    task: str | None = None
    policy: TaskPolicy | None = None
    how: str = ""  # header | metadata | fingerprint | ""
    strip_keys: tuple[str, ...] = ()  # the gateway's own (non-API) metadata keys, dropped before forwarding
    refused: str | None = None  # why the policy's route is refused (no verified certificate backs it), if it is

    @property
    def label(self) -> str:
        """The bounded metrics label: the policy's task name, "unmatched", or ""."""
        if self.policy is not None:
            return self.policy.task
        return "unmatched" if self.task else ""


class TaskRouter:
    """The policy's tasks indexed for identification; re-reads the policy file (and re-checks the certificates its
    routes stand on) when it changes.

    `refused` maps each `route` task that no verified certificate backs to why (see `certified.route_problem`);
    `on_checked` is told that map after every load and reload (the gateway's metrics). Relative certificate paths
    are read from the policy file's folder (the working directory for a policy given in memory)."""

    def __init__(self, policy: Policy | None = None, path: str | None = None, *,
                 signing_key: SigningKey | None = None,
                 on_checked: Callable[[Mapping[str, str]], None] | None = None):
        self.path = path
        self.signing_key = signing_key
        self._on_checked = on_checked
        self._mtime: float | None = None
        self._checked = 0.0
        self.refused: dict[str, str] = {}
        self._stamps: dict[str, int | None] = {}
        if policy is None and path is not None:
            policy = load_policy(path)
            self._mtime = _mtime(path)
        self._use(policy or Policy())

    @property
    def base_dir(self) -> Path | None:
        """Where relative certificate paths are read from: the policy file's folder."""
        return Path(self.path).resolve().parent if self.path is not None else None

    def _check_routes(self, policy: Policy) -> dict[str, str]:
        """Each route entry of `policy` that may not route, and why; logged, and never raising."""
        refused: dict[str, str] = {}
        for name, task in sorted(policy.tasks.items()):
            if task.mode != "route" or not task.candidate_model:
                continue
            try:
                problem = route_problem(task, signing_key=self.signing_key, base_dir=self.base_dir)
            except Exception as exc:  # a bug in the check must not take routing down, nor let the route through
                log.exception("checking the certificate of task %s failed", name)
                problem = f"certificate_unreadable: checking it failed ({type(exc).__name__}: {exc})"
            if problem is None:
                assert task.certificate is not None
                log.info("task %s routes to %s on certificate %s", name, task.candidate_model, task.certificate.id)
            else:
                refused[name] = problem
                log.warning("task %s is not routed: its requests go to the baseline %s as passthrough: %s",
                            name, task.baseline_model, problem)
        return refused

    def _certificate_stamps(self, policy: Policy) -> dict[str, int | None]:
        """The modification time of each route's certificate file (None when absent), to notice an edit."""
        stamps: dict[str, int | None] = {}
        for task in policy.tasks.values():
            path = certificate_path(task, self.base_dir) if task.mode == "route" else None
            if path is not None:
                stamps[str(path)] = _mtime_ns(path)
        return stamps

    def _use(self, policy: Policy) -> None:
        """Put `policy` in force: check the certificates its routes stand on, then index its tasks."""
        stamps = self._certificate_stamps(policy)  # before the check: an edit made during it is noticed next time
        refused = self._check_routes(policy)
        labels: dict[str, TaskPolicy] = {}
        keys = {DEFAULT_METADATA_KEY}
        fingerprints: dict[str, str] = {}
        for name, task in policy.tasks.items():
            labels[name] = task
            if task.match.header:
                labels.setdefault(task.match.header, task)
            if task.match.metadata_key:
                keys.add(task.match.metadata_key)
            if task.match.fingerprint:
                fingerprints[task.match.fingerprint] = name
        self.policy, self.refused, self._stamps = policy, refused, stamps
        self._labels, self._keys, self._fingerprints = labels, keys, fingerprints
        if self._on_checked is not None:
            self._on_checked(dict(refused))

    def reload_if_changed(self, every_s: float = 1.0) -> None:
        """Pick up a policy file rewritten by `parity prove`, or a certificate file changed under a route (checked
        at most every `every_s` seconds)."""
        now = time.monotonic()
        if now - self._checked < every_s:
            return
        self._checked = now
        mtime = _mtime(self.path) if self.path is not None else None
        if mtime is None or mtime == self._mtime:
            if self._stamps and self._certificate_stamps(self.policy) != self._stamps:
                log.info("a certificate file under a route changed: checking the routes again")
                self._use(self.policy)
            return
        assert self.path is not None
        try:
            policy = load_policy(self.path)
        except Exception:
            log.exception("policy file %s changed but cannot be read; keeping the previous policy", self.path)
            self._mtime = mtime
            return
        self._mtime = mtime
        self._use(policy)
        log.info("policy reloaded from %s: %d task(s)", self.path, len(policy.tasks))

    def identify(self, headers: Mapping[str, str], body: Mapping[str, Any]) -> Identified:
        metadata = body.get("metadata")
        strip: tuple[str, ...] = ()
        if isinstance(metadata, Mapping):
            # the API accepts only metadata.user_id: a task key is the gateway's, and never goes upstream
            strip = tuple(k for k in self._keys if k != "user_id" and k in metadata)
        found = task_of(body, headers=headers, fingerprints=self._fingerprints, metadata_keys=self._keys)
        if found is None:
            return Identified(strip_keys=strip)
        policy = self.policy.tasks[found.name] if found.how == "fingerprint" else self._labels.get(found.name)
        return self._found(found.name, policy, found.how, strip)

    def _found(self, name: str, policy: TaskPolicy | None, how: str, strip: tuple[str, ...]) -> Identified:
        refused = self.refused.get(policy.task) if policy is not None else None
        return Identified(name, policy, how, strip, refused)


def _mtime(path: str) -> float | None:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def _mtime_ns(path: str | Path) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


# ---- the /v1/messages flow ------------------------------------------------------------------------------------------


@dataclass
class Call:
    """One client request to /v1/messages as the gateway holds it."""

    request_id: str
    started_at: datetime
    t0: float
    headers: list[tuple[bytes, bytes]]
    body: dict[str, Any]
    raw: bytes  # the bytes to forward for the original request
    stream: bool
    ident: Identified
    key_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0


class MessageRouter:
    """Runs one /v1/messages request through its task's mode (see the module docstring).

    It calls the `upstream`, hands what happened to the `recorder`, counts fallbacks and rollbacks in `metrics`,
    applies the task's `hygiene`, and asks `drift` whether a routed task was rolled back (and shows it the routed
    answers). A routed candidate gets `connect_timeout_s`, then `stall_timeout_s` of silence on a stream or
    `candidate_timeout_s` for a whole answer; `seed` seeds which shadow-mode requests are sampled."""

    def __init__(self, upstream: Upstream, recorder: GatewayRecorder, metrics: GatewayMetrics, *,
                 hygiene: CacheHygiene, drift: DriftWatch, connect_timeout_s: float, stall_timeout_s: float,
                 candidate_timeout_s: float, seed: int | None = None):
        self.upstream = upstream
        self.recorder = recorder
        self.metrics = metrics
        self.hygiene = hygiene
        self.drift = drift
        self.connect_timeout_s = connect_timeout_s
        self.stall_timeout_s = stall_timeout_s
        self.candidate_timeout_s = candidate_timeout_s
        self._rng = random.Random(seed)
        self._shadows: set[asyncio.Task] = set()

    async def handle(self, call: Call) -> Response:
        policy = call.ident.policy
        if policy is not None and policy.mode == "route" and policy.candidate_model:
            if call.ident.refused is not None:  # no verified certificate backs this route: the baseline answers
                return await self.passthrough(call, "passthrough", call.ident.refused)
            skip = self._skip_reason(call, policy)
            if skip is None:
                return await self._route(call, policy)
            return await self.passthrough(call, "passthrough", skip)
        response = await self.passthrough(call, "passthrough", None)
        if (
            policy is not None and policy.mode == "shadow" and policy.candidate_model
            and policy.shadow_rate > 0 and self._rng.random() < policy.shadow_rate
        ):
            self._spawn(self._shadow(call, policy))
        return response

    def _skip_reason(self, call: Call, policy: TaskPolicy) -> str | None:
        model = call.body.get("model")
        if not isinstance(model, str) or not same_model(model, policy.baseline_model):
            return "model_not_baseline"
        if not isinstance(call.body.get("messages"), list):
            return "not_routable"
        monitor = self.drift.monitor_for(policy)
        if monitor is not None:
            try:
                rolled = monitor.rolled_back(policy.task)
            except Exception:
                log.exception("drift monitor of task %s failed; routing as the policy says", policy.task)
                rolled = False
            if rolled:
                self.metrics.rollbacks.labels(policy.task).inc()
                return "rolled_back"
        return None

    # ---- pass through (observe, shadow, fallback, unknown tasks) ----------------------------------------------

    async def passthrough(self, call: Call, route: str, reason: str | None) -> Response:
        """Send the original request to the upstream and relay its answer (streams byte for byte)."""
        upstream = self.upstream
        model = call.body.get("model") if isinstance(call.body.get("model"), str) else None
        try:
            answer = await upstream.send(
                "POST", "/v1/messages", headers=upstream.headers(call.headers), content=call.raw,
                model=model, stream=call.stream, expect_json=not call.stream,
            )
        except UpstreamFailure as failure:
            return self._failure(call, failure, route, reason, call.body)
        self.metrics.retries(answer.attempts)
        headers = self._headers(answer, call, route, reason)
        if not answer.ok:
            return self._http_error(call, answer, route, reason, call.body, headers)
        if call.stream:
            assert answer.response is not None

            def on_end(outcome: streaming.StreamOutcome) -> None:
                self._record(call, route, reason, call.body, answer.status, stream=outcome, duration=call.elapsed())

            return streaming.RelayResponse(streaming.relay(answer.response, on_end), status_code=answer.status, headers=headers)
        self._record(call, route, reason, call.body, answer.status, message=answer.data, duration=call.elapsed())
        return Response(answer.body, status_code=answer.status, headers=headers)

    # ---- route ------------------------------------------------------------------------------------------------

    async def _route(self, call: Call, policy: TaskPolicy) -> Response:
        routed = self.hygiene(apply_prompt(call.body, policy), policy)
        content = json.dumps(routed, separators=(",", ":"), ensure_ascii=False).encode()
        read = self.stall_timeout_s if call.stream else self.candidate_timeout_s
        timeout = httpx2.Timeout(connect=self.connect_timeout_s, read=read, write=60.0, pool=30.0)
        started_at, t0 = datetime.now(timezone.utc), time.perf_counter()
        candidate = policy.candidate_model
        assert candidate is not None

        def rejected(code: str, detail: str, status: int, message: Any = None, error: Any = None) -> None:
            """Record the discarded candidate answer (priced: it was paid for), not counted as a client request."""
            self._record(
                call, "routed", f"{code}: {detail}", routed, status, message=message, error=error,
                started_at=started_at, duration=time.perf_counter() - t0, counted=False,
                tags={"outcome": "rejected"},
            )

        try:
            answer = await self.upstream.send(
                "POST", "/v1/messages", headers=self.upstream.headers(call.headers), content=content, model=candidate,
                stream=call.stream, expect_json=not call.stream, retries=False, timeout=timeout, optional=True,
            )
        except UpstreamFailure as failure:
            code = f"candidate_{failure.kind}"
            rejected(code, failure.detail, failure.api_error().status, error=failure.api_error().body(call.request_id))
            return await self._fallback(call, policy, code, failure.detail)
        if not answer.ok:
            code = f"candidate_http_{answer.status}"
            rejected(code, "the candidate answered with an error", answer.status, error=_json_or_none(answer.body))
            return await self._fallback(call, policy, code, f"HTTP {answer.status} from {candidate}")
        if call.stream:
            assert answer.response is not None
            held = await streaming.buffer(answer.response)
            if held.failure is not None:
                code = f"candidate_{held.failure.kind}"
                rejected(code, held.failure.detail, answer.status, message=held.message,
                         error={"type": "error", "error": {"type": held.failure.kind, "message": held.failure.detail}})
                return await self._fallback(call, policy, code, held.failure.detail)
            message, body = held.message, held.raw
        else:
            message, body = answer.data, answer.body or b""
        violation = check(message, policy.contract)
        if violation is not None:
            code = f"contract_{violation.reason}"
            rejected(code, violation.detail, answer.status, message=message)
            return await self._fallback(call, policy, code, violation.detail)
        note = "refusal passed through (policy contract.refusal is pass_through)" if (
            isinstance(message, dict) and message.get("stop_reason") == "refusal") else None
        self._record(call, "routed", note, routed, answer.status, message=message, started_at=started_at,
                     duration=call.elapsed())
        self._observe_drift(policy, call.body, message)
        headers = self._headers(answer, call, "routed", None)
        return Response(body, status_code=answer.status, headers=headers)

    async def _fallback(self, call: Call, policy: TaskPolicy, code: str, detail: str) -> Response:
        """The candidate failed: the original request goes to the baseline now, and its answer is returned."""
        self.metrics.fallback(policy.task, code)
        return await self.passthrough(call, "fallback", f"{code}: {detail}")

    def _observe_drift(self, policy: TaskPolicy, request: dict[str, Any], message: Any) -> None:
        if policy.shadow_rate <= 0:
            return
        monitor = self.drift.monitor_for(policy)
        if monitor is None:
            return
        try:
            monitor.observe(request, message)  # non-blocking: the monitor queues its own work
        except Exception:
            log.exception("drift monitor of task %s failed to observe; routing continues", policy.task)

    # ---- shadow -----------------------------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        if len(self._shadows) >= MAX_SHADOW_IN_FLIGHT:
            coro.close()  # too many in flight: skip this sample rather than queue work behind the clients
            return
        task = asyncio.get_running_loop().create_task(coro)
        self._shadows.add(task)
        task.add_done_callback(self._shadows.discard)

    async def _shadow(self, call: Call, policy: TaskPolicy) -> None:
        """Shadow mode: the candidate answers a copy (non-streaming), recorded as route "shadow"; nobody waits."""
        body = {k: v for k, v in call.body.items() if k != "stream"}
        routed = self.hygiene(apply_prompt(body, policy), policy)
        started_at, t0 = datetime.now(timezone.utc), time.perf_counter()
        tags = {"shadow_of": call.request_id}
        timeout = httpx2.Timeout(connect=self.connect_timeout_s, read=self.candidate_timeout_s, write=60.0, pool=30.0)
        try:
            answer = await self.upstream.send(
                "POST", "/v1/messages", headers=self.upstream.headers(_without_faults(call.headers)),
                content=json.dumps(routed, separators=(",", ":")).encode(), model=policy.candidate_model,
                retries=False, timeout=timeout, optional=True,
            )
        except UpstreamFailure as failure:
            error = failure.api_error()
            self._record(call, "shadow", f"candidate_{failure.kind}: {failure.detail}", routed, error.status,
                         error=error.body(None), started_at=started_at, duration=time.perf_counter() - t0,
                         counted=False, tags=tags)
            return
        except Exception:
            log.exception("shadow call for task %s failed", policy.task)
            return
        if not answer.ok:
            self._record(call, "shadow", f"candidate_http_{answer.status}", routed, answer.status,
                         error=_json_or_none(answer.body), started_at=started_at,
                         duration=time.perf_counter() - t0, counted=False, tags=tags)
            return
        violation = check(answer.data, policy.contract)
        reason = f"contract_{violation.reason}: {violation.detail}" if violation else "contract_ok"
        self._record(call, "shadow", reason, routed, answer.status, message=answer.data, started_at=started_at,
                     duration=time.perf_counter() - t0, counted=False, tags=tags)

    # ---- answers and records ------------------------------------------------------------------------------------

    def _headers(self, answer: Answer, call: Call, route: str, reason: str | None) -> dict[str, str]:
        headers = response_headers(answer.headers)
        headers["x-parity-route"] = route
        if call.ident.task:
            headers["x-parity-task"] = _header_safe(call.ident.task)
        if reason:
            headers["x-parity-reason"] = _header_safe(reason.split(":", 1)[0])
        return headers

    def _failure(self, call: Call, failure: UpstreamFailure, route: str, reason: str | None, request: dict) -> Response:
        error = failure.api_error()
        body = error.body(call.request_id)
        why = f"{reason}; upstream {failure.kind}" if reason else f"upstream {failure.kind}"
        self._record(call, route, why, request, error.status, error=body, duration=call.elapsed())
        headers = {**error.headers, "request-id": call.request_id, "x-parity-route": route}
        return JSONResponse(body, status_code=error.status, headers=headers)

    def _http_error(self, call: Call, answer: Answer, route: str, reason: str | None, request: dict,
                    headers: dict[str, str]) -> Response:
        raw = self.upstream.scrub_bytes(answer.body or b"")
        self._record(call, route, reason, request, answer.status, error=_json_or_none(raw), duration=call.elapsed())
        return Response(raw, status_code=answer.status, headers=headers)

    def _record(self, call: Call, route: str, reason: str | None, request: dict, status: int, *,
                message: Any = None, error: Any = None, stream: streaming.StreamOutcome | None = None,
                started_at: datetime | None = None, duration: float = 0.0, counted: bool = True,
                tags: dict[str, str] | None = None) -> None:
        self.recorder.record(
            Record(
                endpoint="messages", request=request, started_at=started_at or call.started_at, duration_s=duration,
                route=route, status=status, task=call.ident.task, task_label=call.ident.label, reason=reason,
                message=message if isinstance(message, dict) else None, error=error if isinstance(error, dict) else None,
                stream=stream, key_id=call.key_id, tags={**call.tags, **(tags or {})}, counted=counted,
            )
        )


def _json_or_none(raw: bytes | None) -> dict[str, Any] | None:
    try:
        value = json.loads(raw or b"")
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _header_safe(text: str) -> str:
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in text)[:200]


def _without_faults(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """A shadow copy must not inherit a fault the client asked the emulator for on its own request."""
    return [(k, v) for k, v in headers if not k.lower().startswith(b"x-emulator-fault")]
