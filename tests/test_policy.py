import json

import pytest

from parity.errors import InputError
from parity.policy import (
    CertificateRef,
    Contract,
    Demo,
    TaskPolicy,
    TunedPrompt,
    apply_prompt,
    load_policy,
    upsert_task,
)


def _task() -> TaskPolicy:
    return TaskPolicy(
        task="triage",
        mode="route",
        baseline_model="claude-opus-4-8",
        candidate_model="claude-haiku-4-5",
        prompt=TunedPrompt(system="Classify.", demos=[Demo("ticket A", "billing")]),
        contract=Contract(labels=["billing", "bug"]),
        margin=0.05,
        alpha=0.05,
        certificate=CertificateRef(id="cert_1", path="c.json"),
    )


def test_round_trip(tmp_path):
    path = tmp_path / "policy.json"
    upsert_task(path, _task())
    loaded = load_policy(path).tasks["triage"]
    assert loaded == _task()


def test_apply_prompt_prepends_demos_and_swaps_model():
    request = {"model": "claude-opus-4-8", "system": "old", "max_tokens": 5,
               "messages": [{"role": "user", "content": "ticket Z"}]}
    routed = apply_prompt(request, _task())
    assert routed["model"] == "claude-haiku-4-5"
    assert routed["system"] == "Classify."
    assert [m["content"] for m in routed["messages"]] == ["ticket A", "billing", "ticket Z"]
    assert request["model"] == "claude-opus-4-8"  # the original is untouched


@pytest.mark.parametrize(
    "body, field",
    [
        ({"version": 1, "tasks": {"t": {"mode": "fly", "baseline_model": "m"}}}, "tasks.t.mode"),
        ({"version": 1, "tasks": {"t": {"mode": "route", "baseline_model": "m"}}}, "tasks.t.candidate_model"),
        ({"version": 1, "tasks": {"t": {"mode": "observe"}}}, "tasks.t.baseline_model"),
        ({"version": 1, "tasks": {"t": {"mode": "observe", "baseline_model": "m", "contract": {"colour": 1}}}}, "tasks.t.contract"),
        ({"version": 2, "tasks": {}}, "version"),
    ],
)
def test_bad_policy_names_the_field(tmp_path, body, field):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(body))
    with pytest.raises(InputError) as err:
        load_policy(path)
    assert err.value.field == field
    assert str(path) in str(err.value)
