"""Invoice extraction: an invoice's text in, its seven fields as JSON out (INVOICE_SCHEMA).

Dense layouts are harder; a wrong answer swaps, misformats or leaves out fields.
"""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from random import Random
from typing import Any

from parity.emulator.brains.scenarios.base import AnswerStyle, Item, Rule, Scenario, Solution, mistake_kinds
from parity.emulator.brains.scenarios.text import COMPANIES, date_long, date_us, find_json, parse_date

INVOICE_FIELDS = ("invoice_number", "vendor", "customer", "issue_date", "due_date", "currency", "total")
INVOICE_SCHEMA = {
    "type": "object",
    "properties": {
        "invoice_number": {"type": "string"},
        "vendor": {"type": "string"},
        "customer": {"type": "string"},
        "issue_date": {"type": "string", "description": "YYYY-MM-DD"},
        "due_date": {"type": "string", "description": "YYYY-MM-DD"},
        "currency": {"type": "string", "description": "ISO 4217 code"},
        "total": {"type": "number"},
    },
    "required": list(INVOICE_FIELDS),
    "additionalProperties": False,
}
VENDORS = (
    "Acme Paper Co.",
    "Brightwater Office Supply",
    "Cobalt Cloud Services",
    "Delta Print Works",
    "Evergreen Facilities Ltd",
    "Fernhill Catering",
    "Gridline Electrical",
    "Helix IT Consulting",
    "Indigo Courier Services",
    "Jasper Furniture GmbH",
)
CURRENCIES = {"EUR": "€", "USD": "$", "GBP": "£"}
ITEMS = (
    "Printer paper, 20 reams",
    "Monthly cloud hosting",
    "Office cleaning, March",
    "Catering for team event",
    "Replacement monitor",
    "Consulting, 6 hours",
    "Courier deliveries",
    "Desk chairs (4)",
    "Network cabling",
    "Software licences (10 seats)",
)
INVOICE_MULTIPLIER = {"standard": 0.7, "dense": 1.6}  # 2/3 standard, 1/3 dense layouts; mean 1.0
INVOICE_RULES = (
    Rule(
        "missing",
        1 / 7,
        r"all (?:seven |7 )?fields|every field|do not omit|don't omit|never omit",
        "Fill all seven fields; never omit one.",
    ),
    Rule(
        "date_format",
        1 / 7,
        r"YYYY-MM-DD|ISO[ -]8601",
        "Write issue_date and due_date as YYYY-MM-DD.",
    ),
    Rule(
        "due_as_issue",
        1 / 7,
        r"not the (?:payment )?due date|date of issue",
        "issue_date is the date of issue, not the payment due date.",
    ),
    Rule(
        "currency_symbol",
        1 / 7,
        r"3-letter|three-letter|ISO 4217|currency code",
        "Write currency as its 3-letter ISO 4217 code, never as a symbol.",
    ),
    Rule(
        "subtotal",
        1 / 7,
        r"not the subtotal|never the subtotal|including tax",
        "total is the amount due including tax, never the subtotal.",
    ),
    Rule(
        "total_string",
        1 / 7,
        r"as a number|no currency symbol|number, not a string|without (?:the )?currency symbol",
        "Give total as a number, with no currency symbol or thousands separator.",
    ),
    Rule(
        "swap",
        1 / 7,
        r"vendor is the (?:company|party)|issued the invoice",
        "vendor is the company that issued the invoice; customer is the one billed.",
    ),
    Rule(
        "format",
        0.0,
        r"only the JSON|no prose|no code fence|without (?:any )?(?:prose|explanation)",
        "Output only the JSON object, with no prose and no code fence.",
    ),
)
INVOICE_MISTAKES = ("date_format", "total_string", "missing", "swap", "subtotal", "due_as_issue", "currency_symbol")
INVOICE_FIELD_MISTAKES = {  # what a judge's "wrong or missing: FIELD" can mean
    "invoice_number": ("missing",),
    "vendor": ("swap",),
    "customer": ("swap", "missing"),
    "issue_date": ("date_format", "due_as_issue"),
    "due_date": ("missing",),
    "currency": ("currency_symbol", "missing"),
    "total": ("total_string", "subtotal"),
}


def _money(amount: float) -> str:
    return f"{amount:,.2f}"


def _field_ok(name: str, got: Any, want: Any) -> bool:
    """One extracted field against the gold: totals as numbers (to the cent), everything else as exact strings."""
    if want is None:
        return False
    if name == "total" and isinstance(want, str):  # a believed gold that is itself wrong (the judge was fooled)
        return got == want
    if name == "total":
        return isinstance(got, (int, float)) and not isinstance(got, bool) and abs(float(got) - float(want)) < 0.005
    return isinstance(got, str) and got.strip() == str(want)


class InvoiceExtraction(Scenario):
    name = "invoice_extraction"
    tag = "You extract invoice data for Northwind Accounts Payable."
    marker = re.compile(r"Document D-\d{5} \(invoice, OCR text\)")
    max_tokens = 400

    def generate(self, rng: Random, index: int) -> Item:
        vendor = rng.choice(VENDORS)
        customer = rng.choice(COMPANIES)
        currency = rng.choice(tuple(CURRENCIES))
        issued = date(2026, 1, 1) + timedelta(days=rng.randint(0, 300))
        due = issued + timedelta(days=rng.choice((14, 30, 45)))
        lines = rng.sample(ITEMS, rng.randint(1, 3))
        amounts = [rng.randint(40, 2400) + rng.choice((0, 0.5, 0.25, 0.99)) for _ in lines]
        subtotal = round(sum(amounts), 2)
        rate = rng.choice((0, 10, 20))
        tax = round(subtotal * rate / 100, 2)
        total = round(subtotal + tax, 2)
        number = f"INV-{issued.year}-{rng.randint(1000, 9999)}"
        key = f"D-{rng.randint(10000, 99999)}"
        dense = rng.random() < 1 / 3
        sym = CURRENCIES[currency]
        items = "\n".join(f"  {d:<34} {sym}{_money(a)}" for d, a in zip(lines, amounts, strict=True))
        if not dense:
            text = (
                f"Document {key} (invoice, OCR text)\nINVOICE\nFrom: {vendor}\nInvoice number: {number}\n"
                f"PO number: PO-{rng.randint(10000, 99999)}\nIssued: {date_long(issued)}\n"
                f"Payment due: {date_long(due)}\n"
                f"Bill to: {customer}\n\nItems:\n{items}\n\nSubtotal: {sym}{_money(subtotal)}\n"
                f"VAT ({rate}%): {sym}{_money(tax)}\nTotal due: {sym}{_money(total)}"
            )
        else:
            text = (
                f"Document {key} (invoice, OCR text)\nTAX INVOICE   Seller: {vendor}   Customer: {customer}\n"
                f"Ref. PO-{rng.randint(10000, 99999)} / Inv. no. {number} / Date of issue {date_us(issued)}\n"
                f"{items}\nNet {currency} {_money(subtotal)}  Tax {rate}% {currency} {_money(tax)}\n"
                f"Amount paid {currency} 0.00   Balance due {currency} {_money(total)} by {date_us(due)}"
            )
        gold = {
            "invoice_number": number,
            "vendor": vendor,
            "customer": customer,
            "issue_date": issued.isoformat(),
            "due_date": due.isoformat(),
            "currency": currency,
            "total": total,
        }
        return Item(self.name, key, text, vendor, gold, INVOICE_MULTIPLIER["dense" if dense else "standard"])

    def system_prompt(self, *, clear: bool = False) -> str:
        text = f"{self.tag}\nReturn the invoice's data as JSON with the fields {', '.join(INVOICE_FIELDS)}."
        if not clear:
            return text
        return text + (
            "\nRules: fill all seven fields and do not omit any; write dates as YYYY-MM-DD; issue_date is the date of "
            "issue, not the payment due date; currency is the 3-letter ISO 4217 code; total is the amount due "
            "including tax, as a number, with no currency symbol or thousands separator; vendor is the company that "
            "issued the invoice, customer the one billed. Output only the JSON object, with no prose and no code fence."
        )

    def reference(self, gold: Any) -> str:
        return json.dumps(gold, ensure_ascii=False)

    def solve(self, text: str) -> Solution | None:
        item = self.item_text(text)
        if item is None:
            return None
        dense = "TAX INVOICE" in item
        if dense:
            vendor = re.search(r"Seller: (.+?)\s{2,}", item)
            customer = re.search(r"Customer: (.+?)\s*$", item, re.M)
            number = re.search(r"Inv\. no\. (\S+)", item)
            issued = (
                parse_date(re.search(r"Date of issue (.+)$", item, re.M).group(1)) if "Date of issue" in item else None
            )
            due_m = re.search(r"by (\w+ \d{1,2}, \d{4})", item)
            due = parse_date(due_m.group(1)) if due_m else None
            total_m = re.search(r"Balance due ([A-Z]{3}) ([\d,]+\.\d{2})", item)
            currency = total_m.group(1) if total_m else None
        else:
            vendor = re.search(r"From: (.+)$", item, re.M)
            customer = re.search(r"Bill to: (.+)$", item, re.M)
            number = re.search(r"Invoice number: (\S+)", item)
            issued_m = re.search(r"Issued: (.+)$", item, re.M)
            due_m = re.search(r"Payment due: (.+)$", item, re.M)
            issued = parse_date(issued_m.group(1)) if issued_m else None
            due = parse_date(due_m.group(1)) if due_m else None
            total_m = re.search(r"Total due: (\D)([\d,]+\.\d{2})", item)
            currency = {v: k for k, v in CURRENCIES.items()}.get(total_m.group(1)) if total_m else None
        if not all((vendor, customer, number, issued, due, total_m, currency)):
            return None
        gold = {
            "invoice_number": number.group(1),
            "vendor": vendor.group(1).strip(),
            "customer": customer.group(1).strip(),  # type: ignore[union-attr]
            "issue_date": issued.isoformat(),
            "due_date": due.isoformat(),
            "currency": currency,  # type: ignore[union-attr]
            "total": float(total_m.group(2).replace(",", "")),  # type: ignore[union-attr]
        }
        subtotal = re.search(r"(?:Subtotal: \D|Net [A-Z]{3} )([\d,]+\.\d{2})", item)
        detail = {
            "subtotal": float(subtotal.group(1).replace(",", "")) if subtotal else None,
            "issued": issued,
            "due": due,
        }
        key = self.marker.search(item).group(0)  # type: ignore[union-attr]
        return Solution(key, gold, INVOICE_MULTIPLIER["dense" if dense else "standard"], detail)

    def rules(self, instruction: str) -> tuple[Rule, ...]:
        return INVOICE_RULES

    def mistakes(self, candidate: str, reference: str, item: str) -> list[str]:
        text = candidate.strip()
        out = [] if text.startswith("{") and text.endswith("}") else ["format"]
        got, want = find_json(candidate), find_json(reference)
        if not isinstance(want, dict):
            solution = self.solve(item)
            want = solution.gold if solution else {}
        if not isinstance(got, dict):
            return out or ["format"]
        if any(got.get(name) in (None, "") for name in INVOICE_FIELDS):
            out.append("missing")
        dates = [got.get(name) for name in ("issue_date", "due_date")]
        if any(isinstance(d, str) and d and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", d) for d in dates):
            out.append("date_format")
        if got.get("issue_date") and got.get("issue_date") == want.get("due_date") != want.get("issue_date"):
            out.append("due_as_issue")
        total = got.get("total")
        if isinstance(total, str) and total:
            out.append("total_string")
        elif isinstance(total, (int, float)) and not _field_ok("total", total, want.get("total")):
            out.append("subtotal")
        if got.get("vendor") and got.get("vendor") == want.get("customer"):
            out.append("swap")
        if got.get("currency") and got.get("currency") != want.get("currency"):
            out.append("currency_symbol")
        return out

    def mistakes_in_reasons(self, reasons: str) -> list[str]:
        out: list[str] = []
        if "does not return a JSON object" in reasons:
            out.append("format")
        for listed in re.findall(r"wrong or missing: ([a-z_, ]+)\)", reasons):
            for name in (n.strip() for n in listed.split(",")):
                out += [k for k in INVOICE_FIELD_MISTAKES.get(name, ()) if k not in out]
        return out

    def answer(self, solution: Solution, style: AnswerStyle) -> str:
        rng = style.rng
        out: dict[str, Any] = dict(solution.gold)
        if not style.correct:
            detail = solution.detail or {}
            kinds = mistake_kinds(INVOICE_MISTAKES, style.covered)
            for error in rng.sample(kinds, min(len(kinds), rng.choice((1, 1, 2)))):
                if error == "date_format":
                    out["issue_date"] = (
                        date_long(detail["issued"]) if detail.get("issued") else out["issue_date"][::-1]
                    )
                elif error == "total_string":
                    out["total"] = (
                        f"{CURRENCIES.get(solution.gold['currency'], '')}{_money(float(solution.gold['total']))}"
                    )
                elif error == "missing":
                    out.pop(rng.choice(("due_date", "currency", "customer")), None)
                elif error == "swap":
                    out["vendor"], out["customer"] = solution.gold["customer"], solution.gold["vendor"]
                elif error == "subtotal" and detail.get("subtotal") not in (None, solution.gold["total"]):
                    out["total"] = detail["subtotal"]
                elif error == "due_as_issue":
                    out["issue_date"] = solution.gold["due_date"]
                elif error == "currency_symbol":
                    out["currency"] = CURRENCIES.get(solution.gold["currency"], solution.gold["currency"].lower())
            if all(out.get(k) == v for k, v in solution.gold.items()):
                out["total"] = round(float(solution.gold["total"]) + rng.choice((-10, 10, 100)), 2)
        return self._write(out, style)

    def _write(self, value: dict[str, Any], style: AnswerStyle) -> str:
        body = json.dumps(value, ensure_ascii=False, indent=2 if style.verbosity >= 0.9 else None)
        if not style.slip:
            return body
        return style.rng.choice(
            (
                f"```json\n{body}\n```",
                f"Here is the extracted invoice data:\n\n{body}",
                f"{body}\n\nLet me know if you need the line items as well.",
            )
        )

    def fallback(self, text: str, style: AnswerStyle) -> str:
        number = re.search(r"\bINV[-\w]+", text)
        value = {name: None for name in INVOICE_FIELDS}
        value["invoice_number"] = number.group(0) if number else None
        return self._write(value, style)

    def score(self, answer: str, gold: Any) -> float:
        value = find_json(answer)
        if not isinstance(value, dict):
            return 0.0
        right = sum(_field_ok(name, value.get(name), gold.get(name)) for name in INVOICE_FIELDS)
        clean = (
            find_json(answer.strip()) is not None and answer.strip().startswith("{") and answer.strip().endswith("}")
        )
        return right / len(INVOICE_FIELDS) * (1.0 if clean else 0.9)

    def correct(self, answer: str, gold: Any) -> bool:
        return self.score(answer, gold) >= 0.89

    def describe(self, answer: str, gold: Any | None) -> str:
        value = find_json(answer)
        if not isinstance(value, dict):
            return "does not return a JSON object"
        if gold is None:
            return f"returns {len(value)} fields"
        wrong = [n for n in INVOICE_FIELDS if not _field_ok(n, value.get(n), gold.get(n))]
        if not wrong:
            return "gets every field right"
        right = len(INVOICE_FIELDS) - len(wrong)
        return f"gets {right} of {len(INVOICE_FIELDS)} fields right (wrong or missing: {', '.join(wrong)})"

    def parse_reference(self, reference: str, solution: Solution | None) -> Any:
        value = find_json(reference)
        return value if isinstance(value, dict) else None

    def fields(self, answer: str) -> dict[str, Any]:
        value = find_json(answer)
        return value if isinstance(value, dict) else {}

    def demo_answer(self, chunk: str) -> str:
        start, end = chunk.find("{"), chunk.rfind("}")
        return chunk[start : end + 1] if 0 <= start < end else ""
