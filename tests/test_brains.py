"""The simulated and replay brains: determinism, calibrated accuracy per scenario, prompt sensitivity, the judge."""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from parity.emulator import workloads as wl
from parity.emulator.brains import scenarios
from parity.emulator.brains.scenarios.base import AnswerStyle, PromptFeatures
from parity.emulator.brains.scenarios.invoice_extraction import INVOICE_SCHEMA
from parity.emulator.brains.scenarios.text import find_json, last_number
from parity.emulator.brains.scenarios.ticket_triage import TRIAGE_LABELS
from parity.emulator.brains import profiles as prof
from parity.emulator.brains.base import BrainRequest
from parity.emulator.brains.replay import ReplayBrain, ReplayMiss
from parity.emulator.brains.profiles import JudgeBias
from parity.emulator.brains.simulated import SimulatedBrain
from parity.exchange import Exchange
from parity.proof.judge_prompt import parse_verdict, question_text, render_pairwise

HAIKU, SONNET, OPUS = "claude-haiku-4-5", "claude-sonnet-4-6", "claude-opus-4-8"
N = 300


def brain_request(params: dict[str, Any], seed: int = 0) -> BrainRequest:
    """A Messages body as the emulator hands it to a brain (system joined, string contents as text blocks)."""
    system = params.get("system", "")
    if isinstance(system, list):
        system = "\n\n".join(block["text"] for block in system)
    messages = [
        {
            "role": m["role"],
            "content": [{"type": "text", "text": m["content"]}] if isinstance(m["content"], str) else m["content"],
        }
        for m in params["messages"]
    ]
    schema = ((params.get("output_config") or {}).get("format") or {}).get("schema")
    return BrainRequest(
        model=params["model"],
        system=system,
        messages=messages,
        max_tokens=params["max_tokens"],
        tools=list(params.get("tools") or []),
        tool_choice=params.get("tool_choice"),
        output_schema=schema,
        seed=seed,
    )


def text_of(reply) -> str:
    return "".join(b.get("text", "") for b in reply.content if b["type"] == "text")


def measure(
    scenario: str, model: str, *, n: int = N, seed: int = 11, brain: SimulatedBrain | None = None, **options
) -> float:
    """Share of right answers (the scenario's own `correct`) over n generated prompts."""
    brain = brain or SimulatedBrain()
    source = scenarios.get(scenario)
    items = wl.dataset(scenario, n, seed, model=model, **options)
    return sum(source.correct(text_of(brain.reply(brain_request(i.request))), i.gold) for i in items) / n


# ---- determinism -------------------------------------------------------------------------------------------------


def test_same_input_same_output_and_seed_changes_it():
    requests = [brain_request(p) for p in wl.triage_requests(40, seed=3, model=HAIKU)]
    first = [SimulatedBrain(seed=0).reply(r) for r in requests]
    again = [SimulatedBrain(seed=0).reply(r) for r in requests]
    assert [(r.content, r.latency_s) for r in first] == [(r.content, r.latency_s) for r in again]
    other = [SimulatedBrain(seed=1).reply(r) for r in requests]
    assert sum(a.content != b.content for a, b in zip(first, other, strict=True)) >= 3
    reseeded = [
        SimulatedBrain(seed=0).reply(brain_request(p, seed=5)) for p in wl.triage_requests(40, seed=3, model=HAIKU)
    ]
    assert sum(a.content != b.content for a, b in zip(first, reseeded, strict=True)) >= 3


def test_output_does_not_depend_on_python_hash_seed():
    script = (
        "import json\n"
        "from parity.emulator import workloads as wl\n"
        "from parity.emulator.brains.base import BrainRequest\n"
        "from parity.emulator.brains.simulated import SimulatedBrain\n"
        "brain = SimulatedBrain(seed=2)\n"
        "out = []\n"
        "for item in wl.dataset('math_reasoning', 15, 4, model='claude-haiku-4-5'):\n"
        "    r = item.request\n"
        "    text = {'type': 'text', 'text': r['messages'][0]['content']}\n"
        "    req = BrainRequest(model=r['model'], system=r['system'][0]['text'], max_tokens=r['max_tokens'],\n"
        "                       messages=[{'role': 'user', 'content': [text]}])\n"
        "    out.append(brain.reply(req).content)\n"
        "print(json.dumps(out))\n"
    )
    outs = set()
    for hash_seed in ("1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            env=env,
            check=True,
            cwd=Path(__file__).resolve().parents[1],
        )
        outs.add(done.stdout)
    assert len(outs) == 1 and len(json.loads(outs.pop())) == 15


def test_dated_alias_answers_like_its_model():
    request = wl.triage_requests(1, seed=2, model=HAIKU)[0]
    dated = {**request, "model": "claude-haiku-4-5-20251001"}
    brain = SimulatedBrain()
    assert brain.reply(brain_request(request)).content == brain.reply(brain_request(dated)).content


# ---- accuracy per scenario and response to the prompt --------------------------------------------------------------


def test_triage_haiku_zero_shot_is_clearly_below_opus_and_prompting_closes_the_gap():
    haiku, opus = measure("ticket_triage", HAIKU), measure("ticket_triage", OPUS)
    assert 0.74 <= haiku <= 0.86
    assert 0.91 <= opus <= 0.99
    assert opus - haiku >= 0.08
    clear = measure("ticket_triage", HAIKU, clear=True)
    demos = measure("ticket_triage", HAIKU, demos=4)
    assert clear >= opus - 0.04 and demos >= opus - 0.04
    assert clear - haiku >= 0.08 and demos - haiku >= 0.08


def test_math_haiku_stays_far_below_opus_whatever_the_prompt():
    opus = measure("math_reasoning", OPUS)
    assert opus >= 0.88
    for options in ({}, {"clear": True}, {"demos": 4}, {"clear": True, "demos": 8}):
        assert measure("math_reasoning", HAIKU, **options) <= opus - 0.25, options


def test_extraction_haiku_is_bad_zero_shot_and_good_after_few_shot():
    zero = measure("invoice_extraction", HAIKU)
    assert zero <= 0.62
    four = measure("invoice_extraction", HAIKU, demos=4)
    eight = measure("invoice_extraction", HAIKU, demos=8)
    assert four >= 0.84 and eight >= 0.88
    assert measure("invoice_extraction", HAIKU, clear=True) < eight  # an instruction helps, demonstrations more
    assert measure("invoice_extraction", OPUS) >= 0.88


def test_summary_quality_orders_models_and_responds_to_the_prompt():
    source = scenarios.get("thread_summary")
    brain = SimulatedBrain()

    def quality(model: str, **options) -> float:
        items = wl.dataset("thread_summary", 150, 5, model=model, **options)
        return sum(source.score(text_of(brain.reply(brain_request(i.request))), i.gold) for i in items) / len(items)

    haiku, opus = quality(HAIKU), quality(OPUS)
    assert opus - haiku >= 0.1
    assert quality(HAIKU, clear=True, demos=4) >= opus - 0.06


def test_nothing_lifts_a_model_above_its_ceiling():
    skill = prof.default_profile(HAIKU).skill("math_reasoning")
    best = prof.accuracy(skill, PromptFeatures(demos=50, clarity=1.0, format_rule=True))
    assert best <= skill.ceiling
    gains = [
        prof.accuracy(prof.default_profile(HAIKU).skill("ticket_triage"), PromptFeatures(demos=k)) for k in range(9)
    ]
    steps = [b - a for a, b in zip(gains, gains[1:], strict=False)]
    assert all(s > 0 for s in steps) and all(
        b < a for a, b in zip(steps, steps[1:], strict=False)
    )  # diminishing returns


def test_wrong_demonstrations_are_noticed_and_do_not_help():
    source = scenarios.get("ticket_triage")
    demo_items = wl.items("ticket_triage", 4, 0, stream="demos")
    wrong = []
    for item in demo_items:
        other = next(label for label in TRIAGE_LABELS if label != item.gold)
        wrong += [{"role": "user", "content": item.text}, {"role": "assistant", "content": other}]
    request = wl.request_for(wl.items("ticket_triage", 1, 9)[0], model=HAIKU, demos=wrong)
    why = SimulatedBrain().explain(brain_request(request))
    assert why.features == PromptFeatures(demos=0, bad_demos=4, clarity=0.0, format_rule=False)
    assert why.accuracy < prof.default_profile(HAIKU).skill("ticket_triage").base
    assert source.name == why.scenario


def test_examples_in_the_system_prompt_count_as_demonstrations():
    source = scenarios.get("ticket_triage")
    examples = "".join(
        f"\n\nExample:\n{i.text}\nLabel: {i.gold}" for i in wl.items("ticket_triage", 3, 0, stream="demos")
    )
    request = wl.request_for(wl.items("ticket_triage", 1, 9)[0], model=HAIKU)
    request["system"][0]["text"] += examples
    features = SimulatedBrain().explain(brain_request(request)).features
    assert features is not None and features.demos == 3 and features.bad_demos == 0
    assert source.clarity(source.system_prompt())[0] == 0.0


def test_degradation_and_profile_overrides_make_a_model_worse():
    brain = SimulatedBrain()
    before = measure("ticket_triage", HAIKU, n=150, brain=brain)
    brain.set_degradation(HAIKU, 0.8)
    after = measure("ticket_triage", HAIKU, n=150, brain=brain)
    assert after <= before - 0.4
    brain.set_degradation(HAIKU, 0.0)
    assert measure("ticket_triage", HAIKU, n=150, brain=brain) == before
    custom = SimulatedBrain(profiles={HAIKU: {"skills": {"ticket_triage": {"base": 0.5, "ceiling": 0.5}}}})
    assert 0.38 <= measure("ticket_triage", HAIKU, n=150, brain=custom) <= 0.62
    with pytest.raises(ValueError, match="degradation factor"):
        brain.set_degradation(HAIKU, 1.5)
    with pytest.raises(ValueError, match="unknown profile keys"):
        prof.default_profile(HAIKU).with_overrides({"speed": 2})


def test_profiles_by_model_id_and_by_name():
    assert prof.default_profile("claude-haiku-4-5-20251001").model == HAIKU
    ids = [
        "claude-fable-5-2",
        "claude-mythos-5-2",
        "claude-haiku-5-5",
        "claude-sonnet-5-5",
        "claude-opus-5-5",
        "claude-sonnet-5",
        "claude-opus-5",
        OPUS,
        "claude-opus-4-7",
        "claude-mythos-preview",
        SONNET,
        HAIKU,
        "claude-opus-4-5-20251101",
        "claude-sonnet-4-5-20250929",
    ]
    for model in ids:
        assert prof.default_profile(model).line in model
    assert prof.default_profile("my-team/haiku-finetune").line == "haiku"
    assert prof.default_profile("something-else").line == "sonnet"
    triage = {m: prof.default_profile(m).skill("ticket_triage").base for m in (HAIKU, SONNET, OPUS)}
    assert triage[HAIKU] < triage[SONNET] < triage[OPUS]
    latency = {m: prof.default_profile(m).latency.per_token_s for m in (HAIKU, SONNET, OPUS)}
    assert latency[HAIKU] < latency[SONNET] < latency[OPUS]


# ---- shape of the answers ----------------------------------------------------------------------------------------


def test_wrong_answers_are_plausible():
    hopeless = {name: {"base": 0.0, "ceiling": 0.0} for name in scenarios.SCENARIOS}
    brain = SimulatedBrain(profiles={"haiku": {"skills": hopeless}})
    triage = scenarios.get("ticket_triage")
    for item in wl.dataset("ticket_triage", 40, 2, model=HAIKU, clear=True):
        answer = text_of(brain.reply(brain_request(item.request)))
        assert triage.parse_label(answer) in TRIAGE_LABELS and triage.parse_label(answer) != item.gold
    for item in wl.dataset("math_reasoning", 40, 2, model=HAIKU):
        value = last_number(text_of(brain.reply(brain_request(item.request))))
        assert value is not None and value != item.gold
    for item in wl.dataset("invoice_extraction", 40, 2, model=HAIKU):
        value = find_json(text_of(brain.reply(brain_request(item.request))))
        assert (
            isinstance(value, dict)
            and value != item.gold
            and value.get("invoice_number") == item.gold["invoice_number"]
        )


def test_format_slips_fall_with_an_explicit_format_rule():
    def slips(**options) -> int:
        items = wl.dataset("ticket_triage", 200, 6, model=HAIKU, **options)
        brain = SimulatedBrain()
        return sum(text_of(brain.reply(brain_request(i.request))).strip() not in TRIAGE_LABELS for i in items)

    assert slips() >= 15
    assert slips(clear=True) <= slips() / 2


def test_structured_output_is_json_that_mostly_validates():
    brain = SimulatedBrain()
    items = wl.dataset("invoice_extraction", 100, 3, model=HAIKU, structured=True)
    validator = jsonschema.Draft202012Validator(INVOICE_SCHEMA)
    texts = [text_of(brain.reply(brain_request(item.request))) for item in items]
    valid = sum(validator.is_valid(find_json(t)) for t in texts)
    assert valid >= 90
    source = scenarios.get("invoice_extraction")
    assert (
        sum(source.correct(t, i.gold) for t, i in zip(texts, items, strict=True)) < 90
    )  # right format, still wrong content


def test_tools_forced_named_or_refused():
    tool = {
        "name": "set_label",
        "description": "Record the ticket's label.",
        "input_schema": {
            "type": "object",
            "properties": {"label": {"type": "string", "enum": list(TRIAGE_LABELS)}, "note": {"type": "string"}},
            "required": ["label", "note"],
        },
    }
    brain = SimulatedBrain()
    params = wl.triage_requests(1, seed=4, model=OPUS)[0]
    forced = brain.reply(
        brain_request({**params, "tools": [tool], "tool_choice": {"type": "tool", "name": "set_label"}})
    )
    assert forced.stop_reason == "tool_use" and [b["type"] for b in forced.content] == ["tool_use"]
    jsonschema.validate(forced.content[0]["input"], tool["input_schema"])
    asked = json.loads(json.dumps(params))
    asked["messages"][-1]["content"] += "\n\nRecord the result with set_label."
    auto = brain.reply(brain_request({**asked, "tools": [tool]}))
    assert [b["type"] for b in auto.content] == ["text", "tool_use"] and auto.stop_reason == "tool_use"
    plain = brain.reply(brain_request({**params, "tools": [tool]}))
    none = brain.reply(brain_request({**asked, "tools": [tool], "tool_choice": {"type": "none"}}))
    assert [b["type"] for b in plain.content] == ["text"] and [b["type"] for b in none.content] == ["text"]


def test_refusal_marker_and_unknown_prompts():
    brain = SimulatedBrain()
    params = {
        "model": OPUS,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "Explain [[simulate:refusal:bio]] now"}],
    }
    reply = brain.reply(brain_request(params))
    assert reply.stop_reason == "refusal" and reply.stop_details["category"] == "bio"
    generic = {
        "model": HAIKU,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "How should we plan the quarterly roadmap review?"}],
    }
    first, second = brain.reply(brain_request(generic)), brain.reply(brain_request(generic))
    assert first.content == second.content and first.stop_reason == "end_turn"
    assert "roadmap" in text_of(first) or "quarterly" in text_of(first)
    assert brain.explain(brain_request(generic)).kind == "generic"


def test_latency_is_simulated_per_model():
    requests = [brain_request(p) for p in wl.summary_requests(20, seed=1, model=HAIKU)]
    brain = SimulatedBrain()
    haiku = sum(brain.reply(r).latency_s for r in requests)
    opus = sum(brain.reply(BrainRequest(**{**r.__dict__, "model": OPUS})).latency_s for r in requests)
    assert 0 < haiku < opus


def test_instruction_revision_requests_get_better_instructions_from_better_writers():
    from parity.proof.optimize import Example, Failure, parse_proposals, propose_prompt_for_baseline

    source = scenarios.get("ticket_triage")
    failures = [
        Failure(Example(i.id, i.request["messages"][-1]["content"], i.reference), 0.0, "h", "bug", "wrong label")
        for i in wl.dataset("ticket_triage", 5, 1)
    ]
    system, messages = propose_prompt_for_baseline(source.system_prompt(), failures, n=4)
    brain = SimulatedBrain()
    clarity = {}
    for model in (HAIKU, OPUS):
        total = 0.0
        for seed in range(10):
            reply = brain.reply(
                brain_request({"model": model, "max_tokens": 2000, "system": system, "messages": messages}, seed)
            )
            proposals = parse_proposals(text_of(reply))
            assert len(proposals) == 4
            assert all("Labels: " in p for p in proposals)
            total += sum(source.clarity(p)[0] for p in proposals)
        clarity[model] = total
    assert clarity[OPUS] > clarity[HAIKU]


# ---- the simulated judge -----------------------------------------------------------------------------------------


def judge(brain: SimulatedBrain, model: str, question: str, a: str, b: str, reference: str | None = None) -> str:
    system, messages = render_pairwise(question, a, b, reference=reference)
    return text_of(brain.reply(BrainRequest(model=model, system=system, messages=messages, max_tokens=512)))


def pairs(scenario: str, n: int, seed: int):
    """(question, right answer, wrong answer, second right answer of the same quality) per generated item,
    skipping items where the 'wrong' answer happens to score as well as the right one."""
    source = scenarios.get(scenario)
    out = []
    for k, item in enumerate(wl.dataset(scenario, n, seed)):
        solution = source.solve(item.request["messages"][-1]["content"])
        good = source.reference(item.gold)
        wrong = source.answer(solution, AnswerStyle(False, 0.3, False, False, 1.0, random.Random(k)))
        same = source.answer(solution, AnswerStyle(True, 1.0, False, False, 1.0, random.Random(k)))
        if source.score(wrong, item.gold) >= source.score(good, item.gold):
            continue
        out.append((question_text(item.request), good, wrong, same))
    return out


@pytest.mark.parametrize("scenario", list(scenarios.SCENARIOS))
def test_judge_prefers_the_correct_answer(scenario):
    # Mostly right, as real judges are: the misses are the confidently wrong verdicts on hard items (JudgeBias
    # wrong_on_hard, halved by a reference; MT-Bench's judge still failed 3 of 20 math gradings with one) and, with no
    # reference, items the judge cannot solve itself. Without the hard-item errors a reference makes it near-perfect.
    def shares(brain: SimulatedBrain) -> tuple[float, float]:
        right = with_ref = total = 0
        for question, good, bad, _ in pairs(scenario, 60, 21):
            right += parse_verdict(judge(brain, OPUS, question, good, bad)) == "A"
            right += parse_verdict(judge(brain, OPUS, question, bad, good)) == "B"
            with_ref += parse_verdict(judge(brain, HAIKU, question, good, bad, reference=good)) == "A"
            with_ref += parse_verdict(judge(brain, HAIKU, question, bad, good, reference=good)) == "B"
            total += 2
        assert total >= 100
        return right / total, with_ref / total

    right, with_ref = shares(SimulatedBrain())
    assert right >= 0.8 and with_ref >= 0.85, (right, with_ref)
    never_fooled = {"judge": {"wrong_on_hard": 0.0}}
    right, with_ref = shares(SimulatedBrain(profiles={OPUS: never_fooled, HAIKU: never_fooled}))
    assert right >= 0.9 and with_ref >= 0.97, (right, with_ref)


def test_judge_writes_reasoning_then_one_verdict():
    brain = SimulatedBrain()
    question, good, bad, _ = pairs("math_reasoning", 1, 2)[0]
    text = judge(brain, OPUS, question, good, bad)
    assert text.rstrip().endswith(("[[A]]", "[[B]]", "[[C]]"))
    assert len(text.split("\n\n")[0]) > 20 and "claude" not in text.lower()


def test_judge_position_bias_matches_the_setting():
    bias = 0.3
    brain = SimulatedBrain(profiles={OPUS: {"judge": JudgeBias(position=bias, verbosity=0.0, wrong_on_hard=0.0, noise=0.0)}})
    first = inconsistent = n = 0
    for question, good, _, same in pairs("math_reasoning", 200, 8):
        v1, v2 = (
            parse_verdict(judge(brain, OPUS, question, good, same)),
            parse_verdict(judge(brain, OPUS, question, same, good)),
        )
        first += (v1 == "A") + (v2 == "A")
        inconsistent += {"A": "B", "B": "A", "tie": "tie"}[v2] != v1
        n += 1
    assert abs(first / (2 * n) - bias) <= 0.07
    assert abs(inconsistent / n - (1 - (1 - bias) ** 2)) <= 0.1
    fair = SimulatedBrain(profiles={OPUS: {"judge": JudgeBias.none()}})
    question, good, _, same = pairs("math_reasoning", 1, 8)[0]
    assert parse_verdict(judge(fair, OPUS, question, good, same)) == "tie"


def test_judge_verbosity_bias_prefers_the_longer_of_close_answers():
    rate = 0.4
    brain = SimulatedBrain(profiles={OPUS: {"judge": JudgeBias(position=0.0, verbosity=rate, wrong_on_hard=0.0, noise=0.0)}})
    longer = n = 0
    for question, good, _, same in pairs("math_reasoning", 150, 9):
        padded = same + "\nI double-checked every step of this calculation carefully, and the result holds."
        longer += parse_verdict(judge(brain, OPUS, question, good, padded)) == "B"
        n += 1
    assert abs(longer / n - rate) <= 0.12


# ---- replay ------------------------------------------------------------------------------------------------------


def test_replay_gsm8k_csv(shared_dir):
    path = shared_dir / "data" / "routellm-gsm8k-responses.csv"
    brain = ReplayBrain(path, models={HAIKU: "mistralai/Mixtral-8x7B-Instruct-v0.1", OPUS: "gpt-4-1106-preview"})
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1319
    cheap = [brain.lookup(HAIKU, r["prompt"]).correct for r in rows]
    dear = [brain.lookup(OPUS, r["prompt"]).correct for r in rows]
    assert round(sum(cheap) / 1319, 3) == 0.638 and round(sum(dear) / 1319, 3) == 0.857
    assert sum(a and b for a, b in zip(cheap, dear, strict=True)) == 747
    messy = "  " + rows[0]["prompt"].replace(" ", "\n", 3) + "\n"
    reply = brain.reply(
        BrainRequest(
            model="claude-haiku-4-5-20251001",
            system="",
            max_tokens=100,
            messages=[{"role": "user", "content": [{"type": "text", "text": messy}]}],
        )
    )
    assert text_of(reply) == rows[0]["mistralai/Mixtral-8x7B-Instruct-v0.1_response"].strip()
    with pytest.raises(ReplayMiss, match="not for 'claude-sonnet-4-6'"):
        brain.lookup(SONNET, rows[0]["prompt"])
    unknown = "Which of our warehouses shipped the most parcels during the third week of October?"
    with pytest.raises(ReplayMiss) as caught:
        brain.lookup(OPUS, unknown)
    assert repr(unknown[:60]) in str(caught.value)
    assert ReplayBrain(path).models[HAIKU] == "mistralai/Mixtral-8x7B-Instruct-v0.1"  # the default mapping


def test_replay_exchange_jsonl(tmp_path):
    lines = []
    for k, params in enumerate(wl.triage_requests(3, seed=1, model=OPUS)):
        response = {
            "id": f"msg_{k}",
            "type": "message",
            "role": "assistant",
            "model": "claude-opus-4-8",
            "content": [{"type": "text", "text": f"label-{k}"}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 10, "output_tokens": 2},
        }
        lines.append(Exchange(request=params, response=response, duration_ms=800).to_json())
    lines.append('{"request": {}, "error": {"type": "error"}}')  # unreadable lines are skipped, not fatal
    path = tmp_path / "log.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    brain = ReplayBrain(path)
    assert len(brain) == 3
    params = wl.triage_requests(3, seed=1, model=OPUS)[2]
    reply = brain.reply(brain_request(params))
    assert text_of(reply) == "label-2" and reply.latency_s == 0.8


# ---- through the emulator, with the real SDK ---------------------------------------------------------------------


def test_sdk_through_the_emulator_gets_the_brains_answers():
    from parity.emulator.service import Emulator

    brain = SimulatedBrain(seed=0)
    client = Emulator(brain=brain, seed=0).client()
    for params in wl.triage_requests(5, seed=2, model=HAIKU):
        message = client.messages.create(**params)
        assert message.content[0].text == text_of(brain.reply(brain_request(params)))
        assert message.stop_reason == "end_turn"
    item = wl.dataset("invoice_extraction", 1, 4, model=HAIKU, structured=True)[0]
    message = client.messages.create(**item.request)
    jsonschema.validate(json.loads(message.content[0].text), INVOICE_SCHEMA)
    refused = client.messages.create(
        model=OPUS, max_tokens=50, messages=[{"role": "user", "content": "[[simulate:refusal:cyber]] write malware"}]
    )
    assert refused.stop_reason == "refusal" and refused.stop_details.category == "cyber"
    first, second = (client.messages.create(**p) for p in wl.summary_requests(2, seed=1, model=HAIKU, cache=True))
    assert first.usage.cache_creation_input_tokens > 5000 and second.usage.cache_read_input_tokens > 5000
