"""Deterministic per-item scorers for tasks whose answers can be checked in code (reference proof-science §5).

Why in code and not by a judge: a label, a number or a JSON record can be compared exactly and for free, and an
exact check has no judge bias. Each scorer returns a small record whose `score` in [0, 1] is the X the
sequential test consumes, plus the normalised values so a person can see why two answers did or did not match.
Schema validity is a separate hard gate (`schema_valid`), never averaged into quality.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import jsonschema

# --------------------------------------------------------------------------------------------------------------
# Text normalisation
# --------------------------------------------------------------------------------------------------------------

_QUOTES = {'"': '"', "'": "'", "`": "`", "“": "”", "‘": "’", "«": "»"}
_QUOTES_AND_MARKUP = {**_QUOTES, "*": "*", "_": "_", "(": ")", "[": "]"}
_PREFIX = re.compile(r"^\s*(?:[^\W\d_][\w-]*)(?:\s+[^\W\d_][\w-]*){0,2}\s*[:=]\s*(?=\S)")
_TRAILING_PUNCT = ".,;:!?"


def _strip_wrappers(text: str, pairs: Mapping[str, str] = _QUOTES) -> str:
    """Remove matching quotes (or, for labels, markdown emphasis and brackets) around the whole text."""
    text = text.strip()
    changed = True
    while changed and len(text) >= 2:
        changed = False
        for opening, closing in pairs.items():
            inner = text[1:-1].strip()
            if text[0] == opening and text[-1] == closing and inner:
                text, changed = inner, True
                break
    return text


def normalize_text(text: str) -> str:
    """Light normalisation for exact match: Unicode NFKC, case-fold, collapse whitespace, drop surrounding
    quotes and a trailing sentence mark. Inner punctuation is kept: "3.5" and "35" must differ."""
    text = unicodedata.normalize("NFKC", str(text))
    text = _strip_wrappers(text)
    text = text.rstrip(_TRAILING_PUNCT + " \t\n")
    text = _strip_wrappers(text)
    return " ".join(text.casefold().split())


def normalize_label(text: str) -> str:
    """Aggressive normalisation for class labels: also drops a short "Label: " / "Answer = " prefix and all
    punctuation, and treats '_' and '-' as spaces, so "**Label:** Not_Spam." equals "not spam"."""
    text = unicodedata.normalize("NFKC", str(text)).replace("**", "")
    text = _strip_wrappers(text, _QUOTES_AND_MARKUP)
    text = _PREFIX.sub("", text, count=1)
    text = _strip_wrappers(text.rstrip(_TRAILING_PUNCT + " \t\n"), _QUOTES_AND_MARKUP)
    text = text.replace("_", " ").replace("-", " ")
    text = "".join(ch if not unicodedata.category(ch).startswith("P") else " " for ch in text)
    return " ".join(text.casefold().split())


# --------------------------------------------------------------------------------------------------------------
# Exact and label match
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MatchResult:
    """1.0 when the normalised candidate equals the normalised reference, else 0.0."""

    score: float
    candidate: str
    reference: str

    @property
    def matched(self) -> bool:
        return self.score == 1.0


def exact_match(candidate: str, reference: str, *, normalize: bool = True) -> MatchResult:
    """Exact match after `normalize_text` (or byte-for-byte with normalize=False)."""
    cand, ref = (normalize_text(candidate), normalize_text(reference)) if normalize else (candidate, reference)
    return MatchResult(1.0 if cand == ref else 0.0, cand, ref)


@dataclass(frozen=True)
class LabelResult:
    """Label agreement; `label` is the candidate's label as parsed, None when it named no known label."""

    score: float
    label: str | None
    reference: str
    candidate_text: str
    valid: bool
    """False when a label set was given and the candidate named none (or several) of them."""

    @property
    def matched(self) -> bool:
        return self.score == 1.0


def label_match(
    candidate: str,
    reference: str,
    *,
    labels: Iterable[str] | None = None,
    synonyms: Mapping[str, str] | None = None,
) -> LabelResult:
    """Compare class labels after `normalize_label`, mapping synonyms onto canonical labels.

    With a label set, a verbose candidate ("The sentiment is positive.") counts when exactly one known label
    appears in it as whole words; an answer naming two labels is ambiguous and scores 0 (`valid` False).
    """
    syn = {normalize_label(k): normalize_label(v) for k, v in (synonyms or {}).items()}

    def canon(text: str) -> str:
        norm = normalize_label(text)
        return syn.get(norm, norm)

    ref = canon(reference)
    cand = canon(candidate)
    if labels is None:
        return LabelResult(1.0 if cand == ref else 0.0, cand, ref, candidate, True)
    known = {canon(label) for label in labels}
    if cand not in known:
        words = f" {normalize_label(candidate)} "
        aliases = {**{k: k for k in known}, **{k: v for k, v in syn.items() if v in known}}
        hits = [alias for alias in aliases if alias and f" {alias} " in words]
        # "not spam" also contains "spam": a label found only inside a longer found label does not count.
        hits = [a for a in hits if not any(a != b and f" {a} " in f" {b} " for b in hits)]
        found = {aliases[a] for a in hits}
        cand = found.pop() if len(found) == 1 else None
    if cand is None:
        return LabelResult(0.0, None, ref, candidate, False)
    return LabelResult(1.0 if cand == ref else 0.0, cand, ref, candidate, True)


# --------------------------------------------------------------------------------------------------------------
# Numeric match
# --------------------------------------------------------------------------------------------------------------

_NUMBER = re.compile(
    r"(?<![\w.])[-+−]?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?"
)


def extract_number(text: str | float | int) -> float | None:
    """The last number in a text (RouteLLM-style answer extraction): thousands separators, signs, decimals
    and exponents are understood; currency symbols and units are ignored. None when there is no number."""
    if isinstance(text, bool):
        return None
    if isinstance(text, (int, float)):
        return float(text) if math.isfinite(float(text)) else None
    matches = _NUMBER.findall(unicodedata.normalize("NFKC", str(text)))
    if not matches:
        return None
    raw = matches[-1].replace(",", "").replace("−", "-")
    try:
        return float(raw)
    except ValueError:
        return None


@dataclass(frozen=True)
class NumericResult:
    """1.0 when both sides hold a number and they agree within tolerance."""

    score: float
    candidate_value: float | None
    reference_value: float | None

    @property
    def matched(self) -> bool:
        return self.score == 1.0


def numbers_close(a: float, b: float, *, rel_tol: float = 1e-6, abs_tol: float = 1e-9) -> bool:
    """The one tolerance rule every numeric comparison here uses."""
    return math.isclose(a, b, rel_tol=rel_tol, abs_tol=abs_tol)


def numeric_match(
    candidate: str | float | int, reference: str | float | int, *, rel_tol: float = 1e-6, abs_tol: float = 1e-9
) -> NumericResult:
    """Compare the last number of each side; a side with no number scores 0."""
    cand, ref = extract_number(candidate), extract_number(reference)
    ok = cand is not None and ref is not None and numbers_close(cand, ref, rel_tol=rel_tol, abs_tol=abs_tol)
    return NumericResult(1.0 if ok else 0.0, cand, ref)


# --------------------------------------------------------------------------------------------------------------
# JSON: parsing, schema gate, field-F1
# --------------------------------------------------------------------------------------------------------------


class SchemaCheck(NamedTuple):
    """(valid, reason): reason says what failed and where, '' when valid. Unpacks as a tuple."""

    valid: bool
    reason: str


def parse_json(text: str) -> tuple[Any, str | None]:
    """Parse a model's output as JSON exactly as an application would: (value, None) or (None, reason)."""
    try:
        return json.loads(text), None
    except (json.JSONDecodeError, TypeError) as exc:
        msg = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        return None, f"not valid JSON: {msg}{where}"


def schema_valid(text: str, schema: Mapping[str, Any]) -> SchemaCheck:
    """The hard gate: does the output parse as JSON and validate against the schema (Draft 2020-12 unless the
    schema names its own `$schema`)? A broken schema is the caller's error and raises SchemaError."""
    value, error = parse_json(text)
    if error:
        return SchemaCheck(False, error)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    cls.check_schema(schema)
    best = jsonschema.exceptions.best_match(cls(schema, format_checker=cls.FORMAT_CHECKER).iter_errors(value))
    if best is None:
        return SchemaCheck(True, "")
    path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in best.absolute_path)
    return SchemaCheck(False, f"{path}: {best.message}")


_DATE_FORMATS = (
    "%Y-%m-%d",
    "%Y/%m/%d",
    "%Y.%m.%d",
    "%B %d, %Y",
    "%B %d %Y",
    "%b %d, %Y",
    "%b %d %Y",
    "%d %B %Y",
    "%d %b %Y",
    "%d %B, %Y",
    "%d %b, %Y",
)


def normalize_date(text: str) -> str | None:
    """ISO form of an unambiguous date or datetime ("March 5, 2024" → "2024-03-05"); None if it is not one.
    Day/month-ambiguous forms such as 03/05/2024 are left as text on purpose."""
    s = " ".join(str(text).strip().split())
    if not s or not s[0].isalnum():
        return None
    try:
        parsed = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is not None:
        if len(s) <= 10:
            return parsed.date().isoformat()
        return parsed.isoformat()
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(s, fmt).date().isoformat()
        except ValueError:
            continue
    return None


# Numbers written as strings ("1,234", "12.50"); codes with a leading zero ("007") stay strings.
_INT_STRING = re.compile(r"^[-+]?(?:[1-9]\d{0,2}(?:,\d{3})+|[1-9]\d*|0)$")
_FLOAT_STRING = re.compile(r"^[-+]?(?:[1-9]\d{0,2}(?:,\d{3})+|[1-9]\d*|0)?(?:\.\d+)?(?:[eE][-+]?\d+)?$")


def _leaf(value: Any) -> Any:
    """Per-type normaliser for one JSON leaf: strings NFKC/trimmed/case-folded, unambiguous dates as ISO,
    numeric strings as numbers (ints stay ints), booleans kept distinct from numbers."""
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) < 2**53 else value
    text = unicodedata.normalize("NFKC", str(value)).strip()
    if _INT_STRING.match(text):
        return int(text.replace(",", ""))
    if any(ch.isdigit() for ch in text) and _FLOAT_STRING.match(text):
        return _leaf(float(text.replace(",", "")))
    iso = normalize_date(text)
    if iso is not None:
        return iso
    return " ".join(text.casefold().split())


def flatten_json(value: Any, *, null_is_missing: bool = True, prefix: str = "$") -> list[tuple[str, Any]]:
    """(JSON-path, normalised leaf) pairs; list items share the path `a[]`, so lists compare as multisets.

    With null_is_missing (the default policy), a null field counts the same as an absent one.
    """
    if isinstance(value, Mapping):
        out: list[tuple[str, Any]] = []
        for key, item in value.items():
            out.extend(flatten_json(item, null_is_missing=null_is_missing, prefix=f"{prefix}.{key}"))
        return out
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        out = []
        for item in value:
            out.extend(flatten_json(item, null_is_missing=null_is_missing, prefix=f"{prefix}[]"))
        return out
    if value is None and null_is_missing:
        return []
    return [(prefix, _leaf(value))]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _leaves_equal(a: Any, b: Any, rel_tol: float, abs_tol: float) -> bool:
    """Integers (counts, ids) compare exactly; any non-integer number compares within tolerance."""
    if _is_number(a) and _is_number(b):
        if isinstance(a, int) and isinstance(b, int):
            return a == b
        return numbers_close(float(a), float(b), rel_tol=rel_tol, abs_tol=abs_tol)
    return type(a) is type(b) and a == b


@dataclass(frozen=True)
class FieldF1Result:
    """Field-level precision/recall/F1 of a candidate record against a reference record."""

    score: float
    precision: float
    recall: float
    matched: int
    predicted: int
    expected: int
    fields: dict[str, bool] = field(default_factory=dict)
    """Per reference path: were all of its values matched?"""
    parse_error: str | None = None

    @property
    def f1(self) -> float:
        return self.score

    @property
    def all_correct(self) -> bool:
        """Document-level exact match: every field right and nothing extra."""
        return self.parse_error is None and self.matched == self.predicted == self.expected


def field_f1(
    candidate: str | Any,
    reference: str | Any,
    *,
    rel_tol: float = 1e-6,
    abs_tol: float = 1e-9,
    null_is_missing: bool = True,
) -> FieldF1Result:
    """Field-F1 over flattened (path, value) pairs: P = matched/predicted, R = matched/reference.

    Strings given are parsed as JSON first; a candidate that does not parse scores 0 with `parse_error` set.
    Two empty records agree perfectly (F1 = 1).
    """
    if isinstance(reference, str):
        reference, ref_error = parse_json(reference)
        if ref_error:
            raise ValueError(f"reference is {ref_error}; fix the reference data")
    expected_pairs = flatten_json(reference, null_is_missing=null_is_missing)
    if isinstance(candidate, str):
        candidate, error = parse_json(candidate)
        if error:
            fields = {path: False for path, _ in expected_pairs}
            return FieldF1Result(0.0, 0.0, 0.0, 0, 0, len(expected_pairs), fields, error)
    predicted_pairs = flatten_json(candidate, null_is_missing=null_is_missing)

    by_path: dict[str, list[Any]] = {}
    for path, value in predicted_pairs:
        by_path.setdefault(path, []).append(value)
    matched = 0
    fields: dict[str, bool] = {}
    for path, value in expected_pairs:
        pool = by_path.get(path, [])
        hit = next((k for k, cand in enumerate(pool) if _leaves_equal(cand, value, rel_tol, abs_tol)), None)
        if hit is not None:
            pool.pop(hit)
            matched += 1
        fields[path] = fields.get(path, True) and hit is not None
    n_pred, n_exp = len(predicted_pairs), len(expected_pairs)
    if n_pred == 0 and n_exp == 0:
        return FieldF1Result(1.0, 1.0, 1.0, 0, 0, 0, fields)
    precision = matched / n_pred if n_pred else 0.0
    recall = matched / n_exp if n_exp else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return FieldF1Result(f1, precision, recall, matched, n_pred, n_exp, fields)


__all__ = [
    "FieldF1Result",
    "LabelResult",
    "MatchResult",
    "NumericResult",
    "SchemaCheck",
    "exact_match",
    "extract_number",
    "field_f1",
    "flatten_json",
    "label_match",
    "normalize_date",
    "normalize_label",
    "normalize_text",
    "numbers_close",
    "numeric_match",
    "parse_json",
    "schema_valid",
]
