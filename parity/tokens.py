"""Token counts from Claude's own counter (`POST /v1/messages/count_tokens`), cached locally; never tiktoken.

With a client, an API key or a base URL, `TokenCounter` asks the API through the official SDK and caches each
answer in SQLite by (endpoint, model, sha256 of the request's count-relevant fields as compact JSON in the
request's own key order: key order is part of what the API tokenizes). Without one it returns an offline
estimate from `parity.prompt.count_request`, labelled `estimate=True` everywhere it is shown,
because it is an approximation and not Claude's tokenizer.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from parity.errors import InputError, ParityError
from parity.prompt import count_request
from parity.exchange import Exchange

ESTIMATE_LABEL = "estimate (offline approximation, not Claude's tokenizer)"

# Top-level fields count_tokens accepts (reference claude-api.md §7); everything else (max_tokens, stream,
# metadata, temperature, ...) is dropped before counting, as the API would reject it.
COUNT_FIELDS = ("system", "messages", "tools", "tool_choice", "thinking", "cache_control", "output_config", "speed",
                "mcp_servers", "context_management")
_SDK_FIELDS = frozenset({"messages", "cache_control", "output_config", "speed", "system", "thinking", "tool_choice", "tools"})
_NO_CACHE = object()


def default_cache_path() -> Path:
    """~/.cache/parity/tokens.sqlite (honours XDG_CACHE_HOME)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "parity" / "tokens.sqlite"


@dataclass(frozen=True)
class TokenCount:
    """One count: `estimate` is True for the offline approximation; `cached` when read from the local cache."""

    model: str
    input_tokens: int
    estimate: bool
    cached: bool = False

    @property
    def label(self) -> str:
        return ESTIMATE_LABEL if self.estimate else "count_tokens"


def count_params(request: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a Messages request that count_tokens takes, in the request's own order (model excluded)."""
    if not isinstance(request, Mapping):
        raise InputError(f"a request must be a JSON object, got {type(request).__name__}")
    params = {key: request[key] for key in request if key in COUNT_FIELDS}
    if not isinstance(params.get("messages"), list):
        raise InputError("the request has no 'messages' list; count_tokens needs one", field="messages")
    return params


def request_digest(params: Mapping[str, Any]) -> str:
    """sha256 of the compact JSON of the count-relevant fields, key order preserved."""
    text = json.dumps(params, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class TokenCounter:
    """Counts prompt tokens online (count_tokens via the SDK, cached) or offline (a labelled estimate)."""

    def __init__(
        self,
        client: Any = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        cache_path: str | Path | None | object = _NO_CACHE,
    ):
        if client is None and (base_url or api_key):
            import anthropic

            client = anthropic.Anthropic(api_key=api_key or os.environ.get("ANTHROPIC_API_KEY") or "sk-parity-count",
                                         base_url=base_url)
        self.client = client
        self.endpoint = str(getattr(client, "base_url", "")).rstrip("/") if client is not None else None
        path = default_cache_path() if cache_path is _NO_CACHE else cache_path
        self.cache_path: Path | None = Path(path) if path is not None and client is not None else None  # type: ignore[arg-type]
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    @property
    def online(self) -> bool:
        return self.client is not None

    def count(self, request: Mapping[str, Any], *, model: str | None = None) -> TokenCount:
        """Count one request's input tokens; `model` overrides the request's own."""
        model = model or (request.get("model") if isinstance(request, Mapping) else None)
        if not isinstance(model, str) or not model:
            raise InputError("no model: pass --model (or model=) or put 'model' in the request", field="model")
        params = count_params(request)
        if self.client is None:
            return TokenCount(model=model, input_tokens=int(count_request({"model": model, **params})), estimate=True)
        digest = request_digest(params)
        hit = self._cache_get(model, digest)
        if hit is not None:
            return TokenCount(model=model, input_tokens=hit, estimate=False, cached=True)
        tokens = self._ask(model, params)
        self._cache_put(model, digest, tokens)
        return TokenCount(model=model, input_tokens=tokens, estimate=False)

    def _ask(self, model: str, params: dict[str, Any]) -> int:
        import anthropic

        known = {k: v for k, v in params.items() if k in _SDK_FIELDS}
        extra = {k: v for k, v in params.items() if k not in _SDK_FIELDS}
        try:
            result = self.client.messages.count_tokens(model=model, **known, **({"extra_body": extra} if extra else {}))
        except anthropic.AuthenticationError as exc:
            raise ParityError(f"count_tokens at {self.endpoint} refused the API key ({exc.message}); "
                              "set ANTHROPIC_API_KEY, or drop the key to get an offline estimate") from None
        except anthropic.APIStatusError as exc:
            raise ParityError(f"count_tokens at {self.endpoint} answered HTTP {exc.status_code}: {exc.message}") from None
        except anthropic.APIConnectionError as exc:
            raise ParityError(f"could not reach {self.endpoint} for count_tokens ({exc}); check --base-url, "
                              "or run without a key or base URL for an offline estimate") from None
        return int(result.input_tokens)

    # -- cache ------------------------------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection | None:
        if self.cache_path is None:
            return None
        if self._db is None:
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.cache_path, check_same_thread=False, timeout=10)
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS counts (endpoint TEXT NOT NULL, model TEXT NOT NULL, digest TEXT NOT NULL,"
                " input_tokens INTEGER NOT NULL, counted_at TEXT NOT NULL, PRIMARY KEY (endpoint, model, digest))"
            )
            self._db.commit()
        return self._db

    def _cache_get(self, model: str, digest: str) -> int | None:
        with self._lock:
            db = self._conn()
            if db is None:
                return None
            row = db.execute("SELECT input_tokens FROM counts WHERE endpoint=? AND model=? AND digest=?",
                             (self.endpoint, model, digest)).fetchone()
        return int(row[0]) if row else None

    def _cache_put(self, model: str, digest: str, tokens: int) -> None:
        with self._lock:
            db = self._conn()
            if db is None:
                return
            db.execute("INSERT OR REPLACE INTO counts VALUES (?, ?, ?, ?, ?)",
                       (self.endpoint, model, digest, tokens, datetime.now(timezone.utc).isoformat()))
            db.commit()

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> TokenCounter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- recounting logged requests -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recount:
    """A logged request counted again: `difference` = counted − logged prompt tokens (None if nothing logged)."""

    line: int
    model: str
    input_tokens: int
    logged_input_tokens: int | None
    difference: int | None
    estimate: bool
    cached: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def logged_prompt_tokens(usage: Mapping[str, Any] | None) -> int | None:
    """The whole prompt as billed: input_tokens + cache creation + cache read (what count_tokens counts)."""
    if not isinstance(usage, Mapping) or not isinstance(usage.get("input_tokens"), int):
        return None
    return sum(int(usage.get(k) or 0) for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"))


def sample_lines(items: Iterable[tuple[int, Any]], size: int, *, seed: int = 0) -> list[tuple[int, Exchange]]:
    """A uniform reservoir sample of `size` countable Exchanges, in line order; one pass, O(size) memory.

    Rejected lines and Exchanges without a `messages` list (e.g. batch results whose params were never seen)
    are skipped: there is nothing to count.
    """
    rng = random.Random(seed)
    reservoir: list[tuple[int, Exchange]] = []
    seen = 0
    for line, item in items:
        if not isinstance(item, Exchange) or not isinstance(item.request.get("messages"), list):
            continue
        seen += 1
        if len(reservoir) < size:
            reservoir.append((line, item))
        else:
            j = rng.randrange(seen)
            if j < size:
                reservoir[j] = (line, item)
    return sorted(reservoir, key=lambda pair: pair[0])


def recount(items: Iterable[tuple[int, Exchange]], counter: TokenCounter, *, model: str | None = None) -> list[Recount]:
    """Count each logged request again and compare with its logged usage (whole prompt, cache tiers included)."""
    out = []
    for line, exchange in items:
        counted = counter.count(exchange.request, model=model)
        logged = logged_prompt_tokens(exchange.usage)
        out.append(Recount(
            line=line,
            model=counted.model,
            input_tokens=counted.input_tokens,
            logged_input_tokens=logged,
            difference=None if logged is None else counted.input_tokens - logged,
            estimate=counted.estimate,
            cached=counted.cached,
        ))
    return out
