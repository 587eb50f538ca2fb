"""Monte Carlo checks of the guarantee and of the power the reference reports (proof-science §2.2, §2.7).

Set-up as in §2.7: judge-like scores in {0, ½, 1} with 30% ties, one-sided α = 0.05, the e-process checked after
every single prompt (continuous monitoring), N_max = 1,500 for δ = 0.1 and 4,000 for δ = 0.05.
Monte Carlo slack is stated per assertion (SE = standard error of a simulated proportion).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from parity.proof.sequential import run_sequential
from parity.proof.simulation import run_sequential_paths, simulate_paths, three_point_scores

ALPHA = 0.05


def se(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n)


@pytest.fixture(scope="module")
def agrapa_null():
    """aGRAPA at the boundary null mu = 0.5 - delta, 10,000 paths, no futility (the strictest case)."""
    return simulate_paths(0.4, paths=10_000, n_max=1500, rng=np.random.default_rng(2024), margin=0.1, futility=False)


@pytest.fixture(scope="module")
def agrapa_parity():
    return simulate_paths(0.5, paths=10_000, n_max=1500, rng=np.random.default_rng(2025), margin=0.1, futility=False)


def test_type_one_error_at_the_boundary_null_is_at_most_alpha(agrapa_null):
    rate = agrapa_null.rate("switch")
    assert agrapa_null.paths == 10_000
    assert rate <= ALPHA + 3 * se(ALPHA, agrapa_null.paths)  # <= 0.0565
    # Table §2.7 reports 0.033 for aGRAPA at delta = 0.1 (2,000-20,000 paths); we measure about 0.029.
    assert abs(rate - 0.033) <= 0.01
    # Paths that never switched ran to N_max: monitoring really was continuous up to the budget.
    assert np.all(agrapa_null.n_used[agrapa_null.verdict != "switch"] == 1500)


def test_power_at_parity_matches_the_reference_table(agrapa_parity):
    # Table §2.7, row "betting e-process, aGRAPA", delta = 0.10: n50 / n80 / n90 = 125 / 229 / 295.
    # Measured with 10,000 paths (four seeds): about 120 / 228 / 295; allow 8% for simulation noise.
    for q, table in ((0.5, 125), (0.8, 229), (0.9, 295)):
        assert agrapa_parity.n_for(q) == pytest.approx(table, rel=0.08), q
    assert agrapa_parity.rate("switch") > 0.99


def test_naive_repeated_z_test_inflates_type_one_error_on_the_same_harness(agrapa_null):
    # Same data model at the same boundary null; z-test after every 10 prompts, stop at the first rejection.
    naive = simulate_paths(0.4, paths=4000, n_max=1000, rng=np.random.default_rng(7), margin=0.1, naive_every=10)
    rate = naive.rate("switch")
    # Reference §2.2 measured 32% with N <= 1,000 (4,000 paths), against a nominal 5%.
    assert rate == pytest.approx(0.32, abs=0.04)
    assert rate > 4 * ALPHA and rate > 5 * agrapa_null.rate("switch")


def test_futility_keeps_type_one_error_and_rarely_rejects_a_good_candidate():
    rng = np.random.default_rng(99)
    null = simulate_paths(0.4, paths=4000, n_max=1500, rng=rng, margin=0.1, futility=True)
    assert null.rate("switch") <= ALPHA + 3 * se(ALPHA, 4000)
    parity = simulate_paths(0.5, paths=4000, n_max=1500, rng=rng, margin=0.1, futility=True)
    # §2.7: at mu = 0.5 the futility side falsely declared "inferior" 0.1% of the time.
    assert parity.rate("do_not_switch") <= 0.001 + 3 * se(0.001, 4000)


def test_futility_stopping_matches_the_reference():
    rng = np.random.default_rng(31)
    # §2.7, delta = 0.1: at mu = 0.35 "inferior" 96% of the time, median 469; at mu = 0.3, median 93.
    bad = simulate_paths(0.35, paths=4000, n_max=1500, rng=rng, margin=0.1)
    assert bad.rate("do_not_switch") == pytest.approx(0.96, abs=0.015)
    assert bad.median_n("do_not_switch") == pytest.approx(469, rel=0.08)
    worse = simulate_paths(0.3, paths=4000, n_max=1500, rng=rng, margin=0.1)
    assert worse.median_n("do_not_switch") == pytest.approx(93, rel=0.1)


def test_grid_mixture_is_valid_and_matches_its_row():
    rng = np.random.default_rng(77)
    null = simulate_paths(0.4, paths=4000, n_max=1500, rng=rng, margin=0.1, method="grid", futility=False)
    assert null.rate("switch") <= ALPHA + 3 * se(ALPHA, 4000)
    parity = simulate_paths(0.5, paths=4000, n_max=1500, rng=rng, margin=0.1, method="grid", futility=False)
    # Table §2.7, row "grid mixture (G = 12)", delta = 0.10: 126 / 220 / 289 (we measure about 123 / 216 / 276).
    for q, table in ((0.5, 126), (0.8, 220), (0.9, 289)):
        assert parity.n_for(q) == pytest.approx(table, rel=0.1), q


def test_power_at_the_smaller_margin_matches_the_table():
    # Table §2.7, aGRAPA, delta = 0.05, N_max = 4,000: n50 / n80 / n90 = 545 / 997 / 1286.
    parity = simulate_paths(0.5, paths=4000, n_max=4000, rng=np.random.default_rng(5), margin=0.05, futility=False)
    for q, table in ((0.5, 545), (0.8, 997), (0.9, 1286)):
        assert parity.n_for(q) == pytest.approx(table, rel=0.08), q


def test_paired_gold_and_agreement_modes_hold_alpha_at_their_boundaries():
    rng = np.random.default_rng(12)
    # paired-gold, margin 0.1 on accuracy: boundary E[D] = -0.1 with P(D=0) = 0.6.
    d = rng.choice([-1.0, 0.0, 1.0], p=[0.25, 0.6, 0.15], size=(4000, 1000))
    res = run_sequential_paths(d, mode="paired-gold", margin=0.1, futility=False)
    assert res.rate("switch") <= ALPHA + 3 * se(ALPHA, 4000)
    # agreement, p0 = 0.9: data agreeing exactly 90% of the time.
    agree = (rng.random((4000, 1000)) < 0.9).astype(float)
    res = run_sequential_paths(agree, mode="agreement", margin=0.1, futility=False)
    assert res.rate("switch") <= ALPHA + 3 * se(ALPHA, 4000)


def test_without_replacement_correction_is_valid_on_a_fixed_pool_and_adds_power():
    rng = np.random.default_rng(21)
    # A fixed pool of 300 whose mean is exactly the boundary 0.4, drawn in 4,000 random orders to the end.
    pool = np.concatenate([np.zeros(135), np.full(90, 0.5), np.ones(75)])
    assert pool.mean() == pytest.approx(0.4)
    orders = np.array([rng.permutation(pool) for _ in range(4000)])
    res = run_sequential_paths(orders, margin=0.1, pool_size=300, futility=False)
    assert res.rate("switch") <= ALPHA + 3 * se(ALPHA, 4000)
    # A pool at parity: the correction decides at least as often as the plain test, and sooner.
    good = np.concatenate([np.zeros(105), np.full(90, 0.5), np.ones(105)])
    orders = np.array([rng.permutation(good) for _ in range(2000)])
    plain = run_sequential_paths(orders, margin=0.1, futility=False)
    wor = run_sequential_paths(orders, margin=0.1, pool_size=300, futility=False)
    assert wor.rate("switch") >= plain.rate("switch")
    assert wor.median_n() <= plain.median_n()


def test_lower_confidence_sequence_covers_the_mean_uniformly_over_time():
    rng = np.random.default_rng(3)
    xs = three_point_scores(0.45, size=(1000, 800), rng=rng)
    # The running-max lower bound must stay below the true mean at all times in >= 95% of paths.
    misses = 0
    for row in xs:
        res = run_sequential(row, margin=0.0, alpha=0.05, futility=False, method="agrapa")
        misses += bool(res.lower_bound_unit > 0.45)
    assert misses / len(xs) <= ALPHA + 3 * se(ALPHA, len(xs))
