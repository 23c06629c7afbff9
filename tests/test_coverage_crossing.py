"""The empirical crossing and its distribution-free interval (budgets.calibrated.empirical_crossing, issue 20: the
reference of budget_ratio.json with a confidence interval): the rank bracket covers the quantile at its nominal rate
(Monte Carlo on a known law, no miss rate beyond Clopper-Pearson), the interval contains the point estimate, and bad
input is refused with one line."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from probprune.budgets.calibrated import empirical_crossing, quantile_rank_bracket
from probprune.core.errors import ProbPruneError
from probprune.mc.stats import cp_lower
from probprune.net.templates import fcn_spec


@pytest.mark.parametrize("T", [100, 300, 1000])
def test_rank_bracket_covers_the_quantile(T):
    l, u = quantile_rank_bracket(T, 0.95, 0.05)
    assert 1 <= l < int(np.ceil(0.95 * T)) < u <= T
    # exact: #(X < Q) ~ Bin(T, 0.95); each side misses with probability <= 0.025
    assert stats.binom.cdf(l - 1, T, 0.95) <= 0.025 and stats.binom.sf(u - 1, T, 0.95) <= 0.025
    rng = np.random.default_rng(T)
    x = np.sort(rng.exponential(size=(4000, T)), axis=1)
    Q = stats.expon.ppf(0.95)
    for miss in (x[:, l - 1] > Q, x[:, u - 1] < Q):
        assert cp_lower(int(miss.sum()), miss.size, 0.001) <= 0.025


def test_rank_bracket_too_few_draws():
    assert quantile_rank_bracket(20, 0.95, 0.05)[1] == 21  # no upper rank: refused by empirical_crossing
    spec = fcn_spec([6, 5, 3], "identity")
    with pytest.raises(ProbPruneError, match="too few"):
        empirical_crossing(spec, 0.1, 0.05, "magnitude", trials=20)


def test_crossing_interval_contains_the_point():
    spec = fcn_spec([12, 10, 4], "identity")
    c = empirical_crossing(spec, 0.05, 0.05, "magnitude", trials=200, seed=3)
    assert 0 < c.lower <= c.fraction <= c.upper
    assert c.ranks[0] < c.ranks[1] < c.ranks[2]
    assert c.within >= 0 and "within" in c.as_dict()


def test_crossing_refuses_bad_input():
    spec = fcn_spec([6, 5, 3], "relu")
    with pytest.raises(ProbPruneError, match="identity"):
        empirical_crossing(spec, 0.1, trials=100)
    with pytest.raises(ProbPruneError):
        empirical_crossing(fcn_spec([6, 5, 3], "identity"), 0.1, trials=100, confidence=1.5)
