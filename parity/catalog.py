"""The model catalogue: which Claude models exist, their limits and what each accepts.

The data lives in parity/data/models.toml so it can be read and corrected without touching code. The
emulator answers /v1/models from it and validates requests against it (prefill, thinking types, window);
the audit and the emulator's cache read `min_cacheable_tokens` from it.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache
from importlib import resources
from typing import Any

from parity.errors import InputError, ParityError

LINES = ("haiku", "sonnet", "opus", "fable", "mythos")
LIFECYCLES = ("active", "deprecated", "retired")
DEFAULT_LIFECYCLES = ("active", "deprecated")  # what GET /v1/models lists when no lifecycle[] is given
THINKING_TYPES = ("enabled", "adaptive", "disabled", "between_tools")
EFFORT_LEVELS = ("low", "medium", "high", "xhigh", "max")
# Capability keys of ModelCapabilities (SDK 2.x) that are plain yes/no; a model lists the ones it lacks.
CAPABILITIES = ("batch", "citations", "code_execution", "context_management", "image_input", "pdf_input",
                "server_tools", "structured_outputs")  # fmt: skip
_PACKAGED = "parity/data/models.toml"
_FIELDS = {
    "id", "aliases", "display_name", "line", "created_at", "lifecycle", "retires_at", "max_input_tokens",
    "max_tokens", "context_1m_beta", "min_cacheable_tokens", "min_cacheable_assumed", "supports_prefill",
    "thinking", "effort", "new_tokenizer", "lacks", "source",
}  # fmt: skip


class UnknownModelError(ParityError, LookupError):
    """A model id Parity knows nothing about; the message names it and says what to do."""

    def __init__(self, model: str, *, known: Iterable[str] = (), hint: str = "") -> None:
        self.model = model
        close = difflib.get_close_matches(model, list(known), n=3, cutoff=0.6)
        message = f"Unknown model {model!r}."
        if close:
            message += " Did you mean " + " or ".join(repr(c) for c in close) + "?"
        if hint:
            message += " " + hint
        super().__init__(message)


@dataclass(frozen=True)
class ModelInfo:
    """One model of the catalogue (see parity/data/models.toml for what each field means)."""

    id: str
    aliases: tuple[str, ...]
    display_name: str
    line: str
    created_at: datetime
    lifecycle: str
    retires_at: datetime | None
    max_input_tokens: int
    max_tokens: int
    context_1m_beta: str | None
    min_cacheable_tokens: int
    min_cacheable_assumed: bool
    supports_prefill: bool
    thinking_types: frozenset[str]
    effort_levels: tuple[str, ...]
    new_tokenizer: bool
    lacks: frozenset[str]
    source: str

    def supports_thinking(self, thinking_type: str) -> bool:
        """Whether `thinking.type` = thinking_type is accepted (the API answers 400 otherwise)."""
        return thinking_type in self.thinking_types

    def supports(self, capability: str) -> bool:
        """Whether a yes/no capability of CAPABILITIES (structured_outputs, batch, ...) is available."""
        if capability not in CAPABILITIES:
            raise ValueError(f"unknown capability {capability!r}; expected one of {list(CAPABILITIES)}")
        return capability not in self.lacks


def get_model(model_id: str) -> ModelInfo:
    """The catalogue entry for a canonical id or an alias; UnknownModelError if there is none."""
    return _catalogue()[0][resolve(model_id)]


def resolve(model_id: str) -> str:
    """Canonical id for `model_id` (e.g. claude-haiku-4-5-20251001 -> claude-haiku-4-5)."""
    models, aliases = _catalogue()
    if model_id in models:
        return model_id
    if model_id in aliases:
        return aliases[model_id]
    raise UnknownModelError(
        model_id,
        known=[*models, *aliases],
        hint="Parity's model catalogue (parity/data/models.toml) has no such id; use a Claude API model id "
        "such as 'claude-opus-4-8' or 'claude-haiku-4-5'.",
    )


def all_models(lifecycles: Iterable[str] | None = None) -> list[ModelInfo]:
    """Models newest first (by created_at, then id); `lifecycles` filters (None = all of them)."""
    wanted = set(LIFECYCLES if lifecycles is None else lifecycles)
    unknown = wanted - set(LIFECYCLES)
    if unknown:
        raise ValueError(f"unknown lifecycle {sorted(unknown)}; expected some of {list(LIFECYCLES)}")
    chosen = [m for m in _catalogue()[0].values() if m.lifecycle in wanted]
    return sorted(chosen, key=lambda m: (m.created_at, m.id), reverse=True)


def model_info_json(model: ModelInfo) -> dict[str, Any]:
    """The ModelInfo object of GET /v1/models in the SDK 2.x wire shape (claude-api.md §9.1)."""
    thinking = {t: {"supported": t in model.thinking_types} for t in THINKING_TYPES}
    effort: dict[str, Any] = {"supported": bool(model.effort_levels)}
    effort.update({level: {"supported": level in model.effort_levels} for level in EFFORT_LEVELS})
    return {
        "type": "model",
        "id": model.id,
        "display_name": model.display_name,
        "created_at": _rfc3339(model.created_at),
        "lifecycle": model.lifecycle,
        "line": model.line,
        "deprecated_at": None,
        "retires_at": _rfc3339(model.retires_at) if model.retires_at else None,
        "max_input_tokens": model.max_input_tokens,
        "max_tokens": model.max_tokens,
        "capabilities": {
            **{c: {"supported": model.supports(c)} for c in CAPABILITIES},
            "server_tools": {
                "supported": model.supports("server_tools"),
                "web_search": {"supported": model.supports("server_tools")},
                "code_execution": {"supported": model.supports("server_tools")},
            },
            "effort": effort,
            "thinking": {
                "supported": bool(model.thinking_types & {"enabled", "adaptive"}),
                "types": thinking,
            },
        },
    }


def _rfc3339(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


@cache
def _catalogue() -> tuple[dict[str, ModelInfo], dict[str, str]]:
    text = resources.files("parity").joinpath("data/models.toml").read_text(encoding="utf-8")
    try:
        rows = tomllib.loads(text).get("model", [])
    except tomllib.TOMLDecodeError as exc:
        raise InputError(str(exc), file=_PACKAGED) from exc
    models: dict[str, ModelInfo] = {}
    aliases: dict[str, str] = {}
    for index, row in enumerate(rows):
        info = _parse(row, f"model[{index}]")
        for name in (info.id, *info.aliases):
            if name in models or name in aliases:
                raise InputError(f"model id {name!r} appears twice", file=_PACKAGED, field=f"model[{index}].id")
        models[info.id] = info
        aliases.update({alias: info.id for alias in info.aliases})
    return models, aliases


def _parse(row: dict[str, Any], where: str) -> ModelInfo:
    def need(key: str, kind: type | tuple[type, ...]) -> Any:
        value = row.get(key)
        if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
            expected = getattr(kind, "__name__", kind)
            raise InputError(f"expected {expected}, got {value!r}", file=_PACKAGED, field=f"{where}.{key}")
        return value

    def choice(key: str, allowed: tuple[str, ...]) -> str:
        value = need(key, str)
        if value not in allowed:
            raise InputError(f"{value!r} is not one of {list(allowed)}", file=_PACKAGED, field=f"{where}.{key}")
        return value

    def subset(key: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
        values = tuple(need(key, list))
        bad = [v for v in values if v not in allowed]
        if bad:
            raise InputError(f"{bad} not in {list(allowed)}", file=_PACKAGED, field=f"{where}.{key}")
        return values

    unknown = set(row) - _FIELDS
    if unknown:
        raise InputError(f"unknown field(s) {sorted(unknown)}", file=_PACKAGED, field=where)
    retires_at = row.get("retires_at")
    return ModelInfo(
        id=need("id", str),
        aliases=tuple(row.get("aliases", ())),
        display_name=need("display_name", str),
        line=choice("line", LINES),
        created_at=need("created_at", datetime),
        lifecycle=choice("lifecycle", LIFECYCLES),
        retires_at=need("retires_at", datetime) if retires_at is not None else None,
        max_input_tokens=need("max_input_tokens", int),
        max_tokens=need("max_tokens", int),
        context_1m_beta=row.get("context_1m_beta"),
        min_cacheable_tokens=need("min_cacheable_tokens", int),
        min_cacheable_assumed=bool(row.get("min_cacheable_assumed", False)),
        supports_prefill=need("supports_prefill", bool),
        thinking_types=frozenset(subset("thinking", THINKING_TYPES)),
        effort_levels=subset("effort", EFFORT_LEVELS),
        new_tokenizer=need("new_tokenizer", bool),
        lacks=frozenset(subset("lacks", CAPABILITIES)) if "lacks" in row else frozenset(),
        source=need("source", str),
    )
