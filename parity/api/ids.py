"""Identifiers shaped like the API's: a prefix, "01", then 22 base62 characters (`msg_01XFDUDYJgAACzvnptvVoYEL`)."""

from __future__ import annotations

import secrets
import string

_BASE62 = string.ascii_letters + string.digits

PREFIXES = {
    "message": "msg_",
    "tool_use": "toolu_",
    "server_tool_use": "srvtoolu_",
    "request": "req_",
    "batch": "msgbatch_",
}


def new_id(prefix: str) -> str:
    """A fresh random id with `prefix` (e.g. "msg_"); ids are opaque to clients, so randomness is fine."""
    return prefix + "01" + "".join(secrets.choice(_BASE62) for _ in range(22))


def message_id() -> str:
    return new_id(PREFIXES["message"])


def tool_use_id() -> str:
    return new_id(PREFIXES["tool_use"])


def request_id() -> str:
    return new_id(PREFIXES["request"])
