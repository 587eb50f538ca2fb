"""`parity cache-diff A B`: can request B read what request A cached, and if not, where and why."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from parity import prompt as prompts
from parity.audit.cache_diagnosis import diagnose, suggest_breakpoint
from parity.pricing import min_cacheable_tokens


def cache_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """`parity cache-diff A B`: can B read what A cached, and if not, where and why (JSON-ready dict).

    `breaks_cache` is true when B's prompt diverges from A's before the end of A's last cache breakpoint, so B
    cannot read the longest entry A wrote (without a breakpoint in A: before the end of A's prompt, as if A had
    cached it all). A difference only in B's last message is the new input, not a break, and appended turns are
    none at all. The other fields describe the first divergence (the first cache level B cannot reuse), even when
    it lies after A's cached prefix (e.g. a `tool_choice` change with A's breakpoint in the system prompt).
    """
    ra, rb = prompts.render(a), prompts.render(b)
    diag = diagnose(a, b, ra, rb)
    bps = prompts.breakpoints(ra)
    div = prompts.first_divergence(ra, rb)
    first_difference = None
    if diag is not None and diag.in_last_message:
        first_difference = {"block_path": diag.block_path, "offset": diag.offset,
                            "note": "only B's last message differs: that is the new input, which no cache holds"}
        diag = None
    breaks = diag is not None
    note = None
    if diag is not None and bps and div is not None and div.reusable_tokens >= bps[-1].tokens:
        breaks = False
        note = (f"B still reads A's cached prefix through {bps[-1].path} (about {bps[-1].tokens:,} tokens); the "
                f"{diag.invalidated_from} level it changes lies after it")
    out: dict[str, Any] = {
        "breaks_cache": breaks,
        "invalidated_from": diag.invalidated_from if diag else None,
        "block_path": diag.block_path if diag else None,
        "offset": diag.offset if diag else None,
        "cause": diag.cause if diag else None,
        "reason": diag.reason if diag else None,
        "example": (diag.example.strip() or None) if diag else None,
        "fix": (diag.fix() or None) if diag and breaks else None,
        "note": note,
        "first_difference": first_difference,
        "reusable_tokens": None,
        "a": {"model": ra.model, "tokens": ra.total_tokens, "breakpoints": [bp.path for bp in bps]},
        "b": {"model": rb.model, "tokens": rb.total_tokens},
        "warnings": [],
        "tokens_note": "token counts are the offline estimate (parity.tokenizer), not Claude's tokenizer",
    }
    out["reusable_tokens"] = div.reusable_tokens if div is not None else rb.total_tokens
    if not bps:
        out["warnings"].append({"cause": "no_breakpoint", "message": (
            "A has no cache_control, so A writes nothing for B to read; put a breakpoint at the end of the "
            f"stable prefix ({suggest_breakpoint(ra) or 'the last system block'})")})
    else:
        try:
            minimum = min_cacheable_tokens(ra.model)
        except Exception:  # unknown model: no minimum to compare with
            minimum = None
        longest = max(bp.tokens for bp in bps)
        if minimum is not None and longest < minimum:
            out["warnings"].append({"cause": "below_min_cacheable", "message": (
                f"A's longest cached prefix is about {longest} tokens; {ra.model} caches from {minimum}, "
                "so nothing is written")})
    return out


__all__ = ["cache_diff"]
