"""Statistics for Monte Carlo validation of the bounds (THEORY.md §6 "Statistics", §3.10 scaling laws).

* One-sided Clopper-Pearson limits, exactly as written in §6 (scalar wrappers of the package's one
  vectorised implementation, :mod:`probprune.core.stats`, on ``scipy.stats.beta``).
* The per-configuration verdict: **refuted** if lower(V_c, T, alpha) > delta, **consistent** if
  upper(V_u, T, alpha) <= delta, otherwise **inconclusive** (§6) [D].
* Looseness summaries (bound / empirical error; median and spread).
* Least-squares power-law fits on log-log data (the 3/2 and 1/2 exponents of §3.10).

Provenance: the protocol is [D] (derived here, THEORY §6); Clopper-Pearson (1934) is standard.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as _st

from probprune.core.errors import ProbPruneError, check_delta
from probprune.core.stats import clopper_pearson_lower, clopper_pearson_upper

VERDICTS = ("refuted", "consistent", "inconclusive")


def _check_counts(x, T) -> tuple[int, int]:
    try:
        x, T = int(x), int(T)
    except (TypeError, ValueError):
        raise ProbPruneError(f"counts must be integers, got x={x!r}, T={T!r}") from None
    if T < 1 or x < 0 or x > T:
        raise ProbPruneError(f"need 0 <= x <= T and T >= 1, got x={x}, T={T}")
    return x, T


def _check_alpha(alpha) -> float:
    a = float(alpha)
    if not 0.0 < a < 1.0:
        raise ProbPruneError(f"alpha must be in (0, 1), got {alpha!r}")
    return a


def cp_lower(x: int, T: int, alpha: float = 0.05) -> float:
    """One-sided Clopper-Pearson lower confidence limit for a binomial rate (§6):
    ``0 if x == 0 else beta.ppf(alpha, x, T - x + 1)``."""
    x, T = _check_counts(x, T)
    alpha = _check_alpha(alpha)
    return float(clopper_pearson_lower(x, T, alpha))


def cp_upper(x: int, T: int, alpha: float = 0.05) -> float:
    """One-sided Clopper-Pearson upper confidence limit (§6): ``1 if x == T else beta.ppf(1 - alpha, x + 1, T - x)``.
    For x = 0 this equals 1 - alpha**(1/T)."""
    x, T = _check_counts(x, T)
    alpha = _check_alpha(alpha)
    return float(clopper_pearson_upper(x, T, alpha))


def min_trials_for_consistency(delta: float, alpha: float = 0.05) -> int:
    """Smallest T with upper(0, T, alpha) <= delta, i.e. T >= ln(alpha)/ln(1 - delta) (§6; 59 for 0.05/0.05)."""
    delta = check_delta(delta)
    alpha = _check_alpha(alpha)
    T = int(np.ceil(np.log(alpha) / np.log1p(-delta)))
    while cp_upper(0, T, alpha) > delta:  # guard against rounding at the boundary
        T += 1
    return T


@dataclass(frozen=True)
class ConfigVerdict:
    """Verdict of one configuration against its failure probability delta (§6).

    ``V_c`` = certified violations (LB > b), ``V_u`` = trials not certified as satisfied (V_c + undecided).
    ``rate_lower`` = CP lower limit of V_c/T, ``rate_upper`` = CP upper limit of V_u/T (both one-sided, level alpha).
    """

    T: int
    V_c: int
    V_u: int
    delta: float
    alpha: float
    rate_lower: float
    rate_upper: float
    verdict: str

    @property
    def rate_certified(self) -> float:
        return self.V_c / self.T

    def as_dict(self) -> dict:
        return asdict(self)


def config_verdict(V_c: int, V_u: int, T: int, delta: float, alpha: float = 0.05) -> ConfigVerdict:
    """refuted if lower(V_c) > delta; consistent if upper(V_u) <= delta; else inconclusive (§6)."""
    V_c, T = _check_counts(V_c, T)
    V_u, _ = _check_counts(V_u, T)
    if V_u < V_c:
        raise ProbPruneError(f"V_u ({V_u}) counts V_c ({V_c}) plus undecided trials, so V_u >= V_c")
    delta = check_delta(delta)
    lo, hi = cp_lower(V_c, T, alpha), cp_upper(V_u, T, alpha)
    if lo > delta:
        v = "refuted"
    elif hi <= delta:
        v = "consistent"
    else:
        v = "inconclusive"
    return ConfigVerdict(T, V_c, V_u, delta, float(alpha), lo, hi, v)


@dataclass(frozen=True)
class Looseness:
    """Summary of ratios bound / empirical error over trials (median and spread; finite values only)."""

    n: int
    median: float
    q10: float
    q90: float
    min: float
    max: float

    def as_dict(self) -> dict:
        return asdict(self)


def looseness_summary(ratios) -> Looseness:
    r = np.asarray(ratios, dtype=float).ravel()
    r = r[np.isfinite(r)]
    if r.size == 0:
        nan = float("nan")
        return Looseness(0, nan, nan, nan, nan, nan)
    q10, med, q90 = np.quantile(r, [0.1, 0.5, 0.9])
    return Looseness(int(r.size), float(med), float(q10), float(q90), float(r.min()), float(r.max()))


@dataclass(frozen=True)
class PowerFit:
    """Least-squares fit of log y = log c + k log x (§3.10): exponent k with its standard error, prefactor c,
    coefficient of determination r2, number of points."""

    exponent: float
    stderr: float
    prefactor: float
    r2: float
    n: int

    def as_dict(self) -> dict:
        return asdict(self)


def fit_power_law(x, y) -> PowerFit:
    """Fit y ~ c x^k by ordinary least squares on (log x, log y) (``scipy.stats.linregress``).
    Needs >= 2 distinct positive x and positive finite y."""
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape:
        raise ProbPruneError(f"x and y must have the same length, got {x.size} and {y.size}")
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    x, y = x[ok], y[ok]
    if np.unique(x).size < 2:
        raise ProbPruneError("a power-law fit needs at least 2 distinct positive x values with positive y")
    lx, ly = np.log(x), np.log(y)
    if np.unique(x).size == 2 and x.size == 2:
        k = (ly[1] - ly[0]) / (lx[1] - lx[0])
        return PowerFit(float(k), float("nan"), float(np.exp(ly[0] - k * lx[0])), 1.0, 2)
    res = _st.linregress(lx, ly)
    return PowerFit(float(res.slope), float(res.stderr), float(np.exp(res.intercept)), float(res.rvalue**2), int(x.size))
