"""Fixtures for the gateway tests: the emulator as upstream (in-process), the gateway in front of it, and the
official SDK pointed at the gateway by base_url, exactly as a user would.

`ModelBrain` answers per model, so a test can make the candidate (claude-haiku-4-5) answer badly while the
baseline (claude-opus-4-8) answers well. `UpstreamShim` wraps the emulator's ASGI app to (a) scope an
`x-emulator-fault` to one model with `x-emulator-fault-model: <model>` (the addition proposed to the emulator's
owner; until it lands, the shim does it), and (b) answer the next N requests with a scripted status (retry tests).

Every route stands on a certificate, so a test's route entry gets a genuine one: `Certificates` runs the real
prover (`prove_task`) on the emulator once per task for the whole session, and `certified(entry)` turns a
hand-made route entry into the same entry backed by it (the certificate's candidate, tuned prompt and reference).
`policy("route")` does this by itself.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest

from parity.emulator.brains.base import BrainReply, BrainRequest
from parity.emulator.clock import ManualClock
from parity.emulator.faults import FaultSchedule
from parity.emulator.service import Emulator
from parity.api.transport import AsyncASGITransport, EventLoopThread, SyncASGITransport
from parity.gateway.app import create_gateway
from parity.gateway.config import GatewayConfig
from parity.gateway.retry import RetryPolicy
from parity.ledger.reader import read_ledger
from parity.policy import Contract, Match, Policy, TaskPolicy, TunedPrompt
from parity.emulator.prove import prove_scenario
from parity.proof.quick import TaskProof

BASELINE = "claude-opus-4-8"
CANDIDATE = "claude-haiku-4-5"
SCHEMA = {
    "type": "object",
    "required": ["label"],
    "properties": {"label": {"enum": ["bug", "feature", "question"]}, "by": {"type": "string"}},
}
GOOD_BASELINE = '{"label": "bug", "by": "baseline"}'
GOOD_CANDIDATE = '{"label": "bug", "by": "candidate"}'
USER = [{"role": "user", "content": "The app crashes when I click save."}]
UPSTREAM_KEY = "sk-ant-upstream-SECRET-0123456789"


class ModelBrain:
    """Answers by model: `answers[model]` is a BrainReply or a function of the request; else a fixed JSON answer."""

    name = "model-brain"

    def __init__(self) -> None:
        self.answers: dict[str, BrainReply | Callable[[BrainRequest], BrainReply]] = {}
        self.requests: list[BrainRequest] = []

    def reply(self, request: BrainRequest) -> BrainReply:
        self.requests.append(request)
        answer = self.answers.get(request.model)
        if answer is None:
            text = GOOD_CANDIDATE if request.model == CANDIDATE else GOOD_BASELINE
            return BrainReply([{"type": "text", "text": text}])
        return answer(request) if callable(answer) else answer

    def models(self) -> list[str]:
        return [r.model for r in self.requests]


def text(value: str, **kwargs: Any) -> BrainReply:
    return BrainReply([{"type": "text", "text": value}], **kwargs)


class UpstreamShim:
    """ASGI wrapper of the emulator (see the module docstring); `seen` keeps (model, headers) of every request."""

    def __init__(self, app: Any):
        self.app = app
        self.script: list[tuple[int, dict[str, str], dict[str, Any]]] = []
        self.seen: list[tuple[str | None, dict[str, str]]] = []

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        try:
            model = json.loads(body).get("model") if body else None
        except (ValueError, AttributeError, RecursionError):
            model = None
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        self.seen.append((model, headers))
        scoped = headers.get("x-emulator-fault-model")
        if scoped is not None and scoped != model:
            scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if not k.startswith(b"x-emulator-fault")]}
        if self.script and scope["path"] == "/v1/messages":
            status, extra, payload = self.script.pop(0)
            data = json.dumps(payload).encode()
            raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
            raw += [(k.encode(), v.encode()) for k, v in extra.items()]
            await send({"type": "http.response.start", "status": status, "headers": raw})
            await send({"type": "http.response.body", "body": data})
            return
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def fail_next(self, status: int, n: int = 1, headers: dict[str, str] | None = None) -> None:
        kinds = {429: "rate_limit_error", 500: "api_error", 529: "overloaded_error", 400: "invalid_request_error"}
        payload = {"type": "error", "error": {"type": kinds.get(status, "api_error"), "message": f"scripted {status}"}}
        self.script.extend([(status, headers or {}, payload)] * n)

    def models(self) -> list[str | None]:
        return [m for m, _ in self.seen]


class Certificates:
    """Genuine switch certificates from the real prover on the emulator (`prove_task`, simulated models), made on
    first use and kept for the session: `proof(task, which)` is the which-th distinct one for `task`."""

    FAMILY = "ticket_triage"
    SEEDS = range(12)

    def __init__(self, root: Path):
        self.root = root
        self._proofs: dict[str, list[TaskProof]] = {}
        self._seed: dict[str, int] = {}

    def proof(self, task: str, which: int = 0) -> TaskProof:
        found = self._proofs.setdefault(task, [])
        while len(found) <= which:
            seed = self._seed.get(task, self.SEEDS.start)
            if seed >= self.SEEDS.stop:
                raise AssertionError(f"no switch verdict for task {task!r} in seeds {self.SEEDS}: the prover or the "
                                     "simulated models changed; widen SEEDS or change n/n_max in Certificates.proof")
            self._seed[task] = seed + 1
            proof = prove_scenario(task, self.FAMILY, seed=seed, n=240, n_max=160, baseline=BASELINE,
                               candidates=(CANDIDATE,), run_dir=self.root / f"{task}-{seed}")
            if proof.verdict == "switch":
                found.append(proof)
        return found[which]

    def backed(self, entry: TaskPolicy, which: int = 0) -> TaskPolicy:
        """`entry` routed on a genuine certificate for its task: its candidate, tuned prompt and reference."""
        genuine = self.proof(entry.task, which).policy_entry
        assert genuine is not None and genuine.baseline_model == entry.baseline_model
        return dataclasses.replace(entry, candidate_model=genuine.candidate_model, prompt=genuine.prompt,
                                   certificate=genuine.certificate)


_certificates: Certificates | None = None


@pytest.fixture(scope="session", autouse=True)
def certificates(tmp_path_factory) -> Certificates:
    """The session's `Certificates` (nothing is proved until a test asks for a certificate)."""
    global _certificates
    _certificates = Certificates(tmp_path_factory.mktemp("certificates"))
    return _certificates


@pytest.fixture(autouse=True)
def _no_signing_key_from_the_environment(monkeypatch) -> None:
    """A signing key in the developer's environment would make every gateway refuse unsigned certificates."""
    for name in ("PARITY_SIGNING_KEY_FILE", "PARITY_SIGNING_KEY"):
        monkeypatch.delenv(name, raising=False)


def certified(entry: TaskPolicy, which: int = 0) -> TaskPolicy:
    """A test's hand-made route entry, backed by a genuine certificate for its task (see `Certificates`)."""
    assert _certificates is not None, "the session fixture `certificates` has not run"
    return _certificates.backed(entry, which)


def policy(mode: str = "route", **contract: Any) -> Policy:
    task = TaskPolicy(
        task="triage",
        mode=mode,  # type: ignore[arg-type]
        baseline_model=BASELINE,
        candidate_model=CANDIDATE,
        prompt=TunedPrompt(system="Classify the report. Answer with JSON only."),
        contract=Contract(json_schema=SCHEMA, **contract),
        match=Match(header="triage"),
        shadow_rate=1.0 if mode == "shadow" else 0.0,
    )
    return Policy({"triage": certified(task) if mode == "route" else task})


class Harness:
    """An emulator, a gateway in front of it, and ways to reach the gateway."""

    def __init__(self, tmp_path: Path, *, policy: Policy | None = None, faults: FaultSchedule | None = None,
                 upstream_transport: Any = None, **config: Any):
        self.brain = ModelBrain()
        self.emulator = Emulator(
            brain=self.brain, clock=ManualClock(),
            faults=faults or FaultSchedule(timeout_s=0.3, stall_s=0.6, retry_after_s=1, retry_after_ms=5),
        )
        self.emulator.batches.processing_s = "instant"
        self.shim = UpstreamShim(self.emulator.app())
        self.ledger_path = tmp_path / "ledger.db"
        defaults: dict[str, Any] = dict(
            upstream="http://upstream.test",
            upstream_key=UPSTREAM_KEY,
            policy=policy,
            ledger_url=str(self.ledger_path),
            transport=None if upstream_transport == "network" else upstream_transport or AsyncASGITransport(self.shim),
            retry=RetryPolicy(max_retries=2, base_delay_s=0.001, max_delay_s=0.01, max_wait_s=2.0),
            stall_timeout_s=0.25,
            candidate_timeout_s=0.2,
            read_timeout_s=5.0,
        )
        defaults.update(config)
        self.config = GatewayConfig(**defaults)
        self.app = create_gateway(self.config)
        self.gateway = self.app.state.gateway
        self.loop = EventLoopThread("gateway-test-loop")

    def http(self) -> httpx2.Client:
        return httpx2.Client(transport=SyncASGITransport(self.app, loop_thread=self.loop), base_url="http://gateway.test")

    def sdk(self, **kwargs: Any) -> anthropic.Anthropic:
        kwargs.setdefault("api_key", "sk-client-anything")
        kwargs.setdefault("max_retries", 0)
        return anthropic.Anthropic(base_url="http://gateway.test", http_client=self.http(), **kwargs)

    def ledger(self, at_least: int = 1) -> list[Any]:
        """(row, Exchange) pairs in the ledger once it holds `at_least` rows and nothing more is arriving
        (a stream the client abandoned is recorded when the gateway notices, a moment later)."""
        import time

        deadline = time.monotonic() + 5
        count = -1
        while True:
            assert self.gateway.recorder.flush()
            now = self.gateway.recorder.ledger.written
            if (now >= at_least and now == count) or time.monotonic() > deadline:
                break
            count = now
            time.sleep(0.05)
        import sqlalchemy as sa

        from parity.ledger.schema import create_engine, exchanges

        engine = create_engine(f"sqlite:///{self.ledger_path}")
        with engine.connect() as conn:
            rows = list(conn.execute(sa.select(exchanges).order_by(exchanges.c.id)))
        engine.dispose()
        exchanges_read = [ex for _, ex in read_ledger(str(self.ledger_path))]
        return [(row, ex) for row, ex in zip(rows, exchanges_read)]

    def close(self) -> None:
        self.loop.submit(self.gateway.aclose()).result(timeout=30)


@pytest.fixture
def make(tmp_path: Path):
    made: list[Harness] = []

    def factory(**kwargs: Any) -> Harness:
        harness = Harness(_dir(tmp_path, len(made)), **kwargs)
        made.append(harness)
        return harness

    yield factory
    for harness in made:
        harness.close()


def _dir(tmp_path: Path, n: int) -> Path:
    path = tmp_path / f"h{n}"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def gw(make) -> Harness:
    """A gateway with the triage task in route mode."""
    return make(policy=policy("route"))


def scoped_fault(kind: str, model: str = CANDIDATE, **more: str) -> dict[str, str]:
    """Headers asking the emulator for a fault on `model`'s calls only."""
    return {"x-emulator-fault": kind, "x-emulator-fault-model": model, **{k.replace("_", "-"): v for k, v in more.items()}}


TASK = {"x-parity-task": "triage"}
