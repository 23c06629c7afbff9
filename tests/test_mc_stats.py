"""THEORY §6 statistics: one-sided Clopper-Pearson limits, verdicts, looseness, power-law fits."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy.stats import binomtest

from probprune.core.errors import ProbPruneError
from probprune.mc.stats import (config_verdict, cp_lower, cp_upper, fit_power_law, looseness_summary,
                                min_trials_for_consistency)


def test_cp_upper_zero_events_closed_form():
    for T in (1, 10, 59, 1000):
        assert cp_upper(0, T, 0.05) == pytest.approx(1 - 0.05 ** (1 / T), rel=1e-12)
    assert cp_lower(0, 100) == 0.0 and cp_upper(100, 100) == 1.0


@settings(max_examples=60, deadline=None)
@given(T=st.integers(1, 3000), frac=st.floats(0, 1), alpha=st.sampled_from([0.01, 0.05, 0.1]))
def test_cp_matches_scipy_exact_interval(T, frac, alpha):
    # a two-sided exact interval at level 1 - 2 alpha has the one-sided alpha limits as its ends
    x = int(round(frac * T))
    ci = binomtest(x, T).proportion_ci(confidence_level=1 - 2 * alpha, method="exact")
    assert cp_lower(x, T, alpha) == pytest.approx(ci.low, abs=1e-10)
    assert cp_upper(x, T, alpha) == pytest.approx(ci.high, abs=1e-10)
    assert cp_lower(x, T, alpha) <= x / T <= cp_upper(x, T, alpha)


def test_min_trials_59():
    assert min_trials_for_consistency(0.05, 0.05) == 59
    assert cp_upper(0, 58, 0.05) > 0.05 >= cp_upper(0, 59, 0.05)


def test_verdicts():
    assert config_verdict(0, 0, 1000, 0.01).verdict == "consistent"
    assert config_verdict(0, 0, 40, 0.05).verdict == "inconclusive"  # T < 59
    v = config_verdict(30, 30, 1000, 0.01)  # 3% certified violations against delta = 1%
    assert v.verdict == "refuted" and v.rate_lower > 0.01
    assert config_verdict(0, 200, 1000, 0.05).verdict == "inconclusive"  # many undecided trials
    with pytest.raises(ProbPruneError):
        config_verdict(5, 2, 10, 0.1)
    with pytest.raises(ProbPruneError):
        config_verdict(0, 0, 0, 0.1)
    with pytest.raises(ProbPruneError):
        config_verdict(0, 0, 10, 1.5)


def test_power_fit_recovers_exponent():
    rng = np.random.default_rng(0)
    x = np.array([0.01, 0.02, 0.05, 0.1, 0.2])
    y = 3.0 * x**1.5 * np.exp(rng.normal(0, 0.01, x.size))
    f = fit_power_law(x, y)
    assert abs(f.exponent - 1.5) < 0.03 and f.prefactor == pytest.approx(3.0, rel=0.1) and f.r2 > 0.999
    with pytest.raises(ProbPruneError):
        fit_power_law([1, 1], [2, 3])


def test_looseness_summary_ignores_nonfinite():
    s = looseness_summary([1.0, 2.0, 3.0, np.inf, np.nan])
    assert s.n == 3 and s.median == 2.0 and s.min == 1.0 and s.max == 3.0
    assert math.isnan(looseness_summary([np.nan]).median)
