"""Verdicts that follow from their data (issue 21 item 3): the statistical tests behind the captions of Figures 5, 8,
9 and 12. Pure functions returning small frozen dataclasses that carry the test, its inputs and its result, so a
caption states a comparison only when the test supports it.

* :func:`paired_interval` - the 95% Student-t interval of a paired difference over seeds; a "win" needs the interval
  to exclude 0 (Fig. 9: iterative vs one-shot, ticket vs dense).
* :func:`dispersion_test` - the index-of-dispersion (chi-square) test of per-neuron pruned counts against
  Binomial(fan_in, p) (Fig. 8: is an IMP mask like the i.i.d. masks the theory analyses?).
* :func:`above_chance` - the exact one-sided binomial test of a test-set accuracy against chance, with a stated margin
  (Fig. 12: compare architectures only where an arm is above chance).
* :func:`slope_verdict` - a two-sided tolerance check of a fitted slope against a prediction (Fig. 5).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from probprune.core.errors import ProbPruneError


@dataclass(frozen=True)
class PairedInterval:
    """Mean paired difference over n seeds, its sample sd, and the t-interval [lo, hi] at ``confidence``."""

    n: int
    mean: float
    sd: float
    lo: float
    hi: float
    confidence: float

    @property
    def verdict(self) -> str:
        """'positive' / 'negative' when the interval excludes 0, else 'not distinguishable'."""
        if self.n >= 2 and self.lo > 0:
            return "positive"
        if self.n >= 2 and self.hi < 0:
            return "negative"
        return "not distinguishable"


def paired_interval(diffs, confidence: float = 0.95) -> PairedInterval:
    """Student-t interval mean +- t_{n-1, (1+c)/2} sd / sqrt(n) of paired differences (one per seed). With fewer
    than two seeds the interval is (-inf, inf): nothing is distinguishable from one seed."""
    from scipy import stats

    d = np.asarray(diffs, dtype=float).ravel()
    d = d[np.isfinite(d)]
    if not 0 < confidence < 1:
        raise ProbPruneError(f"confidence must be in (0, 1), got {confidence}")
    n = int(d.size)
    if n == 0:
        return PairedInterval(0, float("nan"), float("nan"), -np.inf, np.inf, confidence)
    m = float(d.mean())
    if n < 2:
        return PairedInterval(1, m, float("nan"), -np.inf, np.inf, confidence)
    sd = float(d.std(ddof=1))
    h = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / np.sqrt(n)
    return PairedInterval(n, m, sd, m - h, m + h, confidence)


@dataclass(frozen=True)
class DispersionTest:
    """Index-of-dispersion test of counts x_i ~ Binomial(n_trials, p) (p estimated by the pooled mean):
    D = sum (x_i - n p)^2 / (n p (1 - p)) ~ chi^2_{k-1}; ``ratio`` = D / (k - 1) (1 for a binomial mask, > 1 over-,
    < 1 under-dispersed); ``p_value`` two-sided."""

    k: int
    n_trials: int
    p: float
    statistic: float
    dof: int
    ratio: float
    p_over: float
    p_under: float
    p_value: float


def dispersion_test(counts, n_trials: int) -> DispersionTest:
    """Per-neuron pruned counts (one per neuron, each out of ``n_trials`` = fan-in) against Binomial(fan_in, p)."""
    from scipy import stats

    x = np.asarray(counts, dtype=float).ravel()
    n = int(n_trials)
    if n < 1 or x.size < 2 or (x < 0).any() or (x > n).any():
        raise ProbPruneError("dispersion_test needs >= 2 counts in [0, n_trials] and n_trials >= 1")
    k = int(x.size)
    p = float(x.sum() / (k * n))
    if p <= 0 or p >= 1:  # no variance under the null: every count is 0 (or n); nothing to test
        return DispersionTest(k, n, p, 0.0, k - 1, float("nan"), 1.0, 1.0, 1.0)
    D = float(((x - n * p) ** 2).sum() / (n * p * (1 - p)))
    p_over = float(stats.chi2.sf(D, k - 1))
    p_under = float(stats.chi2.cdf(D, k - 1))
    return DispersionTest(k, n, p, D, k - 1, D / (k - 1), p_over, p_under, min(1.0, 2 * min(p_over, p_under)))


@dataclass(frozen=True)
class ChanceTest:
    """Exact one-sided binomial test of ``correct`` of ``n`` against ``chance``; ``above`` needs p < alpha and an
    accuracy at least ``chance + margin``."""

    correct: int
    n: int
    accuracy: float
    chance: float
    margin: float
    alpha: float
    p_value: float

    @property
    def above(self) -> bool:
        return bool(self.p_value < self.alpha and self.accuracy >= self.chance + self.margin)


def above_chance(accuracy: float, n: int, chance: float = 0.1, margin: float = 0.05, alpha: float = 0.01) -> ChanceTest:
    from scipy import stats

    n = int(n)
    if n < 1 or not 0 <= accuracy <= 1:
        raise ProbPruneError("above_chance needs n >= 1 and an accuracy in [0, 1]")
    k = int(round(float(accuracy) * n))
    p = float(stats.binomtest(k, n, chance, alternative="greater").pvalue)
    return ChanceTest(k, n, k / n, float(chance), float(margin), float(alpha), p)


@dataclass(frozen=True)
class SlopeVerdict:
    """A fitted slope against a prediction with a two-sided tolerance: 'agrees' when |slope - predicted| <= tol,
    else 'steeper' (more negative) or 'shallower'."""

    slope: float
    predicted: float
    tolerance: float

    @property
    def verdict(self) -> str:
        if not np.isfinite(self.slope):
            return "not fitted"
        if abs(self.slope - self.predicted) <= self.tolerance:
            return "agrees"
        return "steeper" if self.slope < self.predicted else "shallower"


def slope_verdict(slope: float, predicted: float, tolerance: float) -> SlopeVerdict:
    if not tolerance > 0:
        raise ProbPruneError(f"tolerance must be > 0, got {tolerance}")
    return SlopeVerdict(float(slope), float(predicted), float(tolerance))
