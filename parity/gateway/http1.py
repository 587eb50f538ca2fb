"""A lean HTTP/1.1 client transport for the gateway's one upstream: `Http1Transport`, an httpx2 transport.

Why not httpx2's own `AsyncHTTPTransport`: its pure-Python stack (httpcore2 + h11 + anyio) costs ~1.5 ms of CPU
per request on a modest core, most of the latency the gateway adds (measured by `bench/gateway_overhead.py`).
The gateway talks to one host (the API or the emulator), sends bodies it already holds in memory, and relays
answers; that needs a small subset of HTTP/1.1, written here on asyncio streams:

* requests: method, raw path and query, the headers httpx2 built (Host and Content-Length included), the body;
* answers: status line and headers, then a body framed by Content-Length, chunked transfer coding, or the
  connection closing; HEAD, 1xx, 204 and 304 have none;
* keep-alive: idle connections are reused newest first and dropped after `keepalive_expiry` seconds, when the
  server closed them, or when they belong to another event loop; a request that fails on a reused connection
  before any byte of the answer arrived (the server closed it just as it was reused) is sent once more on a
  fresh connection;
* TLS with certificate verification (certifi's bundle when installed), ALPN `http/1.1`;
* timeouts from the request's `timeout` extension (connect, read between chunks, write), failures raised as the
  httpx2 exceptions the rest of the gateway already handles (`ConnectError`, `ReadTimeout`,
  `RemoteProtocolError`, ...), so retries, fallbacks and stream-cut handling behave exactly as before.

Not supported (the gateway never needs them): HTTP/2, proxies, streaming request bodies larger than memory,
`Expect: 100-continue`, response trailers (read and ignored).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator

import httpx2

MAX_HEAD_BYTES = 64 * 1024
READ_SIZE = 64 * 1024


class _Conn:
    """One open connection and the loop it belongs to."""

    __slots__ = ("reader", "writer", "loop", "idle_since")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, loop: asyncio.AbstractEventLoop):
        self.reader, self.writer, self.loop = reader, writer, loop
        self.idle_since = 0.0

    def usable(self, loop: asyncio.AbstractEventLoop, now: float, expiry: float) -> bool:
        return (
            self.loop is loop and not self.writer.transport.is_closing() and not self.reader.at_eof()
            and len(self.reader._buffer) == 0 and now - self.idle_since < expiry  # type: ignore[attr-defined]
        )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


def _default_ssl_context() -> ssl.SSLContext:
    try:
        import certifi

        context = ssl.create_default_context(cafile=certifi.where())
    except ImportError:
        context = ssl.create_default_context()
    context.set_alpn_protocols(["http/1.1"])
    return context


class Http1Transport(httpx2.AsyncBaseTransport):
    """See the module docstring. `max_idle`: idle connections kept per host; `ssl_context`: for https (default:
    verified against certifi's or the system's CAs)."""

    def __init__(self, *, max_idle: int = 200, keepalive_expiry: float = 5.0, ssl_context: ssl.SSLContext | None = None):
        self.max_idle = max_idle
        self.keepalive_expiry = keepalive_expiry
        self._ssl = ssl_context
        self._idle: dict[tuple[str, str, int], list[_Conn]] = {}
        self._closed = False

    # ---- connections ------------------------------------------------------------------------------------------

    async def _open(self, scheme: str, host: str, port: int, timeout: float | None, request: httpx2.Request) -> _Conn:
        context = None
        if scheme == "https":
            if self._ssl is None:
                self._ssl = _default_ssl_context()
            context = self._ssl
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=context, server_hostname=host if context else None, limit=MAX_HEAD_BYTES)
        except TimeoutError:
            raise httpx2.ConnectTimeout(f"no connection to {host}:{port} within {timeout} s", request=request) from None
        except (OSError, ssl.SSLError) as exc:
            raise httpx2.ConnectError(str(exc) or type(exc).__name__, request=request) from None
        return _Conn(reader, writer, asyncio.get_running_loop())

    def _take_idle(self, key: tuple[str, str, int]) -> _Conn | None:
        pool = self._idle.get(key)
        if not pool:
            return None
        loop, now = asyncio.get_running_loop(), time.monotonic()
        while pool:
            conn = pool.pop()
            if conn.usable(loop, now, self.keepalive_expiry):
                return conn
            if conn.loop is loop or conn.loop.is_closed():
                conn.close()
        return None

    def _release(self, key: tuple[str, str, int], conn: _Conn) -> None:
        pool = self._idle.setdefault(key, [])
        if self._closed or len(pool) >= self.max_idle:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        pool.append(conn)

    # ---- one exchange -----------------------------------------------------------------------------------------

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        url = request.url
        scheme = url.scheme
        if scheme not in ("http", "https"):
            raise httpx2.UnsupportedProtocol(f"{scheme!r} is not http or https", request=request)
        host = url.host
        port = url.port or (443 if scheme == "https" else 80)
        key = (scheme, host, port)
        timeouts = request.extensions.get("timeout") or {}
        try:
            body = request.content
        except httpx2.RequestNotRead:
            body = await request.aread()
        head = [f"{request.method} ".encode("ascii"), url.raw_path, b" HTTP/1.1\r\n"]
        for name, value in request.headers.raw:
            head += [name, b": ", value, b"\r\n"]
        head.append(b"\r\n")
        payload = b"".join(head) + body

        for attempt in (0, 1):
            conn = self._take_idle(key) if attempt == 0 else None
            reused = conn is not None
            if conn is None:
                conn = await self._open(scheme, host, port, timeouts.get("connect"), request)
            try:
                await self._write(conn, payload, timeouts.get("write"), request)
                status, reason, headers, version = await self._read_head(conn, timeouts.get("read"), request)
            except _Stale:
                conn.close()
                if reused:
                    continue  # the server closed this idle connection as we reused it: once more, on a fresh one
                raise httpx2.RemoteProtocolError("Server disconnected without sending a response.", request=request) from None
            except BaseException:
                conn.close()
                raise
            break
        try:
            framing, length = _framing(request.method, status, headers)
        except ValueError as exc:
            conn.close()
            raise httpx2.RemoteProtocolError(str(exc), request=request) from None
        keep_alive = _keep_alive(version, headers) and framing != "close"
        stream = _Body(self, key, conn, framing, length, keep_alive, timeouts.get("read"), request)
        return httpx2.Response(status, headers=headers, stream=stream,
                               extensions={"http_version": version, "reason_phrase": reason})

    async def _write(self, conn: _Conn, payload: bytes, timeout: float | None, request: httpx2.Request) -> None:
        try:
            conn.writer.write(payload)
            if conn.writer.transport.get_write_buffer_size() > READ_SIZE:
                async with asyncio.timeout(timeout):
                    await conn.writer.drain()
        except TimeoutError:
            raise httpx2.WriteTimeout(f"the request was not sent within {timeout} s", request=request) from None
        except (ConnectionError, OSError):
            raise _Stale() from None

    async def _read_head(self, conn: _Conn, timeout: float | None, request: httpx2.Request
                         ) -> tuple[int, bytes, list[tuple[bytes, bytes]], bytes]:
        try:
            async with asyncio.timeout(timeout):
                while True:
                    raw = await conn.reader.readuntil(b"\r\n\r\n")
                    status, reason, headers, version = _parse_head(raw, request)
                    if status != 100:  # `100 Continue` (never asked for, but legal): the real answer follows
                        return status, reason, headers, version
        except TimeoutError:
            raise httpx2.ReadTimeout(f"no answer within {timeout} s", request=request) from None
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                raise _Stale() from None
            raise httpx2.RemoteProtocolError("the server closed the connection in the middle of the answer's head",
                                             request=request) from None
        except asyncio.LimitOverrunError:
            raise httpx2.RemoteProtocolError(f"the answer's head is longer than {MAX_HEAD_BYTES} bytes",
                                             request=request) from None
        except (ConnectionError, OSError):
            raise _Stale() from None

    async def aclose(self) -> None:
        self._closed = True
        for pool in self._idle.values():
            for conn in pool:
                conn.close()
        self._idle.clear()


class _Stale(Exception):
    """The connection failed before any byte of the answer arrived."""


def _parse_head(raw: bytes, request: httpx2.Request) -> tuple[int, bytes, list[tuple[bytes, bytes]], bytes]:
    lines = raw[:-4].split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    code, _, reason = rest.partition(b" ")
    if not version.startswith(b"HTTP/1.") or not code.isdigit() or len(code) != 3:
        raise httpx2.RemoteProtocolError(f"not an HTTP/1.x status line: {lines[0][:80]!r}", request=request)
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise httpx2.RemoteProtocolError(f"malformed header line {line[:80]!r}", request=request)
        headers.append((name, value.strip()))
    return int(code), reason, headers, version


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    found = None
    for key, value in headers:
        if key.lower() == name:
            found = value if found is None else found + b"," + value
    return found


def _framing(method: str, status: int, headers: list[tuple[bytes, bytes]]) -> tuple[str, int]:
    """("none" | "length" | "chunked" | "close", content length) of an answer (RFC 9112 §6.3)."""
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return "none", 0
    coding = _header(headers, b"transfer-encoding")
    if coding is not None:
        return ("chunked", 0) if coding.lower().rstrip().endswith(b"chunked") else ("close", 0)
    length = _header(headers, b"content-length")
    if length is not None:
        values = {v.strip() for v in length.split(b",")}
        if len(values) != 1 or not next(iter(values)).isdigit():
            raise ValueError(f"invalid content-length {length[:40]!r}")
        return "length", int(next(iter(values)))
    return "close", 0


def _keep_alive(version: bytes, headers: list[tuple[bytes, bytes]]) -> bool:
    tokens = {t.strip().lower() for t in (_header(headers, b"connection") or b"").split(b",")}
    if version == b"HTTP/1.0":
        return b"keep-alive" in tokens
    return b"close" not in tokens


class _Body(httpx2.AsyncByteStream):
    """An answer's body, read as the caller iterates; the connection goes back to the pool once it was read to the
    end (and is closed otherwise: an answer abandoned half-way leaves the connection in an unknown state)."""

    def __init__(self, transport: Http1Transport, key: tuple[str, str, int], conn: _Conn, framing: str, length: int,
                 keep_alive: bool, timeout: float | None, request: httpx2.Request):
        self._transport, self._key, self._conn = transport, key, conn
        self._framing, self._length, self._keep_alive = framing, length, keep_alive
        self._timeout, self._request = timeout, request
        self._complete = framing == "none" or (framing == "length" and length == 0)
        self._released = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._complete:
            return
        reader = self._conn.reader
        try:
            if self._framing == "length":
                remaining = self._length
                while remaining:
                    async with asyncio.timeout(self._timeout):
                        chunk = await reader.read(min(remaining, READ_SIZE))
                    if not chunk:
                        raise httpx2.RemoteProtocolError(
                            "peer closed connection without sending complete message body (incomplete chunked read)",
                            request=self._request)
                    remaining -= len(chunk)
                    yield chunk
            elif self._framing == "chunked":
                async for chunk in self._chunks(reader):
                    yield chunk
            else:
                while True:
                    async with asyncio.timeout(self._timeout):
                        chunk = await reader.read(READ_SIZE)
                    if not chunk:
                        break
                    yield chunk
            self._complete = True
        except TimeoutError:
            raise httpx2.ReadTimeout(f"no bytes of the answer within {self._timeout} s", request=self._request) from None
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            raise httpx2.RemoteProtocolError(
                "peer closed connection without sending complete message body (incomplete chunked read)",
                request=self._request) from None
        except (ConnectionError, OSError) as exc:
            raise httpx2.ReadError(f"{type(exc).__name__} while reading the answer", request=self._request) from None
        finally:
            if self._complete:
                await self.aclose()

    async def _chunks(self, reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
        while True:
            async with asyncio.timeout(self._timeout):
                line = await reader.readuntil(b"\r\n")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise httpx2.RemoteProtocolError(f"malformed chunk size line {line[:40]!r}", request=self._request) from None
            if size == 0:
                async with asyncio.timeout(self._timeout):
                    while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, ignored
                        pass
                return
            while size:  # pass on what arrived so far: a stream's event is not held back for the chunk's end
                async with asyncio.timeout(self._timeout):
                    data = await reader.read(min(size, READ_SIZE))
                if not data:
                    raise asyncio.IncompleteReadError(b"", size)
                size -= len(data)
                yield data
            async with asyncio.timeout(self._timeout):
                end = await reader.readexactly(2)
            if end != b"\r\n":
                raise httpx2.RemoteProtocolError("a chunk did not end with CRLF", request=self._request)

    async def aclose(self) -> None:
        if self._released:
            return
        self._released = True
        if self._complete and self._keep_alive:
            self._transport._release(self._key, self._conn)
        else:
            self._conn.close()


__all__ = ["Http1Transport"]

