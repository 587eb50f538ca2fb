"""How a proof scores one prompt: the mode (paired gold, agreement, the judge), the kind of answer, and the
scorer in code that compares an answer with gold or with the baseline's answer.

Modes (`--scoring`):
- ``paired-gold`` (tasks with gold labels, numbers or JSON): D = s(candidate, gold) − s(baseline, gold) with a
  scorer in code (label match, numeric match, JSON field-F1), X = (D + 1)/2;
- ``agreement`` (labels or JSON, no gold): X = s(candidate, baseline's output), H0: p ≤ 1 − δ;
- ``judge`` (free text): the pairwise judge, both orders, X ∈ {0, ¼, ½, ¾, 1};
- ``auto`` picks paired-gold where every prompt has a gold answer of a checkable kind, agreement for labels or
  JSON without gold, the judge otherwise.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from parity.errors import InputError
from parity.proof.data import ProofItem, infer_kind, label_set
from parity.proof.scorers import exact_match, field_f1, label_match, numeric_match, parse_json

SCORINGS = ("auto", "paired-gold", "agreement", "judge")


@dataclass(frozen=True)
class Scoring:
    """How prompts are scored in this run: the mode, the kind of answer, and the label set for label tasks."""

    mode: str  # paired-gold | agreement | judge
    kind: str  # label | number | json | text
    labels: tuple[str, ...] = ()

    @property
    def test_mode(self) -> str:
        return {"paired-gold": "paired-gold", "agreement": "agreement", "judge": "score"}[self.mode]

    def score(self, output: str, reference: Any) -> float:
        """s(output, reference) in [0, 1] with the scorer for this kind (reference: gold or baseline output)."""
        key = json.dumps(reference, sort_keys=True, ensure_ascii=False, default=str)
        return _cached_score(self.kind, self.labels, output, key)

    def _score(self, output: str, reference: Any) -> float:
        if self.kind == "label":
            return label_match(output, str(reference), labels=self.labels or None).score
        if self.kind == "number":
            return numeric_match(output, reference if isinstance(reference, (int, float)) else str(reference)).score
        if self.kind == "json":
            ref = reference
            if isinstance(ref, str):
                ref, error = parse_json(ref)
                if error:
                    return exact_match(output, str(reference)).score
            return field_f1(output, ref).score
        return exact_match(output, str(reference)).score

    def observe(self, item: ProofItem, candidate_output: str) -> tuple[float, dict[str, Any]]:
        """(X on the test mode's scale, details) for a scorer-based mode."""
        if self.mode == "paired-gold":
            s_c = self.score(candidate_output, item.gold)
            s_b = self.score(item.baseline_output or "", item.gold)
            return s_c - s_b, {"candidate_score": s_c, "baseline_score": s_b, "gold": item.gold}
        s = self.score(candidate_output, item.baseline_output or "")
        return s, {"agreement": s}

    def unit(self, x: float) -> float:
        return (x + 1.0) / 2.0 if self.mode == "paired-gold" else x


@functools.lru_cache(maxsize=65536)
def _cached_score(kind: str, labels: tuple[str, ...], output: str, reference_json: str) -> float:
    """Scores are pure functions of their inputs; the optimiser re-scores many identical answers."""
    return Scoring("paired-gold", kind, labels)._score(output, json.loads(reference_json))


def choose_scoring(requested: str, items: Sequence[ProofItem]) -> Scoring:
    """The scoring for `requested` (auto picks, see the module docstring); an InputError when it cannot work."""
    if requested not in SCORINGS:
        raise InputError(f"unknown scoring {requested!r}; use one of {', '.join(SCORINGS)}", field="scoring")
    kind = infer_kind(items)
    has_gold = all(i.gold is not None for i in items)
    labels = tuple(label_set(items)) if kind == "label" else ()
    if requested == "auto":
        if has_gold and kind in ("label", "number", "json"):
            requested = "paired-gold"
        elif kind in ("label", "json"):
            requested = "agreement"
        else:
            requested = "judge"
    if requested == "paired-gold" and not has_gold:
        missing = sum(i.gold is None for i in items)
        raise InputError(f"paired-gold scoring needs a gold answer on every prompt; {missing} have none. Use "
                         "--scoring judge or agreement", field="scoring")
    return Scoring(requested, kind, labels)


__all__ = ["SCORINGS", "Scoring", "choose_scoring"]
