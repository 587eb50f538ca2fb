"""Ticket triage: a support ticket in, one label of six out.

Hard tickets mix in a phrase of a confusable label, and a wrong answer picks that runner-up most of the time.
Clarity is read per item: defining labels helps the tickets whose right label or likely confusion they define.
"""

from __future__ import annotations

import re
from dataclasses import replace
from random import Random
from typing import Any

from parity.emulator.brains.scenarios.base import AnswerStyle, Item, PromptFeatures, Rule, Scenario, Solution
from parity.emulator.brains.scenarios.text import COMPANIES, FIRST_NAMES, LAST_NAMES

TRIAGE_LABELS = ("billing", "bug", "account_access", "shipping", "cancellation", "feature_request")
TRIAGE_DEFINITIONS = {
    "billing": "charges, invoices, receipts, refunds of payments, prices and discounts",
    "bug": "something in the product is broken: errors, crashes, freezes, wrong or missing data",
    "account_access": "logging in, passwords, two-factor codes, locked accounts, admins and workspace ownership",
    "shipping": "physical deliveries: parcels, couriers, damaged, missing or wrong items, delivery addresses",
    "cancellation": "ending a subscription, an order, a trial, a contract or the whole account",
    "feature_request": "asking for something the product does not do yet",
}
TRIAGE_PHRASES = {
    "billing": (
        "I was charged twice for the same month",
        "the invoice amount does not match my plan",
        "my card was billed after I downgraded",
        "I need a copy of last month's receipt",
        "there is a charge I don't recognise on my statement",
        "the VAT on my invoice looks wrong",
        "can you refund the extra payment",
        "my discount code was not applied to the bill",
        "the annual renewal price went up without notice",
        "please update the address printed on my invoices",
    ),
    "bug": (
        "the export button does nothing when I click it",
        "the app crashes as soon as I open the dashboard",
        "I get an error 500 when saving a report",
        "the search results are empty even for exact names",
        "the page freezes after uploading a CSV",
        "charts show yesterday's data even after a refresh",
        "the mobile app throws an exception on startup",
        "notifications arrive twice for every comment",
        "the date picker shows the wrong month",
        "sync stops halfway with a timeout message",
    ),
    "account_access": (
        "I can't log in even after resetting my password",
        "the two-factor code never arrives",
        "my account was locked after too many attempts",
        "I no longer have access to the email on my account",
        "the password reset link says it has expired",
        "single sign-on sends me back to the login page",
        "I need to transfer ownership of the workspace",
        "a former employee is still the admin on our account",
        "my authenticator app was wiped when I changed phones",
        "the login page says my username does not exist",
    ),
    "shipping": (
        "my parcel has not arrived after two weeks",
        "the tracking page shows no movement",
        "the box arrived damaged and the item is broken",
        "I received the wrong size",
        "the courier marked it delivered but nothing came",
        "can I change the delivery address for my order",
        "half of my order is missing from the package",
        "customs is holding my package",
        "the delivery window keeps getting pushed back",
        "I need a replacement sent by express courier",
    ),
    "cancellation": (
        "please cancel my subscription at the end of this term",
        "I want to close my account and delete my data",
        "how do I stop the automatic renewal",
        "we are moving to another provider next month",
        "cancel the order I placed this morning",
        "I no longer need the service after this project",
        "terminate the contract for our second team",
        "I'd like to end my free trial before it converts",
        "we are winding down the company and need to stop everything",
        "remove all seats and end the plan",
    ),
    "feature_request": (
        "it would be great to export reports as PDF",
        "could you add a dark mode",
        "we would love an integration with Slack",
        "please add bulk editing for contacts",
        "is there a plan to support custom fields",
        "an API endpoint for usage data would help us a lot",
        "allow us to schedule reports weekly",
        "we need role-based permissions for guests",
        "add keyboard shortcuts for the editor",
        "support for multiple currencies would be useful",
    ),
}
TRIAGE_CONFUSABLE = {
    "billing": "cancellation",
    "bug": "account_access",
    "account_access": "bug",
    "shipping": "billing",
    "cancellation": "billing",
    "feature_request": "bug",
}
TRIAGE_FILLERS = (
    "I've been a customer for about three years",
    "Thanks in advance for looking into this",
    "This is the first time I'm writing to support",
    "My colleague suggested I contact you directly",
    "I'm writing from my work address",
    "Hope you're having a good week",
    "Let me know if you need anything else from me",
    "We really like the product overall",
    "I tried again this morning before writing",
    "Our team has about twenty people",
)
TRIAGE_SUBJECTS = (
    "Need help",
    "Question",
    "Urgent",
    "Problem since yesterday",
    "Quick question",
    "Following up",
    "Help please",
    "Issue with our account",
    "Re: your last email",
    "Support request",
)
TRIAGE_HARD_SHARE = 0.25
TRIAGE_MULTIPLIER = {"easy": 0.6, "hard": 2.2}  # mean 1.0 at 25% hard


class TicketTriage(Scenario):
    name = "ticket_triage"
    tag = "You are the ticket triage assistant for Northwind Support."
    marker = re.compile(r"Ticket ID: T-\d{5}")
    demo_threshold = 0.9  # a right label with a little text around it still teaches the label
    max_tokens = 64

    def generate(self, rng: Random, index: int) -> Item:
        label = rng.choice(TRIAGE_LABELS)
        hard = rng.random() < TRIAGE_HARD_SHARE
        phrases = rng.sample(TRIAGE_PHRASES[label], 2)
        if hard:
            other = (
                TRIAGE_CONFUSABLE[label] if rng.random() < 0.7 else rng.choice([x for x in TRIAGE_LABELS if x != label])
            )
            phrases.append(rng.choice(TRIAGE_PHRASES[other]))
        fillers = rng.sample(TRIAGE_FILLERS, rng.randint(1, 2))
        body = phrases + fillers
        rng.shuffle(body)
        first, last, company = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES), rng.choice(COMPANIES)
        key = f"T-{rng.randint(10000, 99999)}"
        sentences = " ".join(
            s[0].upper() + s[1:] + ("?" if s.startswith(("can ", "how ", "is ", "could ")) else ".") for s in body
        )
        text = (
            f"Ticket ID: {key}\nCustomer: {first} {last} ({company})\nSubject: {rng.choice(TRIAGE_SUBJECTS)}\n\n"
            f"Hi there,\n{sentences}\nThanks,\n{first}"
        )
        return Item(self.name, key, text, company, label, TRIAGE_MULTIPLIER["hard" if hard else "easy"])

    def system_prompt(self, *, clear: bool = False) -> str:
        text = f"{self.tag}\nLabels: {', '.join(TRIAGE_LABELS)}.\n"
        if not clear:
            return text + "Classify the customer's ticket into one of the labels."
        defs = "\n".join(f"- {label}: {TRIAGE_DEFINITIONS[label]}" for label in TRIAGE_LABELS)
        return (
            text + "What each label means:\n" + defs + "\n"
            "When a ticket touches several topics, choose the label of the customer's main request.\n"
            "Answer with only the label, exactly as written above."
        )

    def reference(self, gold: Any) -> str:
        return str(gold)

    def labels(self, system: str) -> tuple[str, ...]:
        m = re.search(r"(?im)^\s*labels?\s*:\s*(.+)$", system)
        if not m:
            return TRIAGE_LABELS
        found = tuple(x.strip(" .`*'\"").lower() for x in m.group(1).split(",") if x.strip(" .`*'\""))
        return found or TRIAGE_LABELS

    def _counts(self, text: str) -> dict[str, int]:
        low = text.lower()
        return {label: sum(p.lower() in low for p in phrases) for label, phrases in TRIAGE_PHRASES.items()}

    def solve(self, text: str) -> Solution | None:
        item = self.item_text(text)
        if item is None:
            return None
        counts = self._counts(item)
        ranked = sorted(TRIAGE_LABELS, key=lambda x: (-counts[x], TRIAGE_LABELS.index(x)))
        if counts[ranked[0]] == 0 or counts[ranked[0]] == counts[ranked[1]]:
            return None
        hard = counts[ranked[1]] > 0
        runner = ranked[1] if hard else TRIAGE_CONFUSABLE[ranked[0]]
        key = self.marker.search(item).group(0)  # type: ignore[union-attr]
        return Solution(key, ranked[0], TRIAGE_MULTIPLIER["hard" if hard else "easy"], runner)

    def rules(self, instruction: str) -> tuple[Rule, ...]:
        labels = self.labels(instruction)
        share = 0.85 / max(1, len(labels))
        defined = [
            Rule(
                f"label:{label}",
                share,
                rf"^\s*(?:[-*•]\s*)?[`*]*{re.escape(label)}[`*]*\s*(?::|-|—|–)\s*\S+(?:\s+\S+){{2,}}",
                f"- {label}: {TRIAGE_DEFINITIONS.get(label, 'tickets about ' + label.replace('_', ' ') + ' only')}",
            )
            for label in labels
        ]
        only = Rule(
            "format",
            0.15,
            r"\bonly\s+the\s+(?:label|category)\b|\bjust\s+the\s+label\b|\bsingle\s+label\b",
            "Answer with only the label, exactly as written above.",
        )
        return (*defined, only)

    def for_item(self, features: PromptFeatures, solution: Solution) -> PromptFeatures:
        """Defining a label helps the tickets it bears on: clarity counts the item's right label and its likely
        confusion (half each of the definitions' 0.85) and the format rule (0.15). Over a label mix as even as the
        generator's, the mean is the prompt's clarity."""
        defined = sum(f"label:{label}" in features.covered for label in (solution.gold, solution.detail))
        clarity = 0.85 * defined / 2 + 0.15 * ("format" in features.covered)
        return replace(features, clarity=clarity)

    def mistakes(self, candidate: str, reference: str, item: str) -> list[str]:
        said, want = self.parse_label(candidate), self.parse_label(reference)
        out = [f"label:{label}" for label in dict.fromkeys((want, said)) if label] if said != want else []
        if said is None or candidate.strip() != said:
            out.append("format")
        return out

    def mistakes_in_reasons(self, reasons: str) -> list[str]:
        out = [f"label:{label}" for label in dict.fromkeys(re.findall(r"labels the ticket '([a-z_]+)'", reasons))]
        if "extra text around it" in reasons or "gives no label" in reasons:
            out.append("format")
        return out

    def answer(self, solution: Solution, style: AnswerStyle) -> str:
        labels = style.labels or TRIAGE_LABELS
        label = solution.gold
        if not style.correct:
            runner = solution.detail if solution.detail in labels else None
            others = [x for x in labels if x != solution.gold]
            label = runner if runner and style.rng.random() < 0.7 else style.rng.choice(others or list(TRIAGE_LABELS))
        return self._write(label, style)

    def _write(self, label: str, style: AnswerStyle) -> str:
        if not style.slip:
            return label
        return style.rng.choice(
            (
                f"Label: {label}",
                f"{label.capitalize()}.",
                f"This ticket is about {label}.",
                f"**{label}**",
                f"{label}\n\nThe customer's main request points to this category.",
            )
        )

    def fallback(self, text: str, style: AnswerStyle) -> str:
        return self._write(style.rng.choice(style.labels or TRIAGE_LABELS), style)

    def parse_label(self, answer: str) -> str | None:
        """The first label an answer names (underscores or spaces), or None."""
        best: tuple[int, str] | None = None
        for label in TRIAGE_LABELS:
            pattern = r"\b" + label.replace("_", r"[_ ]") + r"\b"
            m = re.search(pattern, answer, re.IGNORECASE)
            if m and (best is None or m.start() < best[0]):
                best = (m.start(), label)
        return best[1] if best else None

    def score(self, answer: str, gold: Any) -> float:
        if self.parse_label(answer) != gold:
            return 0.0
        return 1.0 if answer.strip().lower() == str(gold) else 0.9

    def correct(self, answer: str, gold: Any) -> bool:
        return self.parse_label(answer) == gold

    def describe(self, answer: str, gold: Any | None) -> str:
        label = self.parse_label(answer)
        said = f"labels the ticket '{label}'" if label else "gives no label from the set"
        if label and answer.strip().lower() != label:
            said += " with extra text around it"
        return said

    def parse_reference(self, reference: str, solution: Solution | None) -> Any:
        return self.parse_label(reference)

    def fields(self, answer: str) -> dict[str, Any]:
        return {"label": self.parse_label(answer) or answer.strip()}
