"""Math reasoning: an arithmetic word problem in, worked steps and a final number out.

Items chain two to five operations; a wrong answer skips a step or gets the arithmetic of one line wrong.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from random import Random
from typing import Any

from parity.emulator.brains.scenarios.base import AnswerStyle, Item, Rule, Scenario, Solution, mistake_kinds
from parity.emulator.brains.scenarios.text import last_number

MATH_PEOPLE = (
    ("Maya", "She", "her"),
    ("Tom", "He", "him"),
    ("Aisha", "She", "her"),
    ("Leo", "He", "him"),
    ("Ines", "She", "her"),
    ("Ravi", "He", "him"),
    ("Sofia", "She", "her"),
    ("Jamal", "He", "him"),
)
MATH_THINGS = ("cookies", "stickers", "marbles", "apples", "pencils", "seashells", "cupcakes", "postcards")
MATH_MULTIPLIER = {2: 0.5, 3: 0.8, 4: 1.2, 5: 1.5}  # by number of operations; mean 1.0
MATH_RULES = (
    Rule(
        "steps",
        0.6,
        r"step[- ]by[- ]step|show (?:your|the) (?:work|steps)|one operation per line",
        "Work through the problem step by step, one operation per line.",
    ),
    Rule(
        "arithmetic",
        0.4,
        r"check (?:your|the) (?:arithmetic|answer|work)|verify",
        "Check your arithmetic on every line before you give the answer.",
    ),
    Rule("format", 0.0, r"only the (?:final )?number|just the number", "Give only the final number."),
)


def _apply(op: str, value: int, arg: int) -> int:
    """One step of a word problem ("add", "sub", "mul", "div" or the symbols an answer writes)."""
    if op in ("add", "+"):
        return value + arg
    if op in ("sub", "-"):
        return value - arg
    if op in ("mul", "×"):
        return value * arg
    return value // arg if arg else value


class MathReasoning(Scenario):
    name = "math_reasoning"
    tag = "You solve arithmetic word problems for the Northwind learning app."
    marker = re.compile(r"Problem P-\d{5}:")
    max_tokens = 512

    def generate(self, rng: Random, index: int) -> Item:
        name, he, him = rng.choice(MATH_PEOPLE)
        things = rng.choice(MATH_THINGS)
        n_ops = rng.choice(sorted(MATH_MULTIPLIER))
        value = rng.randint(12, 60)
        sentences = [f"{name} has {value} {things}."]
        for _ in range(n_ops):
            for _attempt in range(20):
                op = rng.choice(("add", "add", "sub", "sub", "mul", "div"))
                if op == "add":
                    n = rng.randint(3, 40)
                    sentences.append(rng.choice((f"{he} buys {n} more.", f"A neighbour gives {him} {n} more.")))
                    value += n
                elif op == "sub" and value > 5:
                    n = rng.randint(1, value - 3)
                    sentences.append(
                        rng.choice((f"{he} gives {n} to a friend.", f"{he} uses {n} for a school project."))
                    )
                    value -= n
                elif op == "mul" and value <= 200:
                    k = rng.choice((2, 3))
                    sentences.append(f"{he} then {'doubles' if k == 2 else 'triples'} the amount.")
                    value *= k
                elif op == "div" and any(value % k == 0 for k in (2, 3, 4)):
                    k = rng.choice([k for k in (2, 3, 4) if value % k == 0])
                    sentences.append(f"{he} splits them equally into {k} bags and keeps one bag.")
                    value //= k
                else:
                    continue
                break
        if rng.random() < 0.5:
            price = rng.randint(2, 9)
            sentences.append(f"{he} sells each one for ${price}. How many dollars does {he.lower()} get?")
            value *= price
        else:
            sentences.append(f"How many {things} does {name} have now?")
        key = f"P-{rng.randint(10000, 99999)}"
        return Item(self.name, key, f"Problem {key}: " + " ".join(sentences), things, value, MATH_MULTIPLIER[n_ops])

    def system_prompt(self, *, clear: bool = False) -> str:
        if not clear:
            return f"{self.tag}\nAnswer the problem."
        return (
            f"{self.tag}\nWork through the problem step by step, one operation per line, and check your arithmetic.\n"
            "Finish with a last line of the form 'Answer: <number>'."
        )

    def reference(self, gold: Any) -> str:
        return f"Answer: {gold}"

    def _ops(self, item: str) -> tuple[int, list[tuple[str, int, str]]] | None:
        sentences = re.split(r"(?<=[.?])\s+", item.split(":", 1)[1].strip())
        m = re.search(r"has (\d+) ", sentences[0]) if sentences else None
        if not m:
            return None
        ops: list[tuple[str, int, str]] = []
        for s in sentences[1:]:
            for pattern, op in (
                (r"buys (\d+) more", "add"),
                (r"gives (?:her|him|them) (\d+) more", "add"),
                (r"gives (\d+) to", "sub"),
                (r"uses (\d+) for", "sub"),
                (r"(doubles) the amount", "mul"),
                (r"(triples) the amount", "mul"),
                (r"into (\d+) bags and keeps one", "div"),
                (r"for \$(\d+)", "mul"),
            ):
                hit = re.search(pattern, s)
                if hit:
                    arg = {"doubles": 2, "triples": 3}.get(hit.group(1)) or int(hit.group(1))
                    ops.append((op, arg, s))
                    break
        return int(m.group(1)), ops

    @staticmethod
    def _run(start: int, ops: Sequence[tuple[str, int, str]]) -> list[tuple[str, int, int]]:
        value, trace = start, []
        for op, arg, _ in ops:
            value = _apply(op, value, arg)
            trace.append((op, arg, value))
        return trace

    def solve(self, text: str) -> Solution | None:
        item = self.item_text(text)
        parsed = self._ops(item) if item else None
        if not parsed or not parsed[1]:
            return None
        start, ops = parsed
        trace = self._run(start, ops)
        n_ops = len([o for o in ops if "sells each" not in o[2]])
        difficulty = MATH_MULTIPLIER.get(min(max(n_ops, 2), 5), 1.0)
        return Solution(self.marker.search(item).group(0), trace[-1][2], difficulty, (start, ops))  # type: ignore[union-attr]

    def rules(self, instruction: str) -> tuple[Rule, ...]:
        return MATH_RULES

    def mistakes(self, candidate: str, reference: str, item: str) -> list[str]:
        got, want = last_number(candidate), last_number(reference)
        if got is not None and want is not None and abs(got - want) < 1e-9:
            return []
        shown = re.findall(r"(-?\d+) ([-+×÷]) (\d+) = (-?\d+)", candidate)
        slipped = "Adjusting" in candidate or any(_apply(op, int(a), int(b)) != int(c) for a, op, b, c in shown)
        solution = self.solve(item)
        needed = len(solution.detail[1]) if solution else len(re.findall(r" = -?\d+", reference))
        out = ["steps"] if len(shown) < needed else []
        if slipped or not out:
            out.append("arithmetic")
        return out

    def mistakes_in_reasons(self, reasons: str) -> list[str]:
        return ["steps", "arithmetic"] if "which is wrong" in reasons or "no final number" in reasons else []

    def answer(self, solution: Solution, style: AnswerStyle) -> str:
        start, ops = solution.detail
        ops = list(ops)
        rng = style.rng
        slip_at: tuple[int, int] | None = None
        if not style.correct:
            kinds = mistake_kinds(("steps", "arithmetic"), style.covered)
            if len(ops) > 1 and "steps" in kinds and ("arithmetic" not in kinds or rng.random() < 0.5):
                ops.pop(rng.randrange(len(ops)))  # skipped a step
            else:
                slip_at = (rng.randrange(len(ops)), rng.choice((-10, -3, -2, -1, 1, 2, 3, 9, 10)))
        value, lines = start, [f"Start: {start}."]
        verb = {"add": "+", "sub": "-", "mul": "×", "div": "÷"}
        for i, (op, arg, _sentence) in enumerate(ops):
            new = self._run(value, [(op, arg, "")])[-1][2]
            if slip_at and slip_at[0] == i:
                new += slip_at[1]
            lines.append(f"{value} {verb[op]} {arg} = {new}.")
            value = new
        if value == solution.gold and not style.correct:
            value += rng.choice((-1, 1, 2))
            lines.append(f"Adjusting for the last step gives {value}.")
        if style.concise and not style.slip:
            return str(value)
        if style.verbosity < 0.8 and not style.slip:
            return f"{' '.join(lines[1:])}\nAnswer: {value}"
        return "\n".join(lines) + f"\nAnswer: {value}"

    def fallback(self, text: str, style: AnswerStyle) -> str:
        numbers = [int(n) for n in re.findall(r"\b\d+\b", text)[-4:]] or [0]
        return f"Answer: {sum(numbers)}"

    def score(self, answer: str, gold: Any) -> float:
        value = last_number(answer)
        return 1.0 if value is not None and abs(value - float(gold)) < 1e-9 else 0.0

    def describe(self, answer: str, gold: Any | None) -> str:
        value = last_number(answer)
        if value is None:
            return "gives no final number"
        shown = int(value) if value == int(value) else value
        if gold is None:
            return f"arrives at {shown}"
        verdict = "correct" if abs(value - float(gold)) < 1e-9 else f"wrong (the answer is {gold})"
        return f"arrives at {shown}, which is {verdict}"

    def parse_reference(self, reference: str, solution: Solution | None) -> Any:
        value = last_number(reference)
        if value is None:
            return None
        return int(value) if value == int(value) else value

    def fields(self, answer: str) -> dict[str, Any]:
        value = last_number(answer)
        return {"answer": (int(value) if value is not None and value == int(value) else value), "reasoning": answer}
