"""Unit tests of the sequential test: formulas against plain loops, decisions, modes, records, edge cases."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from parity.errors import InputError, ParityError
from parity.proof.sequential import (
    SequentialTest,
    bonferroni,
    hypothesis,
    make_params,
    run_candidates,
    run_sequential,
)
from parity.proof.simulation import run_sequential_paths, three_point_scores

# ---------------------------------------------------------------------------------------------------------------
# Independent plain-Python versions of the reference formulas (proof-science §2.5), one step at a time.
# ---------------------------------------------------------------------------------------------------------------


def _moments(xs):
    """(mean, variance) before each step, with one pseudo-observation (mean 1/2, variance 1/4)."""
    out, s, q = [], 0.0, 0.0
    for t, x in enumerate(xs, start=1):
        out.append(((0.5 + s) / t, (0.25 + q) / t))
        s += x
        q += (x - (0.5 + s) / (t + 1)) ** 2
    return out


def loop_agrapa(xs, mu0, c=0.5, side=+1):
    log_k, path = 0.0, []
    for x, (m, v) in zip(xs, _moments(xs)):
        gap = (m - mu0) * side
        cap = c / mu0 if side > 0 else c / (1 - mu0)
        lam = min(max(gap / (v + gap * gap), 0.0), cap)
        log_k += math.log(1 + side * lam * (x - mu0))
        path.append(log_k)
    return path


def loop_grid(xs, mu0, c=0.5, size=12):
    lams = np.geomspace(0.02, c / mu0, size)
    path, logs = [], np.zeros(size)
    for x in xs:
        logs = logs + np.log1p(lams * (x - mu0))
        path.append(math.log(np.mean(np.exp(logs))))
    return path


def loop_eb_lower(xs, alpha):
    num = den = 0.0
    best, out = 0.0, []
    for t, (x, (m, v)) in enumerate(zip(xs, _moments(xs)), start=1):
        lam = min(math.sqrt(2 * math.log(1 / alpha) / (v * t * math.log(1 + t))), 0.5)
        num += lam * x - (x - m) ** 2 * (-math.log(1 - lam) - lam)
        den += lam
        best = max(best, min(max((num - math.log(1 / alpha)) / den, 0.0), 1.0))
        out.append(best)
    return out


@pytest.fixture
def stream():
    return three_point_scores(0.47, tie_rate=0.3, size=400, rng=np.random.default_rng(7))


def test_agrapa_efficacy_and_futility_match_the_reference_formula(stream):
    res = run_sequential(stream, margin=0.1, alpha=1e-12, futility_alpha=1e-12)  # never stops: full path
    assert res.n_used == len(stream)
    np.testing.assert_allclose(res.trajectory.log_e_value, loop_agrapa(stream, 0.4), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(
        res.trajectory.log_futility_e_value, loop_agrapa(stream, 0.4, side=-1), rtol=1e-10, atol=1e-10
    )


def test_grid_mixture_matches_the_reference_formula(stream):
    res = run_sequential(stream, margin=0.1, method="grid", alpha=1e-12, futility=False)
    np.testing.assert_allclose(res.trajectory.log_e_value, loop_grid(stream, 0.4), rtol=1e-9, atol=1e-9)


def test_empirical_bernstein_lower_sequence_matches_the_reference_formula(stream):
    res = run_sequential(stream, margin=0.1, alpha=0.05, futility=False, n_max=60)
    np.testing.assert_allclose(res.trajectory.lower_bound, loop_eb_lower(stream[:60], 0.05), atol=1e-12)
    assert np.all(np.diff(res.trajectory.lower_bound) >= 0)  # running maximum
    assert np.all(res.trajectory.lower_bound <= res.trajectory.estimate + 1e-12)


def test_verdict_is_the_first_crossing_of_one_over_alpha():
    xs = three_point_scores(0.6, size=2000, rng=np.random.default_rng(3))
    res = run_sequential(xs, margin=0.1, alpha=0.05)
    assert res.verdict == "switch" and res.stopped_by == "efficacy"
    log_e = res.trajectory.log_e_value
    assert log_e[-1] >= math.log(20) and np.all(log_e[:-1] < math.log(20))
    assert res.e_value == pytest.approx(math.exp(log_e[-1]))
    assert res.n_used == len(log_e) == len(res.trajectory.n) == res.trajectory.n[-1]
    assert res.estimate == pytest.approx(xs[: res.n_used].mean())


def test_clear_loser_stops_by_futility_and_without_futility_runs_to_the_budget():
    zeros = np.zeros(500)
    res = run_sequential(zeros, margin=0.1)
    assert (res.verdict, res.stopped_by) == ("do_not_switch", "futility")
    assert res.n_used < 20
    res = run_sequential(zeros, margin=0.1, futility=False, n_max=300)
    assert (res.verdict, res.stopped_by, res.n_used) == ("inconclusive", "n_max", 300)
    res = run_sequential(zeros, margin=0.1, futility=False, n_max=900)
    assert (res.verdict, res.stopped_by, res.n_used) == ("inconclusive", "data_exhausted", 500)


def test_log_space_survives_huge_evidence_and_json_stays_strict():
    res = run_sequential(np.zeros(20_000), margin=0.1, futility=False)
    assert math.isfinite(res.log_futility_e_value) and res.log_futility_e_value > 1000
    assert res.futility_e_value == math.inf
    payload = res.to_dict()
    assert payload["futility_e_value"] is None and payload["log_futility_e_value"] > 1000
    json.dumps(payload, allow_nan=False)


def test_streaming_gives_the_same_result_as_the_batch_run():
    rng = np.random.default_rng(11)
    for method in ("agrapa", "grid"):
        for mu in (0.3, 0.45, 0.6):
            xs = three_point_scores(mu, size=700, rng=rng)
            batch = run_sequential(xs, margin=0.1, method=method, n_max=650)
            test = SequentialTest(margin=0.1, method=method, n_max=650)
            state = test.extend(xs)
            streamed = test.result()
            assert (streamed.verdict, streamed.stopped_by, streamed.n_used) == (
                batch.verdict, batch.stopped_by, batch.n_used,
            )
            assert state.done and state.n == batch.n_used and state.verdict == batch.verdict
            np.testing.assert_allclose(streamed.trajectory.log_e_value, batch.trajectory.log_e_value, atol=1e-9)
            np.testing.assert_allclose(streamed.trajectory.lower_bound, batch.trajectory.lower_bound, atol=1e-12)
            with pytest.raises(ParityError, match="already stopped"):
                test.update(0.5)


def test_paths_runner_agrees_with_single_runs():
    xs = three_point_scores(0.45, size=(40, 800), rng=np.random.default_rng(5))
    for method in ("agrapa", "grid"):
        many = run_sequential_paths(xs, margin=0.1, method=method, n_max=700)
        for row, verdict, stopped, n in zip(xs, many.verdict, many.stopped_by, many.n_used):
            one = run_sequential(row, margin=0.1, method=method, n_max=700)
            assert (one.verdict, one.stopped_by, one.n_used) == (verdict, stopped, n)


def test_modes_map_margins_onto_the_unit_scale():
    assert hypothesis("score", 0.1).mu0 == pytest.approx(0.4)
    pg = hypothesis("paired-gold", 0.05)
    assert (pg.mu0, pg.threshold) == (pytest.approx(0.475), -0.05)
    ag = hypothesis("agreement", 0.05)
    assert (ag.mu0, ag.threshold) == (pytest.approx(0.95), pytest.approx(0.95))
    for mode, margin in (("score", 0.5), ("score", -0.1), ("paired-gold", 1.0), ("agreement", 0.0), ("x", 0.1)):
        with pytest.raises(InputError):
            hypothesis(mode, margin)


def test_paired_gold_reports_mean_difference_and_bounds_on_that_scale():
    rng = np.random.default_rng(2)
    d = rng.choice([-1, 0, 1], p=[0.3, 0.6, 0.1], size=600)
    res = run_sequential(d, mode="paired-gold", margin=0.05)
    assert res.verdict == "do_not_switch"
    assert res.estimate == pytest.approx(d[: res.n_used].mean())
    assert res.estimate_unit == pytest.approx((d[: res.n_used].mean() + 1) / 2)
    assert res.lower_bound == pytest.approx(2 * res.lower_bound_unit - 1)
    assert res.threshold == -0.05 and res.params.mu0 == pytest.approx(0.475)
    same = run_sequential((d + 1) / 2, mode="score", margin=0.025)  # identical unit-scale test
    assert (same.verdict, same.n_used) == (res.verdict, res.n_used)


def test_agreement_mode_switches_on_high_agreement_and_refuses_low():
    ones = np.ones(1000)
    res = run_sequential(ones, mode="agreement", margin=0.05)
    assert res.verdict == "switch" and res.estimate == 1.0
    low = (np.random.default_rng(4).random(2000) < 0.85).astype(float)
    res = run_sequential(low, mode="agreement", margin=0.05)
    assert res.verdict == "do_not_switch" and res.stopped_by == "futility"


def test_bonferroni_splits_alpha_across_candidates():
    assert bonferroni(0.05, 4) == pytest.approx(0.0125)
    with pytest.raises(ParityError):
        bonferroni(0.05, 0)
    xs = three_point_scores(0.6, size=3000, rng=np.random.default_rng(9))
    single = run_sequential(xs, margin=0.1)
    triple = run_sequential(xs, margin=0.1, candidates=3)
    assert triple.params.efficacy_alpha == pytest.approx(0.05 / 3)
    assert triple.log_e_value >= math.log(60) and triple.n_used >= single.n_used
    both = run_candidates({"a": xs, "b": xs[::-1]}, margin=0.1)
    assert all(r.params.candidates == 2 for r in both.values())
    assert both["a"].log_e_value >= math.log(40)


def test_without_replacement_settles_a_pool_once_its_mean_is_certain():
    # Pool of 10, mu0 = 0.4: after five 1s the pool mean is at least 0.5 whatever is left, so the sixth step
    # rejects outright; without the correction ten 1s are not enough evidence at alpha = 0.001.
    ones = np.ones(10)
    plain = run_sequential(ones, margin=0.1, alpha=0.001)
    assert plain.verdict == "inconclusive"
    res = run_sequential(ones, margin=0.1, alpha=0.001, pool_size=10)
    assert (res.verdict, res.n_used, res.e_value) == ("switch", 6, math.inf)
    assert res.to_dict()["e_value"] is None
    assert res.lower_bound_unit >= 0.6  # the unseen items score at least 0
    # Mirror: with mu0 = 0.6, five 0s make a pool mean >= 0.6 impossible.
    res = run_sequential(np.zeros(10), mode="agreement", margin=0.4, alpha=0.001, pool_size=10)
    assert (res.verdict, res.n_used, res.futility_e_value) == ("do_not_switch", 6, math.inf)


def test_without_replacement_never_takes_more_items_than_the_pool():
    with pytest.raises(InputError, match="pool"):
        run_sequential(np.ones(11), margin=0.1, pool_size=10, futility=False, alpha=1e-9)
    with pytest.raises(InputError, match="n_max"):
        make_params(margin=0.1, n_max=20, pool_size=10)


def test_bad_inputs_are_clear_errors():
    with pytest.raises(InputError, match=r"observation 2 .*\[0, 1\]"):
        run_sequential([0.5, 1.2], margin=0.1)
    with pytest.raises(InputError, match=r"\[-1, 1\]"):
        run_sequential([0, 2], mode="paired-gold", margin=0.1)
    with pytest.raises(InputError):
        run_sequential([0.5, float("nan")], margin=0.1)
    with pytest.raises(InputError, match="no observations"):
        run_sequential([], margin=0.1)
    with pytest.raises(InputError, match="method"):
        run_sequential([0.5], margin=0.1, method="wald")
    with pytest.raises(InputError, match="alpha"):
        run_sequential([0.5], margin=0.1, alpha=0.0)
    with pytest.raises(InputError, match="no observations"):
        SequentialTest(margin=0.1).result()


def test_unfinished_stream_is_inconclusive_and_records_parameters():
    test = SequentialTest(mode="score", margin=0.1, n_max=100)
    state = test.update(0.5)
    assert not state.done and state.n == 1
    res = test.result()
    assert (res.verdict, res.stopped_by, res.n_used) == ("inconclusive", "data_exhausted", 1)
    params = res.to_dict()
    for key in ("mode", "margin", "alpha", "n_max", "method", "futility", "mu0", "null_hypothesis"):
        assert key in params
    assert params["null_hypothesis"] == "H0: mean score <= 0.4"
