"""The one rule that says which task a request belongs to; the gateway, the audit and `prove` all use it.

First match wins:

1. an explicit name: the `task` tag of a logged Exchange, or the `x-parity-task` header of a live request;
2. `metadata`: the API accepts only `metadata.user_id`, so a name rides in it as `task:<name>` (or
   `task=<name>`, among other `key:value` pairs separated by `;`, `,`, `|` or spaces); a non-API key such as
   `metadata.task` is read too (the gateway removes it before forwarding);
3. the template fingerprint (`parity.fingerprint.fingerprint`), when the caller names one for the task.

A request none of these name belongs to no task. `prove --task T` uses only rows that belong to T, never the
untagged rest of a log: a proof about T must not rest on another template's prompts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from parity.fingerprint import fingerprint

TASK_HEADER = "x-parity-task"
DEFAULT_METADATA_KEY = "task"
MAX_NAME_CHARS = 200
_PAIR = re.compile(r"([A-Za-z0-9_.\-]+)\s*[:=]\s*([^\s;,|]+)")


@dataclass(frozen=True)
class Named:
    """A task name found in a request, and where it was found: "tag", "header", "metadata" or "fingerprint"."""

    name: str
    how: str


def named_in_metadata(metadata: Any, keys: Iterable[str] = (DEFAULT_METADATA_KEY,)) -> str | None:
    """The task named in a request's `metadata` under one of `keys` (a plain key, or `key:name` in user_id)."""
    if not isinstance(metadata, Mapping):
        return None
    ordered = sorted(set(keys))
    for key in ordered:
        value = metadata.get(key)
        if key != "user_id" and isinstance(value, str) and value.strip():
            return value.strip()[:MAX_NAME_CHARS]
    user_id = metadata.get("user_id")
    if isinstance(user_id, str) and (":" in user_id or "=" in user_id):
        for match in _PAIR.finditer(user_id):
            if match.group(1) in ordered:
                return match.group(2)[:MAX_NAME_CHARS]
    return None


def named_task(request: Mapping[str, Any], *, tags: Mapping[str, str] | None = None,
               headers: Mapping[str, str] | None = None,
               metadata_keys: Iterable[str] = (DEFAULT_METADATA_KEY,)) -> Named | None:
    """The task a request names explicitly (tag, header or metadata); None when it names none."""
    if tags and (tags.get("task") or "").strip():
        return Named(tags["task"].strip()[:MAX_NAME_CHARS], "tag")
    if headers is not None:
        header = headers.get(TASK_HEADER)
        if header is not None and header.strip():
            return Named(header.strip()[:MAX_NAME_CHARS], "header")
    name = named_in_metadata(request.get("metadata"), metadata_keys)
    return Named(name, "metadata") if name is not None else None


def task_of(request: Mapping[str, Any], *, tags: Mapping[str, str] | None = None,
            headers: Mapping[str, str] | None = None, fingerprints: Mapping[str, str] | None = None,
            metadata_keys: Iterable[str] = (DEFAULT_METADATA_KEY,)) -> Named | None:
    """The task of a request by the one rule: an explicit name, else a fingerprint named in `fingerprints`
    (fingerprint → task name); None when the request belongs to no task."""
    named = named_task(request, tags=tags, headers=headers, metadata_keys=metadata_keys)
    if named is not None or not fingerprints:
        return named
    task = fingerprints.get(fingerprint(dict(request)))
    return Named(task, "fingerprint") if task is not None else None


__all__ = ["DEFAULT_METADATA_KEY", "Named", "TASK_HEADER", "named_in_metadata", "named_task", "task_of"]
