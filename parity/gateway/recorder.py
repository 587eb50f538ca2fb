"""What happened to each request, recorded off the request path: Exchange, exact cost, metrics, key spend, span.

The request path only builds a `Record` (references to bytes and dicts it already has) and hands it over once
the current event-loop step is done (so the answer is written to the client before the recorder thread wakes up
and takes the GIL). One background thread does the rest: rebuilds a relayed stream into its Message, prices the
usage exactly (`parity.pricing.cost`), updates the Prometheus counters and the key's spend, gives the Exchange to
`span_hook` (the gateway passes `parity.gateway.otel.record_span`), redacts prompts when asked, and hands the
Exchange to the `LedgerWriter` (which has its own writer thread). A failure here is logged and counted, never
raised into a request.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from parity import pricing
from parity.exchange import Exchange
from parity.gateway.keys import KeyLimits, conservative_cost
from parity.gateway.metrics import GatewayMetrics
from parity.gateway.streaming import StreamOutcome, parse_outcome
from parity.ledger.journal import Journal, orphans
from parity.ledger.writer import LedgerEntry, LedgerWriter

log = logging.getLogger("parity.gateway")

_STOP = object()


@dataclass
class Record:
    """One upstream exchange as the request path saw it (see the module docstring).

    `counted`: whether it is a client request for the request/latency metrics (a discarded candidate attempt
    or a shadow call is recorded and priced, but is not a request the client made)."""

    endpoint: str
    request: dict[str, Any]
    started_at: datetime
    duration_s: float
    route: str
    status: int
    task: str | None = None
    task_label: str = ""
    reason: str | None = None
    message: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    stream: StreamOutcome | None = None
    key_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    counted: bool = True
    ledger: bool = True
    batch: bool = False
    record_id: str | None = None  # set by the journal: the ledger row's unique id


def outcome_of(status: int, error: dict[str, Any] | None, gateway_error: bool = False) -> str:
    if gateway_error:
        return "gateway_error"
    if status >= 500 or (status < 400 and error is not None):
        return "upstream_error"
    if status >= 400:
        return "client_error"
    return "ok"


class GatewayRecorder:
    """The background half of the gateway's bookkeeping (see the module docstring)."""

    def __init__(
        self,
        metrics: GatewayMetrics,
        limits: KeyLimits,
        *,
        ledger: LedgerWriter | None = None,
        redact: bool = False,
        scrub: Callable[[str], str] = lambda s: s,
        span_hook: Callable[[Exchange, Any], None] | None = None,
        journal: Journal | None = None,
    ):
        self.journal = journal if ledger is not None else None
        if self.journal is not None and ledger is not None:
            ledger.on_committed = self.journal.committed
        self.metrics = metrics
        self.limits = limits
        self.ledger = ledger
        self.redact = redact
        self.scrub = scrub
        self.span_hook = span_hook
        self.failed = 0
        self._queue: queue.Queue[Any] = queue.Queue()
        self._pending = 0  # handed to record() and not yet processed (flush waits for it to reach 0)
        self._idle = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="parity-gateway-recorder", daemon=True)
        self._thread.start()

    def record(self, record: Record) -> None:
        """Queue one record; returns at once. On an event loop the hand-over waits for the loop's next step."""
        if self.journal is not None and record.ledger and record.record_id is None:
            record.record_id = self.journal.new_id()
            try:  # before the answer goes out: a replica killed now still has it on disk for the ledger
                self.journal.append(record.record_id, _payload(record))
            except Exception:
                log.exception("journal write failed; the record still goes to the ledger")
        with self._idle:
            self._pending += 1
        try:
            asyncio.get_running_loop().call_soon(self._queue.put_nowait, record)
        except RuntimeError:  # not on an event loop (a worker thread, a test)
            self._queue.put_nowait(record)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every record handed over so far is processed and written to the ledger (tests, shutdown)."""
        with self._idle:
            if not self._idle.wait_for(lambda: self._pending == 0, timeout):
                return False
        return self.ledger.flush(timeout) if self.ledger is not None else True

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout=30)
        if self.ledger is not None:
            self.ledger.flush(30.0)
            failed = self.ledger.failed
            self.ledger.close()
            if self.journal is not None:  # kept on disk when the ledger refused something: replayed next start
                self.journal.close(remove=failed == 0)

    def replay(self, directory: str) -> int:
        """Write to the ledger what dead replicas' journals in `directory` hold (rows it already has are skipped);
        delete each journal once its rows are committed. Returns the number of records replayed."""
        if self.ledger is None:
            return 0
        replayed = 0
        for path, records in orphans(directory):
            before = self.ledger.failed
            for record_id, payload in records:
                try:
                    self._process(_from_payload(record_id, payload), replay=True)
                    replayed += 1
                except Exception:
                    self.failed += 1
                    log.exception("journal %s: record %s could not be replayed", path, record_id)
            if self.ledger.flush(60.0) and self.ledger.failed == before:
                path.unlink(missing_ok=True)
            else:
                log.warning("journal %s not fully written to the ledger; kept for the next start", path)
        if replayed:
            log.warning("replayed %d journaled record(s) into the ledger", replayed)
        return replayed

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                self._process(item)
            except Exception:  # bookkeeping must never take the gateway down
                self.failed += 1
                log.exception("gateway recorder failed on one record")
            finally:
                self._queue.task_done()
                if item is not _STOP:
                    with self._idle:
                        self._pending -= 1
                        if self._pending == 0:
                            self._idle.notify_all()

    def _process(self, rec: Record, replay: bool = False) -> None:
        message, error = rec.message, rec.error
        if rec.stream is not None:
            message, stream_error = parse_outcome(rec.stream)
            error = error or stream_error
        reason = rec.reason
        cost: pricing.CostBreakdown | None = None
        usage = message.get("usage") if isinstance(message, dict) else None
        if isinstance(usage, dict) and isinstance(message.get("model"), str):
            try:
                cost = pricing.cost(message["model"], usage, batch=rec.batch)
            except Exception as exc:  # an unknown model or odd usage: recorded unpriced, and said so
                note = f"not priced: {exc}"
                reason = f"{reason}; {note}" if reason else note
        total = cost.total if cost is not None else None
        charged = total
        if charged is None and rec.key_id is not None and isinstance(usage, dict):
            charged = conservative_cost(usage, batch=rec.batch)  # an unpriced model is never free to a key
            if charged is not None:
                note = f"key charged ${charged} (the price table's highest rates)"
                reason = f"{reason}; {note}" if reason else note
        if rec.counted:
            self.metrics.request(rec.endpoint, rec.route, rec.task_label, outcome_of(rec.status, error), rec.duration_s)
        if total is not None:
            self.metrics.spend(rec.task_label, rec.route, message.get("model", ""), total)
        settles = None
        if rec.key_id is not None:
            final = rec.tags.get("gateway_request_id") if rec.counted else None  # the answer the client got
            if self.limits.settle(rec.key_id, final, charged) or (replay and final):
                settles = final
        if not rec.ledger:
            if settles is not None and self.ledger is not None:
                self.ledger.settle(settles)
            return
        if error is not None:
            error = json.loads(self.scrub(json.dumps(error)))
        tags = dict(rec.tags)
        if rec.task:
            tags["task"] = rec.task
        request = rec.request
        if not isinstance(request.get("model", ""), str):
            # the API refused it, but the ledger's model column holds text: keep the value as its JSON text
            request = {**request, "model": json.dumps(request["model"], default=str)[:200]}
            note = "the request's model was not a string (recorded as its JSON text)"
            reason = f"{reason}; {note}" if reason else note
        exchange = Exchange(
            request=redact_request(request) if self.redact else request,
            response=redact_message(message) if self.redact and message is not None else message,
            error=error,
            started_at=rec.started_at,
            duration_ms=int(rec.duration_s * 1000),
            tags=tags,
            route=rec.route,
            batch=rec.batch,
        )
        if self.span_hook is not None:
            try:
                self.span_hook(exchange, cost)
            except Exception:
                log.exception("OTel span hook failed")
        if self.ledger is not None:
            self.ledger.write(
                LedgerEntry(exchange, cost_usd=total, reason=reason, key_id=rec.key_id, status_code=rec.status,
                            record_id=rec.record_id, charged_usd=charged, settles=settles)
            )


# ---- the journal's form of a record --------------------------------------------------------------------------------


def _payload(rec: Record) -> dict[str, Any]:
    """A record as JSON-able data (the stream's bytes as latin-1 text, which round-trips every byte)."""
    out = {name: getattr(rec, name) for name in Record.__dataclass_fields__ if name not in ("stream", "record_id")}
    if rec.stream is not None:
        out["stream"] = {"raw": rec.stream.raw.decode("latin-1"), "failure": rec.stream.failure,
                         "detail": rec.stream.detail}
    return out


def _from_payload(record_id: str, payload: dict[str, Any]) -> Record:
    data = dict(payload)
    stream = data.pop("stream", None)
    data["started_at"] = datetime.fromisoformat(data["started_at"])
    known = set(Record.__dataclass_fields__)
    rec = Record(**{k: v for k, v in data.items() if k in known})
    if stream is not None:
        rec.stream = StreamOutcome(stream["raw"].encode("latin-1"), stream.get("failure"), stream.get("detail", ""))
    rec.record_id = record_id
    return rec


# ---- redaction -------------------------------------------------------------------------------------------------


def _mask(text: str) -> str:
    """A stand-in that keeps equality and size visible (the audit can still see two prompts are the same)."""
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"[redacted sha256:{digest} chars:{len(text)}]"


def _redact_blocks(content: Any) -> Any:
    if isinstance(content, str):
        return _mask(content)
    if not isinstance(content, list):
        return content
    out = []
    for block in content:
        if not isinstance(block, dict):
            out.append(block)
            continue
        block = dict(block)
        for key in ("text", "thinking"):
            if isinstance(block.get(key), str):
                block[key] = _mask(block[key])
        if "input" in block and block.get("type") in ("tool_use", "server_tool_use"):
            block["input"] = {"redacted": _mask(json.dumps(block["input"], sort_keys=True))}
        if "content" in block:
            block["content"] = _redact_blocks(block["content"])
        if block.get("type") in ("image", "document") and isinstance(block.get("source"), dict):
            source = dict(block["source"])
            if isinstance(source.get("data"), str):
                source["data"] = _mask(source["data"])
            block["source"] = source
        out.append(block)
    return out


def redact_request(request: dict[str, Any]) -> dict[str, Any]:
    """The request with every prompt text masked (system, messages, demos); structure, model and settings kept."""
    out = dict(request)
    if "system" in out:
        out["system"] = _redact_blocks(out["system"])
    if isinstance(out.get("messages"), list):
        out["messages"] = [
            {**m, "content": _redact_blocks(m.get("content"))} if isinstance(m, dict) else m for m in out["messages"]
        ]
    return out


def redact_message(message: dict[str, Any]) -> dict[str, Any]:
    """The answer with its text and tool inputs masked; usage, model and stop reason kept (cost stays exact)."""
    return {**message, "content": _redact_blocks(message.get("content"))}

