"""The certificate: JSON with everything needed to re-check a verdict offline, a self-contained HTML page, and
`parity verify`, which recomputes the verdict from the stored evidence and fails on any tampering."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import types
from decimal import Decimal

import pytest
from typer.testing import CliRunner

from parity.cli import app
from parity.emulator.service import Emulator
from parity.policy import Demo, TunedPrompt
from parity.proof import certificate as certs
from parity.proof import optimize as opt
from parity.proof.calls import request_key
from parity.emulator.workloads import load_emulator_family
from parity.proof.judge_prompt import parse_verdict
from parity.proof.runner import ProveConfig, prove
from parity.report import certificate_html

BASELINE, CANDIDATE = "claude-opus-4-8", "claude-haiku-4-5"


def _run(tmp_path_factory, family: str, **kw):
    """A proof on the emulator, and the keyword arguments the runner gave `certs.build` (to build variants)."""
    directory = tmp_path_factory.mktemp(family)
    emulator = Emulator(seed=0)
    emulator.batches.processing_s = "instant"
    data = load_emulator_family(family, kw.pop("n", 160), seed=5, baseline_model=BASELINE)
    config = ProveConfig(task=family, baseline_model=BASELINE, candidate_models=(CANDIDATE,), margin=0.1,
                         n_max=kw.pop("n_max", 60), **kw)
    built: dict = {}
    original = certs.build

    def spy(**kwargs):
        built.update(kwargs)
        return original(**kwargs)

    certs.build = spy
    try:
        out = prove(config, data, emulator.client(), run_dir=directory / "run", html_path=directory / "cert.html")
    finally:
        certs.build = original
    BUILT[family] = {**built, "signing_key": None}
    return out, data


BUILT: dict[str, dict] = {}
"""Per family: what the runner passed to certs.build (signing off), so a test can rebuild with one change."""


def _calls_with_ids(run_dir) -> dict:
    """The run's call results by request key, each with ids as a batch call carries them: its batch's id (shared
    by the calls of one wave: here, of one purpose) and its own message id."""
    from parity.proof.calls import CallResult

    out = {}
    for line in (run_dir / "calls.jsonl").read_text().splitlines():
        result = CallResult.from_dict(json.loads(line)).to_dict()
        out[result["key"]] = {**result, "request_id": f"msgbatch_{result['purpose']}",
                              "message_id": "msg_" + result["key"][:24]}
    return out


@pytest.fixture(scope="module")
def triage(tmp_path_factory):
    return _run(tmp_path_factory, "ticket_triage", n=300, n_max=120, max_prompt_candidates=8,
                monthly_requests=250_000)


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
    assert (params["margin"], params["alpha"], params["n_max"], params["method"]) == (0.1, 0.05, 120, "agrapa")
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
    assert after < before and Decimal(cost["gross_saving_per_request"]) == before - after
    net = Decimal(cost["net_candidate_per_request"])
    assert net == after + Decimal(cost["fallback_cost_per_request"]) + Decimal(cost["drift_cost_per_request"]) > after
    assert Decimal(cost["saving_per_request"]) == before - net
    assert Decimal(cost["projected_monthly_saving"]) == (before - net) * 250_000
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
            if order.get("identical"):  # the same text as the baseline's: a tie, no judge call to keep
                assert order["verdict"] == "tie" and order["score"] == 0.5
                assert o["candidate_output"] == o["baseline_output"]
                continue
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
    def decide(c):  # the opposite of what the evidence gave
        other = "do_not_switch" if c["candidates"][0]["verdict"] == "switch" else "switch"
        c["decision"]["verdict"], c["candidates"][0]["verdict"] = other, other

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
    assert re.search(r"projected monthly saving</[^>]+>\s*<[^>]+>-?\$[0-9]", triage[0].html_path.read_text())


# ---- simulated label -----------------------------------------------------------------------------------------


def test_an_emulator_certificate_says_simulated_in_json_and_html(triage):
    out, data = triage
    assert out.certificate["simulated"] is True and certs.verify(out.certificate_path).simulated
    page = out.html_path.read_text(encoding="utf-8")
    assert certs.SIMULATED_NOTE in page and 'class="badge simulated"' in page
    # the team's own prompts answered by the emulator are simulated too: the runner says where the calls went
    real_prompts = dataclasses.replace(data, simulated=False)
    on_emulator = certs.build(**{**BUILT["ticket_triage"], "data": real_prompts, "simulated": True})
    assert on_emulator["simulated"] is True and on_emulator["warnings"][0].startswith("simulated:")
    real = certs.build(**{**BUILT["ticket_triage"], "data": real_prompts, "simulated": False})
    assert real["simulated"] is False and not any(w.startswith("simulated") for w in real["warnings"])
    assert "SIMULATED" not in certificate_html.render_html(real) and "SIMULATED" in certificate_html.render_html(on_emulator)


# ---- upstream request ids ------------------------------------------------------------------------------------


def test_every_answer_used_keeps_its_upstream_request_id(triage, summary):
    for out, _ in (triage, summary):
        family = out.certificate["task"]
        calls = _calls_with_ids(out.certificate_path.parent)
        cert = certs.build(**{**BUILT[family], "calls": calls})
        assert certs.verify(cert).ok
        expected: list[dict] = []
        for obs in cert["candidates"][0]["observations"]:
            ids = obs["upstream_ids"]
            call = calls[obs["candidate_request_key"]]
            assert ids["candidate"] == {"request_id": call["request_id"], "message_id": call["message_id"]}
            assert ids["baseline"]["message_id"].startswith("msg_")  # the proof called the baseline for these
            if "judgment" in obs:
                keys = [o["request_key"] for o in obs["judgment"]["orders"] if not o["identical"]]
                assert [i["message_id"] for i in ids["judge"]] == [calls[k]["message_id"] for k in keys]
            expected += [ids["baseline"], ids["candidate"], *ids.get("judge", [])]
        upstream = cert["upstream"]
        assert upstream["message_ids"] == list(dict.fromkeys(i["message_id"] for i in expected))
        assert upstream["request_ids"] == list(dict.fromkeys(i["request_id"] for i in expected))
        assert upstream["answers"] == len(expected) and upstream["without_id"] == 0
        assert certs.verify(cert).upstream_ids == len(expected)
    # a run whose call results keep no id says how many answers lack one, rather than inventing them
    bare = {k: {**v, "request_id": None, "message_id": None} for k, v in calls.items()}
    upstream = certs.build(**{**BUILT["thread_summary"], "calls": bare})["upstream"]
    assert upstream["request_ids"] == upstream["message_ids"] == [] and upstream["without_id"] == upstream["answers"] > 0


def test_upstream_ids_read_what_the_call_result_has():
    assert certs.upstream_ids({"request_id": "req_1", "message_id": "msg_1"}) == {"request_id": "req_1",
                                                                                   "message_id": "msg_1"}
    assert certs.upstream_ids(types.SimpleNamespace(message_id="msg_1")) == {"request_id": None, "message_id": "msg_1"}
    assert certs.upstream_ids(None) is None


# ---- population and finite pool ------------------------------------------------------------------------------


def test_the_hypothesis_names_the_population_and_a_switch_can_back_a_route(triage):
    cert = triage[0].certificate
    hyp = cert["hypothesis"]
    assert hyp["population"] == certs.POPULATION and hyp["finite_pool"] is None
    assert hyp["statement"].startswith("H0: mean(candidate_correct - baseline_correct) <= -0.1")
    assert certs.POPULATION in hyp["statement"] and certs.POPULATION in cert["decision"]["summary"]
    assert cert["parameters"]["pool_size"] is None
    assert certs.can_route(cert) is None and certs.can_route(triage[0].certificate_path) is None
    assert certs.POPULATION in triage[0].html_path.read_text(encoding="utf-8")


def _finite_pool(cert: dict) -> dict:
    """The same evidence tested as a finite pool of the test prompts (the runner's old default)."""
    from parity.proof.sequential import run_sequential

    forged = copy.deepcopy(cert)
    cand = forged["candidates"][0]
    params = cand["result"]
    pool = len(forged["splits"]["test"])
    result = run_sequential([o["x"] for o in cand["observations"]], mode=params["mode"], margin=params["margin"],
                            alpha=params["alpha"], n_max=params["n_max"], method=params["method"], pool_size=pool,
                            candidates=params["candidates"])
    cand["result"] = result.to_dict(trajectory=True)
    cand["observations"] = cand["observations"][: result.n_used]
    cand.update(verdict=result.verdict, n_used=result.n_used, stopped_by=result.stopped_by)
    forged["decision"]["verdict"] = result.verdict
    forged["parameters"]["pool_size"] = pool
    forged["hypothesis"] = certs.hypothesis_block(params["mode"], params["margin"], pool)
    forged["id"] = certs.certificate_id(forged)
    return forged


def test_a_finite_pool_certificate_verifies_but_cannot_back_a_route(triage):
    finite = _finite_pool(triage[0].certificate)
    result = certs.verify(finite)
    assert result.ok, result.problems
    assert result.finite_pool == len(finite["splits"]["test"])
    assert "finite-pool" in certs.can_route(finite) and result.route_problem == certs.can_route(finite)
    assert "prompts of the test split only" in result.hypothesis
    # a finite-pool test presented as a claim about the population does not verify
    overclaimed = {**finite, "hypothesis": triage[0].certificate["hypothesis"]}
    overclaimed["id"] = certs.certificate_id(overclaimed)
    assert any("finite pool" in p for p in certs.verify(overclaimed).problems)
    block = certs.hypothesis_block("paired-gold", 0.1, 90)
    assert block["finite_pool"] == 90 and "the 90 prompts of the test split only" in block["statement"]
    assert certs.POPULATION not in block["statement"]


def test_only_a_verified_switch_can_back_a_route(tmp_path, triage):
    cert = triage[0].certificate
    refused = copy.deepcopy(cert)
    refused["decision"]["verdict"] = "inconclusive"
    assert "does not verify" in certs.can_route(refused)  # the id no longer matches
    assert "does not verify" in certs.can_route(_tampered(tmp_path, cert, lambda c: c["splits"]["train"].append(
        c["splits"]["test"][0])))


# ---- judge failures ------------------------------------------------------------------------------------------


class _NewDiagnostics:
    """Diagnostics as the judge will report them, with a count of judge calls that failed."""

    def __init__(self, inner, failures: int):
        self.inner, self.failures, self.warnings = inner, failures, inner.warnings

    def to_dict(self):
        return {**self.inner.to_dict(), "judge_failures": self.failures}


def test_judge_failures_are_shown_per_candidate(summary):
    out, _ = summary
    cand = out.certificate["candidates"][0]
    assert cand["judge_failures"] == 0  # today's Diagnostics has no such count: read as none
    built = BUILT["thread_summary"]
    outcome = dataclasses.replace(built["outcomes"][0],
                                  diagnostics=_NewDiagnostics(built["outcomes"][0].diagnostics, 3))
    chosen = outcome if built["chosen"] is not None else None
    cert = certs.build(**{**built, "outcomes": [outcome], "chosen": chosen})
    assert cert["candidates"][0]["judge_failures"] == 3 and cert["candidates"][0]["diagnostics"]["judge_failures"] == 3
    page = certificate_html.render_html(cert)
    assert re.search(r"judge calls that failed</td>\s*<td[^>]*>3<", page)


# ---- what routing costs --------------------------------------------------------------------------------------


def test_routing_cost_adds_fallbacks_and_the_drift_watch_exactly():
    cost = certs.routing_cost(baseline=Decimal("0.004"), candidate=Decimal("0.001"), fallbacks=3, answers=60,
                              shadow_rate=Decimal("0.02"), shadow_baseline=Decimal("0.002"),
                              judge_call=Decimal("0.003"), monthly_requests=100_000)
    assert cost.fallback_rate == Decimal("0.05")
    assert cost.fallback_cost_per_request == Decimal("0.0002")  # the baseline paid again on 5% of requests
    assert cost.drift_cost_per_request == Decimal("0.00016")  # 2% × (0.002 + 2 × 0.003)
    assert cost.net_candidate_per_request == Decimal("0.00136")
    assert cost.saving_per_request == Decimal("0.00264")
    assert cost.projected_monthly_saving == Decimal("264")
    # a share that does not terminate is rounded to a millionth of a micro-dollar, never to a float
    third = certs.routing_cost(baseline=Decimal("0.003"), candidate=Decimal("0.001"), fallbacks=1, answers=3,
                               shadow_rate=Decimal("0.02"), shadow_baseline=Decimal(0), judge_call=Decimal(0),
                               monthly_requests=None)
    assert third.fallback_rate == Decimal("0.333333333333") and third.fallback_cost_per_request == Decimal("0.001")
    assert third.projected_monthly_saving is None and third.saving_per_request == Decimal("0.001")
    unknown = certs.routing_cost(baseline=None, candidate=Decimal("0.001"), fallbacks=0, answers=10,
                                 shadow_rate=Decimal("0.02"), shadow_baseline=None, judge_call=None,
                                 monthly_requests=1000)
    assert unknown.net_candidate_per_request is None and unknown.projected_monthly_saving is None
    assert certs.default_shadow_rate() == Decimal("0.02")


def test_the_fallback_rate_is_what_the_gateway_contract_check_would_reject():
    from parity.policy import Contract

    contract = Contract(labels=["billing", "bug"])
    observations = [{"candidate_output": "billing"}, {"candidate_output": "Billing!"}, {"candidate_output": ""},
                    {"candidate_output": "bug", "candidate_request_key": "k1"}]
    assert certs.contract_failures(observations, contract) == 2  # a label outside the set, an empty answer
    # an answer cut at max_tokens falls back even when its text would pass
    calls = {"k1": {"stop_reason": "max_tokens"}}
    assert certs.contract_failures(observations, contract, calls) == 3


def test_the_certificate_stores_each_part_of_the_routing_cost(triage, summary):
    cost = triage[0].certificate["cost"]
    for field in ("fallback_rate", "fallback_cost_per_request", "drift_cost_per_request", "net_candidate_per_request"):
        assert cost[field] is not None, field
    n = len(triage[0].certificate["candidates"][0]["observations"])
    failures = triage[0].certificate["candidates"][0]["contract_failures"]
    assert Decimal(cost["fallback_rate"]) == (Decimal(failures) / n).quantize(certs.PLACES)
    assert Decimal(cost["fallback_cost_per_request"]) == (
        Decimal(cost["baseline_per_request"]) * failures / n).quantize(certs.PLACES)
    assert "E" not in cost["fallback_rate"]  # a zero rate reads 0, not 0E-12
    assert "token counts" in cost["drift_judge_call"]  # a scorer-based proof made no judge calls to measure
    page = triage[0].html_path.read_text(encoding="utf-8")
    for text in ("What routing costs per request", "fallback to the baseline", "drift watch", "net cost of routing"):
        assert text in page, text
    # a judged proof prices the drift watch's judge calls from its own, at batch prices
    from parity import pricing

    calls = _calls_with_ids(summary[0].certificate_path.parent)
    observations = summary[0].certificate["candidates"][0]["observations"]
    keys = [o["request_key"] for obs in observations for o in obs["judgment"]["orders"] if not o["identical"]]
    mean, how = certs.judge_call_cost(observations, BASELINE, calls=calls)
    plain = [{name: v for name, v in calls[key]["usage"].items() if name != "service_tier"} for key in keys]
    expected = sum(pricing.cost(BASELINE, usage, batch=True).total for usage in plain) / len(keys)
    assert how.startswith(f"the mean of this proof's {len(keys)} judge calls") and mean == expected.quantize(certs.PLACES)
    estimated, how = certs.judge_call_cost(observations, BASELINE, items={i.id: i for i in summary[1].items})
    assert "token counts" in how and estimated > 0


def test_a_switch_that_would_not_save_money_says_so(triage):
    cert = certs.build(**{**BUILT["ticket_triage"], "baseline_cost": Decimal("0.0007")})
    assert Decimal(cert["cost"]["saving_per_request"]) <= 0
    assert "routing would not save money" in cert["decision"]["summary"]
    assert any("routing would not save money" in w for w in cert["warnings"])
    saves = certs.build(**{**BUILT["ticket_triage"], "baseline_cost": Decimal("0.01")})
    assert Decimal(saves["cost"]["saving_per_request"]) > 0
    assert not any("routing would not save money" in t for t in (saves["decision"]["summary"], *saves["warnings"]))


# ---- signing and old certificates ----------------------------------------------------------------------------


def test_build_signs_when_a_key_is_set(tmp_path, monkeypatch, triage):
    from parity.proof.signing import ENV_FILE, ENV_SECRET, check_signature, generate_key_file, load_signing_key

    monkeypatch.delenv(ENV_SECRET, raising=False)
    key = generate_key_file(tmp_path / "issuer.pem")
    monkeypatch.setenv(ENV_FILE, str(tmp_path / "issuer.pem"))
    signed = certs.build(**{**BUILT["ticket_triage"], "signing_key": "env"})
    assert signed["signature"]["key_id"] == key.key_id and check_signature(signed, key, required=True) is None
    assert signed["id"] == triage[0].certificate["id"]  # the same evidence, signed or not, is the same certificate
    path = certs.write_json(signed, tmp_path / "signed.json")
    result = certs.verify(path, load_signing_key(), required=True)
    assert result.ok and result.signature == "verified" and result.signed_by == key.key_id
    assert "signature" not in certs.build(**{**BUILT["ticket_triage"], "signing_key": None})
    monkeypatch.setenv(ENV_SECRET, "team secret")
    monkeypatch.delenv(ENV_FILE)
    assert certs.build(**{**BUILT["ticket_triage"], "signing_key": "env"})["signature"]["alg"] == "hmac-sha256"


def _version_1(cert: dict) -> dict:
    """The certificate as Parity wrote it before version 2: no population, upstream ids, routing cost or signature."""
    old = copy.deepcopy(cert)
    old["version"] = 1
    for key in ("hypothesis", "upstream", "signature"):
        old.pop(key, None)
    old["parameters"].pop("pool_size")
    old["data"].pop("selection")
    for key in ("gross_saving_per_request", "fallback_rate", "fallback_cost_per_request", "shadow_rate",
                "drift_cost_per_request", "drift_judge_call", "net_candidate_per_request"):
        old["cost"].pop(key)
    for cand in old["candidates"]:
        cand.pop("judge_failures")
        cand.pop("contract_failures")
        for obs in cand["observations"]:
            obs.pop("upstream_ids")
    old["id"] = certs.certificate_id(old)
    return old


def test_a_version_1_certificate_still_verifies_and_renders(tmp_path, triage, summary):
    for out, _ in (triage, summary):
        old = _version_1(out.certificate)
        path = tmp_path / f"{out.certificate['task']}-v1.json"
        path.write_text(certs.dumps(old), encoding="utf-8")
        result = certs.verify(path)
        assert result.ok, result.problems
        assert result.signature == "unsigned" and result.hypothesis and certs.POPULATION in result.hypothesis
        page = certificate_html.render_html(old)
        assert "Decision" in page and "What routing costs" not in page
    res = CliRunner().invoke(app, ["verify", str(tmp_path / "ticket_triage-v1.json")], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "verified" in res.output
