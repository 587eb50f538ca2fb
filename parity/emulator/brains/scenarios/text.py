"""Words and readers the scenarios share: names, companies and months to write items with; dates, JSON and
numbers read back out of an answer; the telling words of a text."""

from __future__ import annotations

import json
import re
from datetime import date
from typing import Any


MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
FIRST_NAMES = (
    "Hannah",
    "Tomás",
    "Priya",
    "Kwame",
    "Mei",
    "Oskar",
    "Leila",
    "Diego",
    "Ingrid",
    "Samuel",
    "Aiko",
    "Fatima",
    "Lukas",
    "Noor",
    "Rafael",
    "Elena",
    "Jonas",
    "Zara",
    "Mateo",
    "Yuki",
)
LAST_NAMES = (
    "Okafor",
    "Lindqvist",
    "Raman",
    "Mensah",
    "Chen",
    "Berg",
    "Haddad",
    "Alvarez",
    "Nilsen",
    "Carter",
    "Tanaka",
    "Rahman",
    "Weber",
    "Aziz",
    "Costa",
    "Petrova",
    "Keller",
    "Malik",
    "Rossi",
    "Sato",
)
COMPANIES = (
    "Brightline Dental",
    "Harbor & Finch",
    "Copperleaf Studio",
    "Northgate Logistics",
    "Lumen Analytics",
    "Bluebell Bakery",
    "Kestrel Legal",
    "Orchard Health",
    "Summit Robotics",
    "Tidewater Books",
    "Granite Peak Outfitters",
    "Marigold Events",
    "Redwood Accounting",
    "Silverline Travel",
    "Foxglove Florists",
    "Ironbridge Builders",
    "Juniper Schools",
    "Wavecrest Media",
)
STOPWORDS = frozenset(
    "a an and are as at be but by can could do does for from had has have how i if in into is it its me my no not "
    "of on or our please so than that the their them then there these they this to us was we were what when where "
    "which who why will with would you your".split()
)


def date_long(d: date) -> str:
    return f"{d.day} {MONTHS[d.month - 1]} {d.year}"


def date_us(d: date) -> str:
    return f"{MONTHS[d.month - 1]} {d.day}, {d.year}"


def parse_date(text: str) -> date | None:
    """A date written '4 March 2026' or 'March 4, 2026'."""
    months = "|".join(MONTHS)
    m = re.search(rf"\b(\d{{1,2}}) ({months}) (\d{{4}})\b", text)
    if m:
        return date(int(m.group(3)), MONTHS.index(m.group(2)) + 1, int(m.group(1)))
    m = re.search(rf"\b({months}) (\d{{1,2}}), (\d{{4}})\b", text)
    if m:
        return date(int(m.group(3)), MONTHS.index(m.group(1)) + 1, int(m.group(2)))
    return None


def find_json(text: str) -> Any:
    """The JSON value in an answer: the whole text, a ```json fence, or the outermost {...}; None if there is none."""
    text = text.strip()
    for candidate in (text, *re.findall(r"```(?:json)?\s*(.*?)```", text, re.S)):
        try:
            return json.loads(candidate)
        except ValueError:
            pass
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        try:
            return json.loads(text[start : end + 1])
        except ValueError:
            return None
    return None


def last_number(text: str) -> float | None:
    """The final answer of a numeric reply: after 'Answer:' or '####' when present, else the last number."""
    tail = re.split(r"(?i)answer\s*(?:is|:)|####", text)[-1] if re.search(r"(?i)answer\s*(?:is|:)|####", text) else text
    numbers = re.findall(r"-?\$?\d[\d,]*(?:\.\d+)?", tail) or re.findall(r"-?\$?\d[\d,]*(?:\.\d+)?", text)
    if not numbers:
        return None
    try:
        return float(numbers[-1].replace("$", "").replace(",", ""))
    except ValueError:
        return None



def keywords(text: str, k: int = 5) -> list[str]:
    """The `k` most telling words of a text (longest non-stopwords, first seen first), for generic replies."""
    words = [w for w in re.findall(r"[A-Za-z][A-Za-z'-]{2,}", text) if w.lower() not in STOPWORDS]
    ranked = sorted(dict.fromkeys(words), key=lambda w: (-len(w), words.index(w)))[:k]
    return sorted(ranked, key=words.index)
