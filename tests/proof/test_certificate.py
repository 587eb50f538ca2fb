"""The certificate: JSON with everything needed to re-check a verdict offline, a self-contained HTML page, and
`parity verify`, which recomputes the verdict from the stored evidence and fails on any tampering."""

from __future__ import annotations

import copy
import json
import re
from decimal import Decimal

import pytest
from typer.testing import CliRunner

from parity.cli import app
from parity.emulator.service import Emulator
from parity.policy import Demo, TunedPrompt
from parity.proof import certificate as certs
from parity.proof import optimize as opt
from parity.proof.calls import request_key
from parity.proof.data import load_emulator_family
from parity.proof.judge_prompt import parse_verdict
from parity.proof.runner import ProveConfig, prove

BASELINE, CANDIDATE = "claude-opus-4-8", "claude-haiku-4-5"


def _run(tmp_path_factory, family: str, **kw):
    directory = tmp_path_factory.mktemp(family)
    emulator = Emulator(seed=0)
    emulator.batches.processing_s = "instant"
    data = load_emulator_family(family, kw.pop("n", 160), seed=5, baseline_model=BASELINE)
    config = ProveConfig(task=family, baseline_model=BASELINE, candidate_models=(CANDIDATE,), margin=0.1,
                         n_max=60, **kw)
    out = prove(config, data, emulator.client(), run_dir=directory / "run", html_path=directory / "cert.html")
    return out, data


@pytest.fixture(scope="module")
def triage(tmp_path_factory):
    return _run(tmp_path_factory, "ticket_triage", max_prompt_candidates=8, monthly_requests=250_000)


@pytest.fixture(scope="module")
def summary(tmp_path_factory):
    return _run(tmp_path_factory, "thread_summary", n=120, max_prompt_candidates=4, minibatch=8)


def _strict(path) -> dict:
    def refuse(value):
        raise AssertionError(f"not strict JSON: {value}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def test_the_json_holds_everything_needed_to_recheck_the_verdict(triage):
    out, data = triage
    cert = _strict(out.certificate_path)
    assert cert == out.certificate and cert["format"] == "parity-certificate" and cert["simulated"] is True
    assert cert["id"] == certs.certificate_id(cert)
    # parameters and seeds
    params = cert["parameters"]
    assert (params["margin"], params["alpha"], params["n_max"], params["method"]) == (0.1, 0.05, 60, "agrapa")
    assert params["batch"] is True and params["per_candidate_alpha"] == 0.05
    assert set(cert["seeds"]) == {"split", "order", "optimizer"}
    # splits and prompt hashes: every prompt once, by id, with the hash of the exact request
    splits = cert["splits"]
    ids = splits["train"] + splits["validation"] + splits["test"]
    assert sorted(ids) == sorted(i.id for i in data.items) and splits["by"] == "group"
    assert cert["data"]["prompt_hashes"] == {i.id: request_key(i.request) for i in data.items}
    # the tuned prompt, with its hash
    cand = cert["candidates"][0]
    prompt = TunedPrompt(cand["prompt"]["system"], [Demo(d["input"], d["output"]) for d in cand["prompt"]["demos"]])
    assert cand["prompt_hash"] == opt.prompt_hash(prompt) and cand["prompt"]["demos"]
    # per-prompt scores, in the order the test saw them, with the scorer's inputs
    obs = cand["observations"]
    assert len(obs) == cand["n_used"] == cand["result"]["n_used"] and cand["verdict"] == "switch"
    assert [o["id"] for o in obs] == cand["order"][: len(obs)]
    for o in obs:
        assert o["prompt_key"] == cert["data"]["prompt_hashes"][o["id"]]
        assert o["x"] == o["candidate_score"] - o["baseline_score"] and o["unit"] == (o["x"] + 1) / 2
        assert o["gold"] is not None and o["candidate_output"] and o["baseline_output"]
    assert cand["result"]["trajectory"]["n"] == list(range(1, len(obs) + 1))
    # cost before and after, and what the proof itself cost, batch and at standard prices
    cost = cert["cost"]
    before, after = Decimal(cost["baseline_per_request"]), Decimal(cost["candidate_per_request"])
    assert after < before and Decimal(cost["saving_per_request"]) == before - after
    assert Decimal(cost["projected_monthly_saving"]) == (before - after) * 250_000
    assert Decimal(cost["proof_at_standard_prices"]) == 2 * Decimal(cost["proof"]["spent"]) == 2 * out.spent


def test_a_judged_certificate_keeps_both_orders_and_the_judge_replies(summary):
    out, _ = summary
    cert = out.certificate
    assert cert["scoring"]["mode"] == "judge" and cert["judge_model"] == BASELINE
    cand = cert["candidates"][0]
    assert cand["observations"]
    for o in cand["observations"]:
        orders = o["judgment"]["orders"]
        assert [x["candidate_position"] for x in orders] == ["B", "A"]
        for order in orders:
            assert parse_verdict(order["text"]) == order["verdict"] and len(order["request_key"]) == 64
        assert o["x"] == sum(order["score"] for order in orders) / 2 in (0, 0.25, 0.5, 0.75, 1)
    diag = cand["diagnostics"]
    for key in ("swap_inconsistency", "tie_rate", "length_ratio", "length_controlled", "raw", "strata"):
        assert diag[key] is not None, key
    assert sum(s["n"] for s in diag["strata"]) == len(cand["observations"])
    assert diag["wins"] + diag["ties"] + diag["losses"] == len(cand["observations"])


def test_verify_recomputes_the_verdict_offline(triage, summary):
    for out, _ in (triage, summary):
        result = certs.verify(out.certificate_path)
        assert result.ok, result.problems
        assert result.recomputed_verdict == out.certificate["decision"]["verdict"]
        check = result.candidates[0]
        assert check.recomputed_n == check.stored_n and check.recomputed_verdict == check.stored_verdict
    res = CliRunner().invoke(app, ["verify", str(triage[0].certificate_path)], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "verified" in res.output


def _tampered(tmp_path, cert: dict, edit, *, rehash: bool = True):
    forged = copy.deepcopy(cert)
    edit(forged)
    if rehash:  # a forger who also recomputes the id: the evidence itself must then give them away
        forged["id"] = certs.certificate_id(forged)
    path = tmp_path / "forged.json"
    path.write_text(certs.dumps(forged), encoding="utf-8")
    return path


def test_tampering_is_caught_and_verify_exits_1(tmp_path, triage, summary):
    cert = triage[0].certificate

    def worse_scores(c):  # the candidate "lost" every prompt: a switch it could never have reached
        for o in c["candidates"][0]["observations"]:
            o["x"], o["unit"] = -1.0, 0.0

    path = _tampered(tmp_path, cert, worse_scores)
    result = certs.verify(path)
    assert not result.ok and result.recomputed_verdict != "switch"
    assert any("its evidence gives" in p for p in result.problems)
    assert any("the certificate says 'switch' but its scores give" in p for p in result.problems)
    res = CliRunner().invoke(app, ["verify", str(path)], env={"COLUMNS": "200"})
    assert res.exit_code == 1 and "not verified" in res.output

    # one score edited, the id left alone: the id no longer matches
    def one_score(c):
        c["candidates"][0]["observations"][0]["x"] = 1.0

    result = certs.verify(_tampered(tmp_path, cert, one_score, rehash=False))
    assert not result.ok and any("id does not match" in p for p in result.problems)

    # an answer rewritten: the stored answer and gold no longer give the stored score
    def answer(c):
        o = next(o for o in c["candidates"][0]["observations"] if o["candidate_score"] == 1.0)
        o["candidate_output"] = "definitely not a label"

    result = certs.verify(_tampered(tmp_path, cert, answer))
    assert not result.ok and any("its evidence gives" in p for p in result.problems)

    # a test prompt moved into the training split
    def leak(c):
        c["splits"]["train"].append(c["splits"]["test"][0])

    result = certs.verify(_tampered(tmp_path, cert, leak))
    assert not result.ok and any("overlap" in p for p in result.problems)

    # a judge reply rewritten to favour the candidate, or a tie claimed without asking the judge
    judged = summary[0].certificate

    def flip(c):
        lost = next(o for o in c["candidates"][0]["observations"] if o["judgment"]["orders"][0]["verdict"] != "B")
        order = lost["judgment"]["orders"][0]
        order["text"] = re.sub(r"\[\[[ABC]\]\]", "[[B]]", order["text"])
        order["verdict"], order["score"] = "B", 1.0

    result = certs.verify(_tampered(tmp_path, judged, flip))
    assert not result.ok and any("its evidence gives" in p for p in result.problems)

    def fake_tie(c):
        o = c["candidates"][0]["observations"][0]
        for order in o["judgment"]["orders"]:
            order.update(identical=True, verdict="tie", score=0.5, text="same")
        o["x"] = 0.5

    result = certs.verify(_tampered(tmp_path, judged, fake_tie))
    assert not result.ok and any("its evidence gives nan" in p for p in result.problems)

    # the decision rewritten
    def decide(c):
        c["decision"]["verdict"], c["candidates"][0]["verdict"] = "switch", "switch"

    result = certs.verify(_tampered(tmp_path, judged, decide))
    assert not result.ok and any("but its scores give" in p for p in result.problems)


def test_the_html_page_is_complete_and_self_contained(triage, summary):
    for out, _ in (triage, summary):
        page = out.html_path.read_text(encoding="utf-8")
        # offline: nothing fetched from anywhere (the only URL is the SVG namespace)
        assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page)
        assert "<script" not in page and "<link" not in page and "@import" not in page and "url(http" not in page
        verdict = out.certificate["decision"]["verdict"].replace("_", " ")
        for text in (verdict, "margin δ", "α (per candidate)", "cost / request before", "cost / request after",
                     "projected monthly saving", "Per stratum", "length ratio", "lower bound", "simulated",
                     "parity verify"):
            assert text in page, text
        assert page.count("<svg") >= 2  # the confidence sequence and win/tie/loss
        assert "the same calls at standard prices" in page
    judged = summary[0].html_path.read_text(encoding="utf-8")
    for text in ("swap inconsistency", "length-controlled estimate", "tie rate"):
        assert text in judged, text
    assert re.search(r"projected monthly saving</[^>]+>\s*<[^>]+>\$[0-9]", triage[0].html_path.read_text())
