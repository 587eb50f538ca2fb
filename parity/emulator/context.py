"""What one request's headers establish (API version, betas, workspace, request id, base URL), the emulator's
defaults for each, and where the server keeps it for the routes: the one record the routes, the batches and the
Messages path pass along."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import Request

from parity.api import ids
from parity.emulator import validation

DEFAULT_BASE_URL = "http://emulator.local"
DEFAULT_API_KEY = "sk-emulator"
DEFAULT_WORKSPACE = "wrkspc_01ParityEmulatorDefault0"
DEFAULT_ORGANIZATION = "00000000-0000-4000-8000-0000000e0001"
CTX_KEY = "parity_ctx"  # where the server's middleware keeps the RequestContext in the ASGI scope's state


@dataclass(frozen=True)
class RequestContext:
    """What the headers of one request establish: API version, betas, workspace, request id, the base URL."""

    api_version: str = validation.NEW_VERSION
    betas: tuple[str, ...] = ()
    workspace: str = DEFAULT_WORKSPACE
    request_id: str = field(default_factory=ids.request_id)
    base_url: str = DEFAULT_BASE_URL


def request_context(request: Request) -> RequestContext:
    """The RequestContext the middleware attached to this request (for routes, including the batch routes)."""
    return request.scope["state"][CTX_KEY]
