"""Added latency of `parity.wrap` per call, plain vs wrapped client, in one run.

Two scenarios, each timed with plain and wrapped clients interleaved:

* zero latency: the server answers in-process with no network and no model time (httpx2.MockTransport
  serving a canned Message or 200-event SSE stream; or the emulator with `--emulator`), so every microsecond
  the wrapper adds shows up, including the background writer's CPU competing for the GIL: the worst case.
* server latency (`--latency-ms`, default 50): the server sleeps before answering, as a real API does, so the
  background writer runs while the caller waits on I/O, as it would in production.

    .venv/bin/python bench/wrap_overhead.py [--calls 2000] [--latency-calls 200] [--latency-ms 50] [--emulator]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import anthropic
import httpx2

import parity
from parity.wrap import flush

MODEL = "claude-haiku-4-5"
SYSTEM = "You are a careful assistant. " * 200  # a realistic ~1,200-token request body
MESSAGE = {
    "id": "msg_bench", "type": "message", "role": "assistant", "model": MODEL,
    "content": [{"type": "text", "text": "word " * 200}], "stop_reason": "end_turn", "stop_sequence": None,
    "usage": {"input_tokens": 1200, "output_tokens": 200, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
}


def _sse() -> bytes:
    start = {**MESSAGE, "content": [], "stop_reason": None}
    events = [{"type": "message_start", "message": start},
              {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}]
    events += [{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "word "}}] * 200
    events += [{"type": "content_block_stop", "index": 0},
               {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": 200}},
               {"type": "message_stop"}]
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


SSE = _sse()
BODY = json.dumps(MESSAGE).encode()


LATENCY_S = 0.0


def _handler(request: httpx2.Request) -> httpx2.Response:
    if LATENCY_S:
        time.sleep(LATENCY_S)
    if b'"stream":true' in request.content:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=SSE)
    return httpx2.Response(200, headers={"content-type": "application/json"}, content=BODY)


def _client(use_emulator: bool) -> anthropic.Anthropic:
    if use_emulator:
        from parity.emulator.service import Emulator

        return Emulator().client()
    return anthropic.Anthropic(api_key="sk-bench", base_url="http://bench.local",
                               http_client=httpx2.Client(transport=httpx2.MockTransport(_handler)))


def _paired(plain: Callable[[], Any], wrapped: Callable[[], Any], calls: int) -> dict[str, float]:
    """Plain and wrapped calls alternated one by one (the order flipped each pair), so machine noise hits both.

    Returns medians of wall time per call, of the paired difference, and of the caller thread's CPU time.
    """
    for _ in range(min(20, calls)):
        plain()
        wrapped()
    wall = {"plain": [], "wrapped": []}
    cpu = {"plain": [], "wrapped": []}
    diffs = []
    for i in range(calls):
        pair = {}
        for name in (("plain", "wrapped") if i % 2 == 0 else ("wrapped", "plain")):
            fn = plain if name == "plain" else wrapped
            c0, t0 = time.thread_time(), time.perf_counter()
            fn()
            pair[name] = time.perf_counter() - t0
            cpu[name].append(time.thread_time() - c0)
            wall[name].append(pair[name])
        diffs.append(pair["wrapped"] - pair["plain"])
    med = statistics.median
    return {"plain": med(wall["plain"]) * 1e6, "wrapped": med(wall["wrapped"]) * 1e6, "diff": med(diffs) * 1e6,
            "cpu_plain": med(cpu["plain"]) * 1e6, "cpu_wrapped": med(cpu["wrapped"]) * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--latency-calls", type=int, default=200)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--emulator", action="store_true", help="answer from parity's emulator instead of a canned body")
    args = parser.parse_args()
    global LATENCY_S

    plain = _client(args.emulator)
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "bench.jsonl"
        wrapped = parity.wrap(plain, sink=log)
        params = {"model": MODEL, "max_tokens": 300, "system": SYSTEM, "messages": [{"role": "user", "content": "hello"}]}

        def create(c: anthropic.Anthropic) -> Callable[[], Any]:
            return lambda: c.messages.create(**params)

        def stream(c: anthropic.Anthropic) -> Callable[[], Any]:
            def run() -> None:
                with c.messages.stream(**params) as s:
                    s.get_final_message()
            return run

        print(f"{'scenario':<22}{'call':<8}{'plain µs':>10}{'wrapped µs':>12}{'paired Δ µs':>13}{'ratio':>7}"
              f"{'caller CPU Δ µs':>17}   (medians; {'emulator' if args.emulator else 'canned in-process body'})")
        scenarios = [("zero latency", 0.0, args.calls)]
        if not args.emulator and args.latency_ms > 0:
            scenarios.append((f"{args.latency_ms:g} ms server latency", args.latency_ms / 1000, args.latency_calls))
        for label, latency, calls in scenarios:
            LATENCY_S = latency
            for name, make in (("create", create), ("stream", stream)):
                r = _paired(make(plain), make(wrapped), calls)
                print(f"{label:<22}{name:<8}{r['plain']:>10.0f}{r['wrapped']:>12.0f}{r['diff']:>13.0f}"
                      f"{r['wrapped'] / r['plain']:>7.3f}{r['cpu_wrapped'] - r['cpu_plain']:>17.0f}")
        writer_cpu = time.process_time() - time.thread_time()
        t0 = time.perf_counter()
        flush(wrapped, timeout=120)
        lines = sum(1 for _ in open(log))
        print(f"background writer drained in {time.perf_counter() - t0:.2f} s after the run; {lines} Exchanges written; "
              f"other threads' CPU (writer, transport) {writer_cpu:.2f} s in all")


if __name__ == "__main__":
    main()
