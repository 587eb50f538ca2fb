"""A Messages request as the prompt cache sees it: positions in tools → system → messages order, with prefix hashes.

Shared by the emulator's prompt cache and the audit's cache diagnosis, so both agree on where a prefix breaks.
Each tool definition, system block and message content block is one position (a string `system` is the single
block "system.0"; a string message content the single block "messages.N.content.0"). A position's text is the
compact JSON of its block in the request's own key order without `cache_control` (moving a breakpoint does not
change the prefix; reordering keys does, as on the real API, reference claude-api.md §6.1).

The prefix hash at a position chains the model, every earlier position and the request settings that invalidate
that level (§6.9): `speed` and the citations toggle (a document with citations enabled) reach the system level;
`tool_choice`, images anywhere, thinking, effort, output format and context management only the messages level.
Hashes and texts are computed on first use, so counting tokens over a large log never serialises a block.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from parity import tokenizer
from parity.canonical import canonical_json

LEVELS = ("tools", "system", "messages")
_RANK = {level: i for i, level in enumerate(LEVELS)}
TTL_SECONDS = {"5m": 300, "1h": 3600}
DEFAULT_TTL = "5m"
_UNCACHEABLE = frozenset({"thinking", "redacted_thinking"})  # cached only as part of a later prefix (§6.1)

Counter = Callable[[Mapping[str, Any]], int]


class Segment:
    """One cache position: a tool definition, a system block or a message content block."""

    __slots__ = ("index", "path", "level", "block", "tokens", "cache_control", "cacheable", "role", "turn_start",
                 "_text")  # fmt: skip

    def __init__(
        self,
        index: int,
        path: str,
        level: str,
        block: Mapping[str, Any],
        tokens: int,
        cacheable: bool,
        role: str | None = None,
        turn_start: str | None = None,
    ):
        self.index = index
        self.path = path
        self.level = level
        self.block = block
        self.tokens = tokens
        cc = block.get("cache_control")
        self.cache_control: dict[str, Any] | None = dict(cc) if isinstance(cc, Mapping) else None
        self.cacheable = cacheable
        self.role = role
        self.turn_start = turn_start  # the role when this block opens a new turn (consecutive same-role turns merge)
        self._text: str | None = None

    @property
    def text(self) -> str:
        """The exact characters hashed: compact JSON of the block, its own key order, without cache_control."""
        if self._text is None:
            block = self.block
            if "cache_control" in block:
                block = {k: v for k, v in block.items() if k != "cache_control"}
            self._text = json.dumps(block, ensure_ascii=False, separators=(",", ":"))
        return self._text

    @property
    def ttl(self) -> str | None:
        """The breakpoint's TTL ("5m" or "1h"), or None when the block carries no cache_control."""
        if self.cache_control is None:
            return None
        return self.cache_control.get("ttl") or DEFAULT_TTL

    def __repr__(self) -> str:
        return f"Segment({self.index}, {self.path!r}, tokens={self.tokens}, ttl={self.ttl!r})"


@dataclass(frozen=True)
class Breakpoint:
    """A position the cache may write at: `tokens` is the prefix length through it; `automatic` from top level."""

    index: int
    path: str
    level: str
    ttl: str
    tokens: int
    automatic: bool = False


@dataclass(frozen=True)
class Divergence:
    """Where prompt b stops sharing a's cacheable prefix.

    `path`/`offset`: the first differing block of b (a's path when b dropped it) and the first differing character
    in its text; both None when a request setting changed instead (`reason` names it: "model", "tool_choice",
    "images", "thinking", "speed", ...). `invalidated_from`: the first cache level b cannot reuse.
    `reusable_tokens`: tokens of b before that point, which b could still read from a's cache entries.
    """

    path: str | None
    level: str
    offset: int | None
    invalidated_from: str
    reason: str
    reusable_tokens: int


class RenderedPrompt:
    """A request's cache positions, token counts and (lazily) prefix hashes."""

    def __init__(
        self,
        model: str,
        segments: Sequence[Segment],
        extra_tokens: int,
        modifiers: Mapping[str, Mapping[str, Any]],
        top_level_cache_control: Mapping[str, Any] | None = None,
    ):
        self.model = model
        self.segments: tuple[Segment, ...] = tuple(segments)
        self.extra_tokens = extra_tokens  # tokens after the last position (never cacheable)
        self.modifiers = {level: dict(modifiers.get(level, {})) for level in LEVELS}
        self.top_level_cache_control = dict(top_level_cache_control) if top_level_cache_control else None
        cumulative, running = [], 0
        for seg in self.segments:
            running += seg.tokens
            cumulative.append(running)
        self.cumulative: tuple[int, ...] = tuple(cumulative)  # tokens through each position
        self.total_tokens: int = running + extra_tokens
        starts, i = {}, 0
        for level in LEVELS:
            starts[level] = i
            while i < len(self.segments) and self.segments[i].level == level:
                i += 1
        self._starts = starts
        self._salts = {level: _salt(self.modifiers[level]) for level in LEVELS}
        self._hasher: Any = None
        self._hashes: list[bytes] = []
        self._level = -1
        self._paths: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self.segments)

    def __repr__(self) -> str:
        return f"RenderedPrompt(model={self.model!r}, positions={len(self.segments)}, tokens={self.total_tokens})"

    def tokens_before(self, index: int) -> int:
        """Tokens of the positions strictly before `index`."""
        return self.cumulative[index - 1] if index > 0 else 0

    def tokens_through(self, index: int) -> int:
        """Tokens of the prefix ending with position `index` (what a breakpoint there would cache)."""
        return self.cumulative[index]

    def level_segments(self, level: str) -> tuple[Segment, ...]:
        start = self._starts[level]
        end = self._starts[LEVELS[_RANK[level] + 1]] if _RANK[level] + 1 < len(LEVELS) else len(self.segments)
        return self.segments[start:end]

    def level_start(self, level: str) -> int:
        """Index of the first position at `level` or later."""
        return self._starts[level]

    def index_of(self, path: str) -> int | None:
        if self._paths is None:
            self._paths = {seg.path: seg.index for seg in self.segments}
        return self._paths.get(path)

    def hash_at(self, index: int) -> bytes:
        """sha256 of the prefix ending at position `index`, with the model and the level modifiers folded in."""
        if index < 0 or index >= len(self.segments):
            raise IndexError(f"position {index} is outside this prompt's {len(self.segments)} positions")
        if self._hasher is None:
            self._hasher = hashlib.sha256(b"parity-prompt/1\x00" + self.model.encode("utf-8", "surrogatepass"))
        while len(self._hashes) <= index:
            seg = self.segments[len(self._hashes)]
            rank = _RANK[seg.level]
            while self._level < rank:  # entering a level folds in what invalidates it
                self._level += 1
                self._hasher.update(f"\x1e{LEVELS[self._level]}\x1f{self._salts[LEVELS[self._level]]}".encode())
            text = seg.text.encode("utf-8", "surrogatepass")
            self._hasher.update(f"\x1d{seg.turn_start or ''}\x1f{len(text)}\x1f".encode() + text)
            self._hashes.append(self._hasher.copy().digest())
        return self._hashes[index]

    @property
    def hashes(self) -> list[bytes]:
        """Every position's prefix hash (computes them all)."""
        if self.segments:
            self.hash_at(len(self.segments) - 1)
        return list(self._hashes)


def count_request(params: Mapping[str, Any]) -> int:
    """What /v1/messages/count_tokens answers for `params` (model, system, messages, tools, tool_choice, ...),
    estimated offline: the rendered prompt's tokens."""
    return render(params).total_tokens


def render(request: Mapping[str, Any], *, counter: Counter | None = None) -> RenderedPrompt:
    """The cache positions of a Messages (or count_tokens) request body.

    `counter(block_or_tool) -> int` replaces the tokenizer (and its fixed overheads) for tests and what-ifs.
    """
    model = request.get("model")
    model = model if isinstance(model, str) else ""
    tools = list(_mappings(request.get("tools")))
    tool_choice = request.get("tool_choice") if isinstance(request.get("tool_choice"), Mapping) else None
    system = request.get("system")
    if isinstance(system, str):
        system_blocks: list[tuple[int, Any]] = [(0, {"type": "text", "text": system})] if system else []
    else:
        system_blocks = list(_mappings(system))
    messages = list(_mappings(request.get("messages")))

    def count_tool(tool: Mapping[str, Any]) -> int:
        return tokenizer.count_tool(tool, model)

    def count_block(block: Mapping[str, Any]) -> int:
        return tokenizer.count_block(block, model)

    if counter is not None:
        count_tool = count_block = counter  # noqa: F811
        tool_base = tool_forced = message_overhead = 0
        extra = 0
    else:
        tool_base, tool_forced = tokenizer.tool_prompt_tokens(model, tool_choice) if tools else (0, 0)
        message_overhead = tokenizer.MESSAGE_OVERHEAD
        extra = tokenizer.REQUEST_OVERHEAD

    segments: list[Segment] = []
    for n, (i, tool) in enumerate(tools):
        tokens = count_tool(tool) + (tool_base if n == 0 else 0)
        segments.append(Segment(len(segments), f"tools.{i}", "tools", tool, tokens, True))
    for i, block in system_blocks:
        segments.append(
            Segment(len(segments), f"system.{i}", "system", block, count_block(block), _cacheable(block))
        )

    images = citations = False
    previous_turns = _last_new_user_turn(messages)
    prev_role = None
    pending = tool_forced  # the any/tool part of the tool prompt follows tool_choice: messages level
    for m, message in messages:
        role = message.get("role")
        content = message.get("content")
        blocks = [(0, {"type": "text", "text": content})] if isinstance(content, str) else list(_mappings(content))
        overhead, first = message_overhead, True
        for j, block in blocks:
            kind = block.get("type")
            if kind in _UNCACHEABLE and role == "assistant" and m < previous_turns:
                tokens = 0  # thinking of earlier turns is not counted (reference §7)
            else:
                tokens = count_block(block)
            images = images or kind == "image" or (kind == "tool_result" and _has_image(block.get("content")))
            citations = citations or _citations_on(block)
            segments.append(
                Segment(
                    len(segments),
                    f"messages.{m}.content.{j}",
                    "messages",
                    block,
                    tokens + overhead + pending,
                    _cacheable(block),
                    role=role if isinstance(role, str) else None,
                    turn_start=role if first and role != prev_role else None,
                )
            )
            overhead = pending = 0
            first = False
        extra += overhead  # a message without blocks still has its role marker
        prev_role = role
    extra += pending
    for _, block in system_blocks:
        citations = citations or _citations_on(block)

    modifiers = _modifiers(request, tool_choice, images=images, citations=citations)
    top = request.get("cache_control")
    return RenderedPrompt(model, segments, extra, modifiers, top if isinstance(top, Mapping) else None)


def _modifiers(
    request: Mapping[str, Any], tool_choice: Mapping[str, Any] | None, *, images: bool, citations: bool
) -> dict[str, dict[str, Any]]:
    """The request settings each level's cache depends on besides its blocks (§6.9), defaults spelled out."""
    output = request.get("output_config")
    output = output if isinstance(output, Mapping) else {}
    return {
        "tools": {},
        "system": {"speed": request.get("speed") or "standard", "citations": citations},
        "messages": {
            "tool_choice": _normal_tool_choice(tool_choice),
            "images": images,
            "thinking": request.get("thinking") or {"type": "disabled"},
            "effort": output.get("effort") or "high",
            "output_format": output.get("format"),
            "context_management": request.get("context_management"),
        },
    }


def automatic_target(rendered: RenderedPrompt) -> int | None:
    """Where top-level `cache_control` puts its breakpoint: the last cacheable position (None: caching skipped)."""
    for seg in reversed(rendered.segments):
        if seg.cacheable:
            return seg.index
    return None


def breakpoints(rendered: RenderedPrompt, *, automatic: bool = True) -> list[Breakpoint]:
    """Breakpoints in prompt order: blocks with cache_control, plus (with `automatic`) the one top-level
    cache_control of the request puts on its last cacheable block when that block has none yet. Lenient: the
    API's 400s for conflicting or too many breakpoints are raised by `parity.emulator.caching`."""
    found = [
        Breakpoint(seg.index, seg.path, seg.level, seg.ttl or DEFAULT_TTL, rendered.cumulative[seg.index])
        for seg in rendered.segments
        if seg.cache_control is not None and seg.cacheable
    ]
    top = rendered.top_level_cache_control
    if automatic and top is not None:
        target = automatic_target(rendered)
        if target is not None and rendered.segments[target].cache_control is None:
            seg = rendered.segments[target]
            ttl = top.get("ttl") or DEFAULT_TTL
            found.append(Breakpoint(seg.index, seg.path, seg.level, ttl, rendered.cumulative[target], automatic=True))
    return found


def first_divergence(a: RenderedPrompt, b: RenderedPrompt) -> Divergence | None:
    """The first place b's prompt differs from a's, as the cache sees it; None when one extends the other's
    messages (appending turns is not a divergence) or they are identical."""
    if a.model != b.model:
        return Divergence(None, "tools", None, "tools", "model", 0)
    content = _content_divergence(a, b)
    for level in LEVELS[1:]:
        if a._salts[level] != b._salts[level]:
            if content is not None and _RANK[content.level] < _RANK[level]:
                return content
            ma, mb = a.modifiers[level], b.modifiers[level]
            reason = next(k for k in mb if _salt(ma.get(k)) != _salt(mb.get(k)))
            return Divergence(None, level, None, level, reason, b.tokens_before(b.level_start(level)))
    return content


def _content_divergence(a: RenderedPrompt, b: RenderedPrompt) -> Divergence | None:
    for level in LEVELS:
        sa, sb = a.level_segments(level), b.level_segments(level)
        for x, y in zip(sa, sb):
            if x.text != y.text:
                offset = _common_prefix(x.text, y.text)
                return Divergence(y.path, level, offset, level, "content", b.tokens_before(y.index))
            if x.turn_start != y.turn_start:
                return Divergence(y.path, level, None, level, "role", b.tokens_before(y.index))
        if len(sa) != len(sb) and level != "messages":
            if len(sb) > len(sa):
                y = sb[len(sa)]
                return Divergence(y.path, level, None, level, "added", b.tokens_before(y.index))
            start = b.level_start(level) + len(sb)
            return Divergence(sa[len(sb)].path, level, None, level, "removed", b.tokens_before(start))
    return None


def _common_prefix(x: str, y: str) -> int:
    """Length of the common prefix (binary search over slices: C speed on long blocks)."""
    lo, hi = 0, min(len(x), len(y))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if x[:mid] == y[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _mappings(items: Any) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """(index in the request, item) for the JSON objects of a list; anything else is skipped."""
    if isinstance(items, list):
        for i, item in enumerate(items):
            if isinstance(item, Mapping):
                yield i, item


def _last_new_user_turn(messages: Sequence[tuple[int, Mapping[str, Any]]]) -> int:
    """Request index of the last user message that is not only tool results (assistant turns before it are
    earlier turns)."""
    for m, message in reversed(messages):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return m
        if isinstance(content, list) and any(
            isinstance(b, Mapping) and b.get("type") != "tool_result" for b in content
        ):
            return m
    return -1


def _cacheable(block: Mapping[str, Any]) -> bool:
    kind = block.get("type")
    if kind in _UNCACHEABLE:
        return False
    return not (kind == "text" and not block.get("text"))


def _has_image(content: Any) -> bool:
    return isinstance(content, list) and any(isinstance(b, Mapping) and b.get("type") == "image" for b in content)


def _citations_on(block: Mapping[str, Any]) -> bool:
    if block.get("type") not in ("document", "search_result"):
        return False
    cit = block.get("citations")
    return isinstance(cit, Mapping) and bool(cit.get("enabled"))


def _normal_tool_choice(tool_choice: Mapping[str, Any] | None) -> dict[str, Any]:
    """Omitted = auto; `disable_parallel_tool_use: false` = its default."""
    normal = dict(tool_choice or {"type": "auto"})
    if normal.get("disable_parallel_tool_use") is False:
        del normal["disable_parallel_tool_use"]
    return normal


def _salt(value: Any) -> str:
    return canonical_json(value, default=str)
