"""Verdict tests behind Figures 5, 8, 9 and 12 (issue 21 item 3), each against an independent ground truth: scipy's
paired t-test interval, the 2 x k contingency chi-square, an exact binomial tail summed by hand, and the rejection
rate of the dispersion test on masks simulated under its null (calibration) and away from it (power)."""
import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from scipy import stats

from probprune.core.errors import ProbPruneError
from probprune.experiments.figure_verdicts import above_chance, dispersion_test, paired_interval, slope_verdict


def test_paired_interval_matches_scipy_ttest_rel():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.9, 0.01, 5), rng.normal(0.9, 0.01, 5)
    iv = paired_interval(a - b, 0.95)
    ci = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert iv.lo == pytest.approx(ci.low, rel=1e-12) and iv.hi == pytest.approx(ci.high, rel=1e-12)
    # the verdict follows the interval: a shift of 10 sd is positive, none is not distinguishable
    assert paired_interval(a - b + 10 * np.std(a - b, ddof=1) + 0.1).verdict == "positive"
    assert paired_interval(-(a - b) - 1.0).verdict == "negative"
    assert paired_interval([0.004, -0.003, 0.001]).verdict == "not distinguishable"
    # one seed distinguishes nothing
    one = paired_interval([0.5])
    assert one.verdict == "not distinguishable" and one.lo == -np.inf and one.hi == np.inf


def test_dispersion_statistic_is_the_contingency_chi_square():
    rng = np.random.default_rng(1)
    n, k = 784, 50
    x = rng.binomial(n, 0.3, size=k)
    t = dispersion_test(x, n)
    chi2, p, dof, _ = stats.chi2_contingency(np.stack([x, n - x]), correction=False)
    assert t.statistic == pytest.approx(chi2, rel=1e-10) and t.dof == dof == k - 1
    assert t.p_over == pytest.approx(p, rel=1e-8)


def test_dispersion_test_calibrated_under_binomial_and_powerful_against_overdispersion():
    """Under the null (i.i.d. Bernoulli(p) mask) the two-sided test rejects at 5% with frequency inside the 99%
    binomial band around 0.05; a beta-binomial mask (per-neuron rates spread by sd 0.03) is rejected always."""
    rng = np.random.default_rng(2)
    reps, n, k, p = 400, 784, 300, 0.7
    rej = sum(dispersion_test(rng.binomial(n, p, size=k), n).p_value < 0.05 for _ in range(reps))
    lo, hi = stats.binom.ppf([0.005, 0.995], reps, 0.05)
    assert lo <= rej <= hi
    over = [dispersion_test(rng.binomial(n, np.clip(rng.normal(p, 0.03, k), 0, 1)), n) for _ in range(20)]
    assert all(t.p_value < 1e-6 and t.ratio > 2 for t in over)
    # under-dispersion (every neuron pruned exactly the same count) is rejected on the other side
    flat = dispersion_test(np.full(k, int(p * n)), n)
    assert flat.ratio < 0.01 and flat.p_under < 1e-6 and flat.p_value < 1e-6
    # nothing pruned: nothing to test
    assert dispersion_test(np.zeros(k), n).p_value == 1.0
    with pytest.raises(ProbPruneError):
        dispersion_test([1, 900], 784)


def test_above_chance_is_the_exact_binomial_tail():
    n, chance = 1000, 0.1
    for acc in (0.1, 0.115, 0.13, 0.459):
        k = round(acc * n)
        # exact in integers: P(X >= k), X ~ Bin(n, 1/10) = sum_j C(n, j) 9^(n - j) / 10^n
        tail = Fraction(sum(math.comb(n, j) * 9 ** (n - j) for j in range(k, n + 1)), 10 ** n)
        t = above_chance(acc, n, chance, margin=0.05, alpha=0.01)
        assert t.p_value == pytest.approx(float(tail), rel=1e-9)
    assert not above_chance(0.1, n).above          # at chance
    assert not above_chance(0.13, n).above         # significant (p ~ 7e-4) but inside the stated margin
    assert above_chance(0.459, n).above


def test_slope_verdict_is_two_sided():
    assert slope_verdict(-2.1, -2.0, 0.25).verdict == "agrees"
    assert slope_verdict(-1.17, -2.0, 0.25).verdict == "shallower"   # the reviewer's case no longer passes
    assert slope_verdict(-2.6, -2.0, 0.25).verdict == "steeper"
    assert slope_verdict(float("nan"), -2.0, 0.25).verdict == "not fitted"
    with pytest.raises(ProbPruneError):
        slope_verdict(-2.0, -2.0, 0.0)


def test_neuron_tests_count_cut_neurons_and_dead_inputs():
    from probprune.experiments.trained import neuron_tests

    m = torch.ones(4, 6)
    m[1] = 0            # neuron 1 fully cut off
    m[:, 2] = 0         # input 2 dead
    m[3, 0] = 0
    t = neuron_tests([{"w": m}]).iloc[0]
    assert t["fully_cut_neurons"] == 1 and t["dead_inputs"] == 1
    assert t["pruned_fraction"] == pytest.approx((6 + 3 + 1) / 24)
    assert t["dispersion_ratio"] > 1  # one neuron fully cut: over-dispersed
    p = 10 / 24  # THEORY §17.1 (d): i.i.d. cut-off probabilities of a neuron (row) and of an input (column)
    assert t["iid_cut_prob"] == pytest.approx(1 - (1 - p ** 6) ** 4)
    assert t["iid_dead_prob"] == pytest.approx(1 - (1 - p ** 4) ** 6)


def test_paired_verdicts_pair_by_seed_and_use_the_seeds_own_dense_run():
    import pandas as pd

    from probprune.experiments.repro_imp import paired_verdicts

    rows = []
    for seed, dense, it, os_ in ((0, 0.90, 0.92, 0.91), (1, 0.80, 0.83, 0.82), (2, 0.85, 0.87, 0.86)):
        for v in ("iterative, layer-wise", "one-shot, layer-wise"):
            rows.append({"seed": seed, "level": 0, "variant": v, "acc": dense})
        rows.append({"seed": seed, "level": 1, "variant": "iterative, layer-wise", "acc": it})
        rows.append({"seed": seed, "level": 1, "variant": "one-shot, layer-wise", "acc": os_})
    df = pd.DataFrame(rows)
    # unpaired, the seed-to-seed spread (0.80-0.90) would hide the 0.01-0.03 differences; paired they are exact
    r = paired_verdicts(df, "iterative, layer-wise", "one-shot, layer-wise", "acc").iloc[0]
    assert r["mean"] == pytest.approx(0.01) and r["verdict"] == "positive"  # sd 0: every seed +0.01
    r = paired_verdicts(df, "iterative, layer-wise", "dense", "acc").iloc[0]
    assert r["mean"] == pytest.approx((0.02 + 0.03 + 0.02) / 3)
    iv = paired_interval([0.02, 0.03, 0.02])
    assert (r["lo"], r["hi"]) == pytest.approx((iv.lo, iv.hi)) and r["verdict"] == "positive"
