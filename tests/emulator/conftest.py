"""Fixtures for the emulator's wire tests: a scripted test brain, a manual clock, and SDK clients wired in-process."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from parity.emulator.brains.base import BrainReply, BrainRequest
from parity.emulator.clock import ManualClock
from parity.emulator.faults import FaultSchedule
from parity.emulator.service import Emulator

Reply = BrainReply | Callable[[BrainRequest], BrainReply]


class ScriptBrain:
    """A test double of the Brain protocol: answers from a script, else echoes the last user text.

    `script` is consumed in order (a BrainReply, or a function of the request); every request is kept in
    `requests`, so tests can check what the emulator handed to the brain.
    """

    name = "script"

    def __init__(self) -> None:
        self.script: list[Reply] = []
        self.requests: list[BrainRequest] = []
        self.default: Reply = lambda request: BrainReply([{"type": "text", "text": f"Echo: {request.last_user_text}"}])

    def then(self, *replies: Reply) -> ScriptBrain:
        self.script.extend(replies)
        return self

    def always(self, reply: Reply) -> ScriptBrain:
        self.default = reply
        return self

    def reply(self, request: BrainRequest) -> BrainReply:
        self.requests.append(request)
        item = self.script.pop(0) if self.script else self.default
        return item(request) if callable(item) else item


def text_reply(text: str, **kwargs: Any) -> BrainReply:
    return BrainReply([{"type": "text", "text": text}], **kwargs)


def tool_reply(name: str, tool_input: dict, text: str | None = None) -> BrainReply:
    content: list[dict] = [{"type": "text", "text": text}] if text else []
    content.append({"type": "tool_use", "id": "", "name": name, "input": tool_input})
    return BrainReply(content, stop_reason="tool_use")


MODEL = "claude-opus-4-8"
USER = [{"role": "user", "content": "Hello there"}]


@pytest.fixture
def brain() -> ScriptBrain:
    return ScriptBrain()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def faults() -> FaultSchedule:
    return FaultSchedule(timeout_s=0.2, stall_s=0.05, retry_after_s=1, retry_after_ms=5)


@pytest.fixture
def emulator(brain: ScriptBrain, clock: ManualClock, faults: FaultSchedule) -> Emulator:
    return Emulator(brain=brain, clock=clock, faults=faults)


@pytest.fixture
def client(emulator: Emulator):
    with emulator.client() as sdk:
        yield sdk


@pytest.fixture
async def async_client(emulator: Emulator):
    async with emulator.async_client() as sdk:
        yield sdk


@pytest.fixture
def raw(emulator: Emulator):
    """A plain httpx2 client into the emulator (for headers the SDK would not send)."""
    import httpx2

    with httpx2.Client(transport=emulator.transport(), base_url="http://emulator.local") as http:
        yield http


def headers(version: str = "2026-10-21", **extra: str) -> dict[str, str]:
    """Headers like SDK 2.x sends; pass x_api_key=... for the 0.x/1.x style instead of Bearer."""
    out = {"anthropic-version": version, "content-type": "application/json"}
    if "x_api_key" in extra:
        out["x-api-key"] = extra.pop("x_api_key")
    else:
        out["authorization"] = "Bearer sk-test"
    out.update({k.replace("_", "-"): v for k, v in extra.items()})
    return out
