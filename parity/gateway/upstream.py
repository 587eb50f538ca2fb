"""The one HTTP client the gateway has: to the configured upstream only, with its own key, retries and breakers.

Why it is built this way:

* The URL is always the configured base plus a path the gateway chose; nothing in a request (Host, an absolute
  or `//host` path, a header) can send a call elsewhere.
* Client headers are forwarded (`anthropic-version`, `anthropic-beta`, `x-stainless-*`, the emulator's
  `x-emulator-fault`, ...) except hop-by-hop headers, the client's credential and the gateway's own
  `x-parity-*` headers. The upstream key is added here and nowhere else; `scrub` removes it from any text that
  could leave the process (errors, logs, the ledger).
* `accept-encoding: identity` upstream: the gateway relays bytes and parses streams, so it wants them plain.
* Every call is `send`: retries per `RetryPolicy`, a `CircuitBreaker` per model, and failures without an HTTP
  answer (timeout, refused connection, a body cut short, a 2xx that is not JSON) raised as `UpstreamFailure`,
  which knows the API error the client should get for it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import httpx2

from parity.api.errors import APIError
from parity.gateway.aiohttp_transport import AiohttpTransport
from parity.gateway.retry import CircuitBreaker, RetryPolicy

log = logging.getLogger("parity.gateway")

DEFAULT_UPSTREAM = "https://api.anthropic.com"

#: Request headers never forwarded: hop-by-hop, recomputed, the client's credential, and the gateway's own.
DROP_REQUEST = frozenset(
    {
        "host", "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
        "te", "trailer", "trailers", "transfer-encoding", "upgrade", "content-length", "accept-encoding",
        "authorization", "x-api-key", "cookie", "forwarded", "x-forwarded-for", "x-forwarded-host",
        "x-forwarded-proto", "x-real-ip",
    }
)
#: Response headers never relayed: hop-by-hop and length/encoding (the gateway's server sets its own).
DROP_RESPONSE = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-connection", "te", "trailer", "trailers",
        "transfer-encoding", "upgrade", "content-length", "content-encoding", "server", "date", "set-cookie",
    }
)
GATEWAY_HEADER_PREFIX = "x-parity-"


class UpstreamFailure(Exception):
    """No usable HTTP answer from the upstream: `kind` is timeout | connection | protocol | malformed | circuit_open
    | stall | cut | error_event. `api_error()` is what a client gets for it (never the upstream key)."""

    STATUS = {
        "timeout": (504, "timeout_error"),
        "stall": (504, "timeout_error"),
        "connection": (502, "api_error"),
        "protocol": (502, "api_error"),
        "malformed": (502, "api_error"),
        "cut": (502, "api_error"),
        "error_event": (502, "api_error"),
        "circuit_open": (529, "overloaded_error"),
    }

    def __init__(self, kind: str, detail: str, *, retries: int = 0, retry_after_s: float | None = None):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.retries = retries
        self.retry_after_s = retry_after_s

    def api_error(self) -> APIError:
        status, kind = self.STATUS.get(self.kind, (502, "api_error"))
        headers = {}
        if self.retry_after_s is not None:
            headers["retry-after"] = str(max(1, int(self.retry_after_s + 0.999)))
        what = {
            "timeout": "The upstream API did not answer in time",
            "stall": "The upstream stream stalled",
            "connection": "The gateway could not reach the upstream API",
            "protocol": "The upstream API dropped the connection before the answer was complete",
            "malformed": "The upstream API answered with a body that is not valid JSON",
            "cut": "The upstream stream was cut before the answer was complete",
            "error_event": "The upstream stream reported an error",
            "circuit_open": "The model is failing at the upstream; the gateway is not sending it requests for now",
        }.get(self.kind, "The upstream API failed")
        suffix = f" after {self.retries + 1} attempts" if self.retries else ""
        return APIError(status, f"{what}{suffix} (parity gateway: {self.detail}); retry the request", type=kind, headers=headers)


@dataclass
class Answer:
    """An HTTP answer from the upstream. Either `body` is read (errors, non-streaming calls), or `response` is an
    open 2xx streaming response the caller must `aclose()`. `data` is the decoded JSON body when one was expected."""

    status: int
    headers: httpx2.Headers
    body: bytes | None = None
    response: httpx2.Response | None = None
    data: Any = None
    retries: int = 0
    attempts: list[str] = field(default_factory=list)  # why each earlier attempt was retried

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class Upstream:
    """An httpx2 transport bound to one base URL and one key (see the module docstring)."""

    def __init__(
        self,
        base_url: str = DEFAULT_UPSTREAM,
        *,
        api_key: str | None = None,
        transport: httpx2.AsyncBaseTransport | None = None,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 600.0,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        max_connections: int = 1000,
        http_client: str = "lean",
    ):
        self.base = httpx2.URL(base_url.rstrip("/") + "/")
        if self.base.scheme not in ("http", "https") or not self.base.host:
            raise ValueError(f"upstream must be an http(s) URL such as {DEFAULT_UPSTREAM}, got {base_url!r}")
        self.api_key = api_key or None
        self.retry = retry or RetryPolicy()
        self.breaker = breaker or CircuitBreaker()
        self.timeout = httpx2.Timeout(connect=connect_timeout_s, read=read_timeout_s, write=60.0, pool=30.0)
        # The transport is called directly, not through an httpx2.AsyncClient: the client's layers (auth flows,
        # redirects, cookies, URL and header merging) cost ~0.3 ms a request and the gateway needs none of them.
        # By default it is the aiohttp-based transport (`aiohttp_transport`, a C-accelerated HTTP parser, ~1 ms a
        # request less than httpx2's pure-Python stack); `http_client="httpx"` uses httpx2's own.
        if transport is None and http_client == "httpx":
            transport = httpx2.AsyncHTTPTransport(
                limits=httpx2.Limits(max_connections=max_connections, max_keepalive_connections=min(200, max_connections)),
                trust_env=False,
            )
        elif transport is None:
            transport = AiohttpTransport(max_connections=max_connections)
        self.transport: httpx2.AsyncBaseTransport = transport
        self._key_bytes = self.api_key.encode() if self.api_key else None

    # ---- building the call ------------------------------------------------------------------------------------

    def url(self, path: str, query: bytes | str = b"") -> httpx2.URL:
        """The upstream URL for `path` (a path the gateway routed, starting with /v1/, as received: still
        percent-encoded, so `%2F` inside an id stays inside that id), on the configured base.

        Raises ValueError for a path that is not one to forward: outside /v1/, with empty or dot segments (also
        when percent-encoded), or with bytes a URL cannot carry."""
        decoded = unquote(path)
        if (
            not path.startswith("/v1/") or not decoded.startswith("/v1/") or "//" in decoded or "\\" in decoded
            or any(seg in (".", "..") for seg in decoded.split("/"))
        ):
            raise ValueError(f"refusing to forward path {path!r}")
        try:
            raw = self.base.raw_path + path.lstrip("/").encode("ascii")
            if isinstance(query, str):
                query = query.encode("ascii")
            if query:
                raw += b"?" + query
            return self.base.copy_with(raw_path=raw)
        except (UnicodeEncodeError, httpx2.InvalidURL):
            raise ValueError(f"refusing to forward path {path!r}: it is not a valid URL path") from None

    def headers(self, incoming: Iterable[tuple[bytes, bytes]], *, extra: dict[str, str] | None = None) -> list[tuple[bytes, bytes]]:
        """Forwarded request headers (see DROP_REQUEST) plus the upstream credential and `extra`."""
        out: list[tuple[bytes, bytes]] = []
        client_key: tuple[bytes, bytes] | None = None
        for name, value in incoming:
            lower = name.lower()
            text = lower.decode("latin-1")
            if text in ("x-api-key", "authorization") and self.api_key is None and client_key is None:
                client_key = (lower, value)  # no upstream key configured: the client's own credential goes on
                continue
            if text in DROP_REQUEST or text.startswith(GATEWAY_HEADER_PREFIX):
                continue
            if extra and text in extra:
                continue
            out.append((lower, value))
        if self.api_key is not None:
            out.append((b"x-api-key", self._key_bytes))  # type: ignore[arg-type]
        elif client_key is not None:
            out.append(client_key)
        out.append((b"accept-encoding", b"identity"))
        for name, value in (extra or {}).items():
            out.append((name.encode("latin-1"), value.encode("latin-1")))
        return out

    def scrub(self, text: str) -> str:
        """`text` with the upstream key replaced (for anything that may leave the process)."""
        if self.api_key and self.api_key in text:
            return text.replace(self.api_key, "[upstream-key]")
        return text

    def scrub_bytes(self, data: bytes) -> bytes:
        if self._key_bytes and self._key_bytes in data:
            return data.replace(self._key_bytes, b"[upstream-key]")
        return data

    # ---- calling ----------------------------------------------------------------------------------------------

    async def send(
        self,
        method: str,
        path: str,
        *,
        headers: list[tuple[bytes, bytes]],
        content: bytes | None = None,
        query: bytes | str = b"",
        model: str | None = None,
        stream: bool = False,
        expect_json: bool = True,
        retries: bool = True,
        timeout: httpx2.Timeout | None = None,
        optional: bool = False,
    ) -> Answer:
        """One upstream call, retried per the policy. Returns the final HTTP answer (2xx or not); raises
        UpstreamFailure when there was none. `stream`: a 2xx answer comes back open (caller closes it).

        `model`'s breaker is told every outcome, but only an `optional` call (one with an alternative: a routed
        candidate, which has its baseline; a shadow copy) is refused by an open breaker. A call with no
        alternative always goes upstream, with its retries: failing it fast would fail the client for a fault
        the gateway only suspects (and a malformed request the upstream would refuse with a 400 would get 529)."""
        url = self.url(path, query)
        taken = 0
        notes: list[str] = []
        while True:
            if optional and model is not None and not self.breaker.allow(model):
                raise UpstreamFailure(
                    "circuit_open", f"model {model} failed repeatedly", retries=taken,
                    retry_after_s=self.breaker.retry_after(model),
                )
            answer: Answer | None = None
            failure: UpstreamFailure | None = None
            try:
                answer = await self._attempt(method, url, headers, content, stream, expect_json, timeout)
            except UpstreamFailure as exc:
                failure = exc
            status = answer.status if answer is not None else None
            broken = failure is not None or (status is not None and status >= 500)
            if model is not None:
                if broken:
                    self.breaker.failure(model)
                elif status == 429:
                    self.breaker.release(model)
                else:
                    self.breaker.success(model)
            if failure is not None:
                retryable = True  # no answer, a cut body, a 2xx that is not JSON: server faults, as the SDK sees them
            else:
                retryable = answer is not None and not answer.ok and self.retry.should_retry(status, answer.headers)
            retryable = retryable and retries and taken < self.retry.max_retries
            if retryable:
                wait = self.retry.delay(taken, answer.headers if answer is not None else None)
                if wait is not None:
                    notes.append(failure.kind if failure is not None else str(status))
                    taken += 1
                    if wait:
                        await asyncio.sleep(wait)
                    continue
            if failure is not None:
                failure.retries = taken
                raise failure
            assert answer is not None
            answer.retries = taken
            answer.attempts = notes
            return answer

    async def _attempt(
        self,
        method: str,
        url: httpx2.URL,
        headers: list[tuple[bytes, bytes]],
        content: bytes | None,
        stream: bool,
        expect_json: bool,
        timeout: httpx2.Timeout | None,
    ) -> Answer:
        request = httpx2.Request(method, url, headers=headers, content=content,
                                 extensions={"timeout": (timeout or self.timeout).as_dict()})
        try:
            response = await self.transport.handle_async_request(request)
            response.request = request
        except httpx2.TimeoutException as exc:
            raise UpstreamFailure("timeout", f"no answer within the timeout ({type(exc).__name__})") from None
        except httpx2.TransportError as exc:
            raise UpstreamFailure("connection", f"{type(exc).__name__}: {self.scrub(str(exc))[:200]}") from None
        if stream and 200 <= response.status_code < 300:
            return Answer(response.status_code, response.headers, response=response)
        try:
            body = await response.aread()
        except httpx2.TimeoutException:
            raise UpstreamFailure("timeout", "the answer's body did not arrive in time") from None
        except httpx2.TransportError as exc:
            raise UpstreamFailure("protocol", f"{type(exc).__name__} while reading the answer") from None
        finally:
            await response.aclose()
        answer = Answer(response.status_code, response.headers, body=body)
        if answer.ok and expect_json:
            try:
                answer.data = json.loads(body)
            except (ValueError, UnicodeDecodeError):
                raise UpstreamFailure("malformed", f"HTTP {response.status_code} body of {len(body)} bytes is not JSON") from None
        return answer

    async def request_json(self, method: str, path: str, *, body: Any = None, headers: dict[str, str] | None = None,
                           query: str = "", model: str | None = None) -> Answer:
        """A gateway-originated call (shadow, deferral, judge): JSON in, JSON out, default API headers."""
        base = {"anthropic-version": "2023-06-01", "content-type": "application/json"}
        base.update(headers or {})
        content = json.dumps(body, separators=(",", ":")).encode() if body is not None else None
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in base.items()]
        return await self.send(method, path, headers=self.headers(raw), content=content, query=query, model=model)

    async def aclose(self) -> None:
        await self.transport.aclose()


def response_headers(headers: httpx2.Headers) -> dict[str, str]:
    """Upstream response headers worth relaying to the client (see DROP_RESPONSE)."""
    return {k: v for k, v in headers.items() if k.lower() not in DROP_RESPONSE}
