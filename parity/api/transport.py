"""In-process httpx2 transports that talk to an ASGI app without a socket, and stream like a socket would.

`httpx2.ASGITransport` collects the whole body before returning, so an SSE stream would arrive all at once and
a stall or cut could not be observed. These transports hand each body chunk to the client as the app sends it,
honour the client's read timeout (a stalled stream raises `httpx2.ReadTimeout`, as over the network), and turn
an app that dies mid-answer into `httpx2.RemoteProtocolError` (what a dropped connection looks like).

* `SyncASGITransport`: for `anthropic.Anthropic`; runs the app on a private event-loop thread.
* `AsyncASGITransport`: for `anthropic.AsyncAnthropic`; runs the app as a task on the caller's loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx2

ASGIApp = Callable[..., Any]
_PEER_CLOSED = "peer closed connection without sending complete message body (incomplete chunked read)"
_NO_RESPONSE = "Server disconnected without sending a response."


class EventLoopThread:
    """One asyncio loop on a daemon thread, started on first use; shared by the sync transports given it."""

    def __init__(self, name: str = "parity-asgi-loop"):
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name=self._name, daemon=True)
                thread.start()
                self._loop = loop
            return self._loop

    def submit(self, coro: Any) -> concurrent.futures.Future:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)


SHARED_LOOP = EventLoopThread()  # one loop thread serves every in-process app by default (handlers never block it)


def _scope(request: httpx2.Request, client: tuple[str, int], root_path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": request.method,
        "headers": [(k.lower(), v) for (k, v) in request.headers.raw],
        "scheme": request.url.scheme,
        "path": request.url.path,
        "raw_path": request.url.raw_path.split(b"?")[0],
        "query_string": request.url.query,
        "server": (request.url.host, request.url.port or (443 if request.url.scheme == "https" else 80)),
        "client": client,
        "root_path": root_path,
    }


def _read_timeout(request: httpx2.Request) -> float | None:
    timeout = request.extensions.get("timeout") or {}
    return timeout.get("read")


class _Exchange:
    """The app side of one request: feeds `receive`, reports `send` messages through a callback."""

    def __init__(self, app: ASGIApp, scope: dict[str, Any], body: bytes, emit: Callable[[tuple], None]):
        self.app, self.scope, self.body, self.emit = app, scope, body, emit
        self.disconnected: asyncio.Event | None = None

    async def run(self) -> None:
        self.disconnected = asyncio.Event()
        body_sent = False

        async def receive() -> dict[str, Any]:
            nonlocal body_sent
            if not body_sent:
                body_sent = True
                return {"type": "http.request", "body": self.body, "more_body": False}
            await self.disconnected.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if self.disconnected.is_set():
                raise OSError("client disconnected")
            if message["type"] == "http.response.start":
                self.emit(("start", message["status"], message.get("headers", [])))
            elif message["type"] == "http.response.body":
                self.emit(("body", message.get("body", b""), message.get("more_body", False)))

        try:
            await self.app(self.scope, receive, send)
        except asyncio.CancelledError:
            self.emit(("error", None))
            raise
        except BaseException as exc:  # the app died: to the client this is a dropped connection
            self.emit(("error", exc))
        else:
            self.emit(("end",))

    def disconnect(self) -> None:
        if self.disconnected is not None:
            self.disconnected.set()


def _take(body: _SyncBody | _AsyncBody, item: tuple) -> bytes:
    """One queued ASGI event as body bytes: marks the body done at its end; a dropped app is a protocol error."""
    if item[0] == "body":
        if not item[2]:
            body._done = True
        return item[1]
    if item[0] == "end":
        body._done = True
        return b""
    body._close()
    raise httpx2.RemoteProtocolError(_PEER_CLOSED, request=body._request)


class _SyncBody(httpx2.SyncByteStream):
    def __init__(self, items: queue.Queue, request: httpx2.Request, close: Callable[[], None], done: bool):
        self._items, self._request, self._close, self._done = items, request, close, done

    def __iter__(self) -> Iterator[bytes]:
        timeout = _read_timeout(self._request)
        while not self._done:
            try:
                item = self._items.get(timeout=timeout)
            except queue.Empty:
                self._close()
                raise httpx2.ReadTimeout("timed out reading the response body", request=self._request) from None
            chunk = _take(self, item)
            if chunk:
                yield chunk

    def close(self) -> None:
        self._close()


class SyncASGITransport(httpx2.BaseTransport):
    """Sync transport: each request runs the app on `loop_thread` (default: one shared daemon thread); the body
    streams chunk by chunk. Do not call it from a coroutine running on that same loop: it would wait on itself."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        loop_thread: EventLoopThread | None = None,
        client: tuple[str, int] = ("127.0.0.1", 123),
        root_path: str = "",
    ):
        self.app = app
        self.loop_thread = loop_thread or SHARED_LOOP
        self.client = client
        self.root_path = root_path

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        body = request.read()
        items: queue.Queue = queue.Queue()
        exchange = _Exchange(self.app, _scope(request, self.client, self.root_path), body, items.put)
        future = self.loop_thread.submit(exchange.run())
        loop = self.loop_thread.loop

        def close() -> None:
            if not future.done():
                loop.call_soon_threadsafe(exchange.disconnect)
                future.cancel()

        try:
            first = items.get(timeout=_read_timeout(request))
        except queue.Empty:
            close()
            raise httpx2.ReadTimeout("timed out waiting for the response", request=request) from None
        return _response(first, request, close, lambda: _SyncBody(items, request, close, done=request.method == "HEAD"))


def _response(first: tuple, request: httpx2.Request, close: Callable[[], None], body: Callable[[], Any]
              ) -> httpx2.Response:
    """The response that the app's first queued event starts (its status and headers), with `body()` as its
    stream; an app that sent anything else first answered nothing the client can read."""
    if first[0] != "start":
        close()
        raise httpx2.RemoteProtocolError(_NO_RESPONSE, request=request)
    _, status, headers = first
    return httpx2.Response(status, headers=headers, stream=body(), extensions={"http_version": b"HTTP/1.1"})


class _AsyncBody(httpx2.AsyncByteStream):
    def __init__(self, items: asyncio.Queue, request: httpx2.Request, close: Callable[[], None], done: bool):
        self._items, self._request, self._close, self._done = items, request, close, done

    async def __aiter__(self) -> AsyncIterator[bytes]:
        timeout = _read_timeout(self._request)
        while not self._done:
            try:
                item = await asyncio.wait_for(self._items.get(), timeout)
            except TimeoutError:
                self._close()
                raise httpx2.ReadTimeout("timed out reading the response body", request=self._request) from None
            chunk = _take(self, item)
            if chunk:
                yield chunk

    async def aclose(self) -> None:
        self._close()


class AsyncASGITransport(httpx2.AsyncBaseTransport):
    """Async transport: the app runs as a task on the caller's event loop; the body streams chunk by chunk."""

    def __init__(self, app: ASGIApp, *, client: tuple[str, int] = ("127.0.0.1", 123), root_path: str = ""):
        self.app = app
        self.client = client
        self.root_path = root_path

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        body = await request.aread()
        items: asyncio.Queue = asyncio.Queue()
        exchange = _Exchange(self.app, _scope(request, self.client, self.root_path), body, items.put_nowait)
        task = asyncio.get_running_loop().create_task(exchange.run())

        def close() -> None:
            if not task.done():
                exchange.disconnect()
                task.cancel()

        try:
            first = await asyncio.wait_for(items.get(), _read_timeout(request))
        except TimeoutError:
            close()
            raise httpx2.ReadTimeout("timed out waiting for the response", request=request) from None
        head = request.method == "HEAD"
        return _response(first, request, close, lambda: _AsyncBody(items, request, close, done=head))
