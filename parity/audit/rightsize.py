"""Right-size lever: template families whose outputs look too simple for the big model they run on.

The shape of a family's outputs is measured while streaming, in bounded memory:

* **short**: the share of responses of at most `short_tokens` output tokens (a histogram of output sizes);
* **closed set**: how many distinct normalised answers there are (a set capped at `closed_max` + 1): a
  classifier answering one of a handful of labels;
* **extractive**: on the first `sample` responses, the share whose words nearly all occur in the prompt
  (the model copies facts out of its input rather than writing new text);
* JSON answers and tool calls are counted too (structured extraction).

A family on an Opus/Sonnet (or Fable/Mythos) model that is short, closed-set or extractive is a candidate for
`parity prove`: the saving shown is what the same tokens would cost on the cheaper model, and it is a
**hypothesis** until a proof says the cheaper model is at least as good within the margin.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from parity import catalog
from parity.audit.cost import CostAcc, PriceKey, Pricer, usd

__all__ = ["BIG_LINES", "BilledChoice", "OutputStats", "RightsizePolicy", "as_billed", "billed_choice",
           "candidate_model", "shape_reasons"]

BIG_LINES = frozenset({"opus", "sonnet", "fable", "mythos"})
OUTPUT_BINS = (8, 16, 32, 64, 128, 256, 512, 1024, 2048)  # upper bounds; one more bin for the rest
_WORD = re.compile(r"[^\W_]{3,}", re.UNICODE)


@dataclass(frozen=True)
class RightsizePolicy:
    min_requests: int = 20
    short_tokens: int = 64
    short_share: float = 0.9
    closed_max: int = 32
    extractive_share: float = 0.8
    sample: int = 64
    shape_sample: int = 2000  # responses per family whose answers are read (distinct set, tool calls)


@dataclass
class OutputStats:
    """Bounded summary of one family's outputs."""

    n: int = 0
    answered: int = 0
    bins: list[int] = field(default_factory=lambda: [0] * (len(OUTPUT_BINS) + 1))
    distinct: set[int] = field(default_factory=set)
    distinct_overflow: bool = False
    sampled: int = 0
    extractive: int = 0
    json_answers: int = 0
    tool_calls: int = 0
    truncated: int = 0

    def observe(self, request: Mapping[str, Any], response: Mapping[str, Any], output_tokens: int,
                policy: RightsizePolicy, *, bodies: bool = True) -> None:
        """Count one answer's size; judge its shape too when the log holds the answer's text (`bodies`)."""
        self.n += 1
        self.bins[bisect.bisect_left(OUTPUT_BINS, output_tokens)] += 1
        if response.get("stop_reason") == "max_tokens":
            self.truncated += 1
        if not bodies or self.answered >= policy.shape_sample:
            return  # the answers' shape is judged on the first responses; sizes on all of them
        self.answered += 1
        answer, tool = _answer(response)
        if tool:
            self.tool_calls += 1
        if not self.distinct_overflow:
            self.distinct.add(hash(" ".join(answer.lower().split())))
            if len(self.distinct) > policy.closed_max:
                self.distinct_overflow = True
                self.distinct.clear()
        if self.sampled < policy.sample:
            self.sampled += 1
            stripped = answer.strip()
            if stripped[:1] in ("{", "[") and not tool:
                try:
                    json.loads(stripped)
                    self.json_answers += 1
                except ValueError:
                    pass
            if _is_extractive(answer, request):
                self.extractive += 1

    def merge(self, other: OutputStats, policy: RightsizePolicy) -> None:
        self.n += other.n
        self.bins = [a + b for a, b in zip(self.bins, other.bins)]
        if self.distinct_overflow or other.distinct_overflow:
            self.distinct_overflow, self.distinct = True, set()
        else:
            self.distinct |= other.distinct
            if len(self.distinct) > policy.closed_max:
                self.distinct_overflow, self.distinct = True, set()
        for name in ("answered", "sampled", "extractive", "json_answers", "tool_calls", "truncated"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def share_at_most(self, tokens: int) -> float:
        if not self.n:
            return 0.0
        kept = sum(c for bound, c in zip(OUTPUT_BINS, self.bins) if bound <= tokens)
        return kept / self.n

    def median_bound(self) -> int | None:
        """Upper bound of the histogram bin holding the median output size (None for the open last bin)."""
        if not self.n:
            return None
        seen = 0
        for bound, count in zip((*OUTPUT_BINS, None), self.bins):
            seen += count
            if seen * 2 >= self.n:
                return bound
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "responses": self.n,
            "output_tokens_histogram": {
                **{f"<={b}": c for b, c in zip(OUTPUT_BINS, self.bins)}, f">{OUTPUT_BINS[-1]}": self.bins[-1]},
            "median_output_tokens_at_most": self.median_bound(),
            "answers_read": self.answered,
            "distinct_answers": None if self.distinct_overflow else len(self.distinct),
            "sampled": self.sampled,
            "extractive_in_sample": self.extractive,
            "json_answers_in_sample": self.json_answers,
            "tool_calls": self.tool_calls,
            "truncated_at_max_tokens": self.truncated,
        }


def shape_reasons(stats: OutputStats, policy: RightsizePolicy) -> list[str]:
    """Why a family's outputs look simple enough to try a smaller model (empty: they do not)."""
    if stats.n < policy.min_requests or stats.truncated > stats.n * 0.05:
        return []
    reasons = []
    share = stats.share_at_most(policy.short_tokens)
    if share >= policy.short_share:
        reasons.append(f"short: {share:.0%} of outputs are at most {policy.short_tokens} tokens")
    if not stats.distinct_overflow and stats.answered and len(stats.distinct) * 4 <= stats.answered:
        reasons.append(f"closed set: {len(stats.distinct)} distinct answers in {stats.answered} responses")
    if stats.sampled and stats.extractive / stats.sampled >= policy.extractive_share:
        reasons.append(f"extractive: {stats.extractive} of {stats.sampled} sampled answers copy their words from the prompt")
    return reasons


def candidate_model(pricer: Pricer, day: date, preferred: str | None = None) -> str | None:
    """The cheaper model to try: `preferred` if priced, else the cheapest active Haiku priced on `day`."""
    if preferred:
        return preferred if pricer.can_price(preferred, day) else None
    best: tuple[Any, str] | None = None
    for info in catalog.all_models(["active"]):
        if info.line != "haiku" or not pricer.can_price(info.id, day):
            continue
        rates = pricer.table.price_for(info.id, day).rates
        score = (rates.input + rates.output, info.id)
        if best is None or score < best:
            best = score
    return best[1] if best else None


def as_billed(acc: CostAcc, model: str) -> CostAcc:
    """`acc`'s token vectors as `model` would bill them, under `model`'s own cache rules.

    Why: repricing logged cache reads at a cheaper model's read price assumes that model caches the same prefix. A
    model whose minimum cacheable prefix is above it caches nothing (both counters 0, no error; claude-api.md §6.7),
    so every read and write becomes full-price input. Each price key's cached prefix is its mean cached tokens per
    request (reads + writes over requests); TTLs are the same on every model, so reads stay reads otherwise.
    Fast-mode keys keep their model (fast mode exists only there). Tokenizer differences are not modelled."""
    minimum = _minimum(model)
    out = CostAcc()
    for key, (n, inp, w5, w1, read, output) in acc.v.items():
        if isinstance(key, PriceKey) and key.speed == "fast":
            out.add(key, n, inp, w5, w1, read, output)
            continue
        new_key = key._replace(model=model) if isinstance(key, PriceKey) else key
        cached = w5 + w1 + read
        if cached and n and cached < minimum * n:  # below the model's minimum: nothing is cached
            out.add(new_key, n, inp + cached, 0, 0, 0, output)
        else:
            out.add(new_key, n, inp, w5, w1, read, output)
    return out


@dataclass(frozen=True)
class BilledChoice:
    """The right-size candidate priced as billed: the model to prove (None when none saves), and why."""

    candidate: str | None
    cost: Decimal | None
    rejected: str | None = None  # the preferred candidate, when it would cost more than today
    rejected_cost: Decimal | None = None
    note: str = ""


def billed_choice(pricer: Pricer, acc: CostAcc, current: str, preferred: str, day: date) -> BilledChoice:
    """`preferred` if it saves once billed under its own cache rules; else the next model up that does.

    "Next" is by list price: the active models priced on `day` that cost more than `preferred` and less than
    `current` (input + output per MTok), cheapest first; the first whose billed cost is below today's."""
    now = pricer.total(acc)
    cost = pricer.total(as_billed(acc, preferred))
    if cost < now:
        return BilledChoice(preferred, cost)
    floor, ceiling = _list_price(pricer, preferred, day), _list_price(pricer, current, day)
    ladder = []
    for info in catalog.all_models(["active"]):
        if info.id in (preferred, current) or not pricer.can_price(info.id, day):
            continue
        price = _list_price(pricer, info.id, day)
        if floor < price < ceiling:
            ladder.append((price, info.id))
    tokens = acc.tokens()
    cached = tokens["cache_read"] + tokens["cache_write_5m"] + tokens["cache_write_1h"]
    per_request = cached // acc.requests if acc.requests else 0
    why = (f"{preferred} would cost ${usd(cost)}, more than ${usd(now)} on {current} today: it caches only prefixes of "
           f"{_minimum(preferred):,}+ tokens, and this family's cached prefix is about {per_request:,} tokens, so "
           "every cache read becomes full-price input")
    for _, model in sorted(ladder):
        alt = pricer.total(as_billed(acc, model))
        if alt < now:
            return BilledChoice(model, alt, preferred, cost, f"{why}; {model} saves (its minimum is "
                                                              f"{_minimum(model):,} tokens)")
    return BilledChoice(None, None, preferred, cost, f"{why}; no cheaper model saves once billed")


def _list_price(pricer: Pricer, model: str, day: date) -> Decimal:
    rates = pricer.table.price_for(model, day).rates
    return rates.input + rates.output


def _minimum(model: str) -> int:
    try:
        return catalog.get_model(model).min_cacheable_tokens
    except Exception:  # unknown to the catalogue: assume it caches what today's model cached
        return 0


def model_line(model: str) -> str | None:
    try:
        return catalog.get_model(model).line
    except Exception:  # unknown to the catalogue (a custom price row): no line
        return None


def _answer(response: Mapping[str, Any]) -> tuple[str, bool]:
    content = response.get("content")
    if isinstance(content, str):
        return content, False
    if not isinstance(content, list):
        return "", False
    parts: list[str] = []
    tool = False
    for block in content:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            parts.append(block["text"])
        elif kind == "tool_use":
            tool = True
            parts.append(f"{block.get('name')}:{json.dumps(block.get('input'), sort_keys=True, default=str)}")
    return "\n".join(parts), tool


def _prompt_text(request: Mapping[str, Any]) -> str:
    messages = request.get("messages")
    if not isinstance(messages, list):
        return ""
    parts = []
    for message in messages[-2:]:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            for block in content:
                if isinstance(block, dict) and isinstance(block.get("text"), str):
                    parts.append(block["text"])
                elif isinstance(block, dict) and block.get("type") == "tool_result":
                    parts.append(json.dumps(block.get("content"), default=str))
    return "\n".join(parts)


def _is_extractive(answer: str, request: Mapping[str, Any]) -> bool:
    words = _WORD.findall(answer.lower())
    if len(words) < 2:
        return False
    prompt = _prompt_text(request).lower()
    found = sum(1 for w in words if w in prompt)
    return found >= 0.9 * len(words)


FIX = (
    "outputs look simple for this model: run `parity prove --task {family} --candidate {candidate}` to test, on "
    "your own prompts, whether {candidate} is at least as good within a margin; route only if it proves so"
)
