"""Request validation with the API's status codes, error types, messages and field paths (reference §1.2, §2, §5,
§7).

Messages start with the offending field path (`messages.1.content.0.text: ...`) the way the API's do. Checks are
split in three so the server can answer in the API's order: headers (auth, version, betas) before the body is read,
the body's shape before the model is looked up, then what depends on the model.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, get_args

import jsonschema
from anthropic.types import AnthropicBetaParam

from parity.api.errors import APIError, invalid
from parity.api.headers import api_key_of

# ---- versions, betas, limits -----------------------------------------------------------------------------------

LEGACY_VERSION = "2023-06-01"
NEW_VERSION = "2026-10-21"
SUPPORTED_VERSIONS = (LEGACY_VERSION, NEW_VERSION)
MAX_MESSAGES = 100_000
MIN_THINKING_BUDGET = 1024
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
SERVER_TOOL_TYPE = re.compile(r"^[a-z][a-z0-9_]*_\d{8}$")
IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
EFFORTS = ("low", "medium", "high", "xhigh", "max")

_BETAS_OUTSIDE_THE_SDK = (
    # Named in reference §1.2/§6 but not (or no longer) in the SDK's literal list.
    "prompt-caching-2024-07-31",
    "extended-cache-ttl-2025-04-11",
    "token-counting-2024-11-01",
    "message-batches-2024-09-24",
    "cache-diagnosis-2026-04-07",
    "output-300k-2026-03-24",
    "fast-mode-2026-02-01",
    "context-1m-2025-08-07",
    "structured-outputs-2025-11-13",
    "fine-grained-tool-streaming-2025-05-14",
)


def _sdk_betas() -> frozenset[str]:
    """The beta names the installed SDK knows (its `AnthropicBetaParam` literal), so the two never drift apart."""
    names: set[str] = set()
    for arg in get_args(AnthropicBetaParam):
        names.update(a for a in get_args(arg) if isinstance(a, str))
    return frozenset(names)


KNOWN_BETAS: frozenset[str] = _sdk_betas() | frozenset(_BETAS_OUTSIDE_THE_SDK)

# Top-level fields of POST /v1/messages (reference §2) and of count_tokens (§7).
MESSAGE_FIELDS = frozenset(
    {
        "model",
        "max_tokens",
        "messages",
        "system",
        "stop_sequences",
        "stream",
        "metadata",
        "tools",
        "tool_choice",
        "thinking",
        "cache_control",
        "output_config",
        "service_tier",
        "inference_geo",
        "speed",
        "container",
        "diagnostics",
    }
)
COUNT_TOKENS_FIELDS = frozenset(
    {"model", "messages", "system", "tools", "tool_choice", "thinking", "cache_control", "output_config", "speed"}
)
SAMPLING_FIELDS = ("temperature", "top_p", "top_k")
# Fields that exist only behind a beta header: field -> beta-name prefixes that enable it.
BETA_FIELDS = {
    "context_management": ("context-management-", "compact-"),
    "mcp_servers": ("mcp-client-",),
    "output_format": ("structured-outputs-",),
}


# ---- headers -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeaderInfo:
    """What the headers of one request say: its credential, API version and beta names."""

    api_key: str
    api_version: str
    betas: tuple[str, ...]


def check_headers(headers: Mapping[str, str], *, api_keys: Collection[str] | None = None) -> HeaderInfo:
    """401 without a credential (or with one not in `api_keys`), 400 for a missing/unknown version or beta name."""
    key = api_key_of(headers)
    if key is None:
        raise APIError(
            401,
            "x-api-key header is required (or send the key as `Authorization: Bearer <key>`)",
        )
    if api_keys is not None and key not in api_keys:
        raise APIError(401, "invalid x-api-key")
    version = headers.get("anthropic-version")
    if version is None or not version.strip():
        raise invalid("anthropic-version: header is required")
    version = version.strip()
    if version not in SUPPORTED_VERSIONS:
        raise invalid(
            f"anthropic-version: {version!r} is not a valid version; use one of {', '.join(SUPPORTED_VERSIONS)}"
        )
    return HeaderInfo(api_key=key, api_version=version, betas=parse_betas(headers.get("anthropic-beta", "")))


def parse_betas(value: str) -> tuple[str, ...]:
    """The comma list of `anthropic-beta`, each name checked against the known betas."""
    betas = tuple(name.strip() for name in value.split(",") if name.strip())
    for name in betas:
        if name not in KNOWN_BETAS:
            raise invalid(f"Unsupported beta header: {name}")
    return betas


# ---- body --------------------------------------------------------------------------------------------------------


def require_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise invalid(f"body: Input should be a valid dictionary (a JSON object), got {_json_type(body)}")
    return body


# ---- small type checks shared by every field -------------------------------------------------------------------


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _is_int(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value) and value.is_integer()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _str(value: Any, path: str, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if not isinstance(value, str):
        raise invalid(f"{path}: Input should be a valid string")


def _bool(value: Any, path: str, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if not isinstance(value, bool):
        raise invalid(f"{path}: Input should be a valid boolean")


def _dict(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid(f"{path}: Input should be a valid dictionary")
    return value


def _list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise invalid(f"{path}: Input should be a valid list")
    return value


def _required(obj: Mapping[str, Any], keys: tuple[str, ...], path: str) -> None:
    for key in keys:
        if key not in obj:
            raise invalid(f"{_join(path, key)}: Field required")


def _only(obj: Mapping[str, Any], allowed: Collection[str], path: str) -> None:
    for key in obj:
        if key not in allowed:
            raise invalid(f"{_join(path, key)}: Extra inputs are not permitted")


def _literal(value: Any, allowed: tuple[Any, ...], path: str) -> None:
    if not any(type(value) is type(a) and value == a for a in allowed):
        choices = " or ".join(", ".join(repr(a) for a in allowed).rsplit(", ", 1))
        raise invalid(f"{path}: Input should be {choices}")


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


# ---- cache_control -----------------------------------------------------------------------------------------------


def check_cache_control(value: Any, path: str) -> None:
    """`{"type":"ephemeral","ttl"?: "5m"|"1h"}` or null."""
    if value is None:
        return
    cc = _dict(value, path)
    _required(cc, ("type",), path)
    _only(cc, ("type", "ttl"), path)
    _literal(cc["type"], ("ephemeral",), f"{path}.type")
    if "ttl" in cc and cc["ttl"] is not None:
        _literal(cc["ttl"], ("5m", "1h"), f"{path}.ttl")


# ---- content blocks ----------------------------------------------------------------------------------------------

_TOOL_RESULT_CONTENT = ("text", "image", "document", "search_result", "tool_reference")
_SERVER_RESULT_BLOCKS = (
    "web_search_tool_result",
    "web_fetch_tool_result",
    "code_execution_tool_result",
    "bash_code_execution_tool_result",
    "text_editor_code_execution_tool_result",
    "tool_search_tool_result",
)
BLOCK_TYPES = (
    "text",
    "image",
    "document",
    "search_result",
    "thinking",
    "redacted_thinking",
    "tool_use",
    "tool_result",
    "server_tool_use",
    *_SERVER_RESULT_BLOCKS,
    "container_upload",
)


def _nonempty_text(text: Any, path: str) -> None:
    _str(text, path)
    if not text:
        raise invalid(f"{path}: text content blocks must be non-empty")


def check_text_block(block: dict[str, Any], path: str, *, role: str, api_version: str) -> None:
    _required(block, ("text",), path)
    _nonempty_text(block["text"], f"{path}.text")
    check_cache_control(block.get("cache_control"), f"{path}.cache_control")
    citations = block.get("citations")
    if citations is not None:
        _list(citations, f"{path}.citations")
        if citations and role == "user" and api_version == NEW_VERSION:
            raise invalid(
                f"{path}.citations: text blocks with citations are not accepted in user messages under "
                f"anthropic-version {NEW_VERSION}; send the text without `citations`"
            )


def _check_source(source: Any, path: str, *, kinds: dict[str, tuple[str, ...]]) -> dict[str, Any]:
    src = _dict(source, path)
    _required(src, ("type",), path)
    kind = src["type"]
    if kind not in kinds:
        _literal(kind, tuple(kinds), f"{path}.type")
    _required(src, kinds[kind], path)
    for key in kinds[kind]:
        if key != "content":
            _str(src[key], f"{path}.{key}")
    return src


def check_image_block(block: dict[str, Any], path: str) -> None:
    _required(block, ("source",), path)
    src = _check_source(
        block["source"],
        f"{path}.source",
        kinds={"base64": ("media_type", "data"), "url": ("url",), "file": ("file_id",)},
    )
    if src["type"] == "base64":
        _literal(src["media_type"], IMAGE_MEDIA_TYPES, f"{path}.source.media_type")
    check_cache_control(block.get("cache_control"), f"{path}.cache_control")


def check_document_block(block: dict[str, Any], path: str, *, role: str, api_version: str) -> None:
    if role == "assistant" and api_version == NEW_VERSION:
        raise invalid(
            f"{path}: document blocks are not accepted in assistant messages under anthropic-version "
            f"{NEW_VERSION}; put the document in a user message"
        )
    _required(block, ("source",), path)
    src = _check_source(
        block["source"],
        f"{path}.source",
        kinds={
            "base64": ("media_type", "data"),
            "text": ("media_type", "data"),
            "url": ("url",),
            "content": ("content",),
            "file": ("file_id",),
        },
    )
    if src["type"] == "base64":
        _literal(src["media_type"], ("application/pdf",), f"{path}.source.media_type")
    if src["type"] == "text":
        _literal(src["media_type"], ("text/plain",), f"{path}.source.media_type")
    if src["type"] == "content" and not isinstance(src["content"], str):
        for i, item in enumerate(_list(src["content"], f"{path}.source.content")):
            check_block(
                item, f"{path}.source.content.{i}", role=role, api_version=api_version, allowed=("text", "image")
            )
    for key in ("title", "context"):
        _str(block.get(key), f"{path}.{key}", optional=True)
    if block.get("citations") is not None:
        cit = _dict(block["citations"], f"{path}.citations")
        _bool(cit.get("enabled"), f"{path}.citations.enabled", optional=True)
    check_cache_control(block.get("cache_control"), f"{path}.cache_control")


def check_block(
    block: Any,
    path: str,
    *,
    role: str,
    api_version: str,
    allowed: tuple[str, ...] = BLOCK_TYPES,
) -> None:
    """One content block: known `type`, its required fields and their types, a valid `cache_control`."""
    blk = _dict(block, path)
    if "type" not in blk:
        raise invalid(f"{path}.type: Field required")
    kind = blk["type"]
    if kind not in allowed:
        tags = ", ".join(repr(t) for t in allowed)
        raise invalid(
            f"{path}: Input tag {kind!r} found using 'type' does not match any of the expected tags: {tags}"
            if isinstance(kind, str)
            else f"{path}.type: Input should be a valid string"
        )
    if kind == "text":
        check_text_block(blk, path, role=role, api_version=api_version)
    elif kind == "image":
        check_image_block(blk, path)
    elif kind == "document":
        check_document_block(blk, path, role=role, api_version=api_version)
    elif kind == "search_result":
        _required(blk, ("content", "source", "title"), path)
        _str(blk["source"], f"{path}.source")
        _str(blk["title"], f"{path}.title")
        for i, item in enumerate(_list(blk["content"], f"{path}.content")):
            check_block(item, f"{path}.content.{i}", role=role, api_version=api_version, allowed=("text",))
        check_cache_control(blk.get("cache_control"), f"{path}.cache_control")
    elif kind == "thinking":
        _required(blk, ("thinking", "signature"), path)
        _str(blk["thinking"], f"{path}.thinking")
        _str(blk["signature"], f"{path}.signature")
        if blk.get("cache_control") is not None:
            raise invalid(f"{path}.cache_control: thinking blocks cannot be cached directly; remove cache_control")
    elif kind == "redacted_thinking":
        _required(blk, ("data",), path)
        _str(blk["data"], f"{path}.data")
    elif kind in ("tool_use", "server_tool_use"):
        _required(blk, ("id", "name", "input"), path)
        _str(blk["id"], f"{path}.id")
        _str(blk["name"], f"{path}.name")
        _dict(blk["input"], f"{path}.input")
        check_cache_control(blk.get("cache_control"), f"{path}.cache_control")
    elif kind == "tool_result":
        _required(blk, ("tool_use_id",), path)
        _str(blk["tool_use_id"], f"{path}.tool_use_id")
        content = blk.get("content")
        if content is not None and not isinstance(content, str):
            for i, item in enumerate(_list(content, f"{path}.content")):
                if isinstance(item, dict) and item.get("type") == "tool_reference":
                    continue
                check_block(
                    item, f"{path}.content.{i}", role=role, api_version=api_version, allowed=_TOOL_RESULT_CONTENT
                )
        _bool(blk.get("is_error"), f"{path}.is_error", optional=True)
        check_cache_control(blk.get("cache_control"), f"{path}.cache_control")
    elif kind in _SERVER_RESULT_BLOCKS:
        _required(blk, ("tool_use_id", "content"), path)
        _str(blk["tool_use_id"], f"{path}.tool_use_id")
        check_cache_control(blk.get("cache_control"), f"{path}.cache_control")
    elif kind == "container_upload":
        _required(blk, ("file_id",), path)
        _str(blk["file_id"], f"{path}.file_id")
        check_cache_control(blk.get("cache_control"), f"{path}.cache_control")


# ---- messages ----------------------------------------------------------------------------------------------------

ROLES = ("user", "assistant", "system")


def check_messages(value: Any, *, api_version: str) -> list[dict[str, Any]]:
    """Shapes of every message and block, non-empty content, and tool_use/tool_result pairing across turns."""
    messages = _list(value, "messages")
    if not messages:
        raise invalid("messages: at least one message is required")
    if len(messages) > MAX_MESSAGES:
        raise invalid(f"messages: a request may hold at most {MAX_MESSAGES:,} messages, got {len(messages):,}")
    last = len(messages) - 1
    for i, message in enumerate(messages):
        path = f"messages.{i}"
        msg = _dict(message, path)
        _required(msg, ("role", "content"), path)
        _only(msg, ("role", "content"), path)
        _literal(msg["role"], ROLES, f"{path}.role")
        role, content = msg["role"], msg["content"]
        allowed = ("text",) if role == "system" else BLOCK_TYPES
        if isinstance(content, str):
            if not content and not (i == last and role == "assistant"):
                raise invalid(
                    f"{path}: all messages must have non-empty content except for the optional final assistant message"
                )
            continue
        blocks = _list(content, f"{path}.content")
        if not blocks and not (i == last and role == "assistant"):
            raise invalid(
                f"{path}: all messages must have non-empty content except for the optional final assistant message"
            )
        for j, block in enumerate(blocks):
            check_block(block, f"{path}.content.{j}", role=role, api_version=api_version, allowed=allowed)
            kind = block["type"]
            if kind == "tool_result" and role != "user":
                raise invalid(f"{path}.content.{j}: tool_result blocks are only allowed in user messages")
            if kind in ("tool_use", "thinking", "redacted_thinking", "server_tool_use") and role != "assistant":
                raise invalid(f"{path}.content.{j}: {kind} blocks are only allowed in assistant messages")
    _check_tool_pairing(messages)
    final = messages[last]
    if final["role"] == "assistant":
        text = (
            final["content"]
            if isinstance(final["content"], str)
            else "".join(b.get("text", "") for b in final["content"][-1:] if b.get("type") == "text")
        )
        if text and text != text.rstrip():
            raise invalid("messages: final assistant content cannot end with trailing whitespace")
    return messages


def _blocks_of(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message["content"]
    return [] if isinstance(content, str) else content


def _check_tool_pairing(messages: list[dict[str, Any]]) -> None:
    """Every tool_use needs a tool_result in the next turn and vice versa (consecutive same-role turns merge)."""
    turns: list[tuple[int, str, list[tuple[int, dict[str, Any]]]]] = []  # (first index, role, [(msg idx, block)])
    for i, message in enumerate(messages):
        role = message["role"]
        if role == "system":
            continue
        entries = [(i, b) for b in _blocks_of(message)]
        if turns and turns[-1][1] == role:
            turns[-1][2].extend(entries)
        else:
            turns.append((i, role, entries))
    for t, (first, role, entries) in enumerate(turns):
        if role == "user":
            previous = turns[t - 1][2] if t > 0 and turns[t - 1][1] == "assistant" else []
            used = {b.get("id") for _, b in previous if b.get("type") == "tool_use"}
            for i, block in entries:
                if block.get("type") == "tool_result" and block.get("tool_use_id") not in used:
                    j = messages[i]["content"].index(block)
                    raise invalid(
                        f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: "
                        f"{block.get('tool_use_id')}. Each `tool_result` block must have a corresponding "
                        "`tool_use` block in the previous message."
                    )
        else:
            ids = [b.get("id") for _, b in entries if b.get("type") == "tool_use"]
            if not ids or t == len(turns) - 1:
                continue
            following = turns[t + 1][2]
            answered = {b.get("tool_use_id") for _, b in following if b.get("type") == "tool_result"}
            missing = [x for x in ids if x not in answered]
            if missing:
                raise invalid(
                    f"messages.{first}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                    f"{', '.join(str(m) for m in missing)}. Each `tool_use` block must have a corresponding "
                    "`tool_result` block in the next message."
                )


def check_system(value: Any, *, api_version: str) -> None:
    if isinstance(value, str):
        return
    blocks = _list(value, "system") if isinstance(value, list) else None
    if blocks is None:
        raise invalid("system: Input should be a valid string or a list of text blocks")
    for i, block in enumerate(blocks):
        check_block(block, f"system.{i}", role="system", api_version=api_version, allowed=("text",))


# ---- tools and tool_choice -------------------------------------------------------------------------------------


def check_tools(value: Any) -> list[dict[str, Any]]:
    tools = _list(value, "tools")
    names: set[str] = set()
    for i, tool in enumerate(tools):
        path = f"tools.{i}"
        t = _dict(tool, path)
        kind = t.get("type")
        if kind in (None, "custom"):
            _required(t, ("name", "input_schema"), f"{path}")
            _str(t["name"], f"{path}.name")
            if not TOOL_NAME.fullmatch(t["name"]):
                raise invalid(f"{path}.name: String should match pattern '{TOOL_NAME.pattern}'")
            schema = _dict(t["input_schema"], f"{path}.input_schema")
            if schema.get("type") != "object":
                raise invalid(f"{path}.input_schema.type: Input should be 'object'")
            _check_json_schema(schema, f"{path}.input_schema")
            _str(t.get("description"), f"{path}.description", optional=True)
            _bool(t.get("strict"), f"{path}.strict", optional=True)
            _bool(t.get("defer_loading"), f"{path}.defer_loading", optional=True)
        elif isinstance(kind, str) and SERVER_TOOL_TYPE.fullmatch(kind):
            _required(t, ("name",), path)
            _str(t["name"], f"{path}.name")
        else:
            raise invalid(f"{path}.type: Input should be 'custom' or a server tool type such as 'web_search_20250305'")
        check_cache_control(t.get("cache_control"), f"{path}.cache_control")
        if t["name"] in names:
            raise invalid(f"tools: Tool names must be unique. Duplicate name: {t['name']!r}")
        names.add(t["name"])
    return tools


def check_tool_choice(value: Any, tools: list[dict[str, Any]] | None) -> None:
    tc = _dict(value, "tool_choice")
    _required(tc, ("type",), "tool_choice")
    kind = tc["type"]
    _literal(kind, ("auto", "any", "tool", "none"), "tool_choice.type")
    path = f"tool_choice.{kind}"
    allowed = ("type", "name", "disable_parallel_tool_use") if kind == "tool" else ("type", "disable_parallel_tool_use")
    if kind == "none":
        allowed = ("type",)
    _only(tc, allowed, path)
    _bool(tc.get("disable_parallel_tool_use"), f"{path}.disable_parallel_tool_use", optional=True)
    if kind == "tool":
        _required(tc, ("name",), path)
        _str(tc["name"], f"{path}.name")
    if kind in ("any", "tool") and not tools:
        raise invalid("tool_choice: tool_choice may only be specified while providing tools.")
    if kind == "tool" and tc["name"] not in {t.get("name") for t in tools or []}:
        raise invalid(f"{path}.name: tool {tc['name']!r} is not one of the tools provided in `tools`")


# ---- thinking, output_config, the rest ---------------------------------------------------------------------------


def check_thinking(value: Any) -> dict[str, Any]:
    th = _dict(value, "thinking")
    _required(th, ("type",), "thinking")
    kind = th["type"]
    _literal(kind, ("enabled", "disabled", "adaptive", "between_tools"), "thinking.type")
    path = f"thinking.{kind}"
    allowed = {
        "enabled": ("type", "budget_tokens", "display"),
        "adaptive": ("type", "display"),
        "disabled": ("type",),
        "between_tools": ("type",),
    }[kind]
    _only(th, allowed, path)
    if th.get("display") is not None:
        _literal(th["display"], ("summarized", "omitted"), f"{path}.display")
    if kind == "enabled":
        _required(th, ("budget_tokens",), path)
        if not _is_int(th["budget_tokens"]):
            raise invalid(f"{path}.budget_tokens: Input should be a valid integer")
        if th["budget_tokens"] < MIN_THINKING_BUDGET:
            raise invalid(f"{path}.budget_tokens: Input should be greater than or equal to {MIN_THINKING_BUDGET}")
    return th


def _check_json_schema(schema: dict[str, Any], path: str) -> None:
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise invalid(f"{path}: not a valid JSON Schema ({exc.message})") from None
    except Exception as exc:  # deep recursion, unhashable enums ...
        raise invalid(f"{path}: not a valid JSON Schema ({type(exc).__name__})") from None


def check_output_format(value: Any, path: str) -> None:
    if value is None:
        return
    fmt = _dict(value, path)
    _required(fmt, ("type", "schema"), path)
    _only(fmt, ("type", "schema"), path)
    _literal(fmt["type"], ("json_schema",), f"{path}.type")
    _check_json_schema(_dict(fmt["schema"], f"{path}.schema"), f"{path}.schema")


def check_output_config(value: Any) -> None:
    oc = _dict(value, "output_config")
    _only(oc, ("effort", "format"), "output_config")
    if oc.get("effort") is not None:
        _literal(oc["effort"], EFFORTS, "output_config.effort")
    check_output_format(oc.get("format"), "output_config.format")


def output_schema(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """The JSON schema the output must follow (`output_config.format`, or the beta's top-level `output_format`)."""
    for fmt in ((body.get("output_config") or {}).get("format"), body.get("output_format")):
        if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
            return fmt["schema"]
    return None


def _check_sampling(body: Mapping[str, Any], api_version: str) -> None:
    for name in SAMPLING_FIELDS:
        if name not in body:
            continue
        if api_version == NEW_VERSION:
            raise invalid(f"{name}: Extra inputs are not permitted")
        value = body[name]
        if name == "top_k":
            if not _is_int(value):
                raise invalid("top_k: Input should be a valid integer")
            if value < 0:
                raise invalid("top_k: Input should be greater than or equal to 0")
            continue
        if not _is_number(value):
            raise invalid(f"{name}: Input should be a valid number")
        if value < 0:
            raise invalid(f"{name}: Input should be greater than or equal to 0")
        if value > 1:
            raise invalid(f"{name}: Input should be less than or equal to 1")


def _check_allowed_fields(
    body: Mapping[str, Any], allowed: frozenset[str], api_version: str, betas: tuple[str, ...]
) -> None:
    for key in body:
        if key in allowed:
            continue
        if key in SAMPLING_FIELDS and allowed is MESSAGE_FIELDS:
            continue  # judged by API version below
        prefixes = BETA_FIELDS.get(key)
        if prefixes and any(b.startswith(p) for b in betas for p in prefixes):
            continue
        raise invalid(f"{key}: Extra inputs are not permitted")


def check_model_field(body: Mapping[str, Any]) -> str:
    _str(body["model"], "model")
    if not body["model"].strip():
        raise invalid("model: String should have at least 1 character")
    return body["model"]


def check_common(body: dict[str, Any], *, api_version: str, betas: tuple[str, ...]) -> None:
    """Fields shared by create and count_tokens: messages, system, tools, tool_choice, thinking, output, caching."""
    check_model_field(body)
    check_messages(body["messages"], api_version=api_version)
    if "system" in body:
        check_system(body["system"], api_version=api_version)
    tools = check_tools(body["tools"]) if "tools" in body else None
    if "tool_choice" in body:
        check_tool_choice(body["tool_choice"], tools)
    if "thinking" in body:
        thinking = check_thinking(body["thinking"])
        forced = isinstance(body.get("tool_choice"), dict) and body["tool_choice"].get("type") in ("any", "tool")
        if thinking["type"] in ("enabled", "adaptive") and forced:
            raise invalid("Thinking may not be enabled when tool_choice forces tool use.")
    if "cache_control" in body:
        check_cache_control(body["cache_control"], "cache_control")
    if "output_config" in body:
        check_output_config(body["output_config"])
    if "output_format" in body:
        check_output_format(body["output_format"], "output_format")
    if body.get("speed") is not None:
        _literal(body["speed"], ("standard", "fast"), "speed")


def check_create_body(body: Any, *, api_version: str, betas: tuple[str, ...] = ()) -> dict[str, Any]:
    """POST /v1/messages: every model-independent rule. Returns the body as a dict."""
    body = require_object(body)
    _required(body, ("model", "max_tokens", "messages"), "")
    _check_allowed_fields(body, MESSAGE_FIELDS, api_version, betas)
    _check_sampling(body, api_version)
    if not _is_int(body["max_tokens"]):
        raise invalid("max_tokens: Input should be a valid integer")
    if body["max_tokens"] < 0:
        raise invalid("max_tokens: Input should be greater than or equal to 0")
    check_common(body, api_version=api_version, betas=betas)
    if "stream" in body:
        _bool(body["stream"], "stream")
    if "stop_sequences" in body:
        for i, seq in enumerate(_list(body["stop_sequences"], "stop_sequences")):
            _str(seq, f"stop_sequences.{i}")
            if not seq.strip():
                raise invalid("stop_sequences: each stop sequence must contain non-whitespace")
    if "metadata" in body:
        meta = _dict(body["metadata"], "metadata")
        _only(meta, ("user_id",), "metadata")
        _str(meta.get("user_id"), "metadata.user_id", optional=True)
        if isinstance(meta.get("user_id"), str) and len(meta["user_id"]) > 256:
            raise invalid("metadata.user_id: String should have at most 256 characters")
    if "service_tier" in body:
        _literal(body["service_tier"], ("auto", "standard_only"), "service_tier")
    if body.get("inference_geo") is not None:
        _str(body["inference_geo"], "inference_geo")
        if not re.fullmatch(r"[a-z]{2,16}", body["inference_geo"]):
            raise invalid("inference_geo: expected a region name such as 'global' or 'us'")
    if body.get("container") is not None and not isinstance(body["container"], str):
        container = _dict(body["container"], "container")
        _only(container, ("id", "skills"), "container")
    if body.get("diagnostics") is not None:
        diag = _dict(body["diagnostics"], "diagnostics")
        _only(diag, ("previous_message_id",), "diagnostics")
        _str(diag.get("previous_message_id"), "diagnostics.previous_message_id", optional=True)
    if body["max_tokens"] == 0:
        _check_prewarm(body)
    if isinstance(body["max_tokens"], float):  # 1024.0 is accepted as 1024, as pydantic's lax mode does
        body = {**body, "max_tokens": int(body["max_tokens"])}
    return body


def _check_prewarm(body: Mapping[str, Any]) -> None:
    """`max_tokens: 0` fills the cache without generating; some combinations make no sense (reference §6.10)."""
    why = None
    if body.get("stream") is True:
        why = "stream: true"
    elif isinstance(body.get("thinking"), dict) and body["thinking"].get("type") == "enabled":
        why = "thinking.type: 'enabled'"
    elif output_schema(body) is not None:
        why = "output_config.format"
    elif isinstance(body.get("tool_choice"), dict) and body["tool_choice"].get("type") in ("any", "tool"):
        why = f"tool_choice.type: {body['tool_choice']['type']!r}"
    if why:
        raise invalid(
            f"max_tokens: max_tokens=0 (cache pre-warming) cannot be combined with {why}; "
            "send the pre-warm request without it, or set max_tokens >= 1"
        )


def check_count_tokens_body(body: Any, *, api_version: str, betas: tuple[str, ...] = ()) -> dict[str, Any]:
    """POST /v1/messages/count_tokens (reference §7): no max_tokens, stream, metadata or sampling params."""
    body = require_object(body)
    _required(body, ("model", "messages"), "")
    _check_allowed_fields(body, COUNT_TOKENS_FIELDS, api_version, betas)
    check_common(body, api_version=api_version, betas=betas)
    return body


# ---- rules that depend on the model ------------------------------------------------------------------------------

# Not (yet) in parity/data/models.toml, so kept here: reference §6.9 (mid-conversation system messages on Fable 5,
# Mythos 5, Opus 4.8 and Opus 5, not Sonnet 5; later Fable/Mythos/Opus assumed to keep it).
SYSTEM_MESSAGE_MODELS = frozenset({"claude-opus-4-8", "claude-opus-5", "claude-opus-5-5"})


def supports_system_messages(model: Any) -> bool:
    return (
        model.id in SYSTEM_MESSAGE_MODELS or model.line in ("fable", "mythos") and model.id != "claude-mythos-preview"
    )


def check_for_model(
    body: Mapping[str, Any],
    model: Any,
    *,
    betas: tuple[str, ...] = (),
    batch: bool = False,
    count_only: bool = False,
    fast_mode: bool = False,
) -> None:
    """max_tokens ceiling, prefill, thinking types, mid-conversation system messages and fast mode, per model.

    `model` is a `parity.catalog.ModelInfo`; `fast_mode` says whether the model offers speed "fast" (the
    emulator asks the price table: a model has fast mode exactly when it has a fast price).
    """
    model_id = model.id
    if not count_only:
        ceiling = int(model.max_tokens)
        if batch and "output-300k-2026-03-24" in betas:
            ceiling = max(ceiling, 300_000)
        if body["max_tokens"] > ceiling:
            raise invalid(
                f"max_tokens: {int(body['max_tokens'])} > {ceiling}, which is the maximum allowed number of "
                f"output tokens for {model_id}"
            )
    messages = body["messages"]
    if messages and messages[-1]["role"] == "assistant" and not model.supports_prefill:
        raise invalid(
            "This model does not support assistant message prefill. The conversation must end with a user message."
        )
    for i, message in enumerate(messages):
        if message["role"] == "system" and not supports_system_messages(model):
            raise invalid(
                f"messages.{i}.role: mid-conversation system messages are not supported by {model_id}; "
                "put the instructions in the top-level `system` parameter"
            )
    thinking = body.get("thinking")
    if isinstance(thinking, dict):
        kind = thinking["type"]
        supported = set(model.thinking_types)
        if kind not in supported:
            if kind == "enabled":
                raise invalid(
                    '"thinking.type.enabled" is not supported for this model. Use "thinking.type.adaptive" and '
                    '"output_config.effort" to control thinking behavior.'
                )
            if kind == "adaptive":
                raise invalid("adaptive thinking is not supported on this model")
            raise invalid(f'"thinking.type.{kind}" is not supported for this model.')
        if kind == "enabled" and not count_only and thinking["budget_tokens"] >= body["max_tokens"] > 0:
            raise invalid(
                "max_tokens must be greater than thinking.budget_tokens. Please consult our documentation at "
                "https://docs.claude.com/en/docs/build-with-claude/extended-thinking#max-tokens-and-context-window-size"
            )
    if body.get("speed") == "fast" and not fast_mode:
        raise invalid(f"speed: fast mode is not available for {model_id}; omit `speed` or use 'standard'")
