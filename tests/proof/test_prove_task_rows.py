"""`parity prove` reads only its task's rows, and a setup error is never read as a verdict.

- Rows belong to the task by the one task rule (tag, metadata.user_id "task:NAME", or a template fingerprint
  the user names); untagged rows are left out and counted, and the certificate's data says how many.
- No key, an unreachable API, a refused key, an overloaded API, an unknown model: one line saying what to do,
  exit 2 (1 means "the proof ran and nothing was proven").
- `--no-optimize` tests on every prompt: nothing is held back for tuning that does not happen.
- A budget stop goes on with a larger `--budget-usd` in the same run directory without paying twice.
- With the real API's counter, the budget's estimates use count_tokens.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

import parity.cli.prove as cli
from parity.fingerprint import fingerprint
from parity.cli import app
from parity.emulator.brains.replay import ReplayBrain
from parity.emulator.faults import FaultSchedule
from parity.emulator.labelled import write_labelled_task
from parity.emulator.service import Emulator
from parity.errors import InputError
from parity.proof.data import load_jsonl
from parity.proof.runner import ProveConfig, prove
from parity.tokens import TokenCounter

BASELINE, CANDIDATE = "claude-opus-4-8", "claude-haiku-4-5"
runner = CliRunner()


def invoke(*args: object, env: dict[str, str | None] | None = None):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200", **(env or {})})


@pytest.fixture
def mixed_log(tmp_path: Path) -> tuple[Path, Path, int]:
    """A log of task `sums` (tagged) with untagged rows of another template and of the same template mixed in."""
    task = write_labelled_task(tmp_path, task="sums", n=60, seed=3, baseline_accuracy=0.9, candidate_accuracy=0.9)
    rows = [json.loads(line) for line in task.log.read_text().splitlines()]
    other = json.loads(json.dumps(rows[0]))
    extra = []
    for k in range(25):  # another template, untagged: must never count as `sums`
        row = json.loads(json.dumps(other))
        del row["tags"]
        row["request"]["messages"][0]["content"] = f"Translate 'hello {k}' into French."
        row["response"]["content"][0]["text"] = "bonjour"
        extra.append(row)
    by_metadata = []
    for row in rows[:10]:  # the same task named in metadata.user_id instead of a tag
        row = json.loads(json.dumps(row))
        row["tags"] = {k: v for k, v in row["tags"].items() if k != "task"}
        row["request"]["metadata"] = {"user_id": "team:core;task:sums"}
        by_metadata.append(row)
    log = tmp_path / "mixed.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in rows[10:] + extra + by_metadata))
    return log, task.replay, len(extra)


def test_prove_uses_only_the_tasks_rows_and_says_how_many(tmp_path, mixed_log):
    log, replay, untagged = mixed_log
    data = load_jsonl(log, task="sums")
    assert len(data.items) == 60
    assert data.selection == {"rule": data.selection["rule"], "task": "sums", "fingerprint": None, "taken": 60,
                              "left_out": untagged, "by": {"metadata": 10, "tag": 50}}
    assert not any("French" in i.request["messages"][0]["content"] for i in data.items)
    result = invoke("prove", "--task", "sums", "--data", log, "--brain", f"replay:{replay}", "--baseline", BASELINE,
                    "--candidate", CANDIDATE, "--margin", "0.1", "--scoring", "paired-gold", "--no-optimize",
                    "--sync", "--run-dir", tmp_path / "run")
    assert result.exit_code in (0, 1), result.output
    assert f"60 rows taken (10 by metadata, 50 by tag); {untagged} rows of other or no task left out" in result.output
    cert = json.loads((tmp_path / "run" / "certificate.json").read_text())
    assert cert["data"]["n_items"] == 60
    assert cert["data"]["selection"]["left_out"] == untagged


def test_a_named_fingerprint_takes_that_templates_untagged_rows(tmp_path, mixed_log):
    log, _replay, untagged = mixed_log
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    french = next(r for r in rows if "French" in r["request"]["messages"][0]["content"])
    data = load_jsonl(log, task="french", fingerprint=fingerprint(french["request"]))
    assert len(data.items) == untagged and data.selection["by"] == {"fingerprint": untagged}


def test_a_task_no_row_names_is_a_clear_error(tmp_path, mixed_log):
    log, _replay, _ = mixed_log
    with pytest.raises(InputError, match="--fingerprint"):
        load_jsonl(log, task="nobody")


def test_without_optimisation_every_prompt_is_a_test_prompt(tmp_path):
    task = write_labelled_task(tmp_path, task="sums", n=50, seed=4, baseline_accuracy=0.9, candidate_accuracy=0.9)
    config = ProveConfig(task="sums", baseline_model=BASELINE, candidate_models=(CANDIDATE,), margin=0.1,
                         n_max=1000, sync=True, scoring="paired-gold", optimize=False)
    outcome = prove(config, load_jsonl(task.log, task="sums"), Emulator(brain=ReplayBrain(task.replay)).client(),
                    run_dir=tmp_path / "run")
    splits = outcome.certificate["splits"]
    assert len(splits["test"]) == 50 and splits["train"] == [] and splits["validation"] == []


# ---- setup errors: exit 2, one line -------------------------------------------------------------------------------


def _args(tmp_path: Path, log: Path, *extra: object) -> list[object]:
    return ["prove", "--task", "sums", "--data", log, "--baseline", BASELINE, "--candidate", CANDIDATE, "--sync",
            "--no-optimize", "--run-dir", tmp_path / "run", *extra]


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return write_labelled_task(tmp_path, task="sums", n=30, seed=5, baseline_accuracy=0.9,
                               candidate_accuracy=0.9).log


def _one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    return errors[0]


def test_no_api_key_is_a_setup_error(tmp_path, log):
    line = _one_error_line(invoke(*_args(tmp_path, log), env={"ANTHROPIC_API_KEY": None,
                                                              "ANTHROPIC_AUTH_TOKEN": None}))
    assert "ANTHROPIC_API_KEY" in line and "--emulator" in line


def test_an_unreachable_api_is_a_setup_error(tmp_path, log):
    line = _one_error_line(invoke(*_args(tmp_path, log), env={"ANTHROPIC_API_KEY": "sk-test",
                                                              "ANTHROPIC_BASE_URL": "http://127.0.0.1:9"}))
    assert "cannot reach the API at http://127.0.0.1:9" in line and "resume" in line


def test_an_unknown_model_is_a_setup_error(tmp_path, log):
    line = _one_error_line(invoke("prove", "--task", "sums", "--data", log, "--baseline", BASELINE, "--candidate",
                                  "claude-nonesuch-9", "--emulator", "--run-dir", tmp_path / "run"))
    assert "claude-nonesuch-9" in line


@pytest.mark.parametrize("emulator, needle", [
    (lambda: Emulator(api_keys=["sk-right"]), "refused the key (401)"),
    (lambda: Emulator(faults=FaultSchedule({"overloaded": 1.0})), "failed with 529 after retries"),
], ids=["bad-key", "overloaded"])
def test_api_failures_are_setup_errors(tmp_path, log, monkeypatch, emulator, needle):
    monkeypatch.setattr(cli, "_client", lambda *a: emulator().client(api_key="sk-wrong", max_retries=1))
    line = _one_error_line(invoke(*_args(tmp_path, log)))
    assert needle in line


# ---- budgets -----------------------------------------------------------------------------------------------------------


def test_a_budget_stop_goes_on_with_a_larger_budget_in_the_same_run_directory(tmp_path):
    task = write_labelled_task(tmp_path, task="sums", n=60, seed=6, baseline_accuracy=0.9, candidate_accuracy=0.9)
    data = load_jsonl(task.log, task="sums")

    def run(budget: Decimal | None, run_dir: Path):
        emulator = Emulator(brain=ReplayBrain(task.replay))
        config = ProveConfig(task="sums", baseline_model=BASELINE, candidate_models=(CANDIDATE,), margin=0.1,
                             sync=True, scoring="paired-gold", optimize=False, budget_usd=budget)
        return prove(config, data, emulator.client(), run_dir=run_dir)

    whole = run(None, tmp_path / "whole")
    first = run(whole.spent / 3, tmp_path / "run")
    assert first.candidates[0].stopped_by == "budget"
    more = run(whole.spent * 2, tmp_path / "run")
    assert first.network_calls + more.network_calls == whole.network_calls  # nothing paid twice
    assert more.certificate["candidates"][0]["verdict"] == whole.certificate["candidates"][0]["verdict"]
    assert more.spent == whole.spent


def test_with_the_apis_counter_the_budget_estimate_uses_count_tokens(tmp_path):
    task = write_labelled_task(tmp_path, task="sums", n=20, seed=8, baseline_accuracy=0.9, candidate_accuracy=0.9)
    emulator = Emulator(brain=ReplayBrain(task.replay))
    client = emulator.client()
    config = ProveConfig(task="sums", baseline_model=BASELINE, candidate_models=(CANDIDATE,), margin=0.1,
                         sync=True, scoring="paired-gold", optimize=False, budget_usd=Decimal("10"))
    prove(config, load_jsonl(task.log, task="sums"), client, run_dir=tmp_path / "run", exact_token_counts=True)
    counter = TokenCounter(client, cache_path=tmp_path / "run" / "token-counts.sqlite")
    assert counter.online
    cached = counter.count({"model": CANDIDATE, "messages": [{"role": "user", "content": "x"}]})
    assert not cached.estimate
    assert (tmp_path / "run" / "token-counts.sqlite").stat().st_size > 0
