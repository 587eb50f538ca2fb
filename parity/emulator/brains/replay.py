"""The replay brain: answers from recorded outputs, looked up by (model, prompt).

The prompt key is the last user turn's text with whitespace normalised, so a replayed request only has to carry
the same question, not byte-identical framing. Sources:

- Exchange JSONL (parity.exchange): every exchange with a response is one recorded answer of the model that served it.
- The RouteLLM GSM8K CSV (../shared/data/routellm-gsm8k-responses.csv): a `prompt` column, one
  `<model>_response` column per recorded model and a `<model>` column saying whether that answer was right.
  `models` maps the ids requests use to those recorded names, e.g.
  {"claude-haiku-4-5": "mistralai/Mixtral-8x7B-Instruct-v0.1", "claude-opus-4-8": "gpt-4-1106-preview"}
  (that mapping is the default when a CSV has exactly those columns and no mapping is given).

A prompt with no recording raises ReplayMiss naming the prompt's first 60 characters; the emulator answers it as
an API error rather than inventing text.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parity.emulator.brains.base import BrainReply, BrainRequest
from parity.emulator.brains.profiles import canonical
from parity.errors import InputError, ParityError
from parity.exchange import Exchange, read_jsonl

GSM8K_MODELS = {
    "claude-haiku-4-5": "mistralai/Mixtral-8x7B-Instruct-v0.1",
    "claude-opus-4-8": "gpt-4-1106-preview",
}
RESPONSE_SUFFIX = "_response"


class ReplayMiss(ParityError, LookupError):
    """No recorded answer for this model and prompt."""


@dataclass(frozen=True)
class Recorded:
    """One recorded answer: its content blocks, why it stopped, whether it was judged right (when known)."""

    content: list[dict[str, Any]]
    stop_reason: str = "end_turn"
    correct: bool | None = None
    latency_s: float = 0.0


def normalise(text: str) -> str:
    """The lookup form of a prompt: whitespace runs collapsed to one space, ends trimmed."""
    return " ".join(text.split())


class ReplayBrain:
    """Answers from recordings; see the module docstring for sources and the model mapping."""

    name = "replay"

    def __init__(self, source: str | Path | None = None, *, models: Mapping[str, str] | None = None) -> None:
        self.models: dict[str, str] = {canonical(k): v for k, v in (models or {}).items()}
        self._answers: dict[tuple[str, str], list[Recorded]] = {}
        if source is not None:
            self.load(source)

    # -- loading -------------------------------------------------------------------------------------------------

    def load(self, path: str | Path) -> int:
        """Load a .csv (RouteLLM layout) or Exchange .jsonl file; returns how many answers were added."""
        path = Path(path)
        if path.suffix.lower() == ".csv":
            return self.load_csv(path)
        if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
            return self.load_exchanges(path)
        raise InputError(
            f"cannot replay {path.suffix or 'extensionless'} files; give an Exchange .jsonl or a RouteLLM-style .csv",
            file=str(path),
        )

    def load_exchanges(self, path: str | Path) -> int:
        """Every exchange with a response; lines that cannot be read are skipped (the audit reports them)."""
        added = 0
        for _line, record in read_jsonl(path):
            if not isinstance(record, Exchange) or record.response is None:
                continue
            prompt = _last_user_text(record.request)
            model = record.response.get("model") or record.request.get("model")
            if not prompt or not isinstance(model, str):
                continue
            blocks = [b for b in record.response.get("content") or [] if b.get("type") in ("text", "tool_use")]
            stop = record.response.get("stop_reason") or "end_turn"
            self._add(model, prompt, Recorded(blocks, stop, latency_s=record.duration_ms / 1000))
            added += 1
        return added

    def load_csv(self, path: str | Path, *, prompt_column: str = "prompt") -> int:
        """A CSV with a prompt column and `<model>_response` columns (and optional `<model>` True/False columns)."""
        csv.field_size_limit(sys.maxsize)
        added = 0
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            if prompt_column not in columns:
                raise InputError(f"no {prompt_column!r} column (columns: {', '.join(columns)})", file=str(path))
            recorded = [c[: -len(RESPONSE_SUFFIX)] for c in columns if c.endswith(RESPONSE_SUFFIX)]
            if not recorded:
                raise InputError(
                    f"no '<model>{RESPONSE_SUFFIX}' columns (columns: {', '.join(columns)})", file=str(path)
                )
            if not self.models and set(GSM8K_MODELS.values()) <= set(recorded):
                self.models = dict(GSM8K_MODELS)
            for row in reader:
                prompt = row.get(prompt_column) or ""
                if not prompt.strip():
                    continue
                for name in recorded:
                    text = row.get(name + RESPONSE_SUFFIX)
                    if text is None:
                        continue
                    verdict = (row.get(name) or "").strip().lower()
                    correct = True if verdict == "true" else False if verdict == "false" else None
                    self._add(name, prompt, Recorded([{"type": "text", "text": text.strip()}], correct=correct))
                    added += 1
        return added

    def add(self, model: str, prompt: str, answer: str | list[dict[str, Any]], *, correct: bool | None = None) -> None:
        """Record one answer by hand (tests, small fixtures)."""
        content = [{"type": "text", "text": answer}] if isinstance(answer, str) else list(answer)
        self._add(model, prompt, Recorded(content, correct=correct))

    def _add(self, model: str, prompt: str, recorded: Recorded) -> None:
        self._answers.setdefault((canonical(model), normalise(prompt)), []).append(recorded)

    # -- answering -----------------------------------------------------------------------------------------------

    def recorded_model(self, model: str) -> str:
        """The recorded model name that answers requests for `model`."""
        model = canonical(model)
        return self.models.get(model, model)

    def lookup(self, model: str, prompt: str, seed: int = 0) -> Recorded:
        """The recorded answer of `model` to `prompt` (several recordings: the seed picks one); ReplayMiss if none."""
        key = normalise(prompt)
        recordings = self._answers.get((self.recorded_model(model), key))
        if recordings:
            return recordings[seed % len(recordings)]
        others = sorted({m for (m, p) in self._answers if p == key})
        where = f"the prompt starting {key[:60]!r}"
        if others:
            raise ReplayMiss(
                f"replay has {where} recorded for {', '.join(others)} but not for {model!r}; map it with "
                f"models={{{model!r}: {others[0]!r}}}"
            )
        raise ReplayMiss(
            f"replay has no recorded answer to {where} ({len({p for _, p in self._answers})} prompts recorded); "
            "send one of the recorded prompts or record this one first"
        )

    def reply(self, request: BrainRequest) -> BrainReply:
        recorded = self.lookup(request.model, request.last_user_text, request.seed)
        return BrainReply([dict(b) for b in recorded.content], recorded.stop_reason, None, recorded.latency_s)

    def __len__(self) -> int:
        return sum(len(v) for v in self._answers.values())


def _last_user_text(request: Mapping[str, Any]) -> str:
    for message in reversed(request.get("messages") or []):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        return "\n".join(b.get("text", "") for b in content or [] if isinstance(b, Mapping) and b.get("type") == "text")
    return ""
