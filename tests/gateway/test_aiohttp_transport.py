"""The gateway's aiohttp upstream transport, on real loopback sockets: the request as httpx2 built it (raw path,
headers, body), keep-alive and stale connections, framings, streaming chunk by chunk, bodies never decompressed,
cuts, stalls, refusals, the connection limit, TLS; then the whole gateway through it to the emulator served by
uvicorn, faults included, seen by the official SDK."""

from __future__ import annotations

import asyncio
import gzip
import ssl
import subprocess
from collections.abc import Awaitable, Callable

import anthropic
import httpx2
import pytest

from parity.gateway.aiohttp_transport import AiohttpTransport

from servers import free_port, uvicorn_on_socket

from .conftest import BASELINE, GOOD_BASELINE, USER, ModelBrain

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Server:
    """A scripted HTTP server: `handler(reader, writer)` per connection; counts connections."""

    def __init__(self, handler: Handler, ssl_context: ssl.SSLContext | None = None):
        self.handler, self.ssl_context = handler, ssl_context
        self.connections = 0

    async def __aenter__(self) -> Server:
        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.handler(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, asyncio.CancelledError):
                pass  # the client went away, or the test ended with the connection still open
            finally:
                writer.close()

        self.server = await asyncio.start_server(on_connect, "127.0.0.1", 0, ssl=self.ssl_context)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()

    def url(self, path: str = "/v1/messages", scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head, await reader.readexactly(length)


def answer(body: bytes, *extra: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%s\r\n%s" % (len(body), b"".join(e + b"\r\n" for e in extra), body)


def timeouts(read: float | None = 2.0, connect: float = 2.0, pool: float = 2.0) -> dict:
    return {"timeout": {"connect": connect, "read": read, "write": 2.0, "pool": pool}}


async def call(transport: AiohttpTransport, url: str, *, method: str = "POST", body: bytes = b'{"a":1}',
               read: float | None = 2.0, headers: list[tuple[bytes, bytes]] | None = None
               ) -> tuple[httpx2.Response, bytes]:
    request = httpx2.Request(method, url, content=body if method != "HEAD" else None, headers=headers,
                             extensions=timeouts(read))
    response = await transport.handle_async_request(request)
    try:
        data = await response.aread()
    finally:
        await response.aclose()
    return response, data


async def test_keep_alive_reuses_one_connection_and_the_request_arrives_as_httpx_built_it():
    seen: list[tuple[bytes, bytes]] = []

    async def handler(reader, writer):
        while True:
            head, body = await read_request(reader)
            seen.append((head, body))
            writer.write(answer(b'{"ok":true}', b"content-type: application/json"))
            await writer.drain()

    async with Server(handler) as server:
        transport = AiohttpTransport()
        path = "/v1/messages/batches/msgbatch%2Fa%20b/results?beta=true&q=%7Bx%7D"
        for n in range(3):
            response, data = await call(transport, server.url(path), body=b'{"n":%d}' % n,
                                        headers=[(b"anthropic-version", b"2023-06-01"), (b"x-api-key", b"sk-1")])
            assert response.status_code == 200 and data == b'{"ok":true}'
            assert response.headers["content-type"] == "application/json"
            assert response.extensions["http_version"] == b"HTTP/1.1"
        await transport.aclose()
    assert server.connections == 1
    head, body = seen[2]
    assert head.startswith(f"POST {path} HTTP/1.1\r\n".encode())  # the raw path, not re-encoded
    lines = [line.lower() for line in head.split(b"\r\n")[1:] if line]
    names = sorted(line.split(b":")[0] for line in lines)
    assert names == [b"anthropic-version", b"content-length", b"host", b"x-api-key"]  # nothing added by aiohttp
    assert f"host: 127.0.0.1:{server.port}".encode() in lines and b"content-length: 7" in lines
    assert body == b'{"n":2}'


ONE, TWO = b"event: one\ndata: 1\n\n", b"event: two\ndata: 2\n\n"


@pytest.mark.parametrize("framing", ["chunked", "close-delimited"])
async def test_answers_stream_as_they_come(framing):
    second = asyncio.Event()

    async def handler(reader, writer):
        await read_request(reader)
        if framing == "chunked":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            writer.write(b"%x\r\n%s\r\n" % (len(ONE), ONE))
        else:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n" + ONE)
        await writer.drain()
        await second.wait()
        if framing == "chunked":
            writer.write(b"%x\r\n%s\r\n0\r\nx-trailer: t\r\n\r\n" % (len(TWO), TWO))
        else:
            writer.write(TWO)
            writer.close()
        await writer.drain()
        await reader.read()

    async with Server(handler) as server:
        transport = AiohttpTransport()
        request = httpx2.Request("POST", server.url(), content=b"{}", extensions=timeouts())
        response = await transport.handle_async_request(request)
        chunks = []
        async for chunk in response.aiter_raw():
            chunks.append(chunk)
            second.set()  # the second event is only sent once the first was received
        await response.aclose()
        await transport.aclose()
    assert chunks[0] == ONE and b"".join(chunks) == ONE + TWO


async def test_bodies_are_relayed_as_sent_never_decompressed():
    packed = gzip.compress(b'{"text":"hello"}')

    async def handler(reader, writer):
        while True:
            head, _ = await read_request(reader)
            writer.write(answer(packed, b"content-encoding: gzip", b"content-type: application/json"))
            await writer.drain()

    async with Server(handler) as server:
        transport = AiohttpTransport()
        request = httpx2.Request("POST", server.url(), content=b"{}", extensions=timeouts())
        response = await transport.handle_async_request(request)
        raw = b"".join([chunk async for chunk in response.aiter_raw()])  # aread() would be httpx2 decoding it
        await response.aclose()
        assert raw == packed and response.headers["content-encoding"] == "gzip"
        await transport.aclose()


@pytest.mark.parametrize("kind", ["connection-close", "head", "no-content"])
async def test_other_framings(kind):
    async def handler(reader, writer):
        await read_request(reader)
        if kind == "connection-close":
            writer.write(answer(b"bye", b"connection: close"))
        elif kind == "head":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 99\r\n\r\n")
            await read_request(reader)
            writer.write(answer(b"second"))
        else:
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            await read_request(reader)
            writer.write(answer(b"second"))
        await writer.drain()
        await reader.read()

    async with Server(handler) as server:
        transport = AiohttpTransport()
        method = "HEAD" if kind == "head" else "POST"
        response, data = await call(transport, server.url(), method=method)
        assert data == (b"bye" if kind == "connection-close" else b"")
        if kind in ("head", "no-content"):  # no body: the connection is reused for the next request
            assert (await call(transport, server.url()))[1] == b"second" and server.connections == 1
        await transport.aclose()


async def test_a_reused_connection_closed_by_the_server_is_retried_once_on_a_fresh_one():
    async def handler(reader, writer):
        first_connection = server.connections == 1
        await read_request(reader)
        writer.write(answer(b"answered"))
        await writer.drain()
        if first_connection:  # the next request on this connection is read and dropped without an answer
            await read_request(reader)
            writer.transport.abort()

    async with Server(handler) as server:
        transport = AiohttpTransport()
        assert (await call(transport, server.url()))[1] == b"answered"
        assert (await call(transport, server.url(), body=b"POST, not idempotent"))[1] == b"answered"
        await transport.aclose()
    assert server.connections == 2


async def test_cut_stall_refused_and_garbage_are_the_httpx_errors_the_gateway_handles():
    async def handler(reader, writer):
        head, body = await read_request(reader)
        if body == b"cut":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b")
        elif body == b"cut-chunked":
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
        elif body in (b"stall", b"stall-head"):
            if body == b"stall":
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nslow")
                await writer.drain()
            await asyncio.sleep(1.0)
        elif body == b"garbage":
            writer.write(b"SMTP ready\r\n\r\n")
        elif body == b"silent":
            pass
        await writer.drain()

    async with Server(handler) as server:
        transport = AiohttpTransport()
        for body, errors in [(b"cut", httpx2.RemoteProtocolError), (b"cut-chunked", httpx2.RemoteProtocolError),
                             (b"stall", httpx2.ReadTimeout), (b"stall-head", httpx2.ReadTimeout),
                             (b"garbage", httpx2.RemoteProtocolError), (b"silent", httpx2.RemoteProtocolError)]:
            with pytest.raises(errors):
                await call(transport, server.url(), body=body, read=0.2)
        await transport.aclose()
    refused = AiohttpTransport()
    with pytest.raises(httpx2.ConnectError):
        await call(refused, f"http://127.0.0.1:{free_port()}/v1/messages")
    await refused.aclose()


async def test_the_connection_limit_holds_and_waiting_past_the_pool_timeout_is_a_connect_timeout():
    release = asyncio.Event()

    async def handler(reader, writer):
        while True:
            _, body = await read_request(reader)
            if body == b"hold":
                writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\nheld\r\n")
                await writer.drain()
                await release.wait()
                writer.write(b"0\r\n\r\n")
            else:
                writer.write(answer(b"free"))
            await writer.drain()

    async with Server(handler) as server:
        transport = AiohttpTransport(max_connections=1)
        held = await transport.handle_async_request(
            httpx2.Request("POST", server.url(), content=b"hold", extensions=timeouts()))
        waiting = httpx2.Request("POST", server.url(), content=b"wait", extensions=timeouts(connect=0.1, pool=0.1))
        with pytest.raises(httpx2.ConnectTimeout):  # the one connection is busy with the held answer
            await transport.handle_async_request(waiting)
        release.set()
        assert await held.aread() == b"held"
        await held.aclose()
        assert (await call(transport, server.url(), body=b"next"))[1] == b"free"
        await transport.aclose()
    assert server.connections == 1


def test_a_transport_is_usable_again_from_a_new_event_loop():
    async def handler(reader, writer):
        while True:
            await read_request(reader)
            writer.write(answer(b"hi"))
            await writer.drain()

    transport = AiohttpTransport()

    async def once(close: bool) -> bytes:
        async with Server(handler) as server:
            data = (await call(transport, server.url()))[1]
        if close:
            await transport.aclose()
        return data

    assert asyncio.run(once(close=False)) == b"hi"
    assert asyncio.run(once(close=True)) == b"hi"  # the first loop (and its session) is gone


async def test_tls_is_verified_and_a_custom_context_is_used(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                           str(cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                          capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"openssl cannot make a test certificate: {made.stderr[-200:]!r}")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)

    async def handler(reader, writer):
        await read_request(reader)
        writer.write(answer(b"secure"))
        await writer.drain()

    async with Server(handler, server_context) as server:
        trusting = AiohttpTransport(ssl_context=ssl.create_default_context(cafile=str(cert)))
        response, data = await call(trusting, server.url(scheme="https"))
        assert data == b"secure"
        await trusting.aclose()
        default = AiohttpTransport()
        with pytest.raises(httpx2.ConnectError):  # the default context does not trust a self-signed certificate
            await call(default, server.url(scheme="https"))
        await default.aclose()


# ---- the whole gateway through it ---------------------------------------------------------------------------------


@pytest.fixture
def emulator_on_a_socket():
    from parity.emulator.clock import ManualClock
    from parity.emulator.faults import FaultSchedule
    from parity.emulator.service import Emulator

    emulator = Emulator(brain=ModelBrain(), clock=ManualClock(),
                        faults=FaultSchedule(timeout_s=0.3, stall_s=0.6, retry_after_s=1, retry_after_ms=5))
    emulator.batches.processing_s = "instant"
    with uvicorn_on_socket(emulator.app()) as base_url:
        yield base_url


def test_the_gateway_over_real_sockets_with_the_aiohttp_transport(make, emulator_on_a_socket):
    harness = make(upstream=emulator_on_a_socket, upstream_transport="network", upstream_key="sk-emulator", read_timeout_s=0.3)
    assert isinstance(harness.gateway.upstream.transport, AiohttpTransport)
    params = dict(model=BASELINE, max_tokens=200, messages=USER)
    with harness.sdk() as sdk:
        for _ in range(3):
            assert sdk.messages.create(**params).content[0].text == GOOD_BASELINE
        with sdk.messages.stream(**params) as stream:
            assert stream.get_final_message().content[0].text == GOOD_BASELINE
        assert sdk.messages.count_tokens(model=BASELINE, messages=USER).input_tokens > 0
        batch = sdk.messages.batches.create(requests=[{"custom_id": "a", "params": params}])
        results = list(sdk.messages.batches.results(batch.id))
        assert results[0].result.type == "succeeded"
        with pytest.raises(anthropic.APIStatusError) as cut:
            with sdk.messages.stream(**params, extra_headers={"x-emulator-fault": "cut_stream"}) as stream:
                stream.get_final_message()
        assert "incomplete" in cut.value.body["error"]["message"]
        with pytest.raises(anthropic.APIStatusError):  # stalls past the gateway's read timeout: an error event
            with sdk.messages.stream(**params, extra_headers={"x-emulator-fault": "stall"}) as stream:
                stream.get_final_message()
        with pytest.raises(anthropic.OverloadedError):
            sdk.messages.create(**params, extra_headers={"x-emulator-fault": "overloaded"})
    rows = harness.ledger(at_least=7)  # 3 creates, 3 streams, the 529 (count_tokens and batches are not ledgered)
    assert [(row.route, row.status_code) for row, _ in rows] == [("passthrough", 200)] * 6 + [("passthrough", 529)]
    assert [ex.error["error"]["type"] for _, ex in rows[4:6]] == ["cut", "stall"]
