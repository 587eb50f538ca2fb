"""Deterministic scorers: normalisation, labels, numbers, JSON field-F1 and the schema gate."""

from __future__ import annotations

import pytest
from jsonschema.exceptions import SchemaError

from parity.proof.scorers import (
    exact_match,
    extract_number,
    field_f1,
    flatten_json,
    label_match,
    normalize_date,
    normalize_label,
    normalize_text,
    numeric_match,
    schema_valid,
)


@pytest.mark.parametrize(
    ("candidate", "reference", "matched"),
    [
        ("Paris", "paris", True),
        ('  "Paris."  ', "Paris", True),
        ("New   York\n", "new york", True),
        ("Ｐａｒｉｓ", "Paris", True),  # full-width letters, NFKC
        ("`x = 1`", "x = 1", True),
        ("3.5", "35", False),  # inner punctuation is kept by exact match
        ("Paris, France", "Paris", False),
    ],
)
def test_exact_match_normalises_case_space_quotes_and_final_punctuation(candidate, reference, matched):
    res = exact_match(candidate, reference)
    assert res.matched is matched
    assert res.score == (1.0 if matched else 0.0)


def test_exact_match_can_be_byte_for_byte():
    assert not exact_match("Paris", "paris", normalize=False).matched
    assert normalize_text(" 'Hello  World!' ") == "hello world"


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("Label: Positive", "positive"),
        ("**Sentiment:** NEGATIVE.", "negative"),
        ('"not_spam"', "not spam"),
        ("Answer = billing-issue", "billing issue"),
        ("(neutral)", "neutral"),
    ],
)
def test_label_normalisation(text, label):
    assert normalize_label(text) == label


def test_label_match_with_label_set_and_synonyms():
    labels = ["positive", "negative", "neutral"]
    assert label_match("Label: POSITIVE", "positive", labels=labels).matched
    assert label_match("pos", "positive", labels=labels, synonyms={"pos": "positive"}).matched
    verbose = label_match("The sentiment of this review is negative.", "negative", labels=labels)
    assert verbose.matched and verbose.label == "negative"
    wrong = label_match("neutral", "positive", labels=labels)
    assert not wrong.matched and wrong.valid and wrong.label == "neutral"


def test_label_match_rejects_unknown_and_ambiguous_answers():
    labels = ["spam", "not spam"]
    assert label_match("This is not spam.", "not spam", labels=labels).matched  # "spam" inside "not spam"
    ambiguous = label_match("positive or negative", "positive", labels=["positive", "negative"])
    assert (ambiguous.score, ambiguous.valid, ambiguous.label) == (0.0, False, None)
    unknown = label_match("mixed", "positive", labels=["positive", "negative"])
    assert not unknown.valid and unknown.score == 0.0


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("She makes $18 every day.", 18.0),
        ("First 3, then 4, so the answer is 1,234.50", 1234.5),
        ("The temperature is -7.", -7.0),
        ("ratio .5", 0.5),
        ("about 2.5e3 units", 2500.0),
        ("version v2 has 7 parts", 7.0),
        ("no digits here", None),
        (42, 42.0),
    ],
)
def test_extract_last_number(text, value):
    assert extract_number(text) == value


def test_numeric_match_uses_tolerance_and_needs_numbers_on_both_sides():
    assert numeric_match("#### 72", "72").matched
    assert numeric_match("The total is 0.30000000000000004", 0.3).matched
    assert not numeric_match("72.5", "72").matched
    assert numeric_match("72.5", "72", abs_tol=0.5).matched
    missing = numeric_match("I don't know", "72")
    assert (missing.score, missing.candidate_value, missing.reference_value) == (0.0, None, 72.0)


def test_dates_normalise_to_iso_only_when_unambiguous():
    assert normalize_date("March 5, 2024") == "2024-03-05"
    assert normalize_date("5 Mar 2024") == "2024-03-05"
    assert normalize_date("2024/03/05") == "2024-03-05"
    assert normalize_date("2024-03-05T10:00:00Z") == "2024-03-05T10:00:00+00:00"
    assert normalize_date("03/05/2024") is None  # day/month ambiguous: left as text
    assert normalize_date("hello") is None


def test_field_f1_normalises_each_type():
    reference = {
        "name": "Ada Lovelace",
        "amount": 12.5,
        "count": 3,
        "date": "2024-03-05",
        "tags": ["b", "a", "a"],
        "paid": True,
    }
    candidate = (
        '{"name": "  ada   LOVELACE ", "amount": "12.50", "count": 3.0, "date": "March 5, 2024",'
        ' "tags": ["a", "b", "a"], "paid": true}'
    )
    res = field_f1(candidate, reference)
    assert res.score == 1.0 and res.all_correct
    assert res.fields == {"$.name": True, "$.amount": True, "$.count": True, "$.date": True, "$.tags[]": True,
                          "$.paid": True}


def test_field_f1_counts_precision_and_recall():
    reference = {"a": 1, "b": "x", "c": [1, 2]}
    candidate = {"a": 1, "b": "y", "c": [1, 1], "extra": "z"}
    res = field_f1(candidate, reference)
    # expected pairs: a, b, c[]=1, c[]=2 (4); predicted: a, b, c[]=1, c[]=1, extra (5); matched: a, c[]=1 (2)
    assert (res.matched, res.predicted, res.expected) == (2, 5, 4)
    assert res.precision == pytest.approx(2 / 5) and res.recall == pytest.approx(2 / 4)
    assert res.f1 == pytest.approx(2 * 0.4 * 0.5 / 0.9)
    assert res.fields == {"$.a": True, "$.b": False, "$.c[]": False}
    assert not res.all_correct


def test_field_f1_numbers_integers_and_booleans():
    assert field_f1({"x": 0.1 + 0.2}, {"x": 0.3}).score == 1.0  # float tolerance
    assert field_f1({"id": 1000001}, {"id": 1000000}).score == 0.0  # integers (ids, counts) are exact
    assert field_f1({"ok": 1}, {"ok": True}).score == 0.0  # booleans are not numbers
    assert field_f1({"zip": "007"}, {"zip": 7}).score == 0.0  # codes with leading zeros stay strings


def test_field_f1_null_policy_and_edge_cases():
    assert field_f1({"a": 1, "b": None}, {"a": 1}).score == 1.0  # default: null counts as missing
    strict = field_f1({"a": 1, "b": None}, {"a": 1}, null_is_missing=False)
    assert strict.predicted == 2 and strict.score < 1.0
    assert field_f1({}, {}).score == 1.0
    assert field_f1({"a": 1}, {}).score == 0.0
    bad = field_f1("```json\n{\"a\": 1}\n```", {"a": 1})
    assert bad.score == 0.0 and "not valid JSON" in bad.parse_error and bad.fields == {"$.a": False}
    with pytest.raises(ValueError, match="reference"):
        field_f1("{}", "{broken")


def test_flatten_json_paths():
    pairs = flatten_json({"a": {"b": [1, {"c": "X"}]}})
    assert pairs == [("$.a.b[]", 1), ("$.a.b[].c", "x")]


SCHEMA = {
    "type": "object",
    "properties": {
        "label": {"enum": ["spam", "ham"]},
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "items": {"type": "array", "items": {"type": "integer"}},
    },
    "required": ["label", "score"],
    "additionalProperties": False,
}


def test_schema_gate_passes_valid_output():
    ok, reason = schema_valid('{"label": "spam", "score": 0.9}', SCHEMA)
    assert ok and reason == ""


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('{"label": "spam"', "not valid JSON"),
        ('```json\n{"label": "spam", "score": 0.9}\n```', "not valid JSON"),
        ('{"label": "eggs", "score": 0.9}', "$.label"),
        ('{"label": "spam"}', "'score' is a required property"),
        ('{"label": "spam", "score": 2}', "$.score"),
        ('{"label": "spam", "score": 0.5, "items": [1, "x"]}', "$.items[1]"),
        ('{"label": "spam", "score": 0.5, "extra": 1}', "extra"),
    ],
)
def test_schema_gate_explains_failures(text, fragment):
    check = schema_valid(text, SCHEMA)
    assert check.valid is False
    assert fragment in check.reason


def test_schema_gate_rejects_a_broken_schema():
    with pytest.raises(SchemaError):
        schema_valid("{}", {"type": "no-such-type"})
