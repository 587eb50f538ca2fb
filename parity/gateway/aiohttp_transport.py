"""The gateway's default client to its upstream: `AiohttpTransport`, an httpx2 async transport on aiohttp.

Why aiohttp: httpx2's own `AsyncHTTPTransport` (httpcore2 + h11 + anyio, pure Python) costs ~1.5 ms of CPU per
request on a modest core, most of the latency the gateway adds (`bench/gateway_overhead.py`); aiohttp's HTTP
parser is C-accelerated and its keep-alive pool, TLS and framing are well kept, so the gateway does not carry an
HTTP client of its own. The rest of the gateway keeps speaking httpx2 (requests, responses, exceptions), so
retries, fallbacks and stream-cut handling behave the same whichever transport is configured.

What this adapter guarantees:

* the request goes out as httpx2 built it: method, the raw path and query (never re-encoded, so `%2F` inside an
  id stays inside that id), the headers (Host and Content-Length included; aiohttp adds none of its own
  `Accept`, `Accept-Encoding`, `User-Agent` or `Content-Type`), the body; no redirects followed, no cookies kept;
* bodies are relayed as the upstream sent them: never decompressed (the `content-encoding` header stays true),
  streamed chunk by chunk as they arrive (SSE events are not held back);
* timeouts from the request's `timeout` extension: `connect` (opening the socket), `pool` (waiting for a free
  connection, added to `connect`: aiohttp bounds the two together), `read` (between any two reads, the answer's
  head included). aiohttp has no separate write timer; the read timer runs from the moment the request is
  sent, so a request the server does not take within `read` seconds fails with `ReadTimeout`;
* failures are the httpx2 exceptions (`ConnectError`, `ConnectTimeout`, `ReadTimeout`, `RemoteProtocolError`,
  `ReadError`, ...); a request whose reused keep-alive connection turns out closed by the server before any
  byte of the answer is sent once more (aiohttp itself only does that for idempotent methods);
* keep-alive up to `max_connections` connections, idle ones dropped after `keepalive_expiry` seconds; TLS
  verified against certifi's bundle (else the system's CAs) unless an `ssl_context` is given;
* the aiohttp session is made inside the running event loop on first use (and again if the transport is later
  used from another loop); `aclose()` closes it.
"""

from __future__ import annotations

import asyncio
import ssl
import weakref
from collections.abc import AsyncIterator
from contextvars import ContextVar
from typing import Any

import aiohttp
import httpx2
import yarl

#: aiohttp headers it would add on its own; the gateway sends exactly the headers httpx2 built.
SKIP_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")
MAX_FIELD_SIZE = 64 * 1024


def default_ssl_context() -> ssl.SSLContext:
    """Certificate verification against certifi's CA bundle when installed, else the system's."""
    try:
        import certifi

        return ssl.create_default_context(cafile=certifi.where())
    except ImportError:
        return ssl.create_default_context()


#: Per attempt: {"reused": bool} filled in by `_Connector` once the request has its connection.
_ATTEMPT: ContextVar[dict[str, bool] | None] = ContextVar("parity_aiohttp_attempt", default=None)


class _Connector(aiohttp.TCPConnector):
    """A TCPConnector that notes whether a request got a reused keep-alive connection (aiohttp says so only
    through request tracing, which costs ~40 µs a request)."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._parity_used: weakref.WeakSet[Any] = weakref.WeakSet()

    async def connect(self, req: Any, traces: Any, timeout: Any) -> Any:
        conn = await super().connect(req, traces, timeout)
        proto = conn.protocol
        if proto is not None:
            note = _ATTEMPT.get()
            if note is not None:
                note["reused"] = proto in self._parity_used
            self._parity_used.add(proto)
        return conn


class AiohttpTransport(httpx2.AsyncBaseTransport):
    """See the module docstring. `max_connections`: open connections at most (busy and idle together);
    `keepalive_expiry`: seconds an idle connection is kept; `ssl_context`: for https (default: verified)."""

    def __init__(self, *, max_connections: int = 1000, keepalive_expiry: float = 5.0,
                 ssl_context: ssl.SSLContext | None = None):
        if max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {max_connections}")
        self.max_connections = max_connections
        self.keepalive_expiry = keepalive_expiry
        self._ssl = ssl_context
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timeouts: dict[tuple[float | None, ...], aiohttp.ClientTimeout] = {}

    def _session_for(self, loop: asyncio.AbstractEventLoop) -> aiohttp.ClientSession:
        if self._session is not None and self._loop is loop and not self._session.closed:
            return self._session
        if self._session is not None and self._loop is not None:
            _forget(self._session, self._loop)  # its connections belong to that loop and cannot be used here
        if self._ssl is None:
            self._ssl = default_ssl_context()
        connector = _Connector(limit=self.max_connections, limit_per_host=0,
                               keepalive_timeout=self.keepalive_expiry, ssl=self._ssl)
        self._session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False,
            skip_auto_headers=SKIP_AUTO_HEADERS, max_field_size=MAX_FIELD_SIZE,
            max_line_size=MAX_FIELD_SIZE, raise_for_status=False,
        )
        self._loop = loop
        return self._session

    def _timeout(self, timeouts: dict[str, float | None]) -> aiohttp.ClientTimeout:
        connect, read, pool = timeouts.get("connect"), timeouts.get("read"), timeouts.get("pool")
        key = (connect, read, pool)
        found = self._timeouts.get(key)
        if found is None:
            found = aiohttp.ClientTimeout(
                total=None, sock_connect=connect, sock_read=read,
                connect=None if connect is None or pool is None else connect + pool,
            )
            if len(self._timeouts) < 64:
                self._timeouts[key] = found
        return found

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx2.UnsupportedProtocol(f"{url.scheme!r} is not http or https", request=request)
        try:
            body: bytes | None = request.content
        except httpx2.RequestNotRead:
            body = await request.aread()
        headers = []
        for name, value in request.headers.raw:
            if name.lower() == b"transfer-encoding":  # the body is in memory: aiohttp frames it by length
                continue
            headers.append((name.decode("latin-1"), value.decode("latin-1")))
        target = yarl.URL(f"{url.scheme}://{url.netloc.decode('ascii')}{url.raw_path.decode('ascii')}", encoded=True)
        session = self._session_for(asyncio.get_running_loop())
        timeout = self._timeout(request.extensions.get("timeout") or {})
        for attempt in (0, 1):
            seen: dict[str, bool] = {}
            token = _ATTEMPT.set(seen)
            try:
                response = await session.request(
                    request.method, target, headers=headers, data=body or None, allow_redirects=False,
                    timeout=timeout,
                )
            except aiohttp.ServerDisconnectedError:
                if attempt == 0 and seen.get("reused"):
                    continue  # the server closed this idle connection just as it was reused: once more
                raise httpx2.RemoteProtocolError("Server disconnected without sending a response.",
                                                 request=request) from None
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
                raise _mapped(exc, request, reading=False) from None
            finally:
                _ATTEMPT.reset(token)
            break
        version = response.version
        return httpx2.Response(
            response.status,
            headers=list(response.raw_headers),
            stream=_Body(response, request),
            extensions={"http_version": b"HTTP/%d.%d" % (version.major, version.minor) if version else b"HTTP/1.1",
                        "reason_phrase": (response.reason or "").encode("latin-1", "replace")},
        )

    async def aclose(self) -> None:
        session, loop = self._session, self._loop
        self._session = self._loop = None
        if session is None or loop is None or session.closed:
            return
        if loop is asyncio.get_running_loop():
            await session.close()
        else:
            _forget(session, loop)


def _forget(session: aiohttp.ClientSession, loop: asyncio.AbstractEventLoop) -> None:
    """Close a session made on another event loop than the running one, as far as that loop allows."""
    if session.closed:
        return
    if loop.is_closed():  # its sockets went with the loop: closing only marks it closed, without waiting
        closing = session.close()
        try:
            closing.send(None)
        except StopIteration:
            return
        closing.close()
    else:
        asyncio.run_coroutine_threadsafe(session.close(), loop)


def _mapped(exc: BaseException, request: httpx2.Request, *, reading: bool) -> httpx2.TransportError:
    """The httpx2 exception for an aiohttp failure (`reading`: while reading the answer's body)."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx2.ConnectTimeout(f"no connection within the timeout: {text}", request=request)
    if isinstance(exc, (aiohttp.SocketTimeoutError, aiohttp.ServerTimeoutError, asyncio.TimeoutError)):
        return httpx2.ReadTimeout(f"no bytes of the answer within the read timeout: {text}", request=request)
    if isinstance(exc, aiohttp.ClientConnectorError):  # refused, unreachable, DNS, TLS verification
        return httpx2.ConnectError(text, request=request)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return httpx2.RemoteProtocolError(
            f"peer closed connection without sending complete message body (incomplete body: {text})", request=request)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return httpx2.RemoteProtocolError(f"server disconnected: {text}", request=request)
    if isinstance(exc, aiohttp.ClientResponseError):  # an answer aiohttp could not parse
        return httpx2.RemoteProtocolError(f"malformed answer: {exc.message}", request=request)
    if isinstance(exc, aiohttp.InvalidURL):
        return httpx2.UnsupportedProtocol(f"invalid URL: {text}", request=request)
    if isinstance(exc, ValueError):
        return httpx2.LocalProtocolError(f"aiohttp refused the request: {text}", request=request)
    if isinstance(exc, aiohttp.ClientConnectionError):  # reset or broken pipe on an open connection
        where = "while reading the answer" if reading else "while sending the request or awaiting its answer"
        return httpx2.ReadError(f"{type(exc).__name__} {where}: {text}", request=request)
    return httpx2.RemoteProtocolError(f"{type(exc).__name__}: {text}", request=request)


class _Body(httpx2.AsyncByteStream):
    """An answer's body as the bytes arrive; `aclose()` gives the connection back to the pool when the body was
    read to the end, and closes it otherwise (an answer abandoned half-way leaves it in an unknown state)."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx2.Request):
        self._response, self._request = response, request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise _mapped(exc, self._request, reading=True) from None
        finally:
            if self._response.content.at_eof():
                self._response.release()

    async def aclose(self) -> None:
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


__all__ = ["AiohttpTransport", "default_ssl_context"]
