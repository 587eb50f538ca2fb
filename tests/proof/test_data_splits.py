"""A proof's data: loading a task's prompts (Exchange JSONL, the ledger), the baseline's outputs (logged or called),
splits by group or by time and never by row, and the seal that keeps the test split away from the optimiser."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from parity.fingerprint import fingerprint
from parity.emulator.brains.simulated import SimulatedBrain
from parity.emulator.service import Emulator
from parity.errors import InputError, ParityError
from parity.exchange import Exchange
from parity.ledger.writer import LedgerEntry, LedgerWriter
from parity.proof import optimize as opt
from parity.proof.calls import Caller
from parity.proof.data import ProofItem, SealedSplit, load_jsonl, load_ledger, split
from parity.emulator.workloads import load_emulator_family
from parity.proof.runner import Event, ProveConfig, fill_baseline_outputs, prove

BASELINE, CANDIDATE = "claude-opus-4-8", "claude-haiku-4-5"
T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)


def _emulator(brain=None) -> Emulator:
    emulator = Emulator(brain=brain, seed=0)
    emulator.batches.processing_s = "instant"
    return emulator


def _items(n_groups: int, seed: int = 0) -> list[ProofItem]:
    """Groups of 1 to 6 prompts each, with a timestamp per prompt."""
    items, k = [], 0
    for g in range(n_groups):
        for _ in range(1 + (g * 7 + seed) % 6):
            items.append(ProofItem(id=f"p{k}", group=f"customer:{g}", request={"messages": []},
                                   started_at=T0 + timedelta(minutes=(k * 37) % 500)))
            k += 1
    return items


# --------------------------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------------------------


def test_group_split_keeps_each_group_whole_and_is_seeded():
    items = _items(60)
    s = split(items, by="group", seed=4)
    parts = {"train": s.train, "validation": s.validation, "test": s.test.unseal()}
    ids = [i.id for part in parts.values() for i in part]
    assert sorted(ids) == sorted(i.id for i in items)  # every prompt in exactly one split
    home = {}
    for name, part in parts.items():
        for item in part:
            assert home.setdefault(item.group, name) == name, f"group {item.group} straddles two splits"
    assert s.by == "group" and s.groups == home
    n = len(items)
    assert abs(len(s.train) / n - 0.2) < 0.06 and abs(len(s.validation) / n - 0.3) < 0.06
    # the same seed gives the same split; another seed another one; the order of the rows does not matter
    members = lambda x: {k: set(v) for k, v in x.to_dict().items() if k in ("train", "validation", "test")}  # noqa: E731
    assert split(items, by="group", seed=4).to_dict() == s.to_dict()
    assert members(split(list(reversed(items)), by="group", seed=4)) == members(s)
    assert members(split(items, by="group", seed=5))["test"] != members(s)["test"]


def test_time_split_trains_on_the_past_and_tests_on_the_future():
    items = _items(40)
    s = split(items, by="time", seed=0)
    train, val, test = s.train, s.validation, s.test.unseal()
    assert max(i.started_at for i in train) <= min(i.started_at for i in val)
    assert max(i.started_at for i in val) <= min(i.started_at for i in test)
    assert s.by == "time" and set(s.groups) == {"train_until", "validation_until"}
    undated = [ProofItem(id=i.id, group=i.group, request=i.request) for i in items]
    with pytest.raises(InputError, match="timestamp"):
        split(undated, by="time")


def test_never_by_row_auto_picks_group_or_time_and_says_why_not():
    # one template and no customer/conversation tags: one group, so a group split is impossible, not a row split
    one_group = [ProofItem(id=f"p{k}", group="template:fp_x", request={}, started_at=T0 + timedelta(hours=k))
                 for k in range(50)]
    with pytest.raises(InputError, match="only 1 distinct groups"):
        split(one_group, by="group")
    assert split(one_group, by="auto").by == "time"
    assert split(_items(30), by="auto").by == "group"
    undated = [ProofItem(id=i.id, group=i.group, request={}) for i in one_group]
    with pytest.raises(InputError, match="neither a group nor a time split"):
        split(undated, by="auto")
    with pytest.raises(InputError, match="unknown split 'row'"):
        split(_items(30), by="row")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="fractions"):
        split(_items(30), fractions=(0.5, 0.5, 0.5))


def test_the_test_split_is_sealed_until_unsealed():
    s = split(_items(30), seed=1)
    assert isinstance(s.test, SealedSplit) and len(s.test) == len(s.test.ids) > 0
    with pytest.raises(ParityError, match="sealed"):
        list(s.test)
    with pytest.raises(ParityError, match="sealed"):
        s.test[0]
    assert [i.id for i in s.test.unseal()] == list(s.test.ids)


# --------------------------------------------------------------------------------------------------------------
# Loading: Exchange JSONL and the ledger
# --------------------------------------------------------------------------------------------------------------


def _logged_exchanges(n: int = 24) -> list[Exchange]:
    """The team's log: ticket triage answered by the baseline, each row tagged as the gateway would."""
    client = _emulator().client()
    out = []
    for k, item in enumerate(load_emulator_family("ticket_triage", n, seed=2, baseline_model=BASELINE).items):
        message = client.messages.create(**item.request).model_dump(mode="json")
        tags = {"task": "triage", "id": item.id, "gold": json.dumps(item.gold), "stratum": item.stratum}
        request = item.request
        if k % 4 == 0:
            tags["conversation"] = f"c{k // 8}"
        elif k % 4 == 1:
            tags["customer"] = item.group
        elif k % 4 == 3:
            request = {key: v for key, v in request.items() if key != "metadata"}  # no user id either
        out.append(Exchange(request=request, response=message, started_at=T0 + timedelta(minutes=k),
                            duration_ms=300, tags=tags))
    other = Exchange(request=out[0].request, response=out[0].response, started_at=T0, tags={"task": "other"})
    failed = Exchange(request=out[1].request, error={"type": "error", "error": {"type": "overloaded_error"}},
                      started_at=T0, tags={"task": "triage"})
    return [*out, other, failed]


def _write_jsonl(path, exchanges) -> None:
    path.write_text("".join(e.to_json() + "\n" for e in exchanges), encoding="utf-8")


def test_load_from_exchange_jsonl(tmp_path):
    exchanges = _logged_exchanges()
    path = tmp_path / "log.jsonl"
    _write_jsonl(path, exchanges)
    data = load_jsonl(path, task="triage")
    logged = exchanges[:24]
    assert [i.id for i in data.items] == [e.tags["id"] for e in logged]  # the other task's row is left out
    assert len(data.rejected) == 1 and "no successful response" in data.rejected[0]  # the failed call
    for item, ex in zip(data.items, logged):
        assert item.request == ex.request
        assert item.baseline_output == ex.response["content"][0]["text"]
        assert item.baseline_usage == ex.response["usage"]
        assert item.gold == json.loads(ex.tags["gold"]) and item.started_at == ex.started_at
    groups = Counter(i.group.split(":")[0] for i in data.items)
    # conversation, then customer, then the request's metadata.user_id, then the template fingerprint (the audit's)
    assert groups == {"conversation": 6, "customer": 6, "user": 6, "template": 6}
    untagged = data.items[3]
    assert "metadata" not in untagged.request and untagged.group == f"template:{fingerprint(untagged.request)}"


def test_bad_input_names_the_file_and_line(tmp_path):
    path = tmp_path / "log.jsonl"
    exchanges = _logged_exchanges(4)
    path.write_text(exchanges[0].to_json() + "\n" + "{not json\n" + exchanges[1].to_json() + "\n", encoding="utf-8")
    with pytest.raises(InputError) as info:
        load_jsonl(path, task="triage")
    assert info.value.file == str(path) and info.value.line == 2 and "not valid JSON" in str(info.value)
    with pytest.raises(InputError, match="no such file"):
        load_jsonl(tmp_path / "missing.jsonl")
    _write_jsonl(path, exchanges)
    with pytest.raises(InputError, match="no usable exchanges for task 'nope'"):
        load_jsonl(path, task="nope")


def test_load_from_the_ledger_matches_the_jsonl(tmp_path):
    exchanges = _logged_exchanges()
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    writer = LedgerWriter(url)
    for ex in exchanges:
        writer.write(LedgerEntry(ex, cost_usd=Decimal("0.001")))
    assert writer.flush()
    writer.close()
    from_ledger = load_ledger(url, task="triage")
    path = tmp_path / "log.jsonl"
    _write_jsonl(path, exchanges)
    from_file = load_jsonl(path, task="triage")
    assert from_ledger.source == url
    strip = lambda d: [(i.id, i.group, i.request, i.baseline_output, i.gold, i.started_at) for i in d.items]  # noqa: E731
    assert strip(from_ledger) == strip(from_file)


# --------------------------------------------------------------------------------------------------------------
# The baseline's outputs: from the logs, or by calling the baseline
# --------------------------------------------------------------------------------------------------------------


def test_baseline_outputs_from_the_logs_or_by_calling_the_baseline(tmp_path):
    emulator = _emulator()
    items = list(load_emulator_family("ticket_triage", 10, seed=2, baseline_model=BASELINE).items)
    logged = [ProofItem(**{**i.__dict__, "baseline_output": "billing"}) if k % 2 else i for k, i in enumerate(items)]
    caller = Caller(emulator.client(), tmp_path, sync=True)
    filled = fill_baseline_outputs(caller, BASELINE, logged)
    assert caller.network_calls == 5 and set(caller.spend.by_purpose) == {"baseline"}  # only the missing ones
    direct = emulator.client()
    for k, (before, after) in enumerate(zip(logged, filled)):
        if k % 2:
            assert after.baseline_output == "billing"  # the logged answer is kept, never re-asked
        else:
            expected = direct.messages.create(**before.request).content[0].text
            assert after.baseline_output == expected and after.baseline_usage["output_tokens"] > 0
    # a second pass (a resumed run) reads them back from the run directory
    again = Caller(emulator.client(), tmp_path, sync=True)
    assert fill_baseline_outputs(again, BASELINE, logged) == filled and again.network_calls == 0


# --------------------------------------------------------------------------------------------------------------
# The optimiser never sees the test split
# --------------------------------------------------------------------------------------------------------------


class WireLog:
    """A brain wrapper that records (model, final user text) of every request the emulator answers."""

    name = "wire-log"

    def __init__(self):
        self.inner = SimulatedBrain(seed=0)
        self.seen: list[tuple[str, str]] = []

    def reply(self, request):
        self.seen.append((request.model, request.last_user_text))
        return self.inner.reply(request)


class SpyOptimizer:
    """The real optimiser, instrumented: everything it is handed and everything it asks to score or revise."""

    def __init__(self):
        self.kwargs_text = ""
        self.given: set[str] = set()
        self.scored: set[str] = set()
        self.failures: set[str] = set()

    def __call__(self, **kwargs):
        self.kwargs_text = repr(kwargs)
        self.given = {e.id for e in (*kwargs["train"], *kwargs["validation"])}
        inner_many, inner_propose = kwargs["evaluate_many"], kwargs["propose"]

        def evaluate_many(work):
            self.scored |= {e.id for _, examples in work for e in examples}
            return inner_many(work)

        def propose(instruction, failures):
            self.failures |= {f.example.id for f in failures}
            return inner_propose(instruction, failures)

        return opt.optimize(**{**kwargs, "evaluate_many": evaluate_many, "propose": propose})


def test_the_optimiser_never_sees_the_test_split(tmp_path):
    wire = WireLog()
    emulator = _emulator(wire)
    data = load_emulator_family("ticket_triage", 160, seed=5, baseline_model=BASELINE)
    spy = SpyOptimizer()
    opened_at: list[int] = []

    def on_event(event: Event) -> None:
        if event.stage == "test" and "opening the test split" in event.message:
            opened_at.append(len(wire.seen))

    config = ProveConfig(task="triage", baseline_model=BASELINE, candidate_models=(CANDIDATE,), n_max=60,
                         margin=0.1, max_prompt_candidates=8)
    out = prove(config, data, emulator.client(), run_dir=tmp_path / "run", optimizer=spy, progress=on_event)
    test_ids = set(out.certificate["splits"]["test"])
    test_items = [i for i in data.items if i.id in test_ids]
    assert test_ids and spy.given and spy.scored
    # not handed it, not asked to score it, not shown it as a failure to learn from
    assert not (spy.given | spy.scored | spy.failures) & test_ids
    assert not any(i.id in spy.kwargs_text or i.input_text in spy.kwargs_text for i in test_items)
    # and on the wire: before the test split was opened, no test prompt reached the candidate model
    assert len(opened_at) == 1
    test_texts = {i.input_text for i in test_items}
    before = [text for model, text in wire.seen[: opened_at[0]] if model == CANDIDATE]
    assert before and not test_texts & set(before)
    after = {text for model, text in wire.seen[opened_at[0]:] if model == CANDIDATE}
    assert after and after <= test_texts


def test_an_optimiser_that_reaches_for_a_test_prompt_is_stopped(tmp_path):
    data = load_emulator_family("ticket_triage", 120, seed=5, baseline_model=BASELINE)
    reached: list[str] = []

    def rogue(**kwargs):
        everything = split(data.items, by="group", seed=0)
        target = everything.test.ids[0]
        reached.append(target)
        kwargs["evaluate"](kwargs["base_prompt"], [opt.Example(target, "", "")])

    config = ProveConfig(task="triage", baseline_model=BASELINE, candidate_models=(CANDIDATE,), n_max=20,
                         split_by="group")
    with pytest.raises(ParityError, match="sealed"):
        prove(config, data, _emulator().client(), run_dir=tmp_path / "run", optimizer=rogue)
    assert reached


def test_logged_labels_with_rare_slips_are_still_a_closed_set():
    from parity.proof.data import ProofItem, closed_set, infer_kind, label_set

    answers = ["billing"] * 40 + ["bug"] * 30 + ["shipping"] * 27 + ["Label: billing", "bug\n\nBecause it crashes."]
    items = [ProofItem(id=str(i), group=f"g{i % 5}", request={"messages": []}, baseline_output=a)
             for i, a in enumerate(answers)]
    assert infer_kind(items) == "label"
    assert label_set(items) == closed_set(answers) == ["billing", "bug", "shipping"]
    # Mostly distinct answers are free text, however short.
    free = [f"answer number {i}" for i in range(50)] + ["billing"] * 2
    assert closed_set(free) is None
