"""The small interface between the emulator and whatever produces the answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class BrainRequest:
    """What a brain sees of one Messages request, already validated and normalised by the emulator.

    `messages` have list-of-block content (a string content is turned into one text block);
    `system` is the system blocks' text joined with blank lines ("" when absent);
    `output_schema` is `output_config.format.schema` when JSON-schema output was asked for.
    """

    model: str
    system: str
    messages: list[dict[str, Any]]
    max_tokens: int
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: dict[str, Any] | None = None
    output_schema: dict[str, Any] | None = None
    stop_sequences: list[str] = field(default_factory=list)
    seed: int = 0

    @property
    def last_user_text(self) -> str:
        """Text of the final user turn (the part most brains answer)."""
        for message in reversed(self.messages):
            if message.get("role") == "user":
                return "\n".join(
                    block.get("text", "") for block in message.get("content", []) if block.get("type") == "text"
                )
        return ""


@dataclass
class BrainReply:
    """The full answer the model 'wants' to give; the emulator applies stop sequences and max_tokens to it.

    `content` holds complete `text` and `tool_use` blocks (tool_use ids may be left empty; the emulator fills them).
    `latency_s` is the simulated generation time, reported and optionally slept by the emulator.
    """

    content: list[dict[str, Any]]
    stop_reason: str = "end_turn"
    stop_details: dict[str, Any] | None = None
    latency_s: float = 0.0


class Brain(Protocol):
    """Anything that can answer a BrainRequest. Must be deterministic for the simulated brain."""

    name: str

    def reply(self, request: BrainRequest) -> BrainReply: ...
