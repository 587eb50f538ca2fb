"""Canonical JSON: one text per value, whatever order its keys were built in, and the hashes taken over it.

Certificate ids, prompt hashes, request keys and signatures all hash or sign the same form: keys sorted, no
whitespace, non-ASCII kept as UTF-8. Two processes that build the same value get the same bytes, so the same id.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

__all__ = ["canonical_bytes", "canonical_hash", "canonical_json"]


def canonical_json(value: Any, *, default: Callable[[Any], Any] | None = None, allow_nan: bool = True) -> str:
    """Sorted keys, compact separators, UTF-8 text; `default` renders values JSON has no type for (e.g. `str`)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=default,
                      allow_nan=allow_nan)


def canonical_bytes(value: Any, *, default: Callable[[Any], Any] | None = None, allow_nan: bool = True) -> bytes:
    """`canonical_json` encoded as UTF-8: what a hash or a signature covers."""
    return canonical_json(value, default=default, allow_nan=allow_nan).encode("utf-8")


def canonical_hash(value: Any, length: int | None = None, *, default: Callable[[Any], Any] | None = None) -> str:
    """SHA-256 hex digest of the canonical JSON, cut to `length` hex digits when given."""
    return hashlib.sha256(canonical_bytes(value, default=default)).hexdigest()[:length]
