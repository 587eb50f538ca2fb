"""Simulated model profiles: how accurate, wordy, sloppy about format and fast each Claude model is, per scenario.

These numbers are invented to behave like the real ordering (Opus > Sonnet > Haiku) and like the real response
to prompting (reference proof-science §3.5): demonstrations and a clearer instruction lift a weaker model with
diminishing returns toward a ceiling no prompt can pass; on multi-step arithmetic the small model stays far behind
whatever the prompt. Anything measured with them is a simulation and is labelled so.

Accuracy for one prompt = base + (ceiling − base)·(1 − exp(−(demo_gain·good_demos + instruction_gain·clarity)))
− 0.03·wrong_demos, clamped to [0, ceiling]; a degradation factor f then pulls it toward chance:
acc·(1 − f) + chance·f (used to test drift detection).

Each profile also says how the model errs when it is asked to judge (JudgeBias): position bias, a preference for
the longer answer, and confidently wrong verdicts on hard items, with defaults taken from reference proof-science §1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from parity import catalog
from parity.emulator.brains.scenarios.base import PromptFeatures

CHANCE = {"ticket_triage": 1 / 6, "thread_summary": 0.0, "math_reasoning": 0.0, "invoice_extraction": 0.0}
GENERIC = "generic"  # the skill used for prompts of no known scenario (and a judge's own solving of them)


@dataclass(frozen=True)
class Skill:
    """How well a model does one scenario, and how much prompting helps."""

    base: float  # accuracy with a plain instruction and no demonstrations
    ceiling: float  # the best any prompt gets
    demo_gain: float  # lift rate per correct demonstration
    instruction_gain: float  # lift rate for a fully clear instruction
    slip: float = 0.0  # format-slip rate with a plain prompt

    def __post_init__(self) -> None:
        if not 0.0 <= self.base <= self.ceiling <= 1.0:
            raise ValueError(f"a skill needs 0 <= base <= ceiling <= 1, got base={self.base}, ceiling={self.ceiling}")
        if min(self.demo_gain, self.instruction_gain, self.slip) < 0 or self.slip > 1:
            raise ValueError("demo_gain and instruction_gain must be >= 0 and slip within [0, 1]")


@dataclass(frozen=True)
class Latency:
    """Time to first token, then per generated token; reading the prompt costs per thousand input tokens."""

    ttft_s: float
    per_token_s: float
    per_input_ktok_s: float = 0.02


@dataclass(frozen=True)
class JudgeBias:
    """How a model errs as a pairwise judge (reference proof-science §1). Every effect is a deterministic function
    of (judge model, prompt, seed); 0 turns it off. How the simulated judge applies them: simulated.py, `_verdict`.

    position: on a pair of equal quality, the probability that one order's verdict goes to the answer shown first
        whatever it says. It fades linearly to 0 as the quality gap grows to half the scale, and is 0 when the
        judge sees one answer right and the other wrong, so a clearly better answer still wins in both orders
        ("agreement grows with the quality gap, from about 70% to nearly 100%", §1.1). It is drawn per order, so
        it is what makes the two orders disagree. Default 0.35: over the differing answers of a Haiku candidate
        and an Opus baseline on the four simulated scenarios, about 21% of judged prompts get two orders that
        disagree (20–23% over the seeds tried; tests/emulator/test_judge_bias.py), inside the 15–35% of §1.2
        (GPT-4 flipped on 15.6% of MT-Bench's human-judged items, and was consistent in only 65% of Zheng et al.'s
        cases, §1.1).
    verbosity: on a pair of equal quality whose lengths differ by more than a tenth, the probability that the longer
        answer wins, in both orders (drawn per prompt, so it moves the score without making the orders disagree);
        it fades with the quality gap like `position`. Default 0.3: the longer of two equally good answers scores
        ½ + 0.3/2 = 0.65 on average, like the P(prefer longer) of 0.61–0.75 of LLM judges and 0.64 of humans in
        AlpacaEval's evaluator table (§1.3).
    wrong_on_hard: on a hard item (difficulty above 1) where one answer is truly worse, the probability that the
        judge takes the worse answer for the right one and says so in both orders: a clear verdict, not a tie.
        Default 0.3: a judge that explains before its verdict failed 6 of 20 math gradings in MT-Bench (§1.1); a
        reference answer in the prompt halves it (3 of 20 with reference-guided grading).
    noise: standard deviation of the judge's misreading of the quality gap (scores in [0, 1]), drawn per prompt.
    """

    position: float = 0.35
    verbosity: float = 0.3
    wrong_on_hard: float = 0.3
    noise: float = 0.03

    def __post_init__(self) -> None:
        for name in ("position", "verbosity", "wrong_on_hard"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"JudgeBias.{name} must be within [0, 1], got {getattr(self, name)}")
        if self.noise < 0:
            raise ValueError(f"JudgeBias.noise must be >= 0, got {self.noise}")

    @classmethod
    def none(cls) -> JudgeBias:
        """A judge with no position, length or hard-item bias and no misreading (for tests that need one)."""
        return cls(position=0.0, verbosity=0.0, wrong_on_hard=0.0, noise=0.0)


@dataclass(frozen=True)
class ModelProfile:
    """One model's simulated behaviour."""

    model: str
    line: str
    skills: Mapping[str, Skill]
    verbosity: float = 1.0  # answer length relative to an Opus-like model
    latency: Latency = field(default_factory=lambda: Latency(0.8, 0.018))
    judge: JudgeBias = field(default_factory=JudgeBias)

    def skill(self, scenario: str | None) -> Skill:
        return self.skills.get(scenario or GENERIC) or self.skills[GENERIC]

    def with_overrides(self, changes: Mapping[str, Any]) -> ModelProfile:
        """A copy with some values changed: {"verbosity": 0.5, "skills": {"ticket_triage": {"base": 0.6}},
        "latency": {"ttft_s": 2.0}, "judge": {"position": 0.0}}; unknown keys raise ValueError naming them."""
        unknown = set(changes) - {"verbosity", "skills", "latency", "line", "judge"}
        if unknown:
            raise ValueError(f"unknown profile keys {sorted(unknown)}; use verbosity, skills, latency, judge or line")
        out = self
        if "judge" in changes:
            bias = changes["judge"]
            out = replace(out, judge=bias if isinstance(bias, JudgeBias) else replace(out.judge, **dict(bias)))
        if "verbosity" in changes:
            out = replace(out, verbosity=float(changes["verbosity"]))
        if "line" in changes:
            out = replace(out, line=str(changes["line"]))
        if "latency" in changes:
            lat = changes["latency"]
            out = replace(out, latency=lat if isinstance(lat, Latency) else replace(out.latency, **dict(lat)))
        if "skills" in changes:
            skills = dict(out.skills)
            for scenario, value in dict(changes["skills"]).items():
                if isinstance(value, Skill):
                    skills[scenario] = value
                else:
                    skills[scenario] = replace(skills.get(scenario) or skills[GENERIC], **dict(value))
            out = replace(out, skills=skills)
        return out


def _skills(triage: tuple, summary: tuple, math_: tuple, extraction: tuple, generic: tuple) -> dict[str, Skill]:
    return {
        "ticket_triage": Skill(*triage),
        "thread_summary": Skill(*summary),
        "math_reasoning": Skill(*math_),
        "invoice_extraction": Skill(*extraction),
        GENERIC: Skill(*generic),
    }


# (base, ceiling, demo_gain, instruction_gain, slip)
LINE_SKILLS: dict[str, dict[str, Skill]] = {
    "haiku": _skills(
        (0.80, 0.95, 0.6, 2.5, 0.15),
        (0.78, 0.92, 0.35, 1.2, 0.05),
        (0.52, 0.57, 0.15, 0.4, 0.05),
        (0.50, 0.95, 0.55, 0.8, 0.25),
        (0.70, 0.80, 0.3, 0.6, 0.05),
    ),
    "sonnet": _skills(
        (0.93, 0.96, 0.5, 1.5, 0.04),
        (0.91, 0.96, 0.4, 1.0, 0.02),
        (0.86, 0.91, 0.2, 0.5, 0.02),
        (0.88, 0.96, 0.5, 1.0, 0.06),
        (0.85, 0.90, 0.3, 0.6, 0.02),
    ),
    "opus": _skills(
        (0.95, 0.97, 0.5, 1.0, 0.02),
        (0.94, 0.97, 0.4, 1.0, 0.01),
        (0.92, 0.95, 0.2, 0.5, 0.01),
        (0.93, 0.97, 0.5, 1.0, 0.03),
        (0.90, 0.93, 0.3, 0.6, 0.01),
    ),
    "fable": _skills(
        (0.96, 0.98, 0.5, 1.0, 0.02),
        (0.95, 0.98, 0.4, 1.0, 0.01),
        (0.94, 0.96, 0.2, 0.5, 0.01),
        (0.94, 0.98, 0.5, 1.0, 0.02),
        (0.92, 0.95, 0.3, 0.6, 0.01),
    ),
}
LINE_SKILLS["mythos"] = LINE_SKILLS["fable"]
LINE_VERBOSITY = {"haiku": 0.7, "sonnet": 0.9, "opus": 1.0, "fable": 1.1, "mythos": 1.1}
LINE_LATENCY = {
    "haiku": Latency(0.35, 0.006, 0.01),
    "sonnet": Latency(0.6, 0.012, 0.02),
    "opus": Latency(0.9, 0.018, 0.03),
    "fable": Latency(1.2, 0.022, 0.035),
    "mythos": Latency(1.2, 0.022, 0.035),
}
LEGACY_PENALTY = 0.03  # retired generations (3.x, Opus/Sonnet 4.0 and 4.1) start a little lower
_LEGACY = (
    "claude-3",
    "claude-opus-4-0",
    "claude-opus-4-1",
    "claude-sonnet-4-0",
    "claude-opus-4-2025",
    "claude-sonnet-4-2025",
)


def canonical(model: str) -> str:
    """The catalogue's canonical id for `model` (dated aliases map to their model); the id itself if unknown."""
    try:
        return catalog.resolve(model)
    except catalog.UnknownModelError:
        return model


def line_of(model: str) -> str:
    """haiku | sonnet | opus | fable | mythos: from the catalogue, else from the name; 'sonnet' when nothing fits."""
    try:
        return catalog.get_model(model).line
    except catalog.UnknownModelError:
        pass
    low = model.lower()
    for line in ("haiku", "sonnet", "opus", "fable", "mythos"):
        if line in low:
            return line
    return "sonnet"


def default_profile(model: str) -> ModelProfile:
    """The built-in profile of a model id (any string works; unknown ids get their line's profile by name)."""
    model = canonical(model)
    line = line_of(model)
    skills = LINE_SKILLS[line]
    if model.startswith(_LEGACY):
        skills = {k: replace(s, base=max(0.0, s.base - LEGACY_PENALTY)) for k, s in skills.items()}
    return ModelProfile(model, line, dict(skills), LINE_VERBOSITY[line], LINE_LATENCY[line])


def accuracy(skill: Skill, features: PromptFeatures, *, degradation: float = 0.0, chance: float = 0.0) -> float:
    """The probability of a right answer for a prompt with these features (see the module docstring)."""
    lift = 1.0 - math.exp(-(skill.demo_gain * features.demos + skill.instruction_gain * features.clarity))
    acc = skill.base + (skill.ceiling - skill.base) * lift - 0.03 * features.bad_demos
    acc = min(skill.ceiling, max(0.0, acc))
    return acc * (1.0 - degradation) + chance * degradation


def slip_rate(skill: Skill, features: PromptFeatures, *, degradation: float = 0.0) -> float:
    """The probability of a format slip: an explicit format rule cuts it by 3/4, each correct demo by a third."""
    rate = skill.slip * (0.25 if features.format_rule else 1.0) * (0.65**features.demos)
    return rate + (1.0 - rate) * 0.5 * degradation
