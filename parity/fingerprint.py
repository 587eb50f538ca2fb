"""Template fingerprints: which requests are the same task, whatever changes from one call to the next.

A family is the set of requests built from one prompt template. The fingerprint must survive exactly the
things the cache diagnosis looks for (a timestamp or an id in the system prompt, tools in another order or
another set, unsorted JSON keys, another model), or the two requests whose diff shows the problem would land
in different families and never be compared. So it is built from the *skeleton* of the instructions: the
opening 600 and the closing 200 characters of the system prompt's text, with volatile values masked (dates,
times, UUIDs, request ids, every number) and whitespace collapsed; tools and the model are left out. A request without a system prompt is known by the
skeleton of the first line of its first user turn (the template's opening words).

`fingerprint(request)` is THE template fingerprint of the project: the gateway's policy `match.fingerprint`
uses it too, so it is stable across versions (`fp_` + 12 hex digits of BLAKE2b).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

__all__ = [
    "DATE_TIME",
    "ID_LIKE",
    "family_label",
    "first_user_text",
    "fingerprint",
    "skeleton",
    "system_text",
]

_MONTHS = r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)"
_DAYS = r"(?:Mon(?:day)?|Tue(?:s(?:day)?)?|Wed(?:nesday)?|Thu(?:rs(?:day)?)?|Fri(?:day)?|Sat(?:urday)?|Sun(?:day)?)"

#: Dates, times and epoch timestamps as they appear in prompts ("2026-11-24T10:00:05Z", "24/11/2026",
#: "Tuesday, November 24, 2026", "10:42 AM", "1764000000").
DATE_TIME = re.compile(
    r"\d{4}-\d{1,2}-\d{1,2}(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s?(?:Z|UTC|GMT|[+-]\d{2}:?\d{2})?)?"
    r"|\b\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:\s?[AaPp]\.?[Mm]\.?)?(?:\s?(?:Z|UTC|GMT|[A-Z]{3}|[+-]\d{2}:?\d{2}))?"
    r"|\b\d{1,2}[/.]\d{1,2}[/.]\d{2,4}\b"
    rf"|\b(?:{_DAYS},?\s+)?{_MONTHS}\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?(?:\s+\d{{4}})?\b"
    rf"|\b(?:{_DAYS},?\s+)?\d{{1,2}}(?:st|nd|rd|th)?\s+{_MONTHS}\.?,?(?:\s+\d{{4}})?\b"
    rf"|\b{_DAYS}\b"
    r"|\b1[5-9]\d{8}(?:\d{3})?\b"
)

#: UUIDs, request/message ids, long hex strings, ULIDs and other random-looking ids.
ID_LIKE = re.compile(
    r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"
    r"|\b(?:req|msg|msgbatch|toolu|srvtoolu|call|run|trace|span|sess|session|chatcmpl|evt|ord|cus|usr|user|txn|job)"
    r"[_-][A-Za-z0-9]{6,}\b"
    r"|\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{16,}\b"
    r"|\b[0-9A-HJKMNP-TV-Z]{26}\b"
)

_ZERO = str.maketrans("0123456789", "0000000000")
_NAMES = frozenset(
    "jan feb mar apr may jun jul aug sep sept oct nov dec january february march april june july august september "
    "october november december mon tue tues wed thu thur thurs fri sat sun monday tuesday wednesday thursday friday "
    "saturday sunday am pm a.m. p.m. utc gmt".split()
)
_PUNCT = ",.;:()[]{}<>\"'`"
_HEAD_CHARS = 600  # the fingerprint reads the opening and the end of the instructions
_TAIL_CHARS = 200
_FIRST_LINE_CHARS = 80
_memo: dict[str, str] = {}
_MEMO_MAX = 4096


def skeleton(text: str) -> str:
    """`text` with volatile values masked and whitespace collapsed: equal for two renderings of one template.

    Word by word (regular expressions over long prompts are too slow for a million requests): a word holding
    a digit (dates, times, numbers, UUIDs, request ids) or naming a month or weekday becomes '#'.
    """
    return " ".join([
        "#" if "0" in word or word.strip(_PUNCT).lower() in _NAMES else word
        for word in text.translate(_ZERO).split()
    ])


def system_text(request: dict[str, Any]) -> str:
    """The system prompt's text: the string, or the text blocks joined by blank lines."""
    system = request.get("system")
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        if len(system) == 1 and isinstance(system[0], dict) and isinstance(system[0].get("text"), str):
            return system[0]["text"]
        return "\n\n".join(b.get("text", "") for b in system if isinstance(b, dict) and isinstance(b.get("text"), str))
    return ""


def first_user_text(request: dict[str, Any]) -> str:
    """Text of the first user turn (its text blocks joined)."""
    messages = request.get("messages")
    if not isinstance(messages, list):
        return ""
    for message in messages:
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "\n".join(
                    b.get("text", "") for b in content if isinstance(b, dict) and isinstance(b.get("text"), str)
                )
            return ""
    return ""


def fingerprint(request: dict[str, Any]) -> str:
    """The template fingerprint of a Messages API request body ("fp_" + 12 hex digits).

    Two requests built from one template get the same fingerprint even when a timestamp, an id, the
    tools, their order or the model differ; see the module docstring for what it is made of.
    """
    text = system_text(request)
    if text.strip():
        if len(text) > _HEAD_CHARS + _TAIL_CHARS:
            text = text[:_HEAD_CHARS] + "\x00" + text[-_TAIL_CHARS:]
        basis = "s\x00" + text
    else:
        basis = "u\x00" + first_user_text(request).strip().split("\n", 1)[0][: _FIRST_LINE_CHARS * 2]
    cached = _memo.get(basis)
    if cached is not None:
        return cached
    shape = basis[:2] + skeleton(basis[2:])
    if basis[0] == "u":
        shape = shape[: 2 + _FIRST_LINE_CHARS]
    value = "fp_" + hashlib.blake2b(shape.encode("utf-8", "surrogatepass"), digest_size=6).hexdigest()
    if len(_memo) >= _MEMO_MAX:
        _memo.clear()
    _memo[basis] = value
    return value


def family_label(request: dict[str, Any], width: int = 60) -> str:
    """A short human label for a family: the opening words of its system prompt or first user turn."""
    text = system_text(request)
    origin = "system"
    if not text.strip():
        text, origin = first_user_text(request), "user"
    words = skeleton(text[:400])
    if len(words) > width:
        words = words[: width - 1].rstrip() + "…"
    return f"{origin}: {words}" if words else "(empty prompt)"
