"""Instruction repair on the emulator responds to what the proposer is sent (parity.proof.optimize's stage 2).

Everything goes through the real wire path: the proposer request from `propose_prompt_for_baseline`, the simulated
Opus baseline through the anthropic SDK, the instructions from `parse_proposals`, and the simulated Haiku candidate
answering with them. What the simulation can and cannot do is written in parity.emulator.brains.simulated's
module docstring ("Instruction repair").
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from parity.emulator import workloads as wl
from parity.emulator.brains import scenarios
from parity.emulator.brains.scenarios.base import VARIANT_NOTES, Scenario
from parity.emulator.brains.scenarios.thread_summary import support_policy_text
from parity.emulator.brains.scenarios.ticket_triage import TRIAGE_DEFINITIONS
from parity.emulator.service import Emulator
from parity.proof.optimize import Example, Failure, TunedPrompt, optimize, parse_proposals, propose_prompt_for_baseline

BASELINE, CANDIDATE = "claude-opus-4-8", "claude-haiku-4-5"
TRIAGE = scenarios.get("ticket_triage")


@pytest.fixture(scope="module")
def client():
    return Emulator(seed=0).client()


def _text(client, params: dict[str, Any]) -> str:
    message = client.messages.create(**params)
    return "".join(block.text for block in message.content if block.type == "text")


def propose(client, instruction: str, failures: list[Failure], *, model: str = BASELINE) -> list[str]:
    system, messages = propose_prompt_for_baseline(instruction, failures)
    proposals = parse_proposals(_text(client, {"model": model, "max_tokens": 2048, "system": system,
                                               "messages": messages}))
    assert len(proposals) == 4 and len(set(proposals)) == 4
    assert all(p != instruction.strip() and "instruction>" not in p for p in proposals)
    return proposals


def failure(item: wl.TaskItem, candidate: str | None, *, reference: str | None = None, reason: str | None = None,
            ) -> Failure:
    example = Example(item.id, item.request["messages"][-1]["content"], reference or item.reference, item.gold)
    return Failure(example, 0.0, "h", candidate, reason)


def tickets(labels: set[str], n: int, seed: int) -> list[wl.TaskItem]:
    """`n` triage prompts whose right label is one of `labels` (a team whose tickets are of those kinds)."""
    out = [i for i in wl.dataset("ticket_triage", 12 * n, seed, model=CANDIDATE) if i.gold in labels][:n]
    assert len(out) == n
    return out


def accuracy(client, items: list[wl.TaskItem], system: str, source: Scenario = TRIAGE) -> float:
    """The candidate's share of right answers with `system` as its instruction."""
    right = 0
    for item in items:
        body = {**item.request, "model": CANDIDATE, "system": [{"type": "text", "text": system}]}
        right += source.correct(_text(client, body), item.gold)
    return right / len(items)


def defined(proposal: str) -> set[str]:
    return {k.split(":", 1)[1] for k in TRIAGE.covered(proposal) if k.startswith("label:")}


def lost_items(client, items: list[wl.TaskItem], system: str, limit: int = 8) -> list[Failure]:
    """What the optimiser hands the proposer: items the candidate did worse on than the baseline, with both answers."""
    out = []
    for item in items:
        body = {**item.request, "system": [{"type": "text", "text": system}]}
        base = _text(client, {**body, "model": BASELINE})
        cand = _text(client, {**body, "model": CANDIDATE})
        if TRIAGE.score(cand, item.gold) < TRIAGE.score(base, item.gold):
            out.append(failure(item, cand, reference=base))
        if len(out) == limit:
            break
    return out


# ---- the rules name what the failures show ------------------------------------------------------------------------


def test_triage_rules_define_the_labels_the_failures_confuse(client):
    plain = TRIAGE.system_prompt()
    money = [failure(i, "cancellation") for i in tickets({"billing"}, 4, 1)]
    access = [failure(i, "account_access") for i in tickets({"bug"}, 4, 2)]
    for failures, confused in ((money, {"billing", "cancellation"}), (access, {"bug", "account_access"})):
        proposals = propose(client, plain, failures)
        assert all(defined(p) and defined(p) <= confused for p in proposals), [defined(p) for p in proposals]
        assert all(p.startswith(plain) for p in proposals)  # the current instruction is kept, rules are added
        assert not any("only the label" in p for p in proposals)  # bare labels: no format rule to add
    slipped = [failure(i, f"**{i.gold}**", reference=i.gold) for i in tickets({"shipping"}, 3, 3)]
    assert all(TRIAGE.covered(p) == {"format"} for p in propose(client, plain, slipped))


def test_invoice_rules_name_the_fields_the_failures_get_wrong(client):
    source = scenarios.get("invoice_extraction")
    plain = source.system_prompt()
    items = wl.dataset("invoice_extraction", 8, 4, model=CANDIDATE)

    def spoiled(item: wl.TaskItem, change: Callable[[dict], None]) -> Failure:
        value = dict(item.gold)
        change(value)
        return failure(item, json.dumps(value))

    def long_dates(value: dict) -> None:
        value["issue_date"] = "4 March 2026"

    def swapped(value: dict) -> None:
        value["vendor"], value["customer"] = value["customer"], value["vendor"]

    dates = propose(client, plain, [spoiled(i, long_dates) for i in items[:4]])
    assert all(source.covered(p) == {"date_format"} and "YYYY-MM-DD" in p for p in dates)
    parties = propose(client, plain, [spoiled(i, swapped) for i in items[4:]])
    assert all(source.covered(p) == {"swap"} and "vendor is the company" in p for p in parties)
    assert not set(dates) & set(parties)


def test_math_and_summary_rules_follow_the_mistake(client):
    math = scenarios.get("math_reasoning")
    problems = wl.dataset("math_reasoning", 4, 5, model=CANDIDATE)
    bare = [failure(i, str(i.gold + 3)) for i in problems]  # a wrong number with no working shown
    assert all("steps" in math.covered(p) for p in propose(client, math.system_prompt(), bare))
    summary = scenarios.get("thread_summary")
    threads = wl.dataset("thread_summary", 4, 6, model=CANDIDATE)
    invented = [failure(i, i.reference + " The refund was $999.99.") for i in threads]
    assert all(summary.covered(p) == {"invented"} for p in propose(client, summary.system_prompt(), invented))
    order_left_out = [failure(i, i.reference.replace(i.gold[0], "the order")) for i in threads]
    proposals = propose(client, summary.system_prompt(), order_left_out)
    assert all(summary.covered(p) and summary.covered(p) <= {"missing", "name:order"} for p in proposals)
    assert any("order number" in p for p in proposals)
    assert not any(support_policy_text() in p for p in proposals)  # a revision leaves the manual out


def test_the_sentences_that_make_proposals_distinct_fix_nothing():
    for name in scenarios.SCENARIOS:
        source = scenarios.get(name)
        assert all(not source.covered(note) for note in VARIANT_NOTES), name


def test_judge_reasons_are_read_when_no_answer_is_shown(client):
    items = tickets({"shipping"}, 3, 7)
    reasons = ("(candidate as B) Assistant A labels the ticket 'shipping'. Assistant B labels the ticket 'billing'. "
               "Assistant A is better.")
    proposals = propose(client, TRIAGE.system_prompt(), [failure(i, None, reason=reasons) for i in items])
    assert all(defined(p) and defined(p) <= {"shipping", "billing"} for p in proposals)


def test_no_failures_or_none_the_instruction_misses_add_no_rule(client):
    for name in scenarios.SCENARIOS:
        source = scenarios.get(name)
        for current in (source.system_prompt(), source.system_prompt(clear=True)):
            for p in propose(client, current, []):
                assert source.covered(p) == source.covered(current) and source.clarity(p) == source.clarity(current)
    # items lost to the judge's noise, whose answers match the reference: nothing to fix
    same = [failure(i, i.gold) for i in tickets({"bug"}, 4, 8)]
    assert all(TRIAGE.covered(p) == frozenset() for p in propose(client, TRIAGE.system_prompt(), same))
    # mistakes the instruction already rules out: nothing new to add
    clear = TRIAGE.system_prompt(clear=True)
    confused = [failure(i, "cancellation") for i in tickets({"billing"}, 4, 9)]
    assert all(TRIAGE.covered(p) == TRIAGE.covered(clear) for p in propose(client, clear, confused))


# ---- the candidate improves only where the instruction addresses its mistakes -------------------------------------


def test_a_rule_helps_only_the_tickets_whose_mistake_it_addresses(client):
    plain = TRIAGE.system_prompt()
    task = tickets({"billing", "cancellation"}, 300, 5)  # a team whose tickets are about money and cancelling

    def define(*labels: str) -> str:
        return plain + "\n" + "\n".join(f"- {x}: {TRIAGE_DEFINITIONS[x]}" for x in labels)

    before = accuracy(client, task, plain)
    assert accuracy(client, task, define("billing", "cancellation")) - before >= 0.06
    assert abs(accuracy(client, task, define("shipping", "feature_request")) - before) <= 0.04
    assert abs(accuracy(client, task, plain + "\n" + VARIANT_NOTES[0]) - before) <= 0.04


def test_proposals_from_this_tasks_failures_help_it_more_than_anothers(client):
    plain = TRIAGE.system_prompt()
    money, access = {"billing", "cancellation"}, {"bug", "account_access"}
    own = propose(client, plain, lost_items(client, tickets(money, 120, 10), plain))
    other = propose(client, plain, lost_items(client, tickets(access, 120, 11), plain))
    assert not set(own) & set(other)

    def named(proposals: list[str], labels: set[str]) -> int:
        return sum(len(defined(p) & labels) for p in proposals)

    assert named(own, money) > named(other, money) and named(other, access) > named(own, access)
    # the optimiser keeps the best proposal: this task's failures give a better one for this task
    task = tickets(money, 150, 12)
    before = accuracy(client, task, plain)
    best_own = max(accuracy(client, task, p) for p in own)
    best_other = max(accuracy(client, task, p) for p in other)
    assert best_own - before >= 0.08 and best_own - best_other >= 0.03, (before, best_own, best_other)


def test_the_optimiser_keeps_a_repair_that_defines_the_confused_labels(client):
    plain = TRIAGE.system_prompt()
    items = tickets({"billing", "cancellation"}, 120, 13)
    examples = [Example(i.id, i.request["messages"][-1]["content"], _text(client, {**i.request, "model": BASELINE}),
                        i.gold) for i in items]
    requests = {i.id: i.request for i in items}
    outputs: dict[tuple[str, str], str] = {}

    def evaluate(prompt: TunedPrompt, batch) -> list[float]:
        scores = []
        for example in batch:
            body = {**requests[example.id], "model": CANDIDATE, "system": [{"type": "text", "text": prompt.system}]}
            text = outputs[(prompt.system, example.id)] = _text(client, body)
            scores.append(float(TRIAGE.correct(text, example.gold)))
        return scores

    def repair(instruction: str, failures: list[Failure]) -> list[str]:
        shown = [Failure(f.example, f.score, f.prompt_hash, outputs[(instruction, f.example.id)]) for f in failures]
        system, messages = propose_prompt_for_baseline(instruction, shown)
        return parse_proposals(_text(client, {"model": BASELINE, "max_tokens": 2048, "system": system,
                                              "messages": messages}))

    result = optimize(base_prompt=TunedPrompt(system=plain), train=[], validation=examples[20:], evaluate=evaluate,
                      propose=repair, seed=2, max_candidates=12)
    kept = [r for r in result.history if r.kept and r.stage == "instruction"]
    assert kept and result.validation_mean - result.baseline_mean > 0.05
    assert defined(result.best.system) & {"billing", "cancellation"}
