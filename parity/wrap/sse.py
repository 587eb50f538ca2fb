"""Server-sent events of the Messages API: split a stream into events and rebuild the final Message from them,
the way the SDK's MessageStream accumulates it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any


def envelope(kind: str, message: str) -> dict[str, Any]:
    """An API error envelope for what went wrong on the way (a stream cut short, a body that is not JSON)."""
    return {"type": "error", "error": {"type": kind, "message": message}}


def iter_sse(data: bytes) -> Iterator[tuple[str | None, str]]:
    """Yield (event name, data) for each server-sent event in `data` (blank-line separated, CRLF tolerant)."""
    text = data.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n")
    event: str | None = None
    lines: list[str] = []
    for line in text.split("\n"):
        if not line:
            if lines or event is not None:
                yield event, "\n".join(lines)
            event, lines = None, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "event":
            event = value
        elif name == "data":
            lines.append(value)
    if lines or event is not None:
        yield event, "\n".join(lines)


def accumulate_sse(data: bytes, *, pause: Callable[[], None] | None = None
                   ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Rebuild the final Message from a Messages SSE stream, the way the SDK's MessageStream accumulates it.

    Returns (message, error): the error is the stream's `error` event envelope, or an `incomplete_stream`
    envelope when the stream stopped before `message_stop`; the message is whatever was accumulated (None if
    `message_start` never came). `pause` is called every few events (the recorder passes `time.sleep(0)` so
    its thread hands the GIL back to the application instead of holding it for a whole switch interval).
    """
    message: dict[str, Any] | None = None
    partial_json: dict[int, str] = {}
    error: dict[str, Any] | None = None
    stopped = False
    for number, (event, payload) in enumerate(iter_sse(data)):
        if pause is not None and number % 16 == 15:
            pause()
        if event is None or event == "ping" or not payload:
            continue
        try:
            body = json.loads(payload)
        except ValueError:
            return message, envelope("malformed_stream", f"event {event!r} carries data that is not JSON")
        if event == "error":
            return message, body if isinstance(body, dict) else envelope("stream_error", payload[:500])
        if event == "message_start":
            message = dict(body.get("message") or {})
            message["content"] = list(message.get("content") or [])
            message["usage"] = dict(message.get("usage") or {})
            continue
        if message is None:
            continue
        content: list[dict[str, Any]] = message["content"]
        if event == "content_block_start":
            content.append(dict(body.get("content_block") or {}))
        elif event == "content_block_delta":
            index, delta = body.get("index"), body.get("delta") or {}
            if not isinstance(index, int) or not 0 <= index < len(content):
                continue
            block = content[index]
            kind = delta.get("type")
            if kind == "text_delta":
                block["text"] = block.get("text", "") + delta.get("text", "")
            elif kind == "input_json_delta":
                partial_json[index] = partial_json.get(index, "") + delta.get("partial_json", "")
            elif kind == "thinking_delta":
                block["thinking"] = block.get("thinking", "") + delta.get("thinking", "")
            elif kind == "signature_delta":
                block["signature"] = delta.get("signature", "")
            elif kind == "citations_delta":
                block["citations"] = list(block.get("citations") or []) + [delta.get("citation")]
        elif event == "content_block_stop":
            index = body.get("index")
            if isinstance(index, int) and index in partial_json and 0 <= index < len(content):
                text = partial_json.pop(index)
                try:
                    content[index]["input"] = json.loads(text) if text else {}
                except ValueError:
                    content[index]["input"] = text
        elif event == "message_delta":
            for key, value in (body.get("delta") or {}).items():
                message[key] = value
            for key, value in (body.get("usage") or {}).items():
                if value is not None:
                    message["usage"][key] = value
        elif event == "message_stop":
            stopped = True
    if message is not None and not stopped and error is None:
        error = envelope("incomplete_stream", "the stream ended before message_stop")
    return message, error


__all__ = ["accumulate_sse", "envelope", "iter_sse"]
