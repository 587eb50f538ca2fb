"""A deterministic approximation of Claude's tokenizer, for the emulator and offline estimates.

Claude's tokenizer is not public, so this is NOT it: it is a regex pre-tokeniser whose matches are the tokens
(words in pieces of up to 6 ASCII letters with the leading space attached, numbers in groups of 1-3 digits, runs
of up to 3 punctuation marks, newline runs, other whitespace up to 8 at a time, one token per CJK character).
English prose comes out at about 3.8 characters per token; docs/tokenizer.md gives the measured error against
the only public Claude tokenizer. Models with the Claude 4.7+ tokenizer (`new_tokenizer` in the catalogue) count
30 % more text tokens (reference claude-api.md §6.7). Images follow the documented width*height/750 formula.

`parity.prompt.count_request(params)` (the total of `parity.prompt.render(params)`, which counts with this
module) is what the emulator's /v1/messages/count_tokens answers and what its Messages usage bills.
"""

from __future__ import annotations

import binascii
import json
import math
import re
import struct
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from parity import catalog

# ---- text -----------------------------------------------------------------------------------------------------

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
# Every character of any string is matched by exactly one alternative, so the number of matches is the count.
# Alternatives that can start on the same character keep this relative order; the rest are ordered by frequency.
_TOKEN = re.compile(
    " ?[A-Za-z]{1,6}+"  # ASCII words in pieces of up to 6 letters, a leading space joins the first piece
    "|\\d{1,3}+"  # numbers in groups of up to 3 digits
    f"|[{_CJK}]"  # one token per kana / CJK ideograph / hangul syllable
    f"| ?[^\\W\\d_A-Za-z{_CJK}]{{1,2}}+"  # other letters (accents, Cyrillic, Greek, ...) two at a time
    "|[\U00010000-\U0010ffff]"  # emoji and other astral symbols: one each
    "| ?(?:[^\\w\\s]|_){1,3}+"  # punctuation and symbols, up to 3 together
    "|\\n++"  # a run of newlines
    "|[^\\S\\n]{1,8}+"  # other whitespace, up to 8 together
)
_CACHED = (256, 32_768)  # texts this long are remembered: system prompts and documents repeat across a log

NEW_TOKENIZER_FACTOR = (13, 10)  # Claude 4.7+ tokenizer: ~30 % more tokens for the same text (§6.7)

# ---- fixed overheads (the emulator's choices; calibrated so that the reference's count_tokens example,
# "Hello, world" on claude-opus-5, answers 14) ---------------------------------------------------------------------

REQUEST_OVERHEAD = 4  # the turn that opens the assistant's answer; after the last block, never cacheable
MESSAGE_OVERHEAD = 6  # role marker of each message, charged on its first block
TOOL_OVERHEAD = 8  # wrapper of each tool definition
STRUCTURED_BLOCK_OVERHEAD = 4  # wrapper of tool_use / tool_result / document / search_result / server blocks

# Hidden tool system prompt added when `tools` is non-empty (reference §9.3): (auto|none, any|tool).
TOOL_PROMPT_TOKENS = {"claude-opus-5": (286, 406), "claude-haiku-4-5": (496, 588)}
_TOOL_PROMPT_NEW = TOOL_PROMPT_TOKENS["claude-opus-5"]  # assumed for other Claude 4.7+ tokenizer models
_TOOL_PROMPT_OLD = TOOL_PROMPT_TOKENS["claude-haiku-4-5"]  # assumed for the other models

# ---- images and PDFs ------------------------------------------------------------------------------------------

PIXELS_PER_TOKEN = 750  # tokens = width * height / 750 (vision docs)
IMAGE_LIMITS = {False: (1568, 1600), True: (2576, 4784)}  # new_tokenizer -> (max long edge px, max tokens)
PDF_PAGE_TOKENS = 2000  # docs: a PDF page typically costs 1,500-3,000 tokens (text + page image)
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_PDF_PAGE = re.compile(rb"/Type\s*/Page(?![A-Za-z])")


def count_text(text: str, model: str | None = None) -> int:
    """Tokens of a piece of text under `model`'s tokenizer (None: the pre-4.7 one)."""
    if not text:
        return 0
    n = _count_cached(text) if _CACHED[0] <= len(text) <= _CACHED[1] else _TOKEN.subn("", text)[1]
    return _scale(n) if _new_tokenizer(model) else n


def pieces(text: str) -> list[str]:
    """The pieces `count_text` counts (before the new-tokenizer factor): they concatenate back to `text`."""
    return _TOKEN.findall(text)


def count_block(block: Mapping[str, Any], model: str | None = None) -> int:
    """Tokens of one content block (text, image, document, tool_use, tool_result, thinking, ...)."""
    kind = block.get("type")
    if kind == "text":
        return count_text(_str(block.get("text")), model)
    if kind == "image":
        return count_image(block.get("source"), model)
    if kind == "thinking":
        return count_text(_str(block.get("thinking")), model)
    if kind == "redacted_thinking":
        return len(_str(block.get("data"))) // 5  # opaque base64: about 4 bytes of payload per token
    if kind == "tool_use" or kind == "server_tool_use" or kind == "mcp_tool_use":
        return (
            STRUCTURED_BLOCK_OVERHEAD
            + count_text(_str(block.get("name")), model)
            + count_text(_json(block.get("input", {})), model)
        )
    if kind == "tool_result":
        return STRUCTURED_BLOCK_OVERHEAD + _count_content(block.get("content"), model)
    if kind == "document":
        return STRUCTURED_BLOCK_OVERHEAD + _count_document(block, model)
    if kind == "search_result":
        return (
            STRUCTURED_BLOCK_OVERHEAD
            + count_text(_str(block.get("source")), model)
            + count_text(_str(block.get("title")), model)
            + _count_content(block.get("content"), model)
        )
    # server tool results and anything newer: their JSON, as the model reads it
    rest = {k: v for k, v in block.items() if k != "cache_control"}
    return STRUCTURED_BLOCK_OVERHEAD + count_text(_json(rest), model)


def count_tool(tool: Mapping[str, Any], model: str | None = None) -> int:
    """Tokens of one tool definition: name, description and input schema (server tools: their JSON)."""
    if tool.get("type") in (None, "custom"):
        n = count_text(_str(tool.get("name")), model) + count_text(_str(tool.get("description")), model)
        n += count_text(_json(tool.get("input_schema", {})), model)
        if tool.get("input_examples"):
            n += count_text(_json(tool["input_examples"]), model)
        return TOOL_OVERHEAD + n
    rest = {k: v for k, v in tool.items() if k != "cache_control"}
    return TOOL_OVERHEAD + count_text(_json(rest), model)


def tool_prompt_tokens(model: str | None, tool_choice: Mapping[str, Any] | None) -> tuple[int, int]:
    """The hidden tool system prompt as (part present for every tool_choice, extra for `any`/`tool`)."""
    base, forced = TOOL_PROMPT_TOKENS.get(_canonical(model)) or (
        _TOOL_PROMPT_NEW if _new_tokenizer(model) else _TOOL_PROMPT_OLD
    )
    kind = tool_choice.get("type") if isinstance(tool_choice, Mapping) else None
    return base, (forced - base if kind in ("any", "tool") else 0)


def count_image(source: Any, model: str | None = None) -> int:
    """Image tokens: width*height/750 after the API's downscaling, or the model's cap if the size is unknowable."""
    max_edge, max_tokens = IMAGE_LIMITS[_new_tokenizer(model)]
    size = image_size(source) if isinstance(source, Mapping) else None
    if size is None:
        return max_tokens
    width, height = size
    if width <= 0 or height <= 0:
        return max_tokens
    scale = min(1.0, max_edge / max(width, height), math.sqrt(max_tokens * PIXELS_PER_TOKEN / (width * height)))
    return max(1, min(max_tokens, math.ceil(round(width * scale) * round(height * scale) / PIXELS_PER_TOKEN)))


def image_size(source: Mapping[str, Any]) -> tuple[int, int] | None:
    """(width, height) read from a base64 PNG, GIF, JPEG or WebP header; None when it cannot be known."""
    if source.get("type") != "base64" or not isinstance(source.get("data"), str):
        return None
    data = source["data"]
    head = _b64(data[:64])
    if head is None:
        return None
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24:
        return struct.unpack(">II", head[16:24])
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        return struct.unpack("<HH", head[6:10])
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP" and len(head) >= 30:
        return _webp_size(head)
    if head[:2] == b"\xff\xd8":
        for limit in (1 << 16, len(data)):  # the frame header usually sits within the first 48 KB
            size = _jpeg_size(_b64(data[: limit - limit % 4]) or b"")
            if size is not None or limit >= len(data):
                return size
    return None


# ---- helpers --------------------------------------------------------------------------------------------------


def _count_content(content: Any, model: str | None) -> int:
    """A string, or a list of blocks (tool_result / search_result / document content)."""
    if isinstance(content, str):
        return count_text(content, model)
    if isinstance(content, list):
        return sum(count_block(b, model) for b in content if isinstance(b, Mapping))
    return 0


def _count_document(block: Mapping[str, Any], model: str | None) -> int:
    n = count_text(_str(block.get("title")), model) + count_text(_str(block.get("context")), model)
    source = block.get("source")
    if not isinstance(source, Mapping):
        return n + PDF_PAGE_TOKENS
    kind = source.get("type")
    if kind == "text":
        return n + count_text(_str(source.get("data")), model)
    if kind == "content":
        return n + _count_content(source.get("content"), model)
    if kind == "base64" and isinstance(source.get("data"), str):
        raw = _b64(source["data"])
        if raw is not None and source.get("media_type", "application/pdf") == "application/pdf":
            return n + PDF_PAGE_TOKENS * max(1, len(_PDF_PAGE.findall(raw)))
        if raw is not None:
            return n + count_text(raw.decode("utf-8", "replace"), model)
    return n + PDF_PAGE_TOKENS  # url / file sources: the page count is unknowable offline


def _webp_size(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8 " and len(head) >= 30:
        w, h = struct.unpack("<HH", head[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L" and len(head) >= 25:
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(head) >= 30:
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    return None


def _jpeg_size(raw: bytes) -> tuple[int, int] | None:
    i, n = 2, len(raw)
    while i + 9 <= n:
        if raw[i] != 0xFF:
            return None
        marker = raw[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        length = (raw[i + 2] << 8) | raw[i + 3]
        if marker in _JPEG_SOF:
            height, width = struct.unpack(">HH", raw[i + 5 : i + 9])
            return width, height
        i += 2 + length
    return None


def _b64(text: str) -> bytes | None:
    try:
        return binascii.a2b_base64(text[: len(text) - len(text) % 4])
    except (binascii.Error, ValueError):
        return None


@lru_cache(maxsize=512)
def _count_cached(text: str) -> int:
    return _TOKEN.subn("", text)[1]


def _scale(n: int) -> int:
    num, den = NEW_TOKENIZER_FACTOR
    return (n * num + den - 1) // den


@lru_cache(maxsize=1024)
def _new_tokenizer(model: str | None) -> bool:
    if not model:
        return False
    try:
        return catalog.get_model(model).new_tokenizer
    except catalog.UnknownModelError:
        return False  # an unknown id is counted with the older tokenizer


@lru_cache(maxsize=1024)
def _canonical(model: str | None) -> str | None:
    if not model:
        return None
    try:
        return catalog.resolve(model)
    except catalog.UnknownModelError:
        return model


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
