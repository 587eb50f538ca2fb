"""The simulated brain: deterministic answers from model profiles, a simulated pairwise judge, and instruction repair.

An answer is a pure function of (model, full prompt, seed): every random choice comes from SHA-256 of those, never
from Python's hash() or a global RNG, so a test can assert exact outputs and a replayed run gives the same bill.

For a prompt of a known scenario (parity.emulator.brains.scenarios) the brain solves the item exactly, then
decides whether this model gets it right with the probability its profile gives for this prompt (demonstrations
and a clear instruction raise it; a degradation factor lowers it). Right and wrong are correlated across models
through a per-item latent (hard items trip every model more often), like real models. Wrong answers are plausible:
a confusable label, a skipped step, a missed or wrong fact, a date left unformatted; never a kind of mistake the
instruction states a rule against, while another kind is left.

The judge. A prompt rendered by parity.proof.judge_prompt is judged as the judge model's JudgeBias (profiles.py)
says, in this order (`_judge`, `_verdict`):
1. The judge reads both answers against a gold answer: the reference when the prompt gives one, else its own
   solution when it solves the item (with the probability its profile gives, per item), else it sees only whether
   each answer says anything. Its reading of the quality gap carries a per-prompt misreading (`noise`).
2. Confidently wrong: on a hard item (difficulty above 1) where one answer is truly worse, with probability
   `wrong_on_hard` (halved with a reference) the judge takes the worse answer for the right one and gives it a
   clear verdict in both orders, with reasons written as if that answer were the gold.
3. Length: when the gap is small, with probability `verbosity` fading to 0 at a gap of DECISIVE_GAP, the longer
   answer (by more than a tenth) wins in both orders.
4. Position: when the gap is small, with probability `position` fading the same way, drawn afresh for each order,
   the answer shown first wins; this alone makes the two orders disagree.
5. Otherwise the better answer wins, and a gap below TIE_MARGIN is a tie.
A gap is never "small" when the judge sees one answer right and the other wrong (a wrong label, a wrong final
number, a wrong field), so a clearly better answer keeps winning in both orders. Steps 2 and 3 draw per prompt
(the question and the pair of answers, whatever their order); step 4 draws per rendered prompt, which is what makes
its verdict depend on the order. Self-preference is not simulated: the judge cannot tell which model wrote what.

Instruction repair. A request to revise an instruction (parity.proof.optimize's proposer prompt: the current
instruction in <current_instruction>, lost items in <item> blocks with <input>, <reference_answer>,
<candidate_answer> and <judge_reasons>) is answered from what it shows (`_meta`): for each lost item the scenario
names the kinds of mistake the candidate's answer makes against the reference answer (two labels confused, a
field in the wrong format, a skipped step, a fact left out); when an item has no candidate answer, the judge's
reasons are read instead (the label and field names they mention). Each revised instruction is the current one
(summaries without the policy manual) plus the scenario's rule against some of the mistakes seen that it does not
already rule out: each is included with the writer's skill (its generic base accuracy: Opus 0.90, Haiku 0.70),
at least one per instruction, then a neutral sentence that makes each instruction distinct. What the simulation
cannot do: it writes only the scenario's fixed rule sentences (it never invents a new kind of rule, rephrases, or
learns from an item's wording); mistakes are read only for the four simulated scenarios (any other task gets its
generic answer, with no <instruction> tags); with no lost items, or none showing a mistake the instruction does not
already rule out, it returns restatements that add no rule, so they cannot score better; a rule helps only items
where the mistake it addresses can happen (ticket triage: tickets whose right label or likely confusion it
defines), and naming one kind of summary fact lifts the recall of every fact a little, not that kind alone.

Markers a prompt may carry: ``[[simulate:refusal]]`` or ``[[simulate:refusal:CATEGORY]]`` makes the model refuse.
Every number this brain produces is simulated.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from random import Random
from statistics import NormalDist
from typing import Any

from parity.emulator.brains import scenarios
from parity.emulator.brains import profiles as prof
from parity.emulator.brains.base import BrainReply, BrainRequest
from parity.emulator.brains.scenarios.base import VARIANT_NOTES, AnswerStyle, PromptFeatures, Scenario, item_accuracy
from parity.emulator.brains.scenarios.text import keywords, last_number
from parity.emulator.schema_instance import instance_for
from parity.proof.judge_prompt import PairwiseQuestion, parse_pairwise
from parity.tokenizer import count_text

REFUSAL = re.compile(r"\[\[simulate:refusal(?::([a-z_]+))?\]\]")
REFUSAL_CATEGORIES = ("cyber", "bio", "frontier_llm", "reasoning_extraction", "general_harms")
SCHEMA_SLIP_SHARE = 0.2  # structured outputs: share of the usual format slips that still break the JSON
ITEM_CORRELATION = 0.5  # share of the right/wrong latent that is the item's, common to every model
_META = re.compile(
    r"(?is)<current_instruction>"
    r"|\b(?:improve|revised?|rewrite|propose|suggest)\b.{0,80}?\b(?:instructions?|system prompts?)\b"
)
_META_COUNT = re.compile(
    r"(?i)\b(?:write|propose|give)\s+(\d{1,2})\s+(?:revised\s+|new\s+|improved\s+)?instructions?\b"
)
_STD = NormalDist()
_CURRENT = re.compile(r"<current_instruction>\s*(.*?)\s*</current_instruction>", re.S)
_ITEM = re.compile(r"<item\b[^>]*>(.*?)</item>", re.S)
_NO_INSTRUCTION = "(no instruction: the model sees only the user's text)"
TIE_MARGIN = 0.05  # the judge calls a quality gap below this a tie
DECISIVE_GAP = 0.5  # position and length sway the judge less as the gap grows, and not at all from here on
REFERENCE_SHARE = 0.5  # a reference answer halves confidently wrong verdicts (MT-Bench math: 6/20 → 3/20, §1.1)
LONGER = 0.1  # "longer" means longer by more than this share of the longer answer


@dataclass(frozen=True)
class LostItem:
    """One lost item as a proposer request shows it (parity.proof.optimize.propose_prompt_for_baseline)."""

    input: str
    reference: str
    candidate: str | None
    reasons: str


@dataclass(frozen=True)
class Explanation:
    """Why the brain answers a prompt as it does (for tests, docs and the 'simulated' labels in reports)."""

    kind: str  # "scenario" | "judge" | "meta" | "generic" | "refusal"
    scenario: str | None = None
    features: PromptFeatures | None = None
    accuracy: float | None = None
    slip_rate: float | None = None


def _digest(*parts: Any) -> bytes:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()


def _unit(*parts: Any) -> float:
    """A uniform number in (0, 1) determined by `parts`."""
    return (int.from_bytes(_digest(*parts)[:8], "big") + 0.5) / 2.0**64


def _normal(*parts: Any) -> float:
    return _STD.inv_cdf(_unit(*parts))


def _rng(*parts: Any) -> Random:
    return Random(int.from_bytes(_digest(*parts)[:8], "big"))


def _message_text(message: Mapping[str, Any]) -> str:
    out = []
    for block in message.get("content") or []:
        if not isinstance(block, Mapping):
            continue
        if block.get("type") == "text":
            out.append(str(block.get("text", "")))
        elif block.get("type") == "tool_result":
            inner = block.get("content")
            if isinstance(inner, list):
                inner = "\n".join(str(b.get("text", "")) for b in inner if isinstance(b, Mapping))
            out.append(str(inner or ""))
    return "\n".join(out)


class SimulatedBrain:
    """Deterministic simulated Claude models and a simulated judge (see the module docstring)."""

    name = "simulated"

    def __init__(
        self,
        seed: int = 0,
        profiles: Mapping[str, prof.ModelProfile | Mapping[str, Any]] | None = None,
    ) -> None:
        """`profiles`: per model id or line name, a ModelProfile or a dict of overrides (see `set_profile`); a
        judge's biases are part of its profile: {"claude-opus-4-8": {"judge": {"position": 0.0}}}."""
        self.seed = seed
        self._overrides: dict[str, prof.ModelProfile | Mapping[str, Any]] = {}
        self._degradation: dict[str, float] = {}
        for key, value in (profiles or {}).items():
            self.set_profile(key, value)

    # -- configuration -------------------------------------------------------------------------------------------

    def set_profile(self, model: str, profile: prof.ModelProfile | Mapping[str, Any]) -> None:
        """Replace a model's profile, or change some of its values (a dict as for ModelProfile.with_overrides).

        `model` may be a model id (aliases resolve) or a line name ("haiku") that applies to every model of it.
        """
        if not isinstance(profile, (prof.ModelProfile, Mapping)):
            raise TypeError(f"profile for {model!r} must be a ModelProfile or a dict of overrides")
        key = model if model in prof.LINE_SKILLS else prof.canonical(model)
        self._overrides[key] = profile

    def set_degradation(self, model: str, factor: float) -> None:
        """Make `model` worse from now on: 0 = as profiled, 1 = chance accuracy and frequent format slips."""
        if not 0.0 <= factor <= 1.0:
            raise ValueError(f"degradation factor must be within [0, 1], got {factor}")
        self._degradation[prof.canonical(model)] = factor

    def profile(self, model: str) -> prof.ModelProfile:
        """The profile in force for `model`: built-in, then line overrides, then model overrides."""
        model = prof.canonical(model)
        profile = prof.default_profile(model)
        for key in (profile.line, model):
            override = self._overrides.get(key)
            if isinstance(override, prof.ModelProfile):
                profile = override
            elif override is not None:
                profile = profile.with_overrides(override)
        return profile

    # -- answering -----------------------------------------------------------------------------------------------

    def explain(self, request: BrainRequest) -> Explanation:
        """What the brain sees in `request`: scenario, prompt features, and this model's accuracy for it."""
        user_text = request.last_user_text
        if parse_pairwise(request.system, user_text) is not None:
            return Explanation("judge")
        if REFUSAL.search(self._all_text(request)):
            return Explanation("refusal")
        if _asks_for_instructions(request.system) or _META.search(user_text):
            scenario = scenarios.detect(request.system, self._user_texts(request))
            if scenario is None:
                current, _ = _revision_request(user_text)
                scenario = scenarios.detect(current or "", "")
            if scenario is not None:
                return Explanation("meta", scenario.name)
        scenario = scenarios.detect(request.system, user_text)
        if scenario is None:
            return Explanation("generic")
        model = prof.canonical(request.model)
        features = scenarios.features(scenario, request.system, request.messages)
        skill = self.profile(model).skill(scenario.name)
        return Explanation(
            "scenario",
            scenario.name,
            features,
            self._accuracy(model, scenario.name, features),
            prof.slip_rate(skill, features, degradation=self._degradation.get(model, 0.0)),
        )

    def _accuracy(self, model: str, scenario: str, features: PromptFeatures) -> float:
        """This model's chance of a right answer to a prompt of `scenario` with these features."""
        skill = self.profile(model).skill(scenario)
        degradation = self._degradation.get(model, 0.0)
        return prof.accuracy(skill, features, degradation=degradation, chance=prof.CHANCE.get(scenario, 0.0))

    def reply(self, request: BrainRequest) -> BrainReply:
        model = prof.canonical(request.model)
        profile = self.profile(model)
        digest = self._prompt_digest(request)
        key = (self.seed, request.seed, model, digest)
        user_text = request.last_user_text
        stop_reason, stop_details = "end_turn", None
        fields: dict[str, Any] | None = None
        slip_rate = 0.0
        judged = parse_pairwise(request.system, user_text)
        refusal = REFUSAL.search(self._all_text(request)) if judged is None else None
        if judged is not None:
            text = self._judge(judged, model, key)
        elif refusal is not None:
            category = refusal.group(1) if refusal.group(1) in REFUSAL_CATEGORIES else "general_harms"
            text = "I can't help with that request."
            stop_reason = "refusal"
            stop_details = {
                "type": "refusal",
                "category": category,
                "explanation": "The request asks for content this model will not produce (simulated).",
            }
        else:
            explanation = self.explain(request)
            if explanation.kind == "meta":
                text = self._meta(explanation.scenario or "", request, profile, key)
            elif explanation.kind == "scenario":
                scenario = scenarios.get(explanation.scenario or "")
                text = self._scenario_answer(scenario, request, profile, explanation, key)
                fields = scenario.fields(text)
                slip_rate = explanation.slip_rate or 0.0
            else:
                text = self._generic(request, profile, key)
        content: list[dict[str, Any]] = [{"type": "text", "text": text}]
        if stop_reason != "refusal":
            content = self._shape(request, content, fields, slip_rate, key)
            if any(b["type"] == "tool_use" for b in content):
                stop_reason = "tool_use"
        return BrainReply(content, stop_reason, stop_details, self._latency(request, profile, content, key))

    # -- scenarios -----------------------------------------------------------------------------------------------

    def _scenario_answer(
        self, scenario: Scenario, request: BrainRequest, profile: prof.ModelProfile, why: Explanation, key: tuple
    ) -> str:
        user_text = request.last_user_text
        features = why.features or PromptFeatures()
        solution = scenario.solve(user_text)
        accuracy = why.accuracy or 0.0
        if solution is not None:
            mine = scenario.for_item(features, solution)
            accuracy = accuracy if mine == features else self._accuracy(key[2], scenario.name, mine)
        style_args = dict(
            accuracy=accuracy,
            slip=_unit(*key, "slip") < (why.slip_rate or 0.0),
            concise=features.format_rule,
            verbosity=profile.verbosity,
            rng=_rng(*key, "answer"),
            labels=scenario.labels(request.system),
            covered=features.covered,
        )
        if solution is None:
            return scenario.fallback(user_text, AnswerStyle(correct=False, **style_args))
        p_item = item_accuracy(accuracy, solution.difficulty)
        item = scenario.item_text(user_text) or user_text
        z = math.sqrt(ITEM_CORRELATION) * _normal(self.seed, key[1], "item", scenario.name, item) + math.sqrt(
            1.0 - ITEM_CORRELATION
        ) * _normal(*key, "correct")
        correct = _STD.cdf(z) < p_item
        return scenario.answer(solution, AnswerStyle(correct=correct, **style_args))

    def _meta(self, scenario_name: str, request: BrainRequest, profile: prof.ModelProfile, key: tuple) -> str:
        """Revised instructions in <instruction> tags, derived from the lost items the request shows (see the
        module docstring, "Instruction repair")."""
        scenario = scenarios.get(scenario_name)
        text = request.last_user_text
        current, lost = _revision_request(text)
        if current is None:
            current = request.system if scenario.tag in request.system else scenario.system_prompt()
        seen: dict[str, int] = {}
        for item in lost:
            if item.candidate is not None:
                kinds = scenario.mistakes(item.candidate, item.reference, item.input)
            else:
                kinds = scenario.mistakes_in_reasons(item.reasons)
            for kind in dict.fromkeys(kinds):
                seen[kind] = seen.get(kind, 0) + 1
        have = scenario.covered(current)
        known = {rule.kind for rule in scenario.rules(current)}
        needed = [k for k in sorted(seen, key=lambda k: -seen[k]) if k in known and k not in have]
        asked = _META_COUNT.search(text)
        n = max(1, min(len(VARIANT_NOTES), int(asked.group(1)))) if asked else 4
        skill = profile.skill(prof.GENERIC).base
        rng = _rng(*key, "meta")
        proposals = []
        for i in range(n):
            chosen = [kind for kind in needed if rng.random() < skill] or needed[:1]
            proposals.append(scenario.revise(current, chosen, VARIANT_NOTES[i]))
        body = "\n\n".join(f"{i}. <instruction>\n{v}\n</instruction>" for i, v in enumerate(proposals, 1))
        # the preface never writes the tag itself: parse_proposals would read it as the start of an instruction
        if not needed:
            return (f"The items show no mistake that the current instruction does not already rule out, so here are "
                    f"{n} restatements of it, each in an instruction block:\n\n{body}")
        named = ", ".join(k.replace("label:", "label ").replace("name:", "missing ").replace("_", " ") for k in needed)
        return f"The lost items show these mistakes: {named}. Here are {n} revised instructions, each in an " \
               f"instruction block:\n\n{body}"

    def _generic(self, request: BrainRequest, profile: prof.ModelProfile, key: tuple) -> str:
        rng = _rng(*key, "generic")
        last = request.messages[-1] if request.messages else {}
        has_result = any(isinstance(b, Mapping) and b.get("type") == "tool_result" for b in last.get("content") or [])
        if has_result:
            result = _message_text(last).strip().replace("\n", " ")
            return f"Based on the tool result ({result[:120]}), here is what I found: {result[:200] or 'no data'}."
        words = keywords(request.last_user_text)
        if not words:
            return "Happy to help. Could you share a little more detail about what you need?"
        templates = (
            "Here is a short answer about {0}.",
            "The key point is that {1} depends on the details you described.",
            "If {2} matters most, start there and check the result before moving on.",
            "A practical next step is to review {3} and {4} together.",
            "In short: focus on {0} first, then revisit {1}.",
        )
        n = max(1, min(len(templates), round(profile.verbosity * 3 + rng.random())))
        picks = [words[i % len(words)] for i in range(5)]
        return " ".join(t.format(*picks) for t in templates[:n])

    # -- the judge -----------------------------------------------------------------------------------------------

    def _judge(self, question: PairwiseQuestion, model: str, key: tuple) -> str:
        """A pairwise verdict with the judge model's biases (see the module docstring, "The judge")."""
        bias = self.profile(model).judge
        a, b = question.answer_a, question.answer_b
        item = (self.seed, key[1], model, question.question, question.reference or "")
        pair = (*item, *sorted((a, b)))  # the same in both orders of one prompt
        scenario = scenarios.detect(question.question, question.question)
        truth: tuple[float, float] | None = None
        hard = decisive = False
        if scenario is not None:
            solution = scenario.solve(question.question)
            gold: Any = None
            if question.reference is not None:
                gold = scenario.parse_reference(question.reference, solution)
            if gold is None and solution is not None:
                own = self._accuracy(model, scenario.name, PromptFeatures())
                if _unit(*item, "judge-solves") < item_accuracy(own, solution.difficulty):
                    gold = solution.gold
            if solution is not None:
                truth = (scenario.score(a, solution.gold), scenario.score(b, solution.gold))
                hard = solution.difficulty > 1.0
            if gold is not None:
                sa, sb = scenario.score(a, gold), scenario.score(b, gold)
                decisive = scenario.correct(a, gold) != scenario.correct(b, gold)
            else:
                sa, sb = _form_score(a), _form_score(b)
            note_a, note_b = scenario.describe(a, gold), scenario.describe(b, gold)
        else:
            target = question.reference if question.reference is not None else question.question
            weight = 1.0 if question.reference is not None else 0.2
            sa = 0.5 + weight * (_overlap(a, target) - 0.5)
            sb = 0.5 + weight * (_overlap(b, target) - 0.5)
            what = "reference covers" if question.reference is not None else "question asks"
            note_a = f"addresses {_overlap(a, target):.0%} of what the {what}"
            note_b = f"addresses {_overlap(b, target):.0%} of what the {what}"
        wrong_rate = bias.wrong_on_hard * (REFERENCE_SHARE if question.reference is not None else 1.0)
        if (
            scenario is not None
            and truth is not None
            and hard
            and abs(truth[0] - truth[1]) > TIE_MARGIN
            and _unit(*pair, "wrong-on-hard") < wrong_rate
        ):
            verdict = "A" if truth[0] < truth[1] else "B"
            believed = scenario.parse_reference(a if verdict == "A" else b, solution)
            if believed is not None:
                note_a, note_b = scenario.describe(a, believed), scenario.describe(b, believed)
            why = f"Assistant {verdict}'s answer is the correct one, so Assistant {verdict} is better."
        else:
            misreading = bias.noise * _normal(*pair, "judge-noise") * (1.0 if a <= b else -1.0)
            verdict, why = _verdict(
                sa - sb + misreading,
                decisive,
                len(a),
                len(b),
                bias,
                u_verbosity=_unit(*pair, "verbosity"),
                u_position=_unit(*key, "position"),
            )
        closing = {"A": "Assistant A is better.", "B": "Assistant B is better.", "C": "Both answers are equally good."}
        if why:
            closing[verdict] = why
        mark = {"A": "[[A]]", "B": "[[B]]", "C": "[[C]]"}[verdict]
        return f"Assistant A {note_a}. Assistant B {note_b}. {closing[verdict]}\n\n{mark}"

    # -- shaping: tools, structured output, latency --------------------------------------------------------------

    def _shape(
        self,
        request: BrainRequest,
        content: list[dict[str, Any]],
        fields: dict[str, Any] | None,
        slip_rate: float,
        key: tuple,
    ) -> list[dict[str, Any]]:
        """Tool calls when tool_choice forces one or the prompt names a tool; JSON for an output schema, except
        for a share of format slips that leave the text as written (the emulator then asks again)."""
        text = content[0]["text"]
        values = fields if fields is not None else {"answer": text}
        tools = [t for t in request.tools if isinstance(t, Mapping) and t.get("name")]
        choice = request.tool_choice or {"type": "auto"}
        last = request.messages[-1] if request.messages else {}
        answered = any(isinstance(b, Mapping) and b.get("type") == "tool_result" for b in last.get("content") or [])
        if tools and choice.get("type") != "none":
            prompt = f"{request.system}\n{request.last_user_text}"
            named = next((t for t in tools if re.search(rf"\b{re.escape(t['name'])}\b", prompt)), None)
            tool = None
            if choice.get("type") == "tool":
                tool = next((t for t in tools if t["name"] == choice.get("name")), None)
            elif choice.get("type") == "any":
                tool = named or tools[0]
            elif not answered:
                tool = named
            if tool is not None:
                call = {
                    "type": "tool_use",
                    "id": "",
                    "name": tool["name"],
                    "input": _fill(tool.get("input_schema") or {"type": "object"}, values),
                }
                if choice.get("type") == "auto":
                    return [{"type": "text", "text": f"I'll use the {tool['name']} tool for this."}, call]
                return [call]
        if request.output_schema is not None and _unit(*key, "schema-slip") >= SCHEMA_SLIP_SHARE * slip_rate:
            return [{"type": "text", "text": json.dumps(_fill(request.output_schema, values), ensure_ascii=False)}]
        return content

    def _latency(
        self, request: BrainRequest, profile: prof.ModelProfile, content: list[dict[str, Any]], key: tuple
    ) -> float:
        out_text = "".join(b.get("text", "") if b["type"] == "text" else json.dumps(b.get("input")) for b in content)
        in_chars = len(self._all_text(request)) + (len(json.dumps(request.tools)) if request.tools else 0)
        lat = profile.latency
        seconds = lat.ttft_s + lat.per_input_ktok_s * in_chars / 4000 + lat.per_token_s * count_text(out_text)
        return round(seconds * math.exp(0.15 * _normal(*key, "latency")), 4)

    # -- helpers -------------------------------------------------------------------------------------------------

    @staticmethod
    def _prompt_digest(request: BrainRequest) -> str:
        body = {
            "system": request.system,
            "messages": request.messages,
            "tools": request.tools,
            "tool_choice": request.tool_choice,
            "schema": request.output_schema,
        }
        return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()

    @staticmethod
    def _user_texts(request: BrainRequest) -> str:
        return "\n".join(_message_text(m) for m in request.messages if m.get("role") == "user")

    @staticmethod
    def _all_text(request: BrainRequest) -> str:
        return "\n".join([request.system, *(_message_text(m) for m in request.messages)])


@lru_cache(maxsize=256)
def _asks_for_instructions(system: str) -> bool:
    """Whether a system prompt asks for revised instructions (remembered: long system prompts repeat)."""
    return bool(_META.search(system))


def _verdict(
    gap: float, decisive: bool, len_a: int, len_b: int, bias: prof.JudgeBias, *, u_verbosity: float, u_position: float
) -> tuple[str, str]:
    """The verdict letter (A, B or C) for a perceived quality gap (A's score minus B's) and, when a bias decided
    it, the judge's stated reason. Length and position sway a close call with their full probability at a gap of 0,
    fading linearly to none at DECISIVE_GAP, and never when the judge sees one answer right and the other wrong."""
    sway = 0.0 if decisive else max(0.0, 1.0 - abs(gap) / DECISIVE_GAP)
    longer = "A" if len_a > len_b else "B"
    if abs(len_a - len_b) > LONGER * max(len_a, len_b, 1) and u_verbosity < bias.verbosity * sway:
        return longer, f"Assistant {longer} is more thorough, so it is slightly better."
    if u_position < bias.position * sway:
        return "A", "On balance Assistant A's answer reads slightly better."
    if abs(gap) < TIE_MARGIN:
        return "C", ""
    return ("A" if gap > 0 else "B"), ""


def _revision_request(text: str) -> tuple[str | None, list[LostItem]]:
    """The current instruction (None when the request shows none) and the lost items of a proposer request."""
    found = _CURRENT.search(text)
    current = None
    if found is not None:
        current = "" if found.group(1).strip() == _NO_INSTRUCTION else found.group(1)
    items = []
    for block in _ITEM.findall(text):
        candidate = _block(block, "candidate_answer")
        reference, reasons = _block(block, "reference_answer") or "", _block(block, "judge_reasons") or ""
        items.append(LostItem(_block(block, "input") or "", reference, candidate, reasons))
    return current, items


def _block(text: str, name: str) -> str | None:
    found = re.search(rf"<{name}>\n?(.*?)\n?</{name}>", text, re.S)
    return found.group(1) if found else None


def _form_score(answer: str) -> float:
    """What a judge that could not solve the item can still see: whether there is an answer at all."""
    return 0.5 if answer.strip() else 0.0


def _overlap(answer: str, target: str) -> float:
    """Share of the target's keywords the answer mentions (a crude relevance for prompts of no known scenario)."""
    want = {w.lower() for w in keywords(target, 30)}
    if not want:
        return 0.5
    have = {w.lower() for w in keywords(answer, 200)}
    return len(want & have) / len(want)


def _coerce(value: Any, schema: Mapping[str, Any]) -> Any:
    """Constrained decoding writes a value of the property's type: '€1,234.50' for a number becomes 1234.5."""
    kind = schema.get("type")
    if kind in ("number", "integer") and isinstance(value, str):
        number = last_number(value)
        if number is None:
            return instance_for(dict(schema))
        return int(number) if kind == "integer" else number
    if kind == "string" and not isinstance(value, str):
        return json.dumps(value) if isinstance(value, (dict, list)) else str(value)
    return value


def _fill(schema: Mapping[str, Any], values: Mapping[str, Any]) -> Any:
    """An object for `schema` built from the answer's named values: same-named properties first, then a property
    whose enum holds one of the values, then the required rest as minimal valid values."""
    props = schema.get("properties") if isinstance(schema.get("properties"), Mapping) else None
    if props is None:
        return instance_for(dict(schema))
    required = list(schema.get("required") or [])
    out: dict[str, Any] = {}
    for name, sub in props.items():
        sub = sub if isinstance(sub, Mapping) else {}
        if name in values and values[name] is not None:
            out[name] = _coerce(values[name], sub)
            continue
        enum = sub.get("enum") or []
        match = next((v for v in values.values() if isinstance(v, str) and v in enum), None)
        if match is not None:
            out[name] = match
        elif name in required:
            out[name] = instance_for(dict(sub))
    for name in required:
        out.setdefault(name, "")
    return out
