"""The emulator's state and its one Messages code path, with no HTTP: every route (sync, streaming, batch) of
`server` and `batches` calls it, and `service.Emulator` adds the ASGI app, transports and SDK clients on top.

`create_message` = validate → resolve the model (404 for an unknown one) → render the prompt → plan the cache →
ask the brain → shape the answer as the API would (tool_choice, structured output, stop sequences, max_tokens)
→ the Message dict of reference §3 → commit the cache writes (an entry is readable once the response starts).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, date, datetime
from collections.abc import Callable
from typing import Any

from parity import catalog, pricing
from parity import prompt as prompts
from parity.api import ids
from parity.api.errors import APIError, invalid
from parity.emulator import validation
from parity.emulator.batches import BatchStore
from parity.emulator.brains.base import Brain, BrainReply, BrainRequest
from parity.emulator.brains.simulated import SimulatedBrain
from parity.emulator.caching import PromptCache
from parity.emulator.clock import Clock, SystemClock
from parity.emulator.context import DEFAULT_ORGANIZATION, RequestContext
from parity.emulator.faults import FaultSchedule
from parity.emulator.ratelimit import RateLimitMeter
from parity.emulator.schema_instance import repair
from parity.emulator.shaping import (
    Shaped,
    apply_tool_choice,
    conforming,
    enforce_strict_tools,
    normalise,
    parsed_json,
    shape,
    usage_of,
)

STRUCTURED_RETRIES = 3  # brain re-asks before the emulator builds a conforming answer itself
_HISTORY = 1024  # messages remembered for `diagnostics.previous_message_id`


@dataclass
class Prepared:
    """A Message computed but not yet delivered: its cache writes wait for `commit` (response start)."""

    message: dict[str, Any]
    plan: Any
    started_at: float
    latency_s: float
    workspace: str
    model: str
    rendered: Any
    committed: bool = False


class EmulatorCore:
    """The emulator's state (clock, prompt cache, brain, batches, faults, rate limits) and its Messages path:
    `create_message`, `prepare`/`commit`, `count_tokens`, `model`. State lives here, not globally.

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
        self.brain: Brain = brain if brain is not None else SimulatedBrain(seed=seed)
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
        self.on_commit: list[Callable[[Prepared], None]] = []
        """Called once per committed response (plain, streamed or batch), e.g. the Admin API's usage log."""
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
        input_usage = usage_of(plan)
        if body["max_tokens"] == 0:
            shaped = Shaped(
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
        for hook in self.on_commit:
            hook(prepared)

    def count_tokens(self, params: Any, ctx: RequestContext | None = None) -> dict[str, int]:
        """POST /v1/messages/count_tokens: `{"input_tokens": n}`; never reads or writes the cache."""
        ctx = ctx or RequestContext()
        body = validation.check_count_tokens_body(params, api_version=ctx.api_version, betas=ctx.betas)
        model = self.model(body["model"])
        validation.check_for_model(
            body, model, betas=ctx.betas, count_only=True, fast_mode=self._has_fast_mode(model.id)
        )
        return {"input_tokens": int(prompts.count_request({**body, "model": model.id}))}

    def model(self, model_id: str) -> catalog.ModelInfo:
        """The catalogue entry, or the API's 404 for an unknown or retired model."""
        try:
            info = catalog.get_model(model_id)
        except catalog.UnknownModelError:
            raise APIError(404, f"model: {model_id}") from None
        if info.lifecycle == "retired":
            raise APIError(404, f"model: {model_id}")
        return info

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

    def _answer(self, body: dict[str, Any], model: catalog.ModelInfo) -> tuple[BrainReply, Shaped]:
        schema = validation.output_schema(body)
        reply = self.brain.reply(self._brain_request(body, model, self.seed))
        content = normalise(reply.content)
        content = apply_tool_choice(content, body)
        content = enforce_strict_tools(content, body)
        if schema is not None and not any(b["type"] == "tool_use" for b in content):
            # Structured outputs are constrained decoding: the answer always parses and validates.
            attempt = 0
            while conforming(content, schema) is None and attempt < STRUCTURED_RETRIES:
                attempt += 1
                retry = self.brain.reply(self._brain_request(body, model, self.seed + attempt))
                content = normalise(retry.content)
            value = conforming(content, schema)
            if value is None:
                value = repair(parsed_json(content), schema)
            content = [{"type": "text", "text": json.dumps(value, ensure_ascii=False)}]
        return reply, shape(content, reply, body, model.id)

    def _message(
        self, body: dict[str, Any], ctx: RequestContext, shaped: Shaped, input_usage: dict[str, Any], *, batch: bool
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
