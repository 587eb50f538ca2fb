"""THE pairwise judge prompt: one fixed system text, one user-turn layout, one verdict parser.

MT-Bench style (reference proof-science §1.1, §1.5 designs A and B): the judge sees the user's original prompt,
an optional reference answer, and two anonymous answers in delimited blocks; it writes a short explanation first
and ends with exactly one verdict token, ``[[A]]``, ``[[B]]`` or ``[[C]]`` (tie). Model names never appear.

The system text never changes, so a caller can put a cache breakpoint on it and pay for it once per five minutes.
Everything that varies (question, reference, criteria, answers) lives in the single user turn. The simulated
judge (parity.emulator.brains.simulated) recognises prompts rendered here with `parse_pairwise`, so anything that
asks a judge for a pairwise verdict must render it with `render_pairwise`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Verdict = Literal["A", "B", "tie"]

JUDGE_SYSTEM = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants "
    "to the user question shown below. Choose the assistant that follows the user's instructions and answers "
    "the user's question better. Weigh correctness first, then instruction following (including any required "
    "output format or label set), then completeness. If a reference answer is provided, compare both answers "
    "with the reference answer, and identify and correct any mistakes before deciding. If evaluation criteria "
    "are provided, apply them.\n"
    "Avoid any position bias: the order in which the answers are presented must not influence your decision. "
    "Do not let the length of an answer or its formatting influence you by themselves; a longer answer is not "
    "a better answer. Do not favour any assistant by name.\n"
    "Begin with a short explanation comparing the two answers. After the explanation, output your final "
    'verdict by strictly following this format: "[[A]]" if assistant A is better, "[[B]]" if assistant B is '
    'better, and "[[C]]" for a tie.'
)

QUESTION_START = "[User Question]"
QUESTION_END = "[End of User Question]"
CRITERIA_START = "[Evaluation Criteria]"
CRITERIA_END = "[End of Evaluation Criteria]"
REFERENCE_START = "[The Start of Reference Answer]"
REFERENCE_END = "[The End of Reference Answer]"
A_START = "[The Start of Assistant A's Answer]"
A_END = "[The End of Assistant A's Answer]"
B_START = "[The Start of Assistant B's Answer]"
B_END = "[The End of Assistant B's Answer]"

_VERDICT = re.compile(r"\[\[\s*(A|B|C|tie)\s*\]\]", re.IGNORECASE)


@dataclass(frozen=True)
class PairwiseQuestion:
    """The parts of a rendered pairwise judge prompt."""

    question: str
    answer_a: str
    answer_b: str
    reference: str | None = None
    criteria: str | None = None


def render_pairwise(
    question: str,
    answer_a: str,
    answer_b: str,
    *,
    reference: str | None = None,
    criteria: str | None = None,
) -> tuple[str, list[dict[str, Any]]]:
    """(system text, messages) of one pairwise judgment; judge both orders and average (§1.2)."""
    parts = [f"{QUESTION_START}\n{question}\n{QUESTION_END}"]
    if criteria:
        parts.append(f"{CRITERIA_START}\n{criteria}\n{CRITERIA_END}")
    if reference is not None:
        parts.append(f"{REFERENCE_START}\n{reference}\n{REFERENCE_END}")
    parts.append(f"{A_START}\n{answer_a}\n{A_END}")
    parts.append(f"{B_START}\n{answer_b}\n{B_END}")
    user = "\n\n".join(parts)
    return JUDGE_SYSTEM, [{"role": "user", "content": [{"type": "text", "text": user}]}]


def question_text(request: Mapping[str, Any]) -> str:
    """The user's original prompt as the judge should see it: the system prompt, then every turn, in order.

    Only text (and tool calls/results, as JSON) is shown; images and documents are named, not inlined.
    """
    out: list[str] = []
    system = system_text(request)
    if system:
        out.append(f"[System]\n{system}")
    for message in request.get("messages") or []:
        role = "Assistant" if message.get("role") == "assistant" else "User"
        content = message.get("content")
        if isinstance(content, str):
            text = content
        else:
            text = "\n".join(_block_text(b) for b in content or [] if isinstance(b, Mapping))
        out.append(f"[{role}]\n{text}")
    return "\n\n".join(out)


def system_text(request: Mapping[str, Any]) -> str:
    """The request's system prompt as one string (its text blocks joined by blank lines; "" when absent)."""
    system = request.get("system")
    if isinstance(system, list):
        return "\n\n".join(str(b.get("text", "")) for b in system if isinstance(b, Mapping))
    return str(system or "")


def _block_text(block: Mapping[str, Any]) -> str:
    kind = block.get("type")
    if kind == "text":
        return str(block.get("text", ""))
    if kind == "tool_use":
        return f"(tool call {block.get('name')}: {json.dumps(block.get('input', {}), sort_keys=True)})"
    if kind == "tool_result":
        inner = block.get("content")
        if isinstance(inner, list):
            inner = "\n".join(_block_text(b) for b in inner if isinstance(b, Mapping))
        return f"(tool result: {inner})"
    return f"({kind} block)"


def parse_pairwise(system: str, user_text: str) -> PairwiseQuestion | None:
    """The parts of a prompt made by `render_pairwise`, or None when `user_text` is not one.

    `system` may be empty: Claude-judge harnesses sometimes prepend the instruction to the user turn instead.
    Blocks are found from the end, so a question that itself quotes these markers still parses.
    """
    del system  # the layout of the user turn is what identifies a judge prompt
    b_end = user_text.rfind(B_END)
    b_start = user_text.rfind(B_START, 0, b_end)
    a_end = user_text.rfind(A_END, 0, b_start)
    a_start = user_text.rfind(A_START, 0, a_end)
    q_start = user_text.find(QUESTION_START)
    if min(b_end, b_start, a_end, a_start, q_start) < 0 or q_start > a_start:
        return None
    answer_b = _strip_block(user_text[b_start + len(B_START) : b_end])
    answer_a = _strip_block(user_text[a_start + len(A_START) : a_end])
    head = user_text[:a_start]
    reference = None
    r_end = head.rfind(REFERENCE_END)
    if r_end >= 0 and not head[r_end + len(REFERENCE_END) :].strip():
        r_start = head.rfind(REFERENCE_START, 0, r_end)
        if r_start >= 0:
            reference = _strip_block(head[r_start + len(REFERENCE_START) : r_end])
            head = head[:r_start]
    criteria = None
    c_end = head.rfind(CRITERIA_END)
    if c_end >= 0 and not head[c_end + len(CRITERIA_END) :].strip():
        c_start = head.rfind(CRITERIA_START, 0, c_end)
        if c_start >= 0:
            criteria = _strip_block(head[c_start + len(CRITERIA_START) : c_end])
            head = head[:c_start]
    q_end = head.rfind(QUESTION_END)
    if q_end < q_start:
        return None
    question = _strip_block(head[q_start + len(QUESTION_START) : q_end])
    return PairwiseQuestion(question, answer_a, answer_b, reference, criteria)


def _strip_block(text: str) -> str:
    """Undo the single newline render_pairwise puts after a start marker and before an end marker."""
    if text.startswith("\n"):
        text = text[1:]
    if text.endswith("\n"):
        text = text[:-1]
    return text


def parse_verdict(text: str) -> Verdict | None:
    """ "A", "B" or "tie" from a judge's reply; the last verdict token wins; None when there is none."""
    found = _VERDICT.findall(text or "")
    if not found:
        return None
    last = found[-1].upper()
    return "tie" if last in ("C", "TIE") else last  # type: ignore[return-value]
