"""The emulator: `EmulatorCore` (its state and the Messages path, core.py) wired for use: the Starlette app of
every route (server.py), in-process httpx2 transports into it, and `anthropic` SDK clients on those transports."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx2

from parity.api.transport import AsyncASGITransport, SyncASGITransport
from parity.emulator.context import DEFAULT_API_KEY, DEFAULT_BASE_URL
from parity.emulator.core import EmulatorCore
from parity.emulator.server import APIMiddleware, build_app


class Emulator(EmulatorCore):
    """A faithful local Claude API: `EmulatorCore` (same arguments) plus `app()`, `client()` and the transports."""

    _app: APIMiddleware | None = None

    def app(self) -> APIMiddleware:
        """The Starlette app (built once): every route of the emulator behind the API's header checks."""
        if self._app is None:
            self._app = build_app(self)
        return self._app

    def transport(self) -> SyncASGITransport:
        """A sync httpx2 transport into `app()` that streams like a socket (for `anthropic.Anthropic`)."""
        return SyncASGITransport(self.app())

    def async_transport(self) -> AsyncASGITransport:
        """An async httpx2 transport into `app()` (for `anthropic.AsyncAnthropic`)."""
        return AsyncASGITransport(self.app())

    def client(self, **kwargs: Any) -> anthropic.Anthropic:
        """An `anthropic.Anthropic` wired to this emulator in-process (kwargs go to its constructor; the SDK's own
        defaults apply, e.g. max_retries=2)."""
        kwargs.setdefault("base_url", DEFAULT_BASE_URL)
        kwargs.setdefault("api_key", DEFAULT_API_KEY)
        if "http_client" not in kwargs:
            kwargs["http_client"] = httpx2.Client(transport=self.transport())
        return anthropic.Anthropic(**kwargs)

    def async_client(self, **kwargs: Any) -> anthropic.AsyncAnthropic:
        """An `anthropic.AsyncAnthropic` wired to this emulator in-process."""
        kwargs.setdefault("base_url", DEFAULT_BASE_URL)
        kwargs.setdefault("api_key", DEFAULT_API_KEY)
        if "http_client" not in kwargs:
            kwargs["http_client"] = httpx2.AsyncClient(transport=self.async_transport())
        return anthropic.AsyncAnthropic(**kwargs)
