"""`parity verdict` end to end through Typer's CliRunner, on temporary JSONL files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from parity.cli import app  # importing the package registers every command, `verdict` included

runner = CliRunner()


def write_lines(path: Path, objs) -> Path:
    path.write_text("".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objs), encoding="utf-8")
    return path


def invoke(*args: str):
    return runner.invoke(app, ["verdict", *map(str, args)])


def test_identical_models_switch_and_json_holds_the_contract(tmp_path):
    pairs = write_lines(tmp_path / "pairs.jsonl", [{"baseline_correct": True, "candidate_correct": True}] * 300)
    out = tmp_path / "result.json"
    res = invoke(pairs, "--mode", "paired-gold", "--margin", "0.05", "--alpha", "0.05", "--json", out)
    assert res.exit_code == 0, res.output
    assert "switch" in res.output and "efficacy" in res.output
    data = json.loads(out.read_text())
    for key in ("verdict", "n_used", "estimate", "lower_bound", "confidence_bound", "mode", "margin", "alpha",
                "stopped_by", "e_value", "futility_e_value", "trajectory"):
        assert key in data, key
    assert (data["verdict"], data["stopped_by"], data["mode"]) == ("switch", "efficacy", "paired-gold")
    assert data["estimate"] == 0.0 and data["margin"] == 0.05 and data["alpha"] == 0.05
    assert data["n_used"] < 300 and data["observations"] == 300
    # The bound shown is the empirical-Bernstein sequence: valid at every n but wider than the e-process that
    # decides (reference §2.7), so at the moment of switching it may still sit below the threshold.
    assert data["confidence_bound"] == data["lower_bound"] <= data["estimate"]
    assert data["confidence_level"] == 0.95
    assert "wider" in res.output
    assert len(data["trajectory"]["n"]) == data["n_used"]


def test_clearly_worse_candidate_is_refused_in_score_mode(tmp_path):
    pairs = write_lines(tmp_path / "scores.jsonl", [{"score": 0.0}, {"score": 0.25}] * 200)
    out = tmp_path / "r.json"
    res = invoke(pairs, "--mode", "score", "--margin", "0.1", "--json", out)
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert (data["verdict"], data["stopped_by"]) == ("do_not_switch", "futility")
    assert data["estimate"] == pytest.approx(0.125, abs=0.02)


def test_agreement_mode_and_grid_method(tmp_path):
    pairs = write_lines(tmp_path / "agree.jsonl", [{"agree": True, "id": i} for i in range(600)])
    out = tmp_path / "r.json"
    res = invoke(pairs, "--mode", "agreement", "--margin", "0.05", "--method", "grid", "--json", out)
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["verdict"] == "switch" and data["method"] == "grid" and data["threshold"] == pytest.approx(0.95)


def test_budget_reached_is_inconclusive(tmp_path):
    lines = [{"baseline_correct": b, "candidate_correct": c} for b, c in [(True, True), (True, False), (False, True)]]
    pairs = write_lines(tmp_path / "p.jsonl", lines * 100)
    out = tmp_path / "r.json"
    res = invoke(pairs, "--margin", "0.05", "--n-max", "30", "--json", out)
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert (data["verdict"], data["stopped_by"], data["n_used"], data["n_max"]) == ("inconclusive", "n_max", 30, 30)
    assert "inconclusive" in res.output


def test_blank_lines_are_skipped_and_order_is_file_order(tmp_path):
    lines = ['{"score": 1}', "", '{"score": 0}', "   ", '{"score": 0.5}']
    pairs = write_lines(tmp_path / "s.jsonl", lines)
    out = tmp_path / "r.json"
    res = invoke(pairs, "--mode", "score", "--margin", "0.1", "--json", out)
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["n_used"] == 3 and data["stopped_by"] == "data_exhausted"
    assert data["trajectory"]["estimate"] == [1.0, 0.5, 0.5]


@pytest.mark.parametrize(
    ("mode", "lines", "where", "field"),
    [
        ("paired-gold", ['{"baseline_correct": true, "candidate_correct": true}', "{not json"], ":2", None),
        ("paired-gold", ['{"baseline_correct": true}'], ":1", "candidate_correct"),
        ("paired-gold", ['{"baseline_correct": "yes", "candidate_correct": true}'], ":1", "baseline_correct"),
        ("score", ['{"score": 0.5}', '{"score": 0.5}', '{"score": 1.5}'], ":3", "score"),
        ("score", ['{"score": "0.5"}'], ":1", "score"),
        ("score", ['{"score": true}'], ":1", "score"),
        ("agreement", ["[true]"], ":1", None),
        ("agreement", ['{"agree": 2}'], ":1", "agree"),
    ],
)
def test_bad_lines_stop_with_exit_2_naming_file_line_and_field(tmp_path, mode, lines, where, field):
    pairs = write_lines(tmp_path / "bad.jsonl", lines)
    out = tmp_path / "r.json"
    res = invoke(pairs, "--mode", mode, "--margin", "0.05", "--json", out)
    assert res.exit_code == 2
    assert f"bad.jsonl{where}" in res.output
    if field:
        assert f"'{field}'" in res.output
    assert not out.exists()  # no verdict is written from partial data


def test_unusable_files_and_options_are_clear_errors(tmp_path):
    empty = write_lines(tmp_path / "empty.jsonl", ["", "  "])
    res = invoke(empty, "--mode", "score")
    assert res.exit_code == 2 and "no observations" in res.output
    res = invoke(tmp_path / "missing.jsonl")
    assert res.exit_code == 2 and "not found" in res.output
    good = write_lines(tmp_path / "g.jsonl", [{"score": 0.5}])
    res = invoke(good, "--mode", "scores")
    assert res.exit_code == 2 and "unknown mode" in res.output
    res = invoke(good, "--mode", "score", "--method", "wald")
    assert res.exit_code == 2 and "unknown method" in res.output
    res = invoke(good, "--mode", "score", "--margin", "0.7")
    assert res.exit_code == 2 and "margin" in res.output
