"""The emulator itself: one object holding the clock, the prompt cache, the brain, batches and faults, and the one
Messages code path every route (sync, streaming, batch) goes through.

`create_message` = validate → resolve the model (404 for an unknown one) → render the prompt → plan the cache →
ask the brain → shape the answer as the API would (tool_choice, structured output, stop sequences, max_tokens)
→ the Message dict of reference §3 → commit the cache writes (an entry is readable once the response starts).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import jsonschema

from parity import catalog, pricing
from parity import prompt as prompts
from parity import tokenizer
from parity.emulator import ids, validation
from parity.emulator.batches import BatchStore
from parity.emulator.brains.base import Brain, BrainReply, BrainRequest
from parity.emulator.caching import PromptCache
from parity.emulator.clock import Clock, SystemClock
from parity.emulator.errors import APIError, invalid
from parity.emulator.faults import FaultSchedule
from parity.emulator.ratelimit import RateLimitMeter

if TYPE_CHECKING:
    import anthropic

    from parity.emulator.server import APIMiddleware
    from parity.emulator.transport import AsyncASGITransport, SyncASGITransport

DEFAULT_BASE_URL = "http://emulator.local"
DEFAULT_API_KEY = "sk-emulator"
DEFAULT_WORKSPACE = "wrkspc_01ParityEmulatorDefault0"
DEFAULT_ORGANIZATION = "00000000-0000-4000-8000-0000000e0001"
STRUCTURED_RETRIES = 3  # brain re-asks before the emulator builds a conforming answer itself
_HISTORY = 1024  # messages remembered for `diagnostics.previous_message_id`


@dataclass(frozen=True)
class RequestContext:
    """What the headers of one request establish: API version, betas, workspace, request id, the base URL."""

    api_version: str = validation.NEW_VERSION
    betas: tuple[str, ...] = ()
    workspace: str = DEFAULT_WORKSPACE
    request_id: str = field(default_factory=ids.request_id)
    base_url: str = DEFAULT_BASE_URL


@dataclass
class Prepared:
    """A Message computed but not yet delivered: its cache writes wait for `Emulator.commit` (response start)."""

    message: dict[str, Any]
    plan: Any
    started_at: float
    latency_s: float
    workspace: str
    model: str
    rendered: Any
    committed: bool = False


class Emulator:
    """A faithful local Claude API. See `app()`, `client()`, `create_message()`; state lives here, not globally.

    `api_keys`: accepted credentials (None accepts any key). `seed` is passed to the brain with every request.
    `sleep_latency`: the server waits the brain's simulated latency (streams spread it over the deltas).
    """

    def __init__(
        self,
        brain: Brain | None = None,
        clock: Clock | None = None,
        faults: FaultSchedule | None = None,
        table: pricing.PriceTable | None = None,
        sleep_latency: bool = False,
        *,
        seed: int = 0,
        api_keys: list[str] | tuple[str, ...] | None = None,
        organization_id: str = DEFAULT_ORGANIZATION,
    ):
        self.clock: Clock = clock or SystemClock()
        self.brain: Brain = brain if brain is not None else _default_brain(seed)
        self.faults = faults or FaultSchedule()
        self.table = table or pricing.default_table()
        self.sleep_latency = sleep_latency
        self.seed = seed
        self.api_keys = frozenset(api_keys) if api_keys is not None else None
        self.organization_id = organization_id
        self.cache = PromptCache(self.clock)
        self.ratelimits = RateLimitMeter(self.clock)
        self._lock = threading.RLock()
        self._history: OrderedDict[tuple[str, str], tuple[str, Any, int]] = OrderedDict()
        self._app = None
        self.batches = BatchStore(self)

    # ---- the Messages path -----------------------------------------------------------------------------------

    def create_message(self, params: dict, ctx: RequestContext | None = None, *, batch: bool = False) -> dict:
        """The Message for `params` (raises APIError like the API); cache writes are committed before returning."""
        prepared = self.prepare(params, ctx or RequestContext(), batch=batch)
        self.commit(prepared)
        return prepared.message

    def prepare(self, params: Any, ctx: RequestContext, *, batch: bool = False) -> Prepared:
        """Everything up to the response: validated, answered, shaped and accounted, cache not yet written."""
        body = validation.check_create_body(params, api_version=ctx.api_version, betas=ctx.betas)
        model = self.model(body["model"])
        validation.check_for_model(body, model, betas=ctx.betas, batch=batch, fast_mode=self._has_fast_mode(model.id))
        if batch and body.get("stream") is True:
            raise invalid("stream: streaming is not supported in Message Batches")
        if batch and body["max_tokens"] == 0:
            raise invalid("max_tokens: Input should be greater than or equal to 1 in Message Batches")
        started_at = self.clock.now()
        rendered = prompts.render({**body, "model": model.id})
        window = model.max_input_tokens
        if model.context_1m_beta and model.context_1m_beta in ctx.betas:
            window = max(window, 1_000_000)
        if rendered.total_tokens > window:
            raise invalid(f"prompt is too long: {rendered.total_tokens} tokens > {window} maximum")
        plan = self.cache.plan(model.id, rendered, body.get("cache_control"), model.min_cacheable_tokens, ctx.workspace)
        input_usage = _usage_of(plan)
        if body["max_tokens"] == 0:
            shaped = _Shaped(
                content=[], stop_reason="max_tokens", stop_sequence=None, stop_details=None, output_tokens=0
            )
            latency = 0.0
        else:
            reply, shaped = self._answer(body, model)
            latency = max(0.0, float(reply.latency_s or 0.0))
        message = self._message(body, ctx, shaped, input_usage, batch=batch)
        diagnostics = body.get("diagnostics")
        if diagnostics is not None:
            message["diagnostics"] = self._diagnose(diagnostics.get("previous_message_id"), model.id, rendered, ctx)
        return Prepared(message, plan, started_at, latency, ctx.workspace, model.id, rendered)

    def commit(self, prepared: Prepared) -> None:
        """The response has started: its cache writes become readable, and it is remembered for diagnostics."""
        with self._lock:
            if prepared.committed:
                return
            prepared.committed = True
            self.cache.commit(prepared.plan, prepared.started_at)
            usage = prepared.message["usage"]
            cached = usage.get("cache_read_input_tokens", 0) + usage.get("cache_creation_input_tokens", 0)
            self._history[(prepared.workspace, prepared.message["id"])] = (prepared.model, prepared.rendered, cached)
            while len(self._history) > _HISTORY:
                self._history.popitem(last=False)
        if prepared.message["usage"]["service_tier"] != "batch":  # batches have their own limits (reference §8.1)
            self.ratelimits.record(usage=prepared.message["usage"])

    def count_tokens(self, params: Any, ctx: RequestContext | None = None) -> dict[str, int]:
        """POST /v1/messages/count_tokens: `{"input_tokens": n}`; never reads or writes the cache."""
        ctx = ctx or RequestContext()
        body = validation.check_count_tokens_body(params, api_version=ctx.api_version, betas=ctx.betas)
        model = self.model(body["model"])
        validation.check_for_model(
            body, model, betas=ctx.betas, count_only=True, fast_mode=self._has_fast_mode(model.id)
        )
        return {"input_tokens": int(tokenizer.count_request({**body, "model": model.id}))}

    def model(self, model_id: str) -> catalog.ModelInfo:
        """The catalogue entry, or the API's 404 for an unknown or retired model."""
        try:
            info = catalog.get_model(model_id)
        except catalog.UnknownModelError:
            raise APIError(404, f"model: {model_id}") from None
        if info.lifecycle == "retired":
            raise APIError(404, f"model: {model_id}")
        return info

    # ---- wiring: ASGI app, transports, SDK clients -----------------------------------------------------------

    def app(self) -> APIMiddleware:
        """The Starlette app (built once): every route of the emulator behind the API's header checks."""
        if self._app is None:
            from parity.emulator.server import build_app

            self._app = build_app(self)
        return self._app

    def transport(self) -> SyncASGITransport:
        """A sync httpx2 transport into `app()` that streams like a socket (for `anthropic.Anthropic`)."""
        from parity.emulator.transport import SyncASGITransport

        return SyncASGITransport(self.app())

    def async_transport(self) -> AsyncASGITransport:
        """An async httpx2 transport into `app()` (for `anthropic.AsyncAnthropic`)."""
        from parity.emulator.transport import AsyncASGITransport

        return AsyncASGITransport(self.app())

    def client(self, **kwargs: Any) -> anthropic.Anthropic:
        """An `anthropic.Anthropic` wired to this emulator in-process (kwargs go to its constructor; the SDK's own
        defaults apply, e.g. max_retries=2)."""
        import anthropic
        import httpx2

        kwargs.setdefault("base_url", DEFAULT_BASE_URL)
        kwargs.setdefault("api_key", DEFAULT_API_KEY)
        if "http_client" not in kwargs:
            kwargs["http_client"] = httpx2.Client(transport=self.transport())
        return anthropic.Anthropic(**kwargs)

    def async_client(self, **kwargs: Any) -> anthropic.AsyncAnthropic:
        """An `anthropic.AsyncAnthropic` wired to this emulator in-process."""
        import anthropic
        import httpx2

        kwargs.setdefault("base_url", DEFAULT_BASE_URL)
        kwargs.setdefault("api_key", DEFAULT_API_KEY)
        if "http_client" not in kwargs:
            kwargs["http_client"] = httpx2.AsyncClient(transport=self.async_transport())
        return anthropic.AsyncAnthropic(**kwargs)

    # ---- answering -------------------------------------------------------------------------------------------

    def _has_fast_mode(self, model_id: str) -> bool:
        try:
            return self.table.price_for(model_id, self._today()).fast is not None
        except Exception:  # no price row: no fast price, so no fast mode
            return False

    def _today(self) -> date:
        return datetime.fromtimestamp(self.clock.now(), UTC).date()

    def _brain_request(self, body: dict[str, Any], model: catalog.ModelInfo, seed: int) -> BrainRequest:
        system = body.get("system", "")
        if isinstance(system, list):
            system = "\n\n".join(block["text"] for block in system)
        messages = [
            {
                "role": m["role"],
                "content": [{"type": "text", "text": m["content"]}] if isinstance(m["content"], str) else m["content"],
            }
            for m in body["messages"]
        ]
        return BrainRequest(
            model=model.id,
            system=system,
            messages=messages,
            max_tokens=body["max_tokens"],
            tools=list(body.get("tools") or []),
            tool_choice=body.get("tool_choice"),
            output_schema=validation.output_schema(body),
            stop_sequences=list(body.get("stop_sequences") or []),
            seed=seed,
        )

    def _answer(self, body: dict[str, Any], model: catalog.ModelInfo) -> tuple[BrainReply, _Shaped]:
        schema = validation.output_schema(body)
        reply = self.brain.reply(self._brain_request(body, model, self.seed))
        content = _normalise(reply.content)
        content = _apply_tool_choice(content, body)
        content = _enforce_strict_tools(content, body)
        if schema is not None and not any(b["type"] == "tool_use" for b in content):
            # Structured outputs are constrained decoding: the answer always parses and validates.
            attempt = 0
            while _conforming(content, schema) is None and attempt < STRUCTURED_RETRIES:
                attempt += 1
                retry = self.brain.reply(self._brain_request(body, model, self.seed + attempt))
                content = _normalise(retry.content)
            value = _conforming(content, schema)
            if value is None:
                value = repair(_parsed_json(content), schema)
            content = [{"type": "text", "text": json.dumps(value, ensure_ascii=False)}]
        return reply, _shape(content, reply, body, model.id)

    def _message(
        self, body: dict[str, Any], ctx: RequestContext, shaped: _Shaped, input_usage: dict[str, Any], *, batch: bool
    ) -> dict[str, Any]:
        blocks = []
        for block in shaped.content:
            if block["type"] == "text":
                blocks.append({"type": "text", "text": block["text"], "citations": None})
            else:
                blocks.append({"type": "tool_use", "id": block["id"], "name": block["name"], "input": block["input"]})
        creation = input_usage["cache_creation"]
        usage = {
            "input_tokens": input_usage["input_tokens"],
            "cache_creation_input_tokens": input_usage["cache_creation_input_tokens"],
            "cache_read_input_tokens": input_usage["cache_read_input_tokens"],
            "cache_creation": {
                "ephemeral_5m_input_tokens": creation.get("ephemeral_5m_input_tokens", 0),
                "ephemeral_1h_input_tokens": creation.get("ephemeral_1h_input_tokens", 0),
            },
            "output_tokens": shaped.output_tokens,
            "output_tokens_details": {"thinking_tokens": 0},
            "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
            "service_tier": "batch" if batch else "standard",
            "inference_geo": body.get("inference_geo") or "global",
            "speed": body.get("speed") or "standard",
        }
        return {
            "id": ids.message_id(),
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": blocks,
            "stop_reason": shaped.stop_reason,
            "stop_sequence": shaped.stop_sequence,
            "stop_details": shaped.stop_details,
            "container": None,
            "usage": usage,
        }

    def _diagnose(self, previous_id: str | None, model_id: str, rendered: Any, ctx: RequestContext) -> Any:
        """`diagnostics` of reference §6.12: why this request missed the cache the previous one left."""
        if previous_id is None:
            return None
        with self._lock:
            previous = self._history.get((ctx.workspace, previous_id))
        if previous is None:
            return {"cache_miss_reason": {"type": "previous_message_not_found"}}
        prev_model, prev_rendered, prev_cached = previous
        if prev_model != model_id:
            return {"cache_miss_reason": {"type": "model_changed", "cache_missed_input_tokens": prev_cached}}
        divergence = prompts.first_divergence(prev_rendered, rendered)
        if divergence is None:
            return None
        if divergence.path is None:  # a request setting (tool_choice, thinking, output format...) changed
            return {"cache_miss_reason": {"type": "unavailable"}}
        missed = max(0, prev_cached - divergence.reusable_tokens)
        if missed == 0:
            return None
        return {
            "cache_miss_reason": {"type": f"{divergence.invalidated_from}_changed", "cache_missed_input_tokens": missed}
        }


# ---- shaping the brain's answer ------------------------------------------------------------------------------------


@dataclass
class _Shaped:
    content: list[dict[str, Any]]
    stop_reason: str
    stop_sequence: str | None
    stop_details: dict[str, Any] | None
    output_tokens: int


def _default_brain(seed: int) -> Brain:
    from parity.emulator.brains.simulated import SimulatedBrain

    return SimulatedBrain(seed=seed)


def _normalise(content: Any) -> list[dict[str, Any]]:
    """Keep the text and tool_use blocks of a brain's answer, in order, with ids on every tool_use."""
    out: list[dict[str, Any]] = []
    for block in content or []:
        if not isinstance(block, Mapping):
            continue
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            out.append({"type": "text", "text": block["text"]})
        elif block.get("type") == "tool_use" and isinstance(block.get("name"), str):
            tool_input = block.get("input")
            out.append(
                {
                    "type": "tool_use",
                    "id": block.get("id") or ids.tool_use_id(),
                    "name": block["name"],
                    "input": dict(tool_input) if isinstance(tool_input, Mapping) else {},
                }
            )
    return out


def _tools_by_name(body: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in body.get("tools") or [] if isinstance(t, dict) and "name" in t}


def _apply_tool_choice(content: list[dict[str, Any]], body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """`none` removes tool calls; `any`/`tool` guarantee one (prefilled, so no text before it); parallel off."""
    choice = body.get("tool_choice") or {"type": "auto"}
    kind = choice["type"]
    if kind == "none" or not body.get("tools"):
        return [b for b in content if b["type"] != "tool_use"]
    if kind in ("any", "tool"):
        tools = _tools_by_name(body)
        wanted = choice.get("name") if kind == "tool" else None
        calls = [b for b in content if b["type"] == "tool_use" and (wanted is None or b["name"] == wanted)]
        if not calls:
            name = wanted or next((n for n, t in tools.items() if "input_schema" in t), next(iter(tools)))
            schema = tools[name].get("input_schema") or {"type": "object"}
            calls = [{"type": "tool_use", "id": ids.tool_use_id(), "name": name, "input": instance_for(schema)}]
        content = calls
    if choice.get("disable_parallel_tool_use"):
        first = next((i for i, b in enumerate(content) if b["type"] == "tool_use"), None)
        if first is not None:
            content = content[: first + 1]
    return content


def _enforce_strict_tools(content: list[dict[str, Any]], body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """`strict: true` tools get inputs that validate against their schema (constrained decoding)."""
    tools = _tools_by_name(body)
    for block in content:
        tool = tools.get(block["name"]) if block["type"] == "tool_use" else None
        if tool and tool.get("strict") and "input_schema" in tool:
            block["input"] = repair(block["input"], tool["input_schema"])
    return content


def _shape(content: list[dict[str, Any]], reply: BrainReply, body: Mapping[str, Any], model: str) -> _Shaped:
    """Stop sequences, then the max_tokens budget, in generation order; stop_reason and output_tokens to match."""
    stop_sequence = None
    stop_sequences = [s for s in body.get("stop_sequences") or [] if s]
    if stop_sequences:
        for i, block in enumerate(content):
            if block["type"] != "text":
                continue
            hits = [(block["text"].find(s), -len(s), s) for s in stop_sequences if s in block["text"]]
            if hits:
                at, _, stop_sequence = min(hits)
                content = content[:i] + [{"type": "text", "text": block["text"][:at]}]
                break
    budget = body["max_tokens"]
    kept: list[dict[str, Any]] = []
    used = 0
    truncated = False
    for block in content:
        cost = _block_tokens(block, model)
        if used + cost <= budget:
            kept.append(block)
            used += cost
            continue
        truncated = True
        if block["type"] == "text":
            text = truncate_text(block["text"], budget - used, model)
            if text:
                kept.append({"type": "text", "text": text})
        used = budget
        break
    kept = [b for b in kept if b["type"] != "text" or b["text"]]
    if truncated:
        stop_reason, stop_sequence = "max_tokens", None
    elif stop_sequence is not None:
        stop_reason = "stop_sequence"
    elif any(b["type"] == "tool_use" for b in kept):
        stop_reason = "tool_use"
    elif reply.stop_reason in ("refusal", "pause_turn", "model_context_window_exceeded"):
        stop_reason = reply.stop_reason
    else:
        stop_reason = "end_turn"
    details = reply.stop_details if stop_reason == "refusal" else None
    output_tokens = budget if truncated else max(1, used)
    return _Shaped(kept, stop_reason, stop_sequence, details, output_tokens)


def _block_tokens(block: dict[str, Any], model: str) -> int:
    if block["type"] == "text":
        return tokenizer.count_text(block["text"], model)
    tool_use = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": block["input"]}
    return tokenizer.count_block(tool_use, model)


def truncate_text(text: str, tokens: int, model: str | None = None) -> str:
    """The longest prefix of `text` that costs at most `tokens` tokens (what a generation cut at max_tokens left)."""
    if tokens <= 0:
        return ""
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if tokenizer.count_text(text[:mid], model) <= tokens:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo]


# ---- structured outputs --------------------------------------------------------------------------------------------


def _parsed_json(content: list[dict[str, Any]]) -> Any:
    """The JSON value in the answer's text (whole text, a ```json fence, or the outermost {...}/[...]), else None."""
    text = "".join(b["text"] for b in content if b["type"] == "text").strip()
    candidates = [text]
    if "```" in text:
        inner = text.split("```", 2)[1]
        candidates.append(inner.split("\n", 1)[1] if inner.startswith(("json", "JSON")) else inner)
    for opener, closer in (("{", "}"), ("[", "]")):
        start, end = text.find(opener), text.rfind(closer)
        if 0 <= start < end:
            candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except (ValueError, RecursionError):
            continue
    return None


def _conforming(content: list[dict[str, Any]], schema: dict[str, Any]) -> Any:
    """The answer's JSON if its whole text is exactly a value valid under `schema`, else None."""
    text = "".join(b["text"] for b in content if b["type"] == "text").strip()
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if _valid(value, schema) else None


def _valid(value: Any, schema: dict[str, Any]) -> bool:
    try:
        return jsonschema.Draft202012Validator(schema).is_valid(value)
    except Exception:
        return False


def repair(value: Any, schema: dict[str, Any], root: dict[str, Any] | None = None) -> Any:
    """`value` made valid under `schema`, keeping every part that already is (objects are fixed field by field)."""
    root = root or schema
    if _valid_in(value, schema, root):
        return value
    schema = _deref(schema, root)
    if isinstance(value, dict) and _types(schema) & {"object"}:
        props = schema.get("properties") or {}
        fixed: dict[str, Any] = {}
        for name, sub in props.items():
            if name in value:
                fixed[name] = repair(value[name], sub, root)
            elif name in (schema.get("required") or []):
                fixed[name] = instance_for(sub, root)
        if schema.get("additionalProperties") is not False:
            fixed.update({k: v for k, v in value.items() if k not in props})
        if _valid_in(fixed, schema, root):
            return fixed
    if isinstance(value, list) and _types(schema) & {"array"} and isinstance(schema.get("items"), dict):
        fixed_list = [repair(v, schema["items"], root) for v in value]
        if _valid_in(fixed_list, schema, root):
            return fixed_list
    return instance_for(schema, root)


def _valid_in(value: Any, schema: dict[str, Any], root: dict[str, Any]) -> bool:
    if schema is root:
        return _valid(value, root)
    return _valid(value, {**schema, **{k: root[k] for k in ("$defs", "definitions") if k in root}})


def _types(schema: dict[str, Any]) -> set[str]:
    kind = schema.get("type")
    if isinstance(kind, list):
        return set(kind)
    if isinstance(kind, str):
        return {kind}
    if "properties" in schema:
        return {"object"}
    if "items" in schema:
        return {"array"}
    return set()


def _deref(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    seen = 0
    while isinstance(schema, dict) and isinstance(schema.get("$ref"), str) and seen < 32:
        node: Any = root
        for part in schema["$ref"].lstrip("#").strip("/").split("/"):
            if not part:
                continue
            node = node.get(part.replace("~1", "/").replace("~0", "~"), {}) if isinstance(node, dict) else {}
        schema, seen = node, seen + 1
    return schema if isinstance(schema, dict) else {}


def instance_for(schema: Any, root: dict[str, Any] | None = None, depth: int = 0) -> Any:
    """A small value valid under `schema` (required fields only, minimum sizes): the answer of last resort."""
    if not isinstance(schema, dict) or depth > 32:
        return None
    root = root or schema
    schema = _deref(schema, root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            options = [o for o in schema[key] if isinstance(o, dict)]
            non_null = [o for o in options if o.get("type") != "null"] or options
            for option in non_null:
                candidate = instance_for(option, root, depth + 1)
                if _valid_in(candidate, option, root):
                    return candidate
            return instance_for(non_null[0], root, depth + 1) if non_null else None
    if schema.get("allOf"):
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            part = _deref(part, root) if isinstance(part, dict) else {}
            for key, val in part.items():
                if key == "properties":
                    merged.setdefault("properties", {}).update(val)
                elif key == "required":
                    merged["required"] = list(dict.fromkeys([*merged.get("required", []), *val]))
                else:
                    merged.setdefault(key, val)
        rest = {k: v for k, v in schema.items() if k != "allOf"}
        return instance_for({**merged, **rest}, root, depth + 1)
    types = _types(schema)
    kind = next((t for t in ("object", "array", "string", "integer", "number", "boolean") if t in types), None)
    if kind is None:
        return None if "null" in types else {}
    if kind == "object":
        props = schema.get("properties") or {}
        out = {name: instance_for(props.get(name, {}), root, depth + 1) for name in schema.get("required") or []}
        for name, sub in props.items():
            if len(out) >= int(schema.get("minProperties", 0)):
                break
            out.setdefault(name, instance_for(sub, root, depth + 1))
        return out
    if kind == "array":
        items = schema.get("items") if isinstance(schema.get("items"), dict) else {}
        prefix = [instance_for(s, root, depth + 1) for s in schema.get("prefixItems") or []]
        need = max(int(schema.get("minItems", 0)) - len(prefix), 0)
        return prefix + [instance_for(items, root, depth + 1) for _ in range(need)]
    if kind == "string":
        formats = {
            "date": "2026-01-01",
            "date-time": "2026-01-01T00:00:00Z",
            "email": "user@example.com",
            "uri": "https://example.com",
            "uuid": "00000000-0000-4000-8000-000000000000",
            "time": "00:00:00Z",
        }
        text = formats.get(schema.get("format"), "")
        return text + "x" * max(0, int(schema.get("minLength", 0)) - len(text))
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        high = schema.get("maximum", schema.get("exclusiveMaximum"))
        value: float = 0
        if isinstance(low, (int, float)) and not isinstance(low, bool):
            value = low + (1 if "exclusiveMinimum" in schema and "minimum" not in schema else 0)
        elif isinstance(high, (int, float)) and not isinstance(high, bool) and high < 0:
            value = high - (1 if "exclusiveMaximum" in schema and "maximum" not in schema else 0)
        step = schema.get("multipleOf")
        if isinstance(step, (int, float)) and step > 0 and value % step:
            value = (value // step + 1) * step
        return int(value) if kind == "integer" else value
    return False


def _usage_of(plan: Any) -> dict[str, Any]:
    """The input counters of a `CachePlan`, as the usage object carries them."""
    usage = plan.usage
    creation = usage.get("cache_creation") or {}
    return {
        "input_tokens": int(usage["input_tokens"]),
        "cache_creation_input_tokens": int(usage.get("cache_creation_input_tokens") or 0),
        "cache_read_input_tokens": int(usage.get("cache_read_input_tokens") or 0),
        "cache_creation": dict(creation),
    }
