"""Scenarios: the kinds of task the simulated brain recognises, solves exactly, and answers like a model would.

Each scenario (one module each: ticket_triage, thread_summary, math_reasoning, invoice_extraction) can
- generate items (a ticket, a thread, a word problem, an invoice) with a hidden gold answer (parity.emulator.workloads),
- recognise its items in a prompt by stable markers ("Ticket ID: T-12345", "Support thread S-12345", ...),
- solve an item from its text alone, so the gold answer never has to travel with the prompt,
- write a right or a plausibly wrong answer (a confusable label, a skipped step, missed facts, a slipped format),
- score any answer against the gold (the simulated judge's quality function),
- read how clear an instruction is and whether demonstrations in the prompt are correct,
- name the mistakes a wrong answer shows, and write the instruction rule that prevents each (instruction repair).

`base` holds what they share (the `Scenario` interface, the clear-instruction `Rule`, `PromptFeatures`); this
module is the registry (`SCENARIOS`, `get`, `detect`) and reads a prompt's features (`features`).

How good the answer is (the probability of a right one) is decided by parity.emulator.brains.profiles; the
scenarios only know what right and wrong look like. All numbers that come out of this are simulated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from parity.emulator.brains.scenarios.base import PromptFeatures, Scenario
from parity.emulator.brains.scenarios.invoice_extraction import InvoiceExtraction
from parity.emulator.brains.scenarios.math_reasoning import MathReasoning
from parity.emulator.brains.scenarios.thread_summary import ThreadSummary
from parity.emulator.brains.scenarios.ticket_triage import TicketTriage

SCENARIOS: dict[str, Scenario] = {
    f.name: f for f in (TicketTriage(), ThreadSummary(), MathReasoning(), InvoiceExtraction())
}


def get(name: str) -> Scenario:
    """The scenario called `name`; KeyError naming the known ones otherwise."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise KeyError(f"unknown scenario {name!r}; known scenarios: {', '.join(SCENARIOS)}") from None


def detect(system: str, user_text: str) -> Scenario | None:
    """The scenario of a prompt: an item marker in the user text first, else the scenario's tag in the system
    prompt."""
    for scenario in SCENARIOS.values():
        if scenario.marker.search(user_text):
            return scenario
    for scenario in SCENARIOS.values():
        if scenario.tag in system:
            return scenario
    return None


def _text_of(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    return "\n".join(b.get("text", "") for b in content or [] if isinstance(b, Mapping) and b.get("type") == "text")


def features(scenario: Scenario, system: str, messages: Sequence[Mapping[str, Any]]) -> PromptFeatures:
    """Demonstrations (earlier example turns, and examples written into the system prompt) and instruction clarity."""
    good = bad = 0
    turns = list(messages)
    last_user = max((i for i, m in enumerate(turns) if m.get("role") == "user"), default=len(turns))
    for i in range(last_user - 1):
        if turns[i].get("role") != "user" or turns[i + 1].get("role") != "assistant":
            continue
        solution = scenario.solve(_text_of(turns[i]))
        if solution is None:
            continue
        if scenario.score(_text_of(turns[i + 1]), solution.gold) >= scenario.demo_threshold:
            good += 1
        else:
            bad += 1
    starts = [m.start() for m in scenario.marker.finditer(system)]
    instruction = system[: starts[0]] if starts else system
    for n, start in enumerate(starts):
        chunk = system[start : starts[n + 1] if n + 1 < len(starts) else len(system)]
        solution = scenario.solve(chunk)
        if solution is None:
            continue
        if scenario.score(scenario.demo_answer(chunk), solution.gold) >= scenario.demo_threshold:
            good += 1
        else:
            bad += 1
    clarity, fmt, covered = _reading(scenario.name, instruction)
    return PromptFeatures(demos=good, bad_demos=bad, clarity=min(1.0, clarity), format_rule=fmt, covered=covered)


@lru_cache(maxsize=512)
def _reading(scenario: str, instruction: str) -> tuple[float, bool, frozenset[str]]:
    """Scenario.clarity and Scenario.covered, remembered: a long system prompt is shared by thousands of requests."""
    source = SCENARIOS[scenario]
    return (*source.clarity(instruction), source.covered(instruction))
