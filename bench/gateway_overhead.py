"""What `parity serve` adds to a request: open-loop load, direct vs through the gateway, same mock upstream.

Set-up (all on loopback):

* a mock upstream: a raw asyncio HTTP/1.1 server answering every POST with the same Message after a fixed delay
  (50 ms by default), keep-alive, in its own process;
* `parity serve --upstream http://127.0.0.1:PORT --ledger FILE` started as a subprocess, no policy (observe mode:
  every request passes through and is recorded, priced, metered), pinned to one core (`taskset -c 0`);
* an open-loop load generator (a minimal asyncio HTTP/1.1 client, `RawClient`): request i is launched at t0 + i/rate whatever happened to the earlier
  ones, and its latency is counted from that scheduled time (no coordinated omission). The generator and the mock
  upstream share the other core(s).

For each rate, two schedules run at once, interleaved: direct (client -> mock) and through the gateway (client ->
gateway -> mock), each at the rate, so both see the same moments of a shared machine; the added latency is the
difference of their percentiles. Then the gateway alone is pushed up a ladder of rates to
find the highest one it holds: no errors, and latency not piling up (P50 within 10 ms and P99 within 50 ms of the
upstream's own delay). At the end the ledger is counted:
every request through the gateway must be in it.

    .venv/bin/python bench/gateway_overhead.py --duration 10            # 50 and 200 req/s, then the ladder
    .venv/bin/python bench/gateway_overhead.py --rates 50 --duration 5 --ladder   # quick look
    .venv/bin/python bench/gateway_overhead.py --rates 50 200 --no-ladder \
        --ledger-url postgresql://postgres@127.0.0.1:5432/test             # SQLite vs PostgreSQL ledger
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
MODEL = "claude-haiku-4-5"
MESSAGE = {
    "id": "msg_01Bench0000000000000000", "type": "message", "role": "assistant", "model": MODEL,
    "content": [{"type": "text", "text": "The answer is 42."}], "stop_reason": "end_turn", "stop_sequence": None,
    "usage": {"input_tokens": 120, "output_tokens": 9, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
              "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
              "service_tier": "standard"},
}
REQUEST = {"model": MODEL, "max_tokens": 64, "system": "You answer questions about the company handbook briefly.",
           "messages": [{"role": "user", "content": "How many vacation days do new employees get in their first year?"}]}
HEADERS = {"x-api-key": "sk-bench-client", "anthropic-version": "2023-06-01", "content-type": "application/json"}


# ---- the mock upstream ------------------------------------------------------------------------------------------


def _response(body: bytes) -> bytes:
    head = (f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "request-id: req_01MockUpstream\r\nanthropic-ratelimit-requests-remaining: 999\r\n\r\n")
    return head.encode() + body


class MockUpstream(asyncio.Protocol):
    """Minimal HTTP/1.1 keep-alive server: reads a request (headers + content-length body), answers after `delay`."""

    delay = 0.05
    answer = _response(json.dumps(MESSAGE).encode())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            length = 0
            for line in self.buffer[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            self.buffer = self.buffer[total:]
            asyncio.get_running_loop().call_later(self.delay, self._respond)

    def _respond(self) -> None:
        if not self.transport.is_closing():
            self.transport.write(self.answer)


async def serve_mock(port: int, delay: float) -> None:
    MockUpstream.delay = delay
    server = await asyncio.get_running_loop().create_server(MockUpstream, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


# ---- open-loop load ---------------------------------------------------------------------------------------------


@dataclass
class Run:
    target: str
    rate: float
    seconds: float
    sent: int
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    first_error: str | None = None


class RawClient:
    """The load generator's HTTP/1.1 client: keep-alive connections on asyncio streams, Content-Length answers.

    httpx costs the client ~2 ms of CPU per request here; at a few hundred requests per second it would saturate
    its own core and measure itself. This one costs a small fraction of that, so the gateway is what is measured."""

    IDLE_S = 3.0  # servers drop idle keep-alive connections (uvicorn after 5 s): never reuse one that old

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]:
        now = time.monotonic()
        while self.idle:
            reader, writer, since = self.idle.pop()
            if now - since < self.IDLE_S and not reader.at_eof():
                return reader, writer, True
            writer.close()
        reader, writer = await asyncio.open_connection(self.host, self.port)
        return reader, writer, False

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        reader, writer, reused = await self._connection()
        head = f"POST {path} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\ncontent-length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        try:
            writer.write(head.encode() + body)
            try:
                raw = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as exc:
                if not reused or exc.partial:
                    raise
                writer.close()  # closed by the server as it was reused: once more on a fresh connection
                reader, writer = await asyncio.open_connection(self.host, self.port)
                writer.write(head.encode() + body)
                raw = await reader.readuntil(b"\r\n\r\n")
            length = None
            for line in raw.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if length is None:
                raise RuntimeError(f"answer without content-length: {raw[:200]!r}")
            data = await reader.readexactly(length)
        except BaseException:
            writer.close()
            raise
        self.idle.append((reader, writer, time.monotonic()))
        return int(raw[9:12]), data

    async def aclose(self) -> None:
        for _, writer, _ in self.idle:
            writer.close()
        self.idle.clear()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def load(urls: list[str], rate: float, seconds: float, *, warmup_s: float = 1.0) -> list[Run]:
    """Open loop at `rate` req/s per target for `seconds` (after `warmup_s`, not counted). With several targets
    their schedules interleave (target k is offset by k/(rate*len(urls))), so they share the same moments of the
    machine's load: on a shared machine that is what makes direct and gateway latencies comparable."""
    body = json.dumps(REQUEST).encode()
    loop = asyncio.get_running_loop()
    latencies: list[list[float]] = [[] for _ in urls]
    errors: list[list[str]] = [[] for _ in urls]

    async def one(client: RawClient, k: int, at: float, counted: bool) -> None:
        try:
            status, data = await client.post("/v1/messages", body, HEADERS)
            if status != 200 or not data.startswith(b"{"):
                raise RuntimeError(f"HTTP {status}: {data[:200]!r}")
        except Exception as exc:  # any failure counts: the bench reports it
            if counted:
                errors[k].append(f"{type(exc).__name__}: {exc}"[:300])
            return
        if counted:
            latencies[k].append((loop.time() - at) * 1000)

    clients = [RawClient(httpx.URL(url).host, httpx.URL(url).port) for url in urls]
    try:
        tasks = []
        n_warm, n = int(rate * warmup_s), int(rate * seconds)
        start = loop.time() + 0.05
        step = 1 / (rate * len(urls))
        for i in range(n_warm + n):
            for k, client in enumerate(clients):
                at = start + i / rate + k * step
                delay = at - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(client, k, at, i >= n_warm)))
        await asyncio.gather(*tasks)
    finally:
        for client in clients:
            await client.aclose()
    runs = []
    for url, lat, err in zip(urls, latencies, errors):
        lat = lat or [float("nan")]
        runs.append(Run(url, rate, seconds, n, len(err), round(_pct(lat, 0.5), 2), round(_pct(lat, 0.9), 2),
                        round(_pct(lat, 0.99), 2), round(max(lat), 2), err[0] if err else None))
    return runs


# ---- processes ----------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up within {timeout:.0f} s")


def pinned(cmd: list[str], core: str | None) -> list[str]:
    return ["taskset", "-c", core, *cmd] if core is not None else cmd


def start_mock(port: int, delay_ms: float, core: str | None) -> subprocess.Popen:
    cmd = [sys.executable, __file__, "--serve-mock", str(port), "--delay-ms", str(delay_ms)]
    proc = subprocess.Popen(pinned(cmd, core))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    raise SystemExit("the mock upstream did not start")


def start_gateway(port: int, upstream_port: int, ledger: Path, core: str | None, extra: list[str],
                  env_extra: dict[str, str] | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "parity", "serve", "--upstream", f"http://127.0.0.1:{upstream_port}",
           "--port", str(port), "--ledger", str(ledger), "--log-level", "warning", *extra]
    env = {**os.environ, "PARITY_UPSTREAM_API_KEY": "sk-bench-upstream", **(env_extra or {})}
    proc = subprocess.Popen(pinned(cmd, core), cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    wait_for(f"http://127.0.0.1:{port}/healthz")
    return proc


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MB, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def ledger_rows(path: Path | str) -> int:
    if isinstance(path, str) and "://" in path:  # a database URL (PostgreSQL)
        import sqlalchemy as sa

        from parity.ledger.schema import create_engine, exchanges

        engine = create_engine(path)
        try:
            with engine.connect() as conn:
                return conn.execute(sa.select(sa.func.count()).select_from(exchanges)).scalar()
        finally:
            engine.dispose()
    with sqlite3.connect(path) as conn:
        return conn.execute("select count(*) from exchanges").fetchone()[0]


async def compare_ledger(args: argparse.Namespace, mock_port: int, direct_url: str, tmp: Path) -> dict:
    """The same rates through a gateway on the `--ledger-url` database (PostgreSQL: the replicas' ledger), so its
    added latency can be read next to the SQLite gateway's."""
    port = free_port()
    env_extra = dict(item.split("=", 1) for item in args.gateway_env)
    before = ledger_rows(args.ledger_url)
    gateway = start_gateway(port, mock_port, args.ledger_url, args.gateway_core,
                            ["--journal", str(tmp / "pg-journal"), *args.gateway_args], env_extra)
    url = f"http://127.0.0.1:{port}"
    out: dict = {"ledger_url": args.ledger_url.split("?")[0], "rates": []}
    through = 0
    try:
        for rate in args.rates:
            direct, via = await load([direct_url, url], rate, args.duration)
            through += via.sent + int(rate * 1.0)
            added = {"p50_ms": round(via.p50_ms - direct.p50_ms, 2), "p99_ms": round(via.p99_ms - direct.p99_ms, 2)}
            out["rates"].append({"rate": rate, "direct": asdict(direct), "gateway": asdict(via), "added": added})
            print(f"direct   {_line(direct)}\ngateway  {_line(via)}  [PostgreSQL ledger]\n  added: p50 "
                  f"{added['p50_ms']:+.2f} ms, p99 {added['p99_ms']:+.2f} ms", flush=True)
    finally:
        stop(gateway)
    out["ledger_rows"] = ledger_rows(args.ledger_url) - before
    out["requests_through_gateway"] = through
    print(f"PostgreSQL ledger: {out['ledger_rows']} new rows for {through} requests sent through the gateway")
    return out


# ---- main -----------------------------------------------------------------------------------------------------------


def _line(run: Run) -> str:
    return (f"{run.rate:>6.0f}/s  p50 {run.p50_ms:7.2f}  p90 {run.p90_ms:7.2f}  p99 {run.p99_ms:7.2f}  "
            f"max {run.max_ms:8.2f} ms  errors {run.errors}/{run.sent}")


async def main(args: argparse.Namespace) -> dict:
    if args.client_core is not None:
        os.sched_setaffinity(0, {int(c) for c in args.client_core.split(",")})
    tmp = Path(tempfile.mkdtemp(prefix="parity-bench-"))
    mock_port, gw_port = free_port(), free_port()
    mock = start_mock(mock_port, args.delay_ms, args.client_core)
    env_extra = dict(item.split("=", 1) for item in args.gateway_env)
    gateway = start_gateway(gw_port, mock_port, tmp / "ledger.db", args.gateway_core, args.gateway_args, env_extra)
    direct_url, gw_url = f"http://127.0.0.1:{mock_port}", f"http://127.0.0.1:{gw_port}"
    report: dict = {"settings": {k: v for k, v in vars(args).items() if k != "serve_mock"}, "rates": [], "ladder": []}
    through = 0
    try:
        report["idle_rss_mb"] = idle = rss_mb(gateway.pid)
        print(f"idle gateway (default SQLite ledger, no policy, before any request): {idle:.1f} MB RSS", flush=True)
        print(f"mock upstream {args.delay_ms:g} ms on {direct_url}; gateway on {gw_url} (core {args.gateway_core}); "
              f"client core {args.client_core}; {args.duration:g} s per rate, open loop", flush=True)
        for rate in args.rates:
            direct, via = await load([direct_url, gw_url], rate, args.duration)
            through += via.sent + int(rate * 1.0)
            added = {"p50_ms": round(via.p50_ms - direct.p50_ms, 2), "p99_ms": round(via.p99_ms - direct.p99_ms, 2)}
            report["rates"].append({"rate": rate, "direct": asdict(direct), "gateway": asdict(via), "added": added})
            print(f"direct   {_line(direct)}\ngateway  {_line(via)}\n  added: p50 {added['p50_ms']:+.2f} ms, "
                  f"p99 {added['p99_ms']:+.2f} ms" + (f"\n  first error: {via.first_error}" if via.first_error else ""),
                  flush=True)
        held = None
        if args.ladder:
            for rate in args.ladder_rates:
                via, = await load([gw_url], rate, args.ladder_duration)
                through += via.sent + int(rate * 1.0)
                ok = (via.errors == 0 and via.p50_ms <= args.delay_ms + args.held_p50_slack_ms
                      and via.p99_ms <= args.delay_ms + args.held_p99_slack_ms)
                report["ladder"].append({**asdict(via), "held": ok})
                print(f"ladder   {_line(via)}  {'held' if ok else 'NOT held'}", flush=True)
                if not ok:
                    break
                held = rate
        report["highest_rate_held"] = held
        stop(gateway)
        if args.ledger_url:
            report["postgresql"] = await compare_ledger(args, mock_port, direct_url, tmp)
            print("added latency by ledger (p50 / p99 ms):")
            for sq, pg in zip(report["rates"], report["postgresql"]["rates"]):
                print(f"  {sq['rate']:>6.0f}/s  SQLite {sq['added']['p50_ms']:+.2f} / {sq['added']['p99_ms']:+.2f}"
                      f"   PostgreSQL {pg['added']['p50_ms']:+.2f} / {pg['added']['p99_ms']:+.2f}")
    finally:
        stop(gateway)
        stop(mock)
    rows = ledger_rows(tmp / "ledger.db")
    report["ledger_rows"] = rows
    report["requests_through_gateway"] = through
    print(f"ledger: {rows} rows for {through} requests sent through the gateway (warm-ups included)")
    if report["ladder"]:
        print(f"highest rate held through the gateway (no errors, p50 <= upstream + {args.held_p50_slack_ms:g} ms, "
              f"p99 <= upstream + {args.held_p99_slack_ms:g} ms): {report['highest_rate_held']} req/s")
    return report


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--serve-mock", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--delay-ms", type=float, default=50.0, help="the mock upstream's fixed answer delay")
    ap.add_argument("--rates", type=float, nargs="+", default=[50, 200])
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per rate (after 1 s of warm-up)")
    ap.add_argument("--ladder", action=argparse.BooleanOptionalAction, default=True,
                    help="then push the gateway up --ladder-rates until it no longer holds")
    ap.add_argument("--ladder-rates", type=float, nargs="+", default=[250, 300, 350, 400, 450, 500, 600, 800])
    ap.add_argument("--ladder-duration", type=float, default=5.0)
    ap.add_argument("--held-p50-slack-ms", type=float, default=10.0,
                    help="a rate is held with no errors, p50 within this of the upstream's delay, ...")
    ap.add_argument("--held-p99-slack-ms", type=float, default=50.0, help="... and p99 within this of it")
    ap.add_argument("--gateway-core", default="0", help="taskset core list for the gateway ('' for none)")
    ap.add_argument("--client-core", default="1", help="core(s) for the load generator and the mock ('' for none)")
    ap.add_argument("--gateway-env", nargs="*", default=[], metavar="KEY=VALUE",
                    help="environment for the gateway process (e.g. PYTHONPATH=DIR with uvloop and httptools)")
    ap.add_argument("--gateway-args", nargs=argparse.REMAINDER, default=[], help="extra `parity serve` arguments")
    ap.add_argument("--ledger-url", help="also run the rates through a gateway on this database ledger (e.g. "
                    "postgresql://postgres@127.0.0.1:5432/test) and report its added latency next to SQLite's")
    ap.add_argument("--json", help="write the report to this file")
    args = ap.parse_args(argv)
    args.gateway_core = args.gateway_core or None
    args.client_core = args.client_core or None
    return args


if __name__ == "__main__":
    arguments = parse(sys.argv[1:])
    if arguments.serve_mock:
        try:
            asyncio.run(serve_mock(arguments.serve_mock, arguments.delay_ms / 1000))
        except KeyboardInterrupt:  # stopped by the bench with SIGINT
            pass
        sys.exit(0)
    result = asyncio.run(main(arguments))
    if arguments.json:
        Path(arguments.json).write_text(json.dumps(result, indent=2))
