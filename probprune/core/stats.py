"""Binomial confidence limits: the package's one Clopper-Pearson implementation (THEORY §6 "Statistics", §4.1).

Clopper & Pearson (1934), via the beta quantiles of ``scipy.stats.beta`` (vectorised; the same limits as
``scipy.stats.binomtest(x, T).proportion_ci(method="exact")`` and statsmodels' ``proportion_confint(method="beta")``):

* one-sided lower limit at level alpha: ``0 if x == 0 else beta.ppf(alpha, x, T - x + 1)``;
* one-sided upper limit: ``1 if x == T else beta.ppf(1 - alpha, x + 1, T - x)`` (= 1 - alpha**(1/T) at x = 0);
* two-sided interval at confidence c: the one-sided limits at alpha = (1 - c)/2.

Used by the Monte Carlo verdicts (``probprune.mc.stats.cp_lower``/``cp_upper``) and Lueker's-lemma coverage estimates
(``probprune.subsetsum.lueker``). Arguments broadcast (numpy); scalars in, 0-d arrays out.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import beta as _beta

from probprune.core.errors import ProbPruneError


def _counts(x, T) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=float)
    T = np.asarray(T, dtype=float)
    if np.any(~np.isfinite(x)) or np.any(~np.isfinite(T)) or np.any(x != np.round(x)) or np.any(T != np.round(T)):
        raise ProbPruneError("Clopper-Pearson needs integer counts x and T")
    if np.any(T < 1) or np.any(x < 0) or np.any(x > T):
        raise ProbPruneError("Clopper-Pearson needs 0 <= x <= T and T >= 1")
    return x, T


def _alpha(alpha) -> np.ndarray:
    a = np.asarray(alpha, dtype=float)
    if np.any(~(a > 0.0)) or np.any(~(a < 1.0)):
        raise ProbPruneError(f"alpha must be in (0, 1), got {alpha!r}")
    return a


def clopper_pearson_lower(x, T, alpha=0.05) -> np.ndarray:
    """One-sided lower (1 - alpha) confidence limit for a binomial rate: 0 at x = 0, else beta.ppf(alpha, x, T-x+1)."""
    x, T = _counts(x, T)
    a = _alpha(alpha)
    with np.errstate(invalid="ignore"):
        lo = _beta.ppf(a, np.maximum(x, 1.0), T - x + 1)
    return np.where(x > 0, lo, 0.0)


def clopper_pearson_upper(x, T, alpha=0.05) -> np.ndarray:
    """One-sided upper (1 - alpha) confidence limit: 1 at x = T, else beta.ppf(1 - alpha, x + 1, T - x)."""
    x, T = _counts(x, T)
    a = _alpha(alpha)
    with np.errstate(invalid="ignore"):
        hi = _beta.ppf(1.0 - a, x + 1, np.maximum(T - x, 1.0))
    return np.where(x < T, hi, 1.0)


def clopper_pearson_interval(x, T, confidence=0.95) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided Clopper-Pearson interval at ``confidence``: the one-sided limits at alpha = (1 - confidence)/2."""
    a = _alpha(1.0 - np.asarray(confidence, dtype=float)) / 2.0  # confidence in (0, 1)
    return clopper_pearson_lower(x, T, a), clopper_pearson_upper(x, T, a)


def coverage_rank(n: int, delta: float) -> int:
    """k = ceil((1 - delta) n): the rank whose order statistic is exceeded by at most a delta fraction of ``n``
    values (a 1e-12 guard against 0.9 * 10 = 9.000000000000002)."""
    import math

    return int(math.ceil((1.0 - delta) * n - 1e-12))


def order_statistic(values, k: int) -> float:
    """The k-th smallest of ``values`` (1-based: k = 1 is the minimum, k = len the maximum): the package's one order
    statistic (the empirical and calibrated quantiles are order statistics of per-draw values)."""
    v = np.sort(np.ravel(np.asarray(values, dtype=float)))
    k = int(k)
    if not 1 <= k <= v.size:
        raise ProbPruneError(f"order statistic rank {k} outside 1..{v.size}")
    return float(v[k - 1])


__all__ = ["clopper_pearson_lower", "clopper_pearson_upper", "clopper_pearson_interval", "coverage_rank",
           "order_statistic"]
