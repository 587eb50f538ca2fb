"""Server-sent event streams through the gateway: relayed as they come, or held whole and checked first.

Two ways, one rule (a stream cut mid-answer never reaches a client as a truncated success):

* `relay` (tasks that are not routed): the upstream's bytes go out unchanged, as they arrive, but only in whole
  events (a chunk ending mid-event waits for the rest), so the gateway can always end the stream cleanly. If
  the upstream stops before `message_stop` (the connection drops, a stall outlasts the read timeout, or it
  just ends), the client gets one more event, `event: error` with an `api_error` envelope, and the official
  SDK raises instead of returning half an answer.
* `buffer` (routed tasks): the candidate's whole stream is read first, with a stall timeout between chunks,
  then rebuilt into a Message (`parity.wrap.accumulate_sse`, the SDK's accumulation) and checked against the
  contract; only then are its exact bytes replayed to the client, or the baseline is streamed instead.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import httpx2
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from parity.gateway.upstream import UpstreamFailure
from parity.wrap.sse import accumulate_sse

_STOP = b"event: message_stop"
_ERROR = b"event: error"


def error_event(error_type: str, message: str) -> bytes:
    """One SSE `error` event as the API sends it (the SDK raises APIStatusError and does not retry)."""
    data = {"type": "error", "error": {"type": error_type, "message": message}}
    return b"event: error\ndata: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


def _boundary(buffer: bytes) -> int:
    """Index just past the last complete event in `buffer` (0 if none is complete)."""
    end = 0
    for sep in (b"\n\n", b"\r\n\r\n", b"\r\r"):
        at = buffer.rfind(sep)
        if at >= 0:
            end = max(end, at + len(sep))
    return end


class RelayResponse(StreamingResponse):
    """A StreamingResponse that always closes its body generator when it ends, the client hangs up included.

    Starlette abandons the generator of a cancelled stream, and Python finalises it only when the garbage
    collector gets to it: the upstream connection would stay open and the exchange would reach the ledger late,
    or never. Closing it here (shielded from the cancellation) runs its `finally` at once."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            close = getattr(self.body_iterator, "aclose", None)
            if close is not None:
                with anyio.CancelScope(shield=True):
                    await close()


@dataclass
class StreamOutcome:
    """How a relayed or buffered stream ended: its bytes, and the failure if it did not end with message_stop."""

    raw: bytes
    failure: str | None = None  # cut | stall | error_event | client_disconnected | None
    detail: str = ""

    @property
    def complete(self) -> bool:
        return self.failure is None


async def relay(response: httpx2.Response, on_end: Callable[[StreamOutcome], None]) -> AsyncIterator[bytes]:
    """The body of a pass-through stream (see the module docstring); `on_end` gets the outcome exactly once."""
    sent: list[bytes] = []
    pending = b""
    stopped = errored = False
    outcome: StreamOutcome | None = None
    try:
        try:
            async for chunk in response.aiter_bytes():
                pending += chunk
                end = _boundary(pending)
                if not end:
                    continue
                out, pending = pending[:end], pending[end:]
                stopped = stopped or _STOP in out
                errored = errored or _ERROR in out
                sent.append(out)
                yield out
        except httpx2.TimeoutException:
            outcome = StreamOutcome(b"".join(sent), "stall", "no bytes from the upstream within the read timeout")
        except httpx2.TransportError as exc:
            outcome = StreamOutcome(b"".join(sent), "cut", f"the upstream connection dropped ({type(exc).__name__})")
        if outcome is None:
            if pending.strip():
                stopped = stopped or _STOP in pending
                errored = errored or _ERROR in pending
                if stopped or errored:  # a last event without its blank line: complete enough to pass on
                    sent.append(pending)
                    yield pending
            if errored:
                outcome = StreamOutcome(b"".join(sent), "error_event", "the upstream sent an error event")
            elif stopped:
                outcome = StreamOutcome(b"".join(sent))
            else:
                outcome = StreamOutcome(b"".join(sent), "cut", "the upstream stream ended before message_stop")
        if outcome.failure in ("cut", "stall"):
            yield error_event(
                "api_error",
                f"The upstream stream was interrupted before the answer was complete ({outcome.detail}); "
                "the answer is incomplete, retry the request",
            )
    except BaseException:  # the client went away (cancelled) or the server is stopping
        if outcome is None:
            outcome = StreamOutcome(b"".join(sent), "client_disconnected", "the client closed the stream")
        raise
    finally:
        await response.aclose()
        if outcome is not None:
            on_end(outcome)


@dataclass
class Buffered:
    """A candidate's stream read whole: its bytes, the Message they add up to, and whether it is usable."""

    raw: bytes
    message: dict[str, Any] | None
    failure: UpstreamFailure | None


async def buffer(response: httpx2.Response) -> Buffered:
    """Read a stream to its end (the request's read timeout is the stall timeout) and rebuild its Message."""
    chunks: list[bytes] = []
    try:
        async for chunk in response.aiter_bytes():
            chunks.append(chunk)
    except httpx2.TimeoutException:
        raw = b"".join(chunks)
        return Buffered(raw, accumulate_sse(raw)[0], UpstreamFailure("stall", "the candidate's stream stalled"))
    except httpx2.TransportError as exc:
        raw = b"".join(chunks)
        return Buffered(raw, accumulate_sse(raw)[0], UpstreamFailure("cut", f"the candidate's stream dropped ({type(exc).__name__})"))
    finally:
        await response.aclose()
    raw = b"".join(chunks)
    message, error = accumulate_sse(raw)
    if error is not None:
        kind = (error.get("error") or {}).get("type") if isinstance(error, dict) else None
        if kind == "incomplete_stream":
            return Buffered(raw, message, UpstreamFailure("cut", "the candidate's stream ended before message_stop"))
        if kind == "malformed_stream":
            return Buffered(raw, message, UpstreamFailure("malformed", "the candidate's stream carried data that is not JSON"))
        return Buffered(raw, message, UpstreamFailure("error_event", f"the candidate's stream sent an error event ({kind})"))
    if message is None:
        return Buffered(raw, None, UpstreamFailure("malformed", "the candidate's stream had no message_start"))
    return Buffered(raw, message, None)


def parse_outcome(outcome: StreamOutcome) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(message, error envelope) of a relayed stream, for the ledger (run off the request path)."""
    message, error = accumulate_sse(outcome.raw)
    if outcome.failure in ("cut", "stall", "client_disconnected") and error is None:
        error = {"type": "error", "error": {"type": outcome.failure, "message": outcome.detail}}
    elif outcome.failure in ("cut", "stall") and error is not None:
        error = {"type": "error", "error": {"type": outcome.failure, "message": outcome.detail}}
    return message, error
