"""Thread summary: a support thread in, a summary that states its key facts out, under a long policy manual.

A summary is graded by the facts it gets (order, product, refund, ship date, ...); `support_policy_text` is the
~6,000-token manual whose stable prefix the caching demo relies on.
"""

from __future__ import annotations

import re
from functools import cache
from random import Random
from typing import Any

from parity.emulator.brains.scenarios.base import AnswerStyle, Item, Rule, Scenario, Solution, item_accuracy
from parity.emulator.brains.scenarios.text import COMPANIES, FIRST_NAMES, LAST_NAMES, MONTHS
from parity.tokenizer import count_text

PRODUCTS = (
    "Aurora X2 blender",
    "Nimbus 14 laptop stand",
    "Sola desk lamp",
    "Tern travel kettle",
    "Kestrel running watch",
    "Orca water filter",
    "Pico label printer",
    "Vela office chair",
    "Atlas standing desk",
    "Quill e-reader",
)
PLANS = ("Basic", "Plus", "Pro", "Team")
FACT_KINDS = ("order", "product", "refund", "ship_date", "tracking", "escalation", "plan")
FACT_PATTERNS = {
    "order": re.compile(r"#\d{5}\b"),
    "product": re.compile("|".join(re.escape(p) for p in PRODUCTS)),
    "refund": re.compile(r"\$\d+\.\d{2}"),
    "ship_date": re.compile(rf"\b\d{{1,2}} (?:{'|'.join(MONTHS)})\b"),
    "tracking": re.compile(r"\b[A-Z]{2}\d{8}\b"),
    "escalation": re.compile(r"\btier [1-3]\b"),
    "plan": re.compile(rf"\b(?:{'|'.join(PLANS)}) plan\b"),
}
THREAD_LINES = {
    "order": ("[Customer] Hi, I'm writing about order {v}.", "[Customer] This is regarding order {v} from last week."),
    "product": (
        "[Customer] The {v} I bought stopped working after a week.",
        "[Customer] It's the {v}, and it won't turn on.",
    ),
    "refund": (
        "[Agent] I've approved a refund of {v} to your original payment method.",
        "[Agent] You'll see a refund of {v} within five working days.",
    ),
    "ship_date": (
        "[Agent] A replacement will ship on {v}.",
        "[Agent] The warehouse confirmed a replacement ships on {v}.",
    ),
    "tracking": ("[Agent] The tracking code for the replacement is {v}.", "[Agent] Your new tracking code is {v}."),
    "escalation": (
        "[Agent] I've escalated this to {v} so an engineer can look at it.",
        "[Agent] This needs a specialist, so I've passed it to {v}.",
    ),
    "plan": (
        "[Agent] As an apology I've moved you to the {v} at no extra cost for three months.",
        "[Agent] I've switched your account to the {v} as you asked.",
    ),
}
SUMMARY_SENTENCES = {
    "order": "The thread concerns order {v}.",
    "product": "The product is the {v}.",
    "refund": "A refund of {v} was approved.",
    "ship_date": "A replacement ships on {v}.",
    "tracking": "The replacement's tracking code is {v}.",
    "escalation": "The case was escalated to {v}.",
    "plan": "The customer was moved to the {v}.",
}
THREAD_FILLERS = (
    "[Customer] Thanks for getting back to me so quickly.",
    "[Agent] Let me check that for you.",
    "[Agent] I'm sorry for the trouble this has caused.",
    "[Customer] That works for me.",
    "[Agent] Is there anything else I can help with today?",
    "[Customer] I appreciate it.",
    "[Customer] I've attached a photo, in case it helps.",
    "[Agent] Thanks for your patience.",
)
SUMMARY_FILLERS = (
    "The customer stayed polite and patient throughout.",
    "The agent apologised for the inconvenience.",
    "The conversation stayed friendly from start to finish.",
    "No further questions were raised at the end of the thread.",
    "The customer thanked the agent for the quick help.",
)
SUMMARY_NAMED = {
    "name:order": "order number",
    "name:refund": "refund amount",
    "name:tracking": "tracking code",
    "name:ship_date": "ship date",
    "name:escalation": "escalation",
}
SUMMARY_RULES = (
    Rule(
        "missing",
        0.4,
        r"\b(?:every|all|each)\s+key\s+facts?\b|\binclude\s+(?:all|every)\b",
        "Include every key fact, exactly as written in the thread.",
    ),
    Rule(
        "invented",
        0.3,
        r"\bdo\s+not\s+(?:add|invent)\b|\bdon't\s+(?:add|invent)\b|\bonly\s+facts\b",
        "Do not add facts that are not in the thread.",
    ),
    *(
        Rule(kind, 0.06, rf"{phrase}s?", f"State the {phrase} whenever the thread gives one.")
        for kind, phrase in SUMMARY_NAMED.items()
    ),
    Rule("format", 0.0, r"\b(?:three|two|four|\d)\s+(?:to\s+\w+\s+)?sentences\b", "Write three to six sentences."),
)
SUMMARY_MULTIPLIER = {4: 0.8, 5: 1.0, 6: 1.2}
SUMMARY_WRONG_SHARE = 0.3  # of the facts a summary gets wrong, the share stated wrongly rather than left out


class ThreadSummary(Scenario):
    name = "thread_summary"
    tag = "You are the thread summariser for Northwind Support."
    marker = re.compile(r"Support thread S-\d{5}")
    demo_threshold = 0.75
    max_tokens = 400

    def generate(self, rng: Random, index: int) -> Item:
        n = rng.choice(sorted(SUMMARY_MULTIPLIER))
        kinds = ["order", "product", *rng.sample(FACT_KINDS[2:], n - 2)]
        values = {k: self._value(k, rng) for k in kinds}
        lines = [rng.choice(THREAD_LINES[k]).format(v=values[k]) for k in kinds]
        for filler in rng.sample(THREAD_FILLERS, 3):
            lines.insert(rng.randint(1, len(lines)), filler)
        first, last, company = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES), rng.choice(COMPANIES)
        key = f"S-{rng.randint(10000, 99999)}"
        text = f"Support thread {key} (customer: {first} {last}, {company}; {len(lines)} messages)\n\n" + "\n".join(
            lines
        )
        gold = [values[k] for k in FACT_KINDS if k in values]
        return Item(self.name, key, text, company, gold, SUMMARY_MULTIPLIER[n])

    def _value(self, kind: str, rng: Random) -> str:
        if kind == "order":
            return f"#{rng.randint(10000, 99999)}"
        if kind == "product":
            return rng.choice(PRODUCTS)
        if kind == "refund":
            return f"${rng.randint(12, 480)}.{rng.choice(('00', '50', '99', '25'))}"
        if kind == "ship_date":
            return f"{rng.randint(1, 28)} {rng.choice(MONTHS)}"
        if kind == "tracking":
            return f"{rng.choice(('ZX', 'JD', 'RM', 'UP'))}{rng.randint(10**7, 10**8 - 1)}"
        if kind == "escalation":
            return f"tier {rng.randint(2, 3)}"
        return f"{rng.choice(PLANS)} plan"

    def system_prompt(self, *, clear: bool = False) -> str:
        instruction = (
            "Summarise the support thread below for the next agent who picks it up."
            if not clear
            else "Summarise the support thread below for the next agent in three to six sentences. Include every key "
            "fact: the order number, the product, any refund amount, ship dates, tracking codes, plan changes and "
            "escalations, exactly as written. Do not add facts that are not in the thread, and skip small talk."
        )
        return f"{self.tag}\n\n{support_policy_text()}\n\n{instruction}"

    def reference(self, gold: Any) -> str:
        return " ".join(SUMMARY_SENTENCES[self._kind(v)].format(v=v) for v in gold)

    def _kind(self, value: str) -> str:
        return next(k for k in FACT_KINDS if FACT_PATTERNS[k].fullmatch(value))

    def facts(self, text: str) -> list[str]:
        """Every fact value stated in `text`, in the order of FACT_KINDS."""
        out: list[str] = []
        for kind in FACT_KINDS:
            out.extend(dict.fromkeys(FACT_PATTERNS[kind].findall(text)))
        return out

    def solve(self, text: str) -> Solution | None:
        item = self.item_text(text)
        if item is None:
            return None
        facts = self.facts(item)
        if not facts:
            return None
        difficulty = SUMMARY_MULTIPLIER.get(len(facts), 1.0)
        return Solution(self.marker.search(item).group(0), facts, difficulty)  # type: ignore[union-attr]

    def rules(self, instruction: str) -> tuple[Rule, ...]:
        return SUMMARY_RULES

    def mistakes(self, candidate: str, reference: str, item: str) -> list[str]:
        want, said = self.facts(reference), self.facts(candidate)
        missed = [v for v in want if v not in said]
        out = []
        if missed:
            out.append("missing")
            out += [f"name:{k}" for k in dict.fromkeys(self._kind(v) for v in missed) if f"name:{k}" in SUMMARY_NAMED]
        if any(v not in want for v in said):
            out.append("invented")
        return out

    def mistakes_in_reasons(self, reasons: str) -> list[str]:
        out = []
        for covered, total in re.findall(r"covers (\d+) of the (\d+) key facts", reasons):
            if int(covered) < int(total) and "missing" not in out:
                out.append("missing")
        if "that are not in the thread" in reasons:
            out.append("invented")
        return out

    def core(self, instruction: str) -> str:
        """The instruction without the policy manual: a revision rewrites the closing instruction only."""
        text = instruction.replace(support_policy_text(), "")
        return re.sub(r"\n{3,}", "\n\n", super().core(text))

    def answer(self, solution: Solution, style: AnswerStyle) -> str:
        rng = style.rng
        p = item_accuracy(style.accuracy, solution.difficulty)
        sentences: list[str] = []
        for value in solution.gold:
            kind = self._kind(value)
            if rng.random() < p:
                sentences.append(SUMMARY_SENTENCES[kind].format(v=value))
            elif "invented" not in style.covered and rng.random() < SUMMARY_WRONG_SHARE:
                sentences.append(SUMMARY_SENTENCES[kind].format(v=self._perturb(kind, value, rng)))
        fillers = (
            0 if style.concise else min(len(SUMMARY_FILLERS), max(0, round(style.verbosity * 2.5 + rng.random() - 0.5)))
        )
        text = " ".join(
            [
                "The customer contacted support about a problem with a purchase.",
                *sentences,
                *rng.sample(SUMMARY_FILLERS, fillers),
            ]
        )
        return f"Summary: {text}" if style.slip else text

    def _perturb(self, kind: str, value: str, rng: Random) -> str:
        for _ in range(20):
            other = self._value(kind, rng)
            if other != value:
                return other
        return value

    def fallback(self, text: str, style: AnswerStyle) -> str:
        facts = self.facts(text)
        kept = [v for v in facts if style.rng.random() < style.accuracy]
        body = " ".join(SUMMARY_SENTENCES[self._kind(v)].format(v=v) for v in kept)
        return ("The customer asked support for help. " + body).strip()

    def score(self, answer: str, gold: Any) -> float:
        gold = list(gold)
        if not gold:
            return 0.0
        said = self.facts(answer)
        covered = sum(v in said for v in gold)
        wrong = sum(v not in gold for v in said)
        return max(0.0, covered / len(gold) - 0.25 * wrong)

    def describe(self, answer: str, gold: Any | None) -> str:
        said = self.facts(answer)
        if gold is None:
            return f"states {len(said)} concrete facts"
        covered = sum(v in said for v in gold)
        wrong = [v for v in said if v not in gold]
        text = f"covers {covered} of the {len(gold)} key facts"
        if wrong:
            text += f" and states {len(wrong)} that are not in the thread ({', '.join(wrong[:2])})"
        return text

    def parse_reference(self, reference: str, solution: Solution | None) -> Any:
        return self.facts(reference) or None

    def fields(self, answer: str) -> dict[str, Any]:
        return {"summary": answer}

    def demo_answer(self, chunk: str) -> str:
        parts = [p for p in re.split(r"\n\s*\n", chunk.strip()) if p.strip()]
        return parts[-1] if parts else ""


_POLICY_TOPICS = (
    "Greeting and tone",
    "Identity checks",
    "Refunds",
    "Replacements",
    "Deliveries",
    "Subscriptions",
    "Handing cases upward",
    "Data protection",
    "Accessibility",
    "Complaints",
    "Goodwill gestures",
    "Business customers",
    "Warranty",
    "Returns",
    "Outages",
    "Handover notes",
)
_POLICY_CLAUSES = (
    "Agents acknowledge the customer's message within {n} working hours and give a realistic next step.",
    "A request is never closed until the customer has confirmed the outcome or {n} days pass without a reply.",
    "Goodwill credits above {amount} need the approval of a team lead, recorded in the case history.",
    "When the customer is upset, agents restate the problem in their own words before proposing a fix.",
    "Agents never promise a date the warehouse or the engineering team has not confirmed in writing.",
    "Personal data is only read when the case requires it, and never copied into free-text notes.",
    "Business customers with more than {n} seats are routed to the account team for contract questions.",
    "Before any change to an account, the agent confirms the customer's identity with two independent checks.",
    "A faulty item within {n} days of delivery is replaced or refunded at the customer's choice.",
    "The handover note states what was promised, by whom and by when, in plain sentences.",
    "Internal jargon, ticket codes of other systems and blame on colleagues never appear in replies.",
    "If a fix takes longer than promised, the agent writes before the deadline, not after it.",
    "Agents offer a call back when a written exchange has gone back and forth more than {n} times.",
    "Refunds go to the original payment method; exceptions require the finance desk's written approval.",
    "Customers who rely on assistive technology may ask for plain-text replies and longer response windows.",
    "Outage messages link to the public status page and avoid guessing at causes or durations.",
    "A complaint about an agent is handled by a different team and acknowledged within {n} hours.",
    "Agents close each reply with the single next step and the name of the person responsible for it.",
    "Warranty claims need the purchase date; an order confirmation or a bank statement both count.",
    "Returned items are inspected within {n} working days of arrival at the returns centre.",
    "Where two policies conflict, the one more favourable to the customer applies until a lead decides.",
    "Replies stay under {n} words unless the customer asked for a detailed explanation.",
    "Agents record the customer's preferred channel and use it for every later update on the case.",
    "Discounts are never offered in exchange for removing a public review.",
)


@cache
def support_policy_text(tokens: int = 6000) -> str:
    """Northwind Support's policy manual, about `tokens` long: the stable prefix the caching demo relies on."""
    rng = Random("northwind-support-policy-v1")
    out = ["Northwind Support policy manual (internal; version 7.3). Follow it in every reply and every note."]
    section = 0
    while count_text("\n\n".join(out)) < tokens:
        topic = _POLICY_TOPICS[section % len(_POLICY_TOPICS)]
        section += 1
        clauses = rng.sample(_POLICY_CLAUSES, 6)
        body = " ".join(c.format(n=rng.randint(2, 30), amount=f"${rng.randint(2, 20) * 5}") for c in clauses)
        out.append(f"Section {section}. {topic}.\n{section}.1 {body}")
    return "\n\n".join(out)
