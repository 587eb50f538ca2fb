"""Per-call tags: `with tagged(task="triage"):` adds tags to every Exchange recorded inside the block."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping

_call_tags: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar("parity_wrap_tags", default={})


@contextlib.contextmanager
def tagged(**tags: str) -> Iterator[None]:
    """Add tags (e.g. `task="triage"`) to every Exchange recorded inside this block, in this thread or task."""
    token = _call_tags.set({**_call_tags.get(), **{k: str(v) for k, v in tags.items()}})
    try:
        yield
    finally:
        _call_tags.reset(token)


def current_tags() -> dict[str, str]:
    """The tags in force here (this thread or task), for the middleware to stamp on an attempt."""
    return dict(_call_tags.get())


__all__ = ["current_tags", "tagged"]
