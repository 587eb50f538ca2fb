"""The one place a proof sends model calls: Message Batches by default, a budget that is never exceeded, and a
run directory that makes every call paid for once.

Why batches: nobody waits on a proof's candidate generations and judge calls, so they go through the Message
Batches API at half price (reference claude-api.md, DESIGN lever 3); `sync=True` is for interactive runs.

Why a budget guard that estimates first: a proof must never spend more than `--budget-usd`. Before a wave is
sent its worst case (every input token priced as a cache write, `max_tokens` of output) is added to what was
spent; if that would pass the limit nothing is sent and `BudgetExhausted` is raised (the runner then ends with
"inconclusive"). The real charge, from the returned usage, is never above the estimate.

Why a run directory: every result is appended to `calls.jsonl` keyed by the SHA-256 of the request body, and
a submitted batch is written to `batches/` before it is polled. A run that crashed or was stopped with Ctrl-C
resumes by reading both: finished calls are not sent again and a batch in flight is collected, not resubmitted.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any

from parity import pricing
from parity.canonical import canonical_hash
from parity.errors import ParityError
from parity.prompt import count_request
from parity.exchange import json_dict
from parity.tokens import TokenCounter

MAX_BATCH_REQUESTS = 10_000
POLL_START_S = 1.0
POLL_MAX_S = 60.0
INPUT_SAFETY = Decimal("1.25")
"""Offline token counts are an approximation; the estimate pads them by a quarter before pricing."""
MAX_ATTEMPTS = 3


class BudgetExhausted(ParityError):
    """The next wave of calls could cost more than what is left of the budget; nothing was sent."""


def request_key(params: Mapping[str, Any]) -> str:
    """SHA-256 of the request body in canonical JSON: the cache key and the batch custom_id (64 hex chars)."""
    return canonical_hash(params, default=str)


@dataclass(frozen=True)
class Call:
    """One Messages request and why it is made (baseline, candidate, judge, propose), for cost accounting."""

    purpose: str
    params: dict[str, Any]

    @property
    def key(self) -> str:
        return request_key(self.params)


@dataclass(frozen=True)
class CallResult:
    """What came back for one call, with its exact cost."""

    key: str
    purpose: str
    model: str
    text: str
    stop_reason: str | None
    usage: dict[str, Any]
    cost: Decimal
    batch: bool
    message_id: str | None = None
    """The response's `id` (msg_...)."""
    request_id: str | None = None
    """Where the upstream can look the call up: the `request-id` header of a sync call, the batch id of a batch."""

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "purpose": self.purpose, "model": self.model, "text": self.text,
                "stop_reason": self.stop_reason, "usage": self.usage, "cost": str(self.cost), "batch": self.batch,
                "message_id": self.message_id, "request_id": self.request_id}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CallResult:
        return cls(data["key"], data["purpose"], data["model"], data["text"], data.get("stop_reason"),
                   dict(data.get("usage") or {}), Decimal(data["cost"]), bool(data.get("batch")),
                   data.get("message_id"), data.get("request_id"))



def result_field(result: CallResult | Mapping[str, Any] | None, name: str) -> Any:
    """A field of a call's result, whether it is a `CallResult` or its dict form (None when absent)."""
    return result.get(name) if isinstance(result, Mapping) else getattr(result, name, None)

def message_text(message: Mapping[str, Any]) -> str:
    """Text blocks joined; tool calls as JSON (a proof compares what the application would read)."""
    parts = []
    for block in message.get("content") or []:
        if block.get("type") == "text":
            parts.append(block.get("text") or "")
        elif block.get("type") == "tool_use":
            parts.append(json.dumps(block.get("input", {}), ensure_ascii=False, sort_keys=True))
    return "\n".join(parts)


def estimate_cost(params: Mapping[str, Any], *, batch: bool, table: pricing.PriceTable | None = None,
                  extra_input_tokens: int = 0, counted_input_tokens: int | None = None) -> Decimal:
    """An upper bound on one call's cost: input tokens priced as cache writes, plus max_tokens of output.

    `counted_input_tokens` is the API's own count (count_tokens), used as is; without it the offline
    approximation is padded by a quarter. `extra_input_tokens` covers input not written yet (a judge call's
    estimate before the answer it will judge exists: that answer's max_tokens)."""
    if counted_input_tokens is not None:
        tokens = counted_input_tokens + extra_input_tokens + 1
    else:
        tokens = int(Decimal(count_request(params) + extra_input_tokens) * INPUT_SAFETY) + 1
    usage = {
        "input_tokens": 0,
        "cache_creation_input_tokens": tokens,
        "cache_creation": {"ephemeral_5m_input_tokens": tokens, "ephemeral_1h_input_tokens": 0},
        "output_tokens": int(params.get("max_tokens") or 0),
    }
    return pricing.cost(str(params["model"]), usage, batch=batch, table=table).total


@dataclass
class Spend:
    """Money spent by a run, by purpose; the same whether results came from the network or the run's cache."""

    limit: Decimal | None
    total: Decimal = Decimal(0)
    by_purpose: dict[str, Decimal] = field(default_factory=dict)
    calls: int = 0

    def add(self, result: CallResult, purpose: str) -> None:
        self.total += result.cost
        self.by_purpose[purpose] = self.by_purpose.get(purpose, Decimal(0)) + result.cost
        self.calls += 1

    @property
    def left(self) -> Decimal | None:
        return None if self.limit is None else self.limit - self.total

    def to_dict(self) -> dict[str, Any]:
        return {"limit": None if self.limit is None else str(self.limit), "spent": str(self.total),
                "calls": self.calls, "by_purpose": {k: str(v) for k, v in sorted(self.by_purpose.items())}}


Progress = Callable[[str, int, int], None]
"""progress(message, done, total) while a wave is in flight."""


class Caller:
    """Sends waves of calls through one SDK client, from the run directory's cache where it can.

    `client` is an `anthropic.Anthropic` (real or the emulator's in-process one). `sleep` is how polling waits
    (tests pass a no-op). `network_calls` counts requests actually sent, so a resumed run can show it sent none.
    `counter`, when online, counts input tokens for the budget's estimates with the API's own counter.
    """

    def __init__(
        self,
        client: Any,
        run_dir: str | Path,
        *,
        sync: bool = False,
        budget_usd: Decimal | None = None,
        table: pricing.PriceTable | None = None,
        sleep: Callable[[float], None] = time.sleep,
        progress: Progress | None = None,
        counter: TokenCounter | None = None,
    ):
        self.client = client
        self.counter = counter
        self.run_dir = Path(run_dir)
        self.sync = sync
        self.table = table
        self.sleep = sleep
        self.progress = progress
        self.spend = Spend(None if budget_usd is None else Decimal(budget_usd))
        self.network_calls = 0
        self._charged: set[str] = set()
        self._results: dict[str, CallResult] = {}
        (self.run_dir / "batches").mkdir(parents=True, exist_ok=True)
        self._log = self.run_dir / "calls.jsonl"
        if self._log.exists():
            for line in self._log.read_text(encoding="utf-8").splitlines():
                if not line.strip():
                    continue
                try:
                    result = CallResult.from_dict(json.loads(line))
                except (json.JSONDecodeError, KeyError):
                    continue  # a line cut by a crash mid-write: that call is simply made again
                self._results[result.key] = result

    # ---- the one entry point ----------------------------------------------------------------------------------

    def run(self, calls: Sequence[Call]) -> list[CallResult]:
        """Results for `calls`, in order: cached ones from the run directory, the rest sent (batch or sync).

        Raises BudgetExhausted, before sending anything, when the wave's worst case would pass the budget.
        """
        self._collect_pending()
        keys = [c.key for c in calls]
        todo: dict[str, Call] = {}
        for call, key in zip(calls, keys):
            if key not in self._results and key not in todo:
                todo[key] = call
        if todo:
            self._guard(list(todo.values()), keys)
            if self.sync:
                self._send_sync(todo)
            else:
                self._send_batches(todo)
        out = []
        for call, key in zip(calls, keys):
            result = self._results[key]
            if key not in self._charged:
                self._charged.add(key)
                self.spend.add(result, call.purpose)
            out.append(result)
        return out

    @property
    def results(self) -> Mapping[str, CallResult]:
        """Every result this run holds, by request key (read-only): the certificate's source of upstream ids."""
        return MappingProxyType(self._results)

    def one(self, call: Call) -> CallResult:
        return self.run([call])[0]

    def estimate(self, calls: Sequence[Call]) -> Decimal:
        """Worst-case cost of the calls not yet paid for in this run."""
        seen: set[str] = set()
        total = Decimal(0)
        for call in calls:
            key = call.key
            if key in seen or key in self._charged:
                continue
            seen.add(key)
            if key in self._results:
                total += self._results[key].cost  # already known exactly
            else:
                total += self.estimate_call(call.params)
        return total

    def estimate_call(self, params: Mapping[str, Any], *, extra_input_tokens: int = 0) -> Decimal:
        """Worst-case cost of sending `params` once, with this caller's prices, mode and token counter."""
        counted = None
        if self.counter is not None and self.counter.online:
            counted = self.counter.count(params).input_tokens
        return estimate_cost(params, batch=not self.sync, table=self.table, extra_input_tokens=extra_input_tokens,
                             counted_input_tokens=counted)

    # ---- budget -------------------------------------------------------------------------------------------------

    def reserve(self, calls: Sequence[Call], extra: Decimal = Decimal(0), *, what: str = "calls") -> None:
        """Raise BudgetExhausted now, before anything is sent, when `calls` plus `extra` (the worst case of the
        calls that will follow from them, e.g. judging their answers) could pass the budget."""
        if self.spend.limit is None:
            return
        worst = self.estimate(calls) + extra
        if self.spend.total + worst > self.spend.limit:
            raise BudgetExhausted(
                f"the next {what} could cost up to ${worst:.4f}; ${self.spend.total:.4f} of the ${self.spend.limit} "
                "budget is spent. Stopping before spending more (raise --budget-usd to go on; the run directory "
                "keeps everything paid for so far)"
            )

    def _guard(self, todo: list[Call], keys: list[str]) -> None:
        if self.spend.limit is None:
            return
        cached_new = sum((self._results[k].cost for k in set(keys) if k in self._results and k not in self._charged),
                         Decimal(0))
        worst = sum((self.estimate_call(c.params) for c in todo), Decimal(0))
        if self.spend.total + cached_new + worst > self.spend.limit:
            raise BudgetExhausted(
                f"the next {len(todo)} calls could cost up to ${worst:.4f}; ${self.spend.total:.4f} of the "
                f"${self.spend.limit} budget is spent. Stopping before spending more (raise --budget-usd to go on; "
                "the run directory keeps everything paid for so far)"
            )

    # ---- sending ------------------------------------------------------------------------------------------------

    def _store(self, results: Sequence[CallResult]) -> None:
        """Append results to the run's log and sync once: after this they survive a crash."""
        if not results:
            return
        with self._log.open("a", encoding="utf-8") as handle:
            for result in results:
                handle.write(json.dumps(result.to_dict(), ensure_ascii=False, separators=(",", ":")) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        for result in results:
            self._results[result.key] = result

    def _result(self, key: str, purpose: str, message: Mapping[str, Any], batch: bool,
                request_id: str | None) -> CallResult:
        usage = {k: v for k, v in dict(message.get("usage") or {}).items() if v is not None}
        model = str(message.get("model"))
        cost = pricing.cost(model, usage, batch=batch, table=self.table).total
        return CallResult(key, purpose, model, message_text(message), message.get("stop_reason"), usage, cost, batch,
                          message.get("id"), request_id)

    def _send_sync(self, todo: dict[str, Call]) -> None:
        total = len(todo)
        for done, (key, call) in enumerate(todo.items()):
            self.network_calls += 1
            message = self.client.messages.create(**call.params)
            request_id = getattr(message, "_request_id", None)  # the SDK keeps the `request-id` header here
            self._store([self._result(key, call.purpose, json_dict(message), batch=False, request_id=request_id)])
            if self.progress:
                self.progress(f"{call.purpose} calls", done + 1, total)

    def _send_batches(self, todo: dict[str, Call]) -> None:
        items = list(todo.items())
        for attempt in range(MAX_ATTEMPTS):
            for start in range(0, len(items), MAX_BATCH_REQUESTS):
                chunk = items[start : start + MAX_BATCH_REQUESTS]
                self.network_calls += len(chunk)
                batch = self.client.messages.batches.create(
                    requests=[{"custom_id": key, "params": call.params} for key, call in chunk]
                )
                pending = {"id": batch.id, "purposes": {key: call.purpose for key, call in chunk}}
                self._pending_path(batch.id).write_text(json.dumps(pending), encoding="utf-8")
                self._collect(pending)
            items = [(k, c) for k, c in items if k not in self._results]
            if not items:
                return
        raise ParityError(f"{len(items)} batch requests failed {MAX_ATTEMPTS} times (errored, expired or canceled); "
                          "see the batch results, then rerun with the same --run-dir to resume")

    def _pending_path(self, batch_id: str) -> Path:
        return self.run_dir / "batches" / f"{batch_id}.json"

    def _collect_pending(self) -> None:
        """Batches submitted by an interrupted run: wait for them and keep their results."""
        for path in sorted((self.run_dir / "batches").glob("*.json")):
            try:
                pending = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                path.unlink()
                continue
            self._collect(pending)

    def _collect(self, pending: Mapping[str, Any]) -> None:
        batch_id = pending["id"]
        purposes: Mapping[str, str] = pending["purposes"]
        wait = POLL_START_S
        while True:
            batch = self.client.messages.batches.retrieve(batch_id)
            counts = batch.request_counts
            if self.progress:
                finished = len(purposes) - int(getattr(counts, "processing", 0) or 0)
                self.progress(f"batch {batch_id}: {batch.processing_status}", finished, len(purposes))
            if batch.processing_status == "ended":
                break
            self.sleep(wait)
            wait = min(POLL_MAX_S, wait * 2)
        fresh: list[CallResult] = []
        for entry in self.client.messages.batches.results(batch_id):
            key = entry.custom_id
            result = entry.result
            if result.type == "succeeded" and key not in self._results:
                fresh.append(self._result(key, purposes.get(key, "unknown"), json_dict(result.message), batch=True,
                                          request_id=batch_id))
            elif result.type == "errored":
                error = json_dict(result.error)
                inner = error.get("error") or error
                if inner.get("type") == "invalid_request_error":
                    self._pending_path(batch_id).unlink(missing_ok=True)
                    raise ParityError(f"the API rejected a {purposes.get(key, '')} request in batch {batch_id}: "
                                      f"{inner.get('message')}; this is a bug in the request, not a transient error")
        self._store(fresh)
        self._pending_path(batch_id).unlink(missing_ok=True)


__all__ = ["BudgetExhausted", "Call", "CallResult", "Caller", "Spend", "estimate_cost", "message_text", "request_key"]
