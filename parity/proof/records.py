"""The records a proof passes between its stages: the settings of a run and one candidate's outcome.

They sit apart from the runner so that the certificate, which is built from them, does not import the runner.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from parity.canonical import canonical_hash
from parity.policy import TunedPrompt
from parity.proof.data import DEFAULT_FRACTIONS
from parity.proof.diagnostics import Diagnostics


@dataclass(frozen=True)
class ProveConfig:
    """Every setting of a proof; stored in the run directory and the certificate."""

    task: str
    baseline_model: str
    candidate_models: tuple[str, ...]
    judge_model: str | None = None
    margin: float = 0.05
    alpha: float = 0.05
    n_max: int = 400
    budget_usd: Decimal | None = None
    sync: bool = False
    scoring: str = "auto"
    reference_guided: bool = False
    split_by: str = "auto"
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
    seed: int = 0
    optimize: bool = True
    max_prompt_candidates: int = 32
    minibatch: int = 16
    method: str = "agrapa"
    monthly_requests: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["candidate_models"] = list(self.candidate_models)
        data["fractions"] = list(self.fractions)
        data["budget_usd"] = None if self.budget_usd is None else str(self.budget_usd)
        return data

    def identity(self) -> dict[str, Any]:
        """The settings that make a run what it is. The budget is not one: rerunning with a larger budget on the
        same run directory goes on from where the money ran out, paying for nothing twice."""
        return {k: v for k, v in self.to_dict().items() if k != "budget_usd"}

    def digest(self) -> str:
        """12 hex digits of the canonical hash of `identity()`: the default run directory's suffix."""
        return canonical_hash(self.identity(), 12)


@dataclass
class CandidateOutcome:
    """One candidate's proof, as it goes into the certificate."""

    model: str
    verdict: str
    stopped_by: str
    n_used: int
    result: dict[str, Any] | None
    observations: list[dict[str, Any]]
    order: list[str]
    prompt: TunedPrompt
    prompt_hash: str
    optimization: dict[str, Any] | None
    diagnostics: Diagnostics
    cost_per_request: Decimal | None
    notes: list[str] = field(default_factory=list)


__all__ = ["CandidateOutcome", "ProveConfig"]
