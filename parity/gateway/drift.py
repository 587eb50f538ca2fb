"""Drift watch after a switch: shadow a sample of routed traffic against the baseline, judge it, and roll the task
back by itself when a fresh e-process says the candidate is no longer as good (reference proof-science §2.8).

Why: a proof holds for the traffic and the models it saw. Providers update models and prompts drift; nobody
re-tests after switching (reference landscape §7 item 6). So, per routed task:

1. `observe(request, candidate_message)` is called for every routed answer the client received. It samples a
   share (`rate`, 1–5% in production) with its own seeded RNG and only appends to a queue: nothing on the
   request path waits for a model, a judge or a statistic.
2. A background worker on the gateway's event loop takes the queue in waves (`batch_size` items, or whatever
   waited `max_wait_s`): the baseline answers each original request through the Message Batches API (50% off;
   results collected when the batch ends) or synchronously (`via="sync"`, for tests and small deployments).
3. THE judge loop of the proof (`parity.proof.judge.JudgeRound`: the same requests, re-ask, parsing and
   scoring as `parity prove`, driven here with async calls, the same way for both waves: batch or sync)
   scores candidate against baseline in both orders, so each item scores 0, ¼, ½, ¾ or 1. Identical answers
   are a tie without a judge call. A reply without a verdict is asked once more; an order that still has none,
   or whose judge call failed (an API error, an errored batch entry, a batch that could not be sent), is a
   judge failure and scores 0: a loss for the candidate, never a tie, and never a crash of the watch.
   A baseline call that fails drops its item (counted in `failed`): there is nothing to compare.
4. The scores feed a fresh `parity.proof.sequential.SequentialTest` (score mode, the task's margin and α) with
   no finite-pool correction: shadowed requests are a sample of future traffic, and the claim is about its
   population mean (DESIGN: claims are about the population, never only the sample).
   Its futility side firing means "the candidate is now worse than the baseline by more than the margin":
   the task rolls back (`rolled_back(task)` turns true, `on_rollback(task, reason, evidence)` is called, a
   warning is logged, and the state is written to `state_path` when one is given, so a restart keeps it).
   When the efficacy side fires (the candidate re-proved itself on this segment) or a segment reaches
   `segment_size` scores, a fresh segment starts, so old good scores never mask new bad ones.

Error control: each segment is an anytime-valid test, so a candidate that is in fact non-inferior is rolled
back by a given segment with probability at most α; over k segments at most k·α (`status()` shows k). The
candidate that keeps its quality re-proves itself quickly, which is what bounds how stale a segment gets.

`status()` is the JSON the dashboard and metrics read; the gateway's `drift_watch.DriftWatch` keeps one monitor
per routed task and serves every task's `status()` at /v1/parity/drift.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from parity import pricing
from parity.exchange import format_time
from parity.files import write_atomic
from parity.gateway.deferral import UpstreamCalls
from parity.policy import TaskPolicy
from parity.proof.calls import message_text
from parity.proof.judge import Judgment, JudgeRound, PairToJudge
from parity.proof.sequential import SequentialTest, State

log = logging.getLogger("parity.gateway.drift")

DEFAULT_MARGIN = 0.05
DEFAULT_ALPHA = 0.05
DEFAULT_BATCH_SIZE = 50
DEFAULT_MAX_WAIT_S = 600.0
DEFAULT_SEGMENT_SIZE = 400
POLL_START_S = 1.0
POLL_MAX_S = 60.0
SYNC_CONCURRENCY = 4

OnRollback = Callable[[str, str, dict[str, Any]], Any]
OnExchange = Callable[[dict[str, Any], dict[str, Any], str, bool], Any]
"""on_exchange(request params, answer Message, purpose "baseline"|"judge", batch?) for the ledger."""


class Sampler:
    """Which routed requests are shadowed: an independent coin with probability `rate` per request, seeded."""

    def __init__(self, rate: float, seed: int | None = None):
        if not 0.0 < rate <= 1.0:
            raise ValueError(f"shadow rate must be in (0, 1], got {rate!r} (the policy's shadow_rate; 0.01-0.05 is usual)")
        self.rate = float(rate)
        self._rng = random.Random(seed)

    def take(self) -> bool:
        return self._rng.random() < self.rate


@dataclass
class _Item:
    seq: int  # 1-based index among shadowed requests
    request: dict[str, Any]
    candidate_text: str
    observed_at: float


@dataclass
class _Segment:
    index: int
    test: SequentialTest
    started_at_seq: int
    scores: list[float]


class DriftMonitor:
    """Watches one routed task (see the module docstring).

    `judge`: where the baseline and judge calls go: the gateway's `Upstream`, or an anthropic SDK client.
    `rate`, `alpha`, `margin` default to the policy's `shadow_rate`, `alpha`, `margin` (then 0.05 each).
    `via`: "batch" (default; Message Batches, polled with backoff) or "sync".
    `judge_model`: defaults to the baseline model (the judge must never be the candidate's model).
    """

    def __init__(
        self,
        task_policy: TaskPolicy,
        judge: Any,
        *,
        rate: float | None = None,
        alpha: float | None = None,
        margin: float | None = None,
        sampler_seed: int | None = None,
        on_rollback: OnRollback | None = None,
        via: str = "batch",
        judge_model: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_wait_s: float = DEFAULT_MAX_WAIT_S,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        max_pending: int = 10_000,
        state_path: str | Path | None = None,
        on_exchange: OnExchange | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ):
        if via not in ("batch", "sync"):
            raise ValueError(f"via must be 'batch' or 'sync', got {via!r}")
        if batch_size < 1 or segment_size < 1 or max_pending < 1:
            raise ValueError("batch_size, segment_size and max_pending must be at least 1")
        self.policy = task_policy
        self.task = task_policy.task
        self.calls = UpstreamCalls(judge)
        self.rate = float(task_policy.shadow_rate if rate is None else rate)
        self.alpha = float(alpha if alpha is not None else task_policy.alpha or DEFAULT_ALPHA)
        self.margin = float(margin if margin is not None else task_policy.margin or DEFAULT_MARGIN)
        self.sampler = Sampler(self.rate, sampler_seed)
        self.on_rollback = on_rollback
        self.on_exchange = on_exchange
        self.via = via
        self.judge_model = judge_model or task_policy.baseline_model
        if task_policy.candidate_model and self.judge_model == task_policy.candidate_model:
            raise ValueError(f"the judge model {self.judge_model!r} is the candidate's model; use the baseline or a stronger one")
        self.batch_size = batch_size
        self.max_wait_s = max_wait_s
        self.segment_size = segment_size
        self.max_pending = max_pending
        self.state_path = Path(state_path) if state_path is not None else None
        self.clock = clock
        self.sleep = sleep
        # counters (read by status(); written only by observe() and the worker)
        self.observed = 0
        self.shadowed = 0
        self.judged = 0
        self.dropped = 0
        self.failed = 0
        self.malformed = 0
        self.judge_failures = 0
        self.reaffirmed = 0
        self.spend = Decimal(0)
        self.last_error: str | None = None
        self._pending: deque[_Item] = deque()
        self._in_flight = 0
        self._worker: asyncio.Task | None = None
        self._wake: asyncio.Event | None = None
        self._force = False
        self._closed = False
        self._segments_done: list[dict[str, Any]] = []
        self._segment = self._new_segment(1, 1)
        self._rollback: dict[str, Any] | None = self._load_state()

    # ---- the request path ---------------------------------------------------------------------------------------

    def observe(self, request: Mapping[str, Any], candidate_message: Any) -> bool:
        """Maybe shadow this routed answer (True when sampled); only enqueues, never waits, never raises on data."""
        self.observed += 1
        if self._rollback is not None or self._closed or not self.sampler.take():
            return False
        if len(self._pending) >= self.max_pending:
            self.dropped += 1
            return False
        message = candidate_message if isinstance(candidate_message, Mapping) else _dump(candidate_message)
        self.shadowed += 1
        self._pending.append(_Item(self.shadowed, dict(request), message_text(message), self.clock()))
        self._kick()
        return True

    def rolled_back(self, task: str | None = None) -> bool:
        """Whether drift rolled the task back (the gateway then sends the task's requests to the baseline)."""
        return self._rollback is not None and (task is None or task == self.task)

    # ---- the worker ---------------------------------------------------------------------------------------------

    def _kick(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no event loop here: the queue is processed by the next observe() in a loop, or drain()
        if self._worker is None or self._worker.done() or self._worker.get_loop() is not loop:
            self._wake = asyncio.Event()
            self._worker = loop.create_task(self._run(), name=f"parity-drift-{self.task}")
        assert self._wake is not None
        self._wake.set()

    async def _run(self) -> None:
        assert self._wake is not None
        wake = self._wake
        while not self._closed:
            if not self._pending:
                wake.clear()
                await wake.wait()
                continue
            waited = self.clock() - self._pending[0].observed_at
            due = self._force or self.via == "sync" or len(self._pending) >= self.batch_size or waited >= self.max_wait_s
            if not due:
                wake.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout=min(self.max_wait_s - waited, 60.0))
                continue
            wave = [self._pending.popleft() for _ in range(min(self.batch_size, len(self._pending)))]
            self._in_flight = len(wave)
            try:
                await self._process(wave)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a shadow wave failing must never touch routing; it is counted and shown
                self.failed += len(wave)
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("drift watch of task %s: a wave of %d shadowed requests failed", self.task, len(wave))
            finally:
                self._in_flight = 0

    async def drain(self, timeout: float | None = None) -> None:
        """Process everything queued now, ignoring the batch thresholds, and wait until it is done (tests, shutdown)."""
        self._force = True
        try:
            async with asyncio.timeout(timeout):
                while (self._pending or self._in_flight) and not self._closed:
                    if self._pending:
                        self._kick()
                    await asyncio.sleep(0.002)
        finally:
            self._force = False

    async def _process(self, wave: Sequence[_Item]) -> None:
        base_params = [{k: v for k, v in item.request.items() if k != "stream"} for item in wave]
        baselines = await self._answers(base_params, "baseline")
        answered = [(item, message_text(msg)) for item, msg in zip(wave, baselines) if msg is not None]
        self.failed += len(wave) - len(answered)
        judging = JudgeRound([PairToJudge(f"{self.task}-{item.seq}", item.request, baseline_text, item.candidate_text)
                              for item, baseline_text in answered], self.judge_model)
        while judging.pending:
            replies = await self._answers(judging.pending, "judge")
            judging.take([None if reply is None else message_text(reply) for reply in replies])
        for (item, _), judgment in zip(answered, judging.judgments()):
            self.judge_failures += sum(o.failed for o in judgment.orders)
            self.malformed += sum(o.malformed for o in judgment.orders)
            if self._rollback is not None:
                return
            self._score(item, judgment)

    async def _answers(self, params: Sequence[dict[str, Any]], purpose: str) -> list[dict[str, Any] | None]:
        """Messages for `params` in order, via a batch or synchronous calls; None where a call failed, and all None
        when the batch itself could not be sent or read (a failure here is an item's, never the watch's)."""
        if not params:
            return []
        batch = self.via == "batch"
        if batch:
            try:
                messages = await self._batch(params, purpose)
            except Exception as exc:
                self.last_error = f"{purpose} batch failed: {type(exc).__name__}: {exc}"
                log.warning("drift watch of task %s: %s", self.task, self.last_error)
                messages = [None] * len(params)
        else:
            gate = asyncio.Semaphore(SYNC_CONCURRENCY)

            async def one(p: dict[str, Any]) -> dict[str, Any] | None:
                async with gate:
                    try:
                        return await self.calls.create(p)
                    except Exception as exc:
                        self.last_error = f"{purpose} call failed: {type(exc).__name__}: {exc}"
                        log.warning("drift watch of task %s: %s", self.task, self.last_error)
                        return None

            messages = list(await asyncio.gather(*(one(p) for p in params)))
        for p, message in zip(params, messages):
            if message is not None:
                self._charge(p, message, purpose, batch)
        return messages

    async def _batch(self, params: Sequence[dict[str, Any]], purpose: str) -> list[dict[str, Any] | None]:
        ids = [f"{purpose}-{i}" for i in range(len(params))]
        batch = await self.calls.submit([{"custom_id": c, "params": p} for c, p in zip(ids, params)])
        wait = POLL_START_S
        while batch.get("processing_status") != "ended":
            await self.sleep(wait)
            wait = min(POLL_MAX_S, wait * 2)
            batch = await self.calls.retrieve(str(batch["id"]))
        results = await self.calls.results(str(batch["id"]))
        out: list[dict[str, Any] | None] = []
        for custom_id in ids:
            result = results.get(custom_id) or {}
            if result.get("type") == "succeeded":
                out.append(dict(result["message"]))
            else:
                self.last_error = f"{purpose} request {custom_id} in batch {batch['id']}: {result.get('type', 'missing')}"
                out.append(None)
        return out

    def _charge(self, params: dict[str, Any], message: dict[str, Any], purpose: str, batch: bool) -> None:
        usage = message.get("usage")
        if isinstance(usage, dict):
            try:
                self.spend += pricing.cost(str(message.get("model")), usage, batch=batch).total
            except Exception as exc:
                log.warning("drift watch of task %s: could not price a %s call: %s", self.task, purpose, exc)
        if self.on_exchange is not None:
            try:
                self.on_exchange(params, message, purpose, batch)
            except Exception:
                log.exception("drift watch of task %s: on_exchange failed", self.task)

    # ---- the statistics -----------------------------------------------------------------------------------------

    def _new_segment(self, index: int, first_seq: int) -> _Segment:
        # pool_size=None: no without-replacement correction; the shadow sample is drawn from an unbounded stream
        # of future traffic, so the test is about that population's mean, not about a finite pool
        test = SequentialTest(mode="score", margin=self.margin, alpha=self.alpha, futility=True, n_max=self.segment_size,
                              pool_size=None)
        return _Segment(index, test, first_seq, [])

    def _score(self, item: _Item, judgment: Judgment) -> None:
        self.judged += 1
        segment = self._segment
        segment.scores.append(judgment.score)
        state = segment.test.update(judgment.score)
        if state.verdict is None:
            return
        summary = self._segment_summary(segment, state, item)
        if state.verdict == "do_not_switch":
            self._roll_back(summary, judgment)
            return
        if state.verdict == "switch":
            self.reaffirmed += 1
        self._segments_done.append(summary)
        del self._segments_done[:-20]
        self._segment = self._new_segment(segment.index + 1, item.seq + 1)

    def _segment_summary(self, segment: _Segment, state: State, item: _Item) -> dict[str, Any]:
        return {
            "segment": segment.index,
            "first_item": segment.started_at_seq,
            "last_item": item.seq,
            "n": state.n,
            "verdict": state.verdict or "running",
            "stopped_by": state.stopped_by,
            "mean_score": state.estimate,
            "lower_bound": state.lower_bound,
            "e_value": _finite(state.e_value),
            "futility_e_value": _finite(state.futility_e_value),
        }

    def _roll_back(self, summary: dict[str, Any], judgment: Judgment) -> None:
        test = self._segment.test
        result = test.result()
        reason = (
            f"drift: the futility e-process reached {_fmt(result.futility_e_value)} >= 1/alpha = {1 / self.alpha:g} "
            f"after {result.n_used} judged shadow requests in segment {self._segment.index} (mean score "
            f"{result.estimate:.3f} vs non-inferiority threshold {result.threshold:.3f}); routing "
            f"{self.policy.candidate_model} -> {self.policy.baseline_model}"
        )
        evidence = {
            "task": self.task,
            "candidate_model": self.policy.candidate_model,
            "baseline_model": self.policy.baseline_model,
            "judge_model": self.judge_model,
            "shadowed_item": judgment.item_id,
            "item_seq": summary["last_item"],
            "segment": summary,
            "test": result.to_dict(trajectory=False),
            "scores": list(self._segment.scores),
            "last_judgment": judgment.to_dict(),
            "shadowed": self.shadowed,
            "judged": self.judged,
            "segments": self._segment.index,
        }
        self.roll_back(reason, evidence)

    def roll_back(self, reason: str, evidence: dict[str, Any]) -> None:
        """Send the task to its baseline from now on (persisted; told to `on_rollback`, which shares it with the
        other replicas when they share a ledger)."""
        self._rollback = {"task": self.task, "rolled_back_at": format_time(datetime.now(timezone.utc)),
                          "reason": reason, "evidence": evidence}
        log.warning("task %s rolled back to the baseline: %s", self.task, reason)
        self._save_state()
        if self.on_rollback is not None:
            try:
                self.on_rollback(self.task, reason, evidence)
            except Exception:
                log.exception("on_rollback for task %s failed (the rollback itself stands)", self.task)

    def adopt(self, rollback: dict[str, Any]) -> bool:
        """Obey a rollback another replica decided (shared drift state): the task goes to the baseline here too.
        Returns whether this changed anything."""
        if self._rollback is not None:
            return False
        self._rollback = {**rollback, "task": self.task, "adopted": True}
        log.warning("task %s rolled back to the baseline by another replica: %s", self.task, rollback.get("reason"))
        self._save_state()
        return True

    def reset(self) -> None:
        """Route again after a new proof: clear the rollback and start a fresh e-process."""
        self._rollback = None
        self._segment = self._new_segment(self._segment.index + 1, self.shadowed + 1)
        if self.state_path is not None:
            self.state_path.unlink(missing_ok=True)

    # ---- state, status, shutdown --------------------------------------------------------------------------------

    def _load_state(self) -> dict[str, Any] | None:
        if self.state_path is None or not self.state_path.exists():
            return None
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.warning("drift state %s unreadable (%s); watching task %s afresh", self.state_path, exc, self.task)
            return None
        return data if isinstance(data, dict) and data.get("task") == self.task else None

    def _save_state(self) -> None:
        if self.state_path is None or self._rollback is None:
            return
        write_atomic(self.state_path, json.dumps(self._rollback, indent=2, default=str))

    def status(self) -> dict[str, Any]:
        """JSON for the dashboard and metrics: what is watched, where the e-process stands, and any rollback."""
        st = self._segment.test.state
        return {
            "task": self.task,
            "state": "rolled_back" if self._rollback is not None else "watching",
            "candidate_model": self.policy.candidate_model,
            "baseline_model": self.policy.baseline_model,
            "judge_model": self.judge_model,
            "rate": self.rate,
            "via": self.via,
            "margin": self.margin,
            "alpha": self.alpha,
            "observed": self.observed,
            "shadowed": self.shadowed,
            "judged": self.judged,
            "pending": len(self._pending),
            "in_flight": self._in_flight,
            "dropped": self.dropped,
            "failed": self.failed,
            "malformed_verdicts": self.malformed,
            "judge_failures": self.judge_failures,
            "spend_usd": str(self.spend),
            "segments": self._segment.index,
            "reaffirmed": self.reaffirmed,
            "current_segment": {
                "segment": self._segment.index,
                "n": st.n,
                "mean_score": None if st.n == 0 else st.estimate,
                "lower_bound": st.lower_bound,
                "e_value": _finite(st.e_value),
                "futility_e_value": _finite(st.futility_e_value),
                "threshold": self._segment.test.params.threshold,
            },
            "recent_segments": list(self._segments_done),
            "rollback": self._rollback,
            "last_error": self.last_error,
        }

    def close(self) -> None:
        """Stop the worker (what is queued is dropped: shadowing is a sample, never owed to anyone)."""
        self._closed = True
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()

    async def aclose(self) -> None:
        self.close()
        if self._worker is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._worker


def _dump(value: Any) -> dict[str, Any]:
    dump = getattr(value, "model_dump", None)
    return dump(mode="json") if dump is not None else {}


def _finite(value: float) -> float | None:
    return value if value == value and value not in (float("inf"), float("-inf")) else None


def _fmt(value: float) -> str:
    return "infinity" if value == float("inf") else f"{value:.1f}"


__all__ = ["DriftMonitor", "Sampler"]
