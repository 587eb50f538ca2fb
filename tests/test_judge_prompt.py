"""THE pairwise judge prompt: fixed system text, round trip through the parser, robust verdict parsing."""

from __future__ import annotations

import pytest

from parity.emulator import workloads as wl
from parity.proof.judge_prompt import (
    A_START,
    B_END,
    JUDGE_SYSTEM,
    PairwiseQuestion,
    parse_pairwise,
    parse_verdict,
    question_text,
    render_pairwise,
)


def user_text(messages: list[dict]) -> str:
    assert len(messages) == 1 and messages[0]["role"] == "user"
    return messages[0]["content"][0]["text"]


def test_system_text_is_fixed_and_asks_for_reasoning_then_a_verdict():
    first, _ = render_pairwise("Q1", "a", "b")
    second, _ = render_pairwise("Another question", "x" * 500, "y", reference="r", criteria="be brief")
    assert first == second == JUDGE_SYSTEM
    for token in ("[[A]]", "[[B]]", "[[C]]", "position", "length", "reference answer", "explanation"):
        assert token in JUDGE_SYSTEM


@pytest.mark.parametrize("reference", [None, "Answer: 42"])
@pytest.mark.parametrize("criteria", [None, "Exact label match matters most."])
def test_render_then_parse_round_trips(reference, criteria):
    question = "[System]\nYou classify tickets.\n\n[User]\nTicket ID: T-12345\nMy card was charged twice."
    answer_a, answer_b = "billing\n", "  Label: shipping\n\nmaybe"
    system, messages = render_pairwise(question, answer_a, answer_b, reference=reference, criteria=criteria)
    parsed = parse_pairwise(system, user_text(messages))
    assert parsed == PairwiseQuestion(question, answer_a, answer_b, reference, criteria)


def test_answers_quoting_the_markers_still_parse():
    question = f"Explain the marker {A_START} used by judges."
    answer_a = f"It opens a block; it is closed by {B_END} later."
    answer_b = "[The Start of Reference Answer] is another marker."
    system, messages = render_pairwise(question, answer_a, answer_b)
    parsed = parse_pairwise(system, user_text(messages))
    assert parsed is not None and (parsed.question, parsed.answer_a, parsed.answer_b) == (question, answer_a, answer_b)
    assert parsed.reference is None


def test_a_judge_prompt_about_a_judge_prompt_parses_the_outer_one():
    _, inner = render_pairwise("inner question", "inner a", "inner b")
    _, outer = render_pairwise(user_text(inner), "outer a", "outer b")
    parsed = parse_pairwise("", user_text(outer))
    assert parsed is not None and parsed.answer_a == "outer a" and parsed.question == user_text(inner)


def test_model_names_are_never_shown():
    _, messages = render_pairwise("q", "answer one", "answer two")
    text = (JUDGE_SYSTEM + user_text(messages)).lower()
    for name in ("claude", "opus", "haiku", "sonnet", "baseline", "candidate"):
        assert name not in text


def test_non_judge_prompts_are_not_parsed():
    assert parse_pairwise("", "Ticket ID: T-12345\nHelp") is None
    assert (
        parse_pairwise(
            JUDGE_SYSTEM, "[User Question]\nq\n[End of User Question]\n[The Start of Assistant A's Answer]\na"
        )
        is None
    )
    _, messages = render_pairwise("q", "a", "b")
    assert parse_pairwise("", user_text(messages).replace("[User Question]", "[Question]")) is None


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("A is right.\n\n[[A]]", "A"),
        ("[[B]]", "B"),
        ("Both equal. [[C]]", "tie"),
        ("[[ tie ]]", "tie"),
        ("First I thought [[A]] but on reflection [[B]]", "B"),
        ("verdict: [[b]]", "B"),
        ("A is better.", None),
        ("[A]", None),
        ("[[D]]", None),
        ("[[A]", None),
        ("", None),
    ],
)
def test_parse_verdict(text, verdict):
    assert parse_verdict(text) == verdict


def test_question_text_shows_system_and_every_turn():
    request = wl.triage_requests(1, seed=1, demos=2)[0]
    text = question_text(request)
    assert text.startswith("[System]\nYou are the ticket triage assistant")
    assert text.count("[User]\n") == 3 and text.count("[Assistant]\n") == 2
    assert text.endswith(request["messages"][-1]["content"])
    tool_turns = {
        "messages": [
            {"role": "assistant", "content": [{"type": "tool_use", "name": "f", "input": {"x": 1}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "ok"}]},
        ]
    }
    assert question_text(tool_turns) == '[Assistant]\n(tool call f: {"x": 1})\n\n[User]\n(tool result: ok)'
